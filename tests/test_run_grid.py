"""experiments/run_grid.sh end to end on the tiny decoder: an evaluation-only first row on a fresh
runs folder, a two-stage chain (stage 1 train-only with a per-row data path from the environment,
stage 2 from run:<stage 1>), resume from a last checkpoint, embedforge-* from EMBEDFORGE_BIN, DRY_RUN."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GRID = REPO / "experiments" / "run_grid.sh"
FIXTURES = Path(__file__).parent
TINY = ("model=tiny-mistral model.pretrained=tiny:mistral trainer.max_steps=2 trainer.max_epochs=1 "
        "data.max_train_examples=16 data.batch_size=4 data.val_files=null validate_before_fit=false logger=none")


def _env(tmp_path: Path, **extra) -> dict:
    eval_dir = tmp_path / "eval" / "STSBenchmark"  # a fake evaluation set: 24 pairs of the STS fixture
    if not eval_dir.exists():
        eval_dir.mkdir(parents=True)
        source = FIXTURES / "fixtures" / "mteb" / "STSBenchmark"
        shutil.copy(source / "task.json", eval_dir)
        lines = (source / "test.jsonl").read_text().splitlines()[:24]
        (eval_dir / "test.jsonl").write_text("\n".join(lines) + "\n")
    src = str(REPO / "src")
    return {**os.environ,
            "PYTHONPATH": src + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""),
            "EMBEDFORGE_BIN": str(Path(sys.executable).parent), "PYTHON": sys.executable,
            "RUNS": str(tmp_path / "runs"), "RECORDS": str(tmp_path / "records"),
            "EMBEDFORGE_EVAL_DATA": str(tmp_path / "eval"), "TASKS": "[STSBenchmark]",
            "TRAIN_ARGS": TINY, "TRAIN_ONLY": "pretrain",
            "TRAIN_ARGS_pretrain": f"data.sources.weak.path={FIXTURES / 'data' / 'fixtures' / 'beir_mini'}",
            "BASE_ARGS": "model=tiny-mistral model.pretrained=tiny:mistral pooling=last_token lora=none",
            "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", **extra}


def _grid(env, *rows):
    return subprocess.run(["bash", str(GRID), "decoder_grid", *rows], env=env, capture_output=True, text=True,
                          cwd=REPO, timeout=600)


@pytest.fixture(scope="module")
def has_console_scripts():
    if not (Path(sys.executable).parent / "embedforge-train").is_file():
        pytest.skip("embedforge-train is not installed beside this Python")


def test_dry_run_prints_the_commands_and_runs_nothing(tmp_path):
    env = _env(tmp_path, DRY_RUN="1")
    done = _grid(env, "base", "pretrain", "pretrain_then_default")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "embedforge-evaluate" in out and "embedforge-train experiment=decoder_grid/pretrain " in out
    assert f"data.sources.weak.path={FIXTURES / 'data' / 'fixtures' / 'beir_mini'}" in out
    assert ".venv/bin" not in out.replace(env["EMBEDFORGE_BIN"], "")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "records").exists()


def test_seeds_run_each_trained_row_once_per_seed_in_its_own_folders(tmp_path):
    done = _grid(_env(tmp_path, DRY_RUN="1", SEEDS="1 2"), "base", "pretrain", "pretrain_then_default")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    trains = [line for line in lines if "embedforge-train" in line]
    assert len(trains) == 4  # two rows x two seeds
    for seed in (1, 2):
        mine = [line for line in trains if f" seed={seed}" in line]
        assert len(mine) == 2 and all(f"paths.output_root={tmp_path / 'runs'}/seed{seed}" in line for line in mine)
        assert any(f"records/pretrain_then_default/seed{seed}/evaluate" in line for line in lines)
    assert sum("embedforge-evaluate" in line for line in lines) == 3  # base once, the chain's stage 2 per seed


def test_decontam_runs_once_before_the_rows(tmp_path):
    env = _env(tmp_path, DRY_RUN="1", DECONTAM_TRAIN="[data/demo/train/*.jsonl]", TASKS="[STSBenchmark]")
    lines = _grid(env, "base", "pretrain").stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if "embedforge-" in line)
    assert "embedforge-decontam" in lines[first] and "eval.tasks=\\[STSBenchmark\\]" in lines[first]
    assert sum("embedforge-decontam" in line for line in lines) == 1
    assert any(line.endswith(f"{tmp_path / 'records'}/ ") or f"{tmp_path / 'records'}/" in line
               for line in lines if line.startswith("cp ") and "decontam.json" in line)


@pytest.mark.slow
def test_a_fresh_grid_runs_a_two_stage_chain_and_resumes(tmp_path, has_console_scripts):
    env = _env(tmp_path)
    # the evaluation-only row first, on a runs folder that does not exist yet (a fresh clone)
    done = _grid(env, "base", "pretrain", "pretrain_then_default")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records = tmp_path / "records"
    assert (records / "base" / "evaluate" / "run_record.json").is_file()
    assert (records / "pretrain" / "train" / "run_record.json").is_file()
    assert not (records / "pretrain" / "evaluate").exists()  # TRAIN_ONLY
    chain = json.loads((records / "pretrain_then_default" / "train" / "run_record.json").read_text())
    assert chain["parent_run"]["run_id"].startswith("decoder_grid_pretrain/") and chain["global_step"] == 2
    evaluation = json.loads((records / "pretrain_then_default" / "evaluate" / "run_record.json").read_text())
    assert "STSBenchmark" in json.dumps(evaluation)

    # an interrupted row: its checkpoint is there, its record is not -> it resumes with ckpt_path=last
    shutil.rmtree(records / "pretrain_then_default")
    run_dirs = list((tmp_path / "runs" / "decoder_grid_pretrain_then_default").glob("*/run_record.json"))
    assert run_dirs and all(p.unlink() is None for p in run_dirs)
    env["TRAIN_ARGS"] = env["TRAIN_ARGS"].replace("trainer.max_steps=2", "trainer.max_steps=3")
    again = _grid({**env, "DRY_RUN": "1"}, "base", "pretrain", "pretrain_then_default")
    assert "skipped" in again.stdout and "ckpt_path=last" in again.stdout
    assert "experiment=decoder_grid/pretrain " not in again.stdout  # its record exists: not retrained
