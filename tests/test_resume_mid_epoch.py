"""A one-epoch run killed mid-epoch (kill -9 after a step checkpoint) and resumed with ckpt_path=last
ends with the uninterrupted run's weights and optimiser state, and trains every record exactly once."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from embedforge.paths import REPO_ROOT
from embedforge.train.run import train

TESTS = Path(__file__).parent
COMMON = ["model=tiny-mistral", "pooling=last_token", "lora=r8", "lora.dropout=0.1", "data.batch_size=4",
          "data.max_train_examples=24", "data.val_files=null", "validate_before_fit=false", "save_encoder=false",
          "optim.warmup_steps=1", "trainer.max_epochs=1", "callbacks.model_checkpoint.every_n_train_steps=2",
          "+callbacks.record._target_=callbacks_for_tests.RecordQueries"]


def batches(path: Path, rank: int = 0) -> list[list]:
    file = Path(f"{path}.rank{rank}")
    return [json.loads(line)["queries"] for line in file.read_text().splitlines()] if file.exists() else []


def final_state(root: Path, name: str) -> dict:
    newest = sorted((root / name).glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)[-1]
    return torch.load(newest, weights_only=True)


def assert_same_training_state(a: dict, b: dict):
    assert a["global_step"] == b["global_step"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert torch.allclose(b["state_dict"][key], value, atol=1e-6), key
    for index, state in a["optimizer_states"][0]["state"].items():
        other = b["optimizer_states"][0]["state"][index]
        assert state["step"] == other["step"]
        for moment in ("exp_avg", "exp_avg_sq"):
            assert torch.allclose(state[moment], other[moment], atol=1e-7)


def cli(root: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "HF_HUB_OFFLINE": "1",
           "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, "-m", "embedforge.cli.train", *COMMON, f"paths.output_root={root}",
                           "logger=none", *overrides], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)


def test_kill_9_mid_epoch_then_resume_is_exact(compose_train, tmp_path):
    full_log, split_log = tmp_path / "full", tmp_path / "split"
    train(compose_train(*COMMON, "run_name=full", f"+callbacks.record.path={full_log}"))
    full = final_state(tmp_path / "runs", "full")
    assert full["global_step"] == 6

    killed = cli(tmp_path / "runs", "run_name=split", f"+callbacks.record.path={split_log}",
                 "+callbacks.kill._target_=callbacks_for_tests.KillAtStep", "+callbacks.kill.step=4")
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert len(batches(split_log)) == 4
    resumed = cli(tmp_path / "runs", "run_name=split", f"+callbacks.record.path={split_log}", "ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    seen = batches(split_log)
    assert seen == batches(full_log), "the resumed run must continue at the next unseen batch, in order"
    assert sum(len(batch) for batch in seen) == 24  # all 24 records, each in exactly one trained batch
    assert_same_training_state(full, final_state(tmp_path / "runs", "split"))


def test_preemption_signal_checkpoints_the_batch_in_flight_then_resume_is_exact(compose_train, tmp_path):
    """SIGUSR1 (SLURM's warning) or SIGTERM mid-epoch: the run finishes the batch in flight, writes
    last.ckpt at that step (between the every-2-steps checkpoints), exits cleanly, and resumes exactly."""
    full_log = tmp_path / "full"
    train(compose_train(*COMMON, "run_name=full", f"+callbacks.record.path={full_log}"))
    full = final_state(tmp_path / "runs", "full")
    for signal_name in ("SIGUSR1", "SIGTERM"):
        name, log = f"split_{signal_name}", tmp_path / f"split_{signal_name}"
        stopped = cli(tmp_path / "runs", f"run_name={name}", f"+callbacks.record.path={log}",
                      "+callbacks.signal._target_=callbacks_for_tests.SignalAtStep", "+callbacks.signal.step=2",
                      f"+callbacks.signal.signal_name={signal_name}")
        assert stopped.returncode == 0, stopped.stderr[-2000:]
        assert f"{signal_name} received: checkpoint written" in stopped.stdout + stopped.stderr
        assert final_state(tmp_path / "runs", name)["global_step"] == 3  # the batch in flight was finished
        assert len(batches(log)) == 3
        resumed = cli(tmp_path / "runs", f"run_name={name}", f"+callbacks.record.path={log}", "ckpt_path=last")
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert batches(log) == batches(full_log)
        assert_same_training_state(full, final_state(tmp_path / "runs", name))


def test_ddp_sim_stop_mid_epoch_then_resume_is_exact(compose_train, tmp_path):
    """Two gloo ranks, stopped after 2 of 4 steps (step checkpoint every 2) and resumed."""
    common = [*COMMON, "trainer=ddp_sim", "data.max_train_examples=32", "callbacks.model_checkpoint.every_n_train_steps=2"]
    full_log, split_log = tmp_path / "full", tmp_path / "split"
    train(compose_train(*common, "run_name=full", f"+callbacks.record.path={full_log}"))
    train(compose_train(*common, "run_name=split", f"+callbacks.record.path={split_log}",
                        "+callbacks.stop._target_=callbacks_for_tests.StopAfterSteps", "+callbacks.stop.steps=2"))
    train(compose_train(*common, "run_name=split", f"+callbacks.record.path={split_log}", "ckpt_path=last",
                        "paths.output_dir=${paths.output_root}/${run_name}/resumed"))  # a new run folder, as Hydra gives
    for rank in range(2):
        assert batches(split_log, rank) == batches(full_log, rank) and len(batches(full_log, rank)) == 4
    assert_same_training_state(final_state(tmp_path / "runs", "full"), final_state(tmp_path / "runs", "split"))


def test_resumed_run_continues_its_wandb_run(compose_train, tmp_path, monkeypatch):
    """The checkpoint names the W&B run; `ckpt_path=last` reopens that run instead of starting a new one."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    common = ["model=tiny-mistral", "lora=r8", "data.batch_size=8", "data.max_train_examples=16", "data.val_files=null",
              "validate_before_fit=false", "save_encoder=false", "run_name=wb", "logger=wandb"]
    first = train(compose_train(*common, "trainer.max_epochs=1"))
    checkpoint = torch.load(tmp_path / "runs/wb/run/checkpoints/last.ckpt", weights_only=True)
    assert first["wandb_run_id"] and checkpoint["wandb_run_id"] == first["wandb_run_id"]
    second = train(compose_train(*common, "trainer.max_epochs=2", "ckpt_path=last",
                                 "paths.output_dir=${paths.output_root}/${run_name}/resumed"))
    assert second["wandb_run_id"] == first["wandb_run_id"] and second["global_step"] == 4
