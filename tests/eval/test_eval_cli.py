"""embedforge-evaluate: composed configs, results JSON in mteb's format, summary path printed last."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from embedforge.cli.evaluate import run
from embedforge.paths import CONF_DIR, REPO_ROOT


def _cfg(overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("evaluate", overrides=overrides)


@pytest.mark.parametrize("group", ["local", "sts", "mteb_eng", "passkey"])
def test_eval_groups_compose(group):
    cfg = _cfg([f"eval={group}"])
    assert cfg.eval.mode in ("mteb", "passkey") and cfg.checkpoint is None
    assert cfg.model.pretrained == "embedded:all-MiniLM-L6-v2" and cfg.pooling.mode == "mean"


def test_run_writes_mteb_results_and_summary(tasks_root, tmp_path):
    from mteb import TaskResult

    cfg = _cfg(["instructions.mode=none", f"eval.data_dir={tasks_root}", "eval.tasks=[MySTS,MyPairs]",
                f"output_dir={tmp_path}"])
    summary = run(cfg)
    scores = json.loads(summary.read_text())
    assert set(scores) == {"MySTS", "MyPairs"} and all(0 < v <= 100 for v in scores.values())
    result = TaskResult.from_disk(summary.parent / "MySTS.json")
    assert 100 * result.get_score() == pytest.approx(scores["MySTS"], abs=1e-3)
    assert "| STS | 1 |" in (summary.parent / "summary.md").read_text()
    meta = json.loads((summary.parent / "model_meta.json").read_text())
    assert meta["max_length"] == 256 and meta["instructions"]["mode"] == "none"


def test_changed_settings_get_a_new_folder(tasks_root, tmp_path):
    base = ["instructions.mode=none", f"eval.data_dir={tasks_root}", "eval.tasks=[MySTS]", f"output_dir={tmp_path}"]
    a = run(_cfg(base))
    b = run(_cfg(base[1:] + ["instructions.mode=instruction"]))
    assert a.parent != b.parent


def test_console_script_prints_summary_last(tasks_root, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "embedforge.cli.evaluate", "instructions.mode=none",
                          f"eval.data_dir={tasks_root}", "eval.tasks=[MySTS]", f"output_dir={tmp_path}",
                          f"hydra.run.dir={tmp_path / 'hydra'}"],
                         capture_output=True, text=True, timeout=300, cwd=REPO_ROOT, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    last = out.stdout.strip().splitlines()[-1]
    assert last.endswith("summary.json") and Path(last).is_file()


def test_cli_bad_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint: .* does not exist"):
        run(_cfg([f"checkpoint={tmp_path / 'missing'}", "eval.tasks=[x]"]))


def test_real_stsbenchmark_reproduces_published_score(tmp_path, fx):
    """~20 s on 2 cores: the end-to-end check against the published leaderboard number."""
    reference = json.loads((fx.VENDORED_EVAL / "reference_scores.json").read_text())
    expected = reference["models"]["sentence-transformers/all-MiniLM-L6-v2"]["scores"]["STSBenchmark"]
    cfg = _cfg(["instructions.mode=none", f"eval.data_dir={fx.VENDORED_EVAL}", "eval.tasks=[STSBenchmark]",
                f"output_dir={tmp_path}"])
    scores = json.loads(run(cfg).read_text())
    assert scores["STSBenchmark"] == pytest.approx(expected, abs=0.05)


def test_summary_with_active_wandb_run(tasks_root, tmp_path):
    import wandb

    run_ = wandb.init(mode="disabled", dir=str(tmp_path))
    try:
        cfg = _cfg(["instructions.mode=none", f"eval.data_dir={tasks_root}", "eval.tasks=[MyPairs]",
                    f"output_dir={tmp_path}"])
        assert "MyPairs" in json.loads(run(cfg).read_text())
    finally:
        run_.finish()


def test_checkpoint_folder_kinds(tmp_path):
    """An encoder folder keeps its own settings; a plain HF folder takes pooling/LoRA from the config."""
    from embedforge.eval.inputs import encoder_for_evaluation
    from embedforge.eval.settings import EvaluateJob
    from embedforge.model.builder import encoder_from_pretrained
    from embedforge.model.tiny_mistral import build_tiny_mistral

    plain = build_tiny_mistral()
    encoder = encoder_for_evaluation(EvaluateJob.from_config(_cfg([f"checkpoint={plain}", "pooling=weighted_mean", "lora=r8"])))
    assert encoder.pooling.mode == "weighted_mean" and encoder.lora is not None and encoder.lora.r == 8

    saved = encoder_from_pretrained(str(plain), pooling="last_token").save(tmp_path / "enc")
    reloaded = encoder_for_evaluation(EvaluateJob.from_config(_cfg([f"checkpoint={saved}", "pooling=mean"])))
    assert reloaded.pooling.mode == "last_token" and reloaded.lora is None
