"""Multi-node launches, emulated on one machine with CPU processes (gloo).

- torchrun, 2 nodes x 1 process on 127.0.0.1, with the README's command shrunk to CPU;
- SLURM, 2 tasks: scripts/slurm_train.sbatch itself, run by bash with a fake `srun` (starts the tasks
  with the variables srun sets) and a fake `scontrol` (records the requeue), then SIGUSR1 to one
  task and the requeued job.

Each multi-node run is checked against `trainer=ddp_sim` (2 processes spawned by one launch) on the
same global batch: same first batches per rank, same trained embeddings.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
FAKE_SLURM = REPO / "tests" / "fake_slurm"
SBATCH = REPO / "scripts" / "slurm_train.sbatch"
VENV = Path(sys.executable).parent.parent
RUN_NAME = "paper_synthetic_msmarco"  # the sbatch script's run_name
STEPS = 8
# The paper command's overrides shrunk to CPU: tiny decoder, demo data, global batch 2 ranks x 4 = 8.
# LoRA dropout stays at the paper's 0.1, so the dropout streams of the launches must agree too.
CPU = ["model=tiny-mistral", "model.max_length=64", "data=demo", "data.max_train_examples=80", "data.val_files=null",
       "data.global_batch_size=8", "data.batch_size=4", "trainer.accelerator=cpu", "optim.lr=1e-3",
       "optim.warmup_steps=1", f"trainer.max_steps={STEPS}", "callbacks.model_checkpoint.every_n_train_steps=1"]
# Rank 1 of a torchrun launch starts 2.5 s late, so its start second differs from rank 0's: without
# one shared run folder the two ranks would write two.
LATE_RANK_1 = ("import os, time\n"
               "if os.environ.get('RANK') == '1' and 'TORCHELASTIC_RUN_ID' in os.environ:\n"
               "    time.sleep(2.5)\n")


# ---------------------------------------------------------------------------------------------- helpers
def dump_overrides(folder: Path) -> list[str]:
    return ["+callbacks.dump._target_=callbacks_for_tests.DumpFirstStep", f"+callbacks.dump.folder={folder}"]


def env_for_runs(*extra_paths: Path) -> dict:
    env = dict(os.environ)
    paths = [str(p) for p in extra_paths] + [str(REPO / "src"), str(REPO / "tests")]
    env.update(PYTHONPATH=os.pathsep.join(paths + [env.get("PYTHONPATH", "")]), WANDB_MODE="offline",
               HF_HUB_OFFLINE="1", HYDRA_FULL_ERROR="1")
    return env


def free_port(low: int = 15000, high: int = 24999) -> int:
    for _ in range(200):
        port = random.randint(low, high)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def check(proc: subprocess.CompletedProcess | subprocess.Popen, *logs: Path) -> None:
    if proc.returncode != 0:
        tails = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in logs if p.exists())
        raise AssertionError(f"exit status {proc.returncode}\n{tails}")


def texts() -> list[str]:
    lines = (REPO / "data" / "demo" / "val" / "sts.jsonl").read_text().splitlines()
    return [json.loads(line)["query"] for line in lines]


def embed(encoder_dir: Path, untrained: bool = False) -> torch.Tensor:
    from embedforge.model.builder import load_encoder

    encoder = load_encoder(encoder_dir)
    if untrained:  # LoRA B starts at zero: zeroed, the encoder is the untrained model
        with torch.no_grad():
            for name, param in encoder.named_parameters():
                if "lora_B" in name:
                    param.zero_()
    return torch.as_tensor(encoder.encode(texts()))


def the_run_folder(output_root: Path) -> Path:
    folders = sorted((output_root / RUN_NAME).iterdir())
    assert len(folders) == 1, f"one run folder expected, got {[f.name for f in folders]}"
    return folders[0]


def check_run(folder: Path, steps: int = STEPS) -> dict:
    """One record with the real world size, nodes and steps; one W&B run; one encoder."""
    record = json.loads((folder / "run_record.json").read_text())
    assert record["distributed"] == {"world_size": 2, "num_nodes": 2, "devices_per_node": 1, "global_batch_size": 8}
    assert record["global_step"] == steps
    wandb_runs = sorted((folder / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 1 and record["wandb_run_id"], wandb_runs
    assert wandb_runs[0].name.endswith(record["wandb_run_id"])
    assert (folder / "encoder" / "embedforge_encoder.json").is_file()
    return record


def same_first_batches(dumps: Path, reference_dumps: Path) -> None:
    for rank in (0, 1):
        got, ref = (torch.load(d / f"rank{rank}.pt", weights_only=False) for d in (dumps, reference_dumps))
        for key in ("query_input_ids", "doc_input_ids", "doc_mask"):
            assert torch.equal(got["batch"][key], ref["batch"][key]), (rank, key)
        assert torch.allclose(got["loss"], ref["loss"], atol=1e-6), (rank, got["loss"], ref["loss"])


def slurm_env(submit: Path, job: str, restarts: int = 0, **extra) -> dict:
    """What sbatch (and our fake srun) give the job: 2 nodes x 1 task, this machine twice."""
    (submit / "fake").mkdir(parents=True, exist_ok=True)
    if not (submit / ".venv").exists():
        (submit / ".venv").symlink_to(VENV)
    env = env_for_runs()
    for key in ("MASTER_ADDR", "MASTER_PORT", "CKPT_PATH"):
        env.pop(key, None)
    env.update(FAKE_SLURM_DIR=str(submit / "fake"), SLURM_SUBMIT_DIR=str(submit), SLURM_JOB_ID=job,
               SLURM_JOB_NAME="embedforge", SLURM_NNODES="2", SLURM_NTASKS_PER_NODE="1",
               SLURM_NODELIST="127.0.0.1,127.0.0.2", SLURM_RESTART_COUNT=str(restarts),
               PATH=f"{FAKE_SLURM}{os.pathsep}{env['PATH']}", **extra)
    return env


def slurm_job() -> str:
    """A job id whose derived port (Lightning: last 4 digits + 15000) is free."""
    return f"9{free_port() - 15000:04d}"


# ------------------------------------------------------------------------------------------- quick tests
def test_slurm_tasks_share_one_run_folder_named_after_the_job():
    from embedforge.train.launch import RUN_DIR, shared_run_dir

    job = {"SLURM_NTASKS": "2", "SLURM_JOB_ID": "1234", "SLURM_JOB_NAME": "embedforge"}
    assert shared_run_dir(["a=1"], job) == ["a=1", RUN_DIR + "slurm-1234"]
    assert shared_run_dir([], {**job, "SLURM_RESTART_COUNT": "2"}) == [RUN_DIR + "slurm-1234-requeue2"]
    assert shared_run_dir(["hydra.run.dir=x"], job) == ["hydra.run.dir=x"]  # the user's folder wins
    assert shared_run_dir([], {**job, "SLURM_JOB_NAME": "interactive"}) == []  # salloc + by hand: not srun
    assert shared_run_dir([], {**job, "SLURM_NTASKS": "1"}) == []
    assert shared_run_dir([], {}) == []


def test_torchrun_ranks_take_rank_zeros_run_folder_from_the_launchers_store():
    import torch.distributed as dist

    from embedforge.train.launch import RUN_DIR, shared_run_dir

    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    env = {"TORCHELASTIC_RUN_ID": "none", "TORCHELASTIC_USE_AGENT_STORE": "True", "WORLD_SIZE": "2",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(store.port), "TORCHELASTIC_RESTART_COUNT": "0"}
    got = {}
    late = threading.Thread(target=lambda: got.update(rank1=shared_run_dir([], {**env, "RANK": "1"})))
    late.start()  # rank 1 asks first and waits for rank 0's answer
    time.sleep(1.2)
    got["rank0"] = shared_run_dir([], {**env, "RANK": "0"})
    late.join(timeout=30)
    assert got["rank0"] == got["rank1"] and got["rank0"][0].startswith(RUN_DIR), got


def test_ddp_trainer_takes_a_process_group_backend(compose_train):
    cfg = compose_train("trainer=ddp", "trainer.strategy.process_group_backend=gloo")
    assert cfg.trainer.strategy.process_group_backend == "gloo"
    assert compose_train("trainer=ddp").trainer.strategy.process_group_backend is None  # Lightning picks


class _Trainer:
    """What PreemptionCheckpoint uses of a trainer, one rank."""

    def __init__(self, environment):
        self._accelerator_connector = SimpleNamespace(cluster_environment=environment)
        self.strategy = SimpleNamespace(reduce_boolean_decision=lambda decision, all=True: decision)
        self.is_global_zero, self.global_step, self.should_stop, self.saved = True, 5, False, []

    def save_checkpoint(self, path):
        self.saved.append(path)


@pytest.mark.parametrize("signame, under_slurm, requeued", [
    ("SIGUSR1", True, True), ("SIGTERM", True, False), ("SIGUSR1", False, False)])
def test_preemption_checkpoints_then_requeues_only_on_slurms_requeue_signal(
        signame, under_slurm, requeued, tmp_path, monkeypatch):
    from lightning_fabric.plugins.environments import LightningEnvironment, SLURMEnvironment

    from embedforge.train.preemption import PreemptionCheckpoint

    monkeypatch.setenv("PATH", f"{FAKE_SLURM}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM_DIR", str(tmp_path))
    for key, value in {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2", "SLURM_JOB_ID": "4242",
                       "SLURM_JOB_NAME": "embedforge"}.items():
        monkeypatch.setenv(key, value)
    trainer = _Trainer(SLURMEnvironment() if under_slurm else LightningEnvironment())
    callback = PreemptionCheckpoint(str(tmp_path / "checkpoints"))
    callback.on_train_start(trainer, None)
    try:
        callback.on_train_batch_end(trainer, None, None, None, 0)
        assert not trainer.saved  # no signal, nothing happens
        os.kill(os.getpid(), getattr(signal, signame))
        time.sleep(0.1)
        callback.on_train_batch_end(trainer, None, None, None, 1)
    finally:
        callback.on_train_end(trainer, None)
    assert trainer.saved == [str(tmp_path / "checkpoints" / "last.ckpt")] and trainer.should_stop
    assert callback.stopped_at_step == 5 and callback.requeued is requeued
    log = tmp_path / "scontrol.log"
    assert (log.read_text().split() if log.exists() else []) == (["requeue", "4242"] if requeued else [])


def sbatch_argv(tmp_path, restarts: int, **extra) -> list[str]:
    env = slurm_env(tmp_path, "5555", restarts, FAKE_SRUN_ARGV_ONLY="1", **extra)
    subprocess.run(["bash", str(SBATCH), "trainer.max_steps=3"], env=env, check=True, capture_output=True)
    return (tmp_path / "fake" / "srun_argv").read_text().splitlines()


def test_sbatch_script_resumes_a_requeued_job_from_its_own_checkpoint(tmp_path):
    argv = sbatch_argv(tmp_path, restarts=0)
    assert argv[:5] == ["embedforge-train", "experiment=paper/synthetic_msmarco", "trainer.num_nodes=4",
                        "trainer.devices=8", "data.batch_size=64"]
    assert argv[-3:] == [f"run_name={RUN_NAME}", "ckpt_path=null", "trainer.max_steps=3"]  # fresh; "$@" last
    assert "ckpt_path=null" in sbatch_argv(tmp_path, restarts=1)  # requeued, but nothing to resume from
    older = tmp_path / "runs" / RUN_NAME / "slurm-4444" / "checkpoints"  # another job's: never taken
    mine = tmp_path / "runs" / RUN_NAME / "slurm-5555" / "checkpoints"
    for folder in (older, mine):
        folder.mkdir(parents=True)
        (folder / "last.ckpt").write_text("")
    os.utime(older / "last.ckpt", (time.time() + 60, time.time() + 60))
    assert f"ckpt_path=runs/{RUN_NAME}/slurm-5555/checkpoints/last.ckpt" in sbatch_argv(tmp_path, restarts=1)
    assert "ckpt_path=/given.ckpt" in sbatch_argv(tmp_path, restarts=1, CKPT_PATH="/given.ckpt")  # the user's wins


# -------------------------------------------------------------------------- end to end (spawn processes)
@pytest.fixture(scope="module")
def ddp_sim(tmp_path_factory):
    """The reference: trainer=ddp_sim, 2 processes of one launch, same overrides and global batch."""
    out = tmp_path_factory.mktemp("ddp_sim")
    proc = subprocess.run([sys.executable, "-m", "embedforge.cli.train", "experiment=paper/synthetic_msmarco", *CPU,
                           "trainer=ddp_sim", "trainer.num_nodes=1", "trainer.devices=2", "logger=none",
                           f"hydra.run.dir={out}/run", *dump_overrides(out)],
                          cwd=out, env=env_for_runs(), capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return SimpleNamespace(encoder=out / "run" / "encoder", dumps=out, embeddings=embed(out / "run" / "encoder"))


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory):
    """scripts/slurm_train.sbatch, 2 tasks, run to the end."""
    submit = tmp_path_factory.mktemp("slurm")
    job = slurm_job()
    proc = subprocess.run(["bash", str(SBATCH), *CPU, "trainer.num_nodes=2", "trainer.devices=1",
                           *dump_overrides(submit)], env=slurm_env(submit, job), cwd=submit,
                          capture_output=True, text=True, timeout=1200)
    check(proc, submit / "fake" / "task0.log", submit / "fake" / "task1.log")
    return SimpleNamespace(submit=submit, job=job, folder=the_run_folder(submit / "runs"))


def assert_same_training(folder: Path, dumps: Path, ddp_sim) -> float:
    same_first_batches(dumps, ddp_sim.dumps)
    got = embed(folder / "encoder")
    diff = (got - ddp_sim.embeddings).abs().max().item()
    trained = (ddp_sim.embeddings - embed(ddp_sim.encoder, untrained=True)).abs().max().item()
    print(f"max |embedding - ddp_sim| = {diff:.2e}; training moved them by {trained:.2e}")
    assert trained > 1e-3  # the comparison can tell trained from untrained
    assert diff <= 1e-5
    return diff


@pytest.mark.slow
def test_torchrun_two_nodes_is_one_run_equal_to_ddp_sim(ddp_sim, tmp_path):
    """README's torchrun command on 2 'nodes' of this machine (node 1's rank starting late)."""
    (tmp_path / "late").mkdir()
    (tmp_path / "late" / "sitecustomize.py").write_text(LATE_RANK_1)
    port, procs = free_port(), []
    for node in (0, 1):
        log = (tmp_path / f"node{node}.log").open("w")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
             "--node-rank", str(node), "--master-addr", "127.0.0.1", "--master-port", str(port),
             "-m", "embedforge.cli.train", "experiment=paper/synthetic_msmarco", "trainer.num_nodes=2",
             "trainer.devices=1", *CPU, f"paths.output_root={tmp_path}/runs", *dump_overrides(tmp_path)],
            cwd=tmp_path, env=env_for_runs(tmp_path / "late"), stdout=log, stderr=subprocess.STDOUT))
    for proc in procs:
        proc.wait(timeout=1200)
    for node, proc in enumerate(procs):
        check(proc, tmp_path / f"node{node}.log")
    folder = the_run_folder(tmp_path / "runs")
    check_run(folder)
    assert_same_training(folder, tmp_path, ddp_sim)


@pytest.mark.slow
def test_slurm_two_tasks_is_one_run_equal_to_ddp_sim(slurm_run, ddp_sim):
    assert slurm_run.folder.name == f"slurm-{slurm_run.job}"
    check_run(slurm_run.folder)
    assert_same_training(slurm_run.folder, slurm_run.submit, ddp_sim)


@pytest.mark.slow
def test_slurm_preemption_checkpoints_requeues_and_the_requeued_job_resumes(slurm_run, tmp_path):
    job = slurm_job()
    args = ["bash", str(SBATCH), *CPU, "trainer.num_nodes=2", "trainer.devices=1"]
    fake = tmp_path / "fake"
    first = subprocess.Popen(args, env=slurm_env(tmp_path, job), cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    checkpoints = tmp_path / "runs" / RUN_NAME / f"slurm-{job}" / "checkpoints"
    deadline = time.monotonic() + 1200
    while not list(checkpoints.glob("step*.ckpt")):  # training is under way
        assert first.poll() is None and time.monotonic() < deadline, "no step checkpoint before the end"
        time.sleep(0.1)
    os.kill(int((fake / "task1.pid").read_text()), signal.SIGUSR1)  # rank 1 only: all ranks must stop
    first.wait(timeout=1200)
    check(first, fake / "task0.log", fake / "task1.log")

    assert (fake / "scontrol.log").read_text().split() == ["requeue", job]
    stopped = json.loads((checkpoints.parent / "run_record.json").read_text())
    preempted = stopped["preempted"]
    assert preempted["requeued"] and preempted["checkpoint"] == str(checkpoints / "last.ckpt")
    assert 1 <= preempted["step"] < STEPS and stopped["global_step"] == preempted["step"]
    assert torch.load(checkpoints / "last.ckpt", weights_only=False)["global_step"] == preempted["step"]
    print(f"SIGUSR1 to rank 1: checkpoint {checkpoints / 'last.ckpt'} at step {preempted['step']}; requeued")

    # The requeued job: same job id, SLURM_RESTART_COUNT=1, the submission's environment.
    again = subprocess.run(args, env=slurm_env(tmp_path, job, restarts=1), cwd=tmp_path, capture_output=True,
                           text=True, timeout=1200)
    check(again, fake / "task0.log", fake / "task1.log")
    assert "resuming from" in again.stdout
    folder = tmp_path / "runs" / RUN_NAME / f"slurm-{job}-requeue1"
    record = check_run(folder)
    assert record["resumed_from"] == str(checkpoints / "last.ckpt") and record["preempted"] is None
    assert record["wandb_run_id"] == stopped["wandb_run_id"]  # the W&B run continues
    # Exact resume: the same weights as the job that was never interrupted.
    diff = (embed(folder / "encoder") - embed(slurm_run.folder / "encoder")).abs().max().item()
    print(f"resumed at step {preempted['step']}, finished at {record['global_step']}; "
          f"max |embedding - uninterrupted| = {diff:.2e}")
    assert diff <= 1e-5
