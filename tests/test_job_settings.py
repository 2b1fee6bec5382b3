"""The typed config boundary of evaluate, mine, export, decontam and report: each CLI binds its composed
config once; an unknown key (top level or inside a group) and a bad type or range are refused in one line
that names the key, before anything is read or loaded. In-process here; tests/test_cli_errors.py runs the
same refusals through the console scripts."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from embedforge.decontam.settings import DecontamSettings
from embedforge.errors import ConfigError
from embedforge.eval.settings import EvaluateJob
from embedforge.export.settings import ExportSettings
from embedforge.mining.settings import MineJob
from embedforge.paths import CONF_DIR
from embedforge.report.settings import ReportConfig

BINDERS = {"evaluate": EvaluateJob.from_config, "mine": MineJob.from_config, "export": ExportSettings.from_config,
           "decontam": DecontamSettings.from_config, "report": ReportConfig.from_config}
# what each config needs before anything else is checked
NEEDS = {"mine": ["input=in.jsonl", "out=out.jsonl"], "export": ["checkpoint=enc"],
         "decontam": ["train=[a.jsonl]", "eval.data_dir=tasks", "output=r.json"], "report": ["output_dir=out"]}


def _bind(tool: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(tool, overrides=[*NEEDS.get(tool, []), *overrides])
    return BINDERS[tool](cfg)


def _refused(tool: str, *overrides: str) -> str:
    with pytest.raises(ConfigError) as exc:
        _bind(tool, *overrides)
    message = str(exc.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize("tool", sorted(BINDERS))
def test_the_shipped_config_binds(tool):
    _bind(tool)


@pytest.mark.parametrize("tool, override, key", [
    ("evaluate", "+eval.taskz=[STS12]", "eval.taskz"),
    ("evaluate", "+taskz=1", "taskz"),
    ("evaluate", "+instructions.templat=x", "instructions.templat"),
    ("evaluate", "+eval.lengths=[64]", "eval.lengths"),  # a passkey key under eval.mode=mteb
    ("mine", "+negatives.rank_begin=3", "negatives.rank_begin"),
    ("mine", "+outt=x.jsonl", "outt"),
    ("export", "+prompts.modes=none", "prompts.modes"),
    ("export", "+upload.repo=me/x", "upload.repo"),
    ("decontam", "+eval.task=[SciFact]", "eval.task"),
    ("decontam", "+ngram.size=5", "ngram.size"),
    ("report", "+wandb.entity=me", "wandb.entity"),
    ("report", "runs=[{path: a, rows: x}]", "runs.0.rows"),
])
def test_unknown_key_is_refused_by_name(tool, override, key):
    assert f"config key '{key}' is unknown" in _refused(tool, override)


@pytest.mark.parametrize("tool, override, key", [
    ("evaluate", "eval.batch_size=many", "eval.batch_size"),
    ("evaluate", "eval.truncate_dim=-3", "eval.truncate_dim"),
    ("evaluate", "eval.mode=sometimes", "eval.mode"),
    ("evaluate", "eval.workers=0", "eval.workers"),
    ("evaluate", "encoder_max_length=0", "encoder_max_length"),
    ("evaluate", "instructions.mode=loud", "instructions.mode"),
    ("evaluate", "lora=r8 lora.r=0", "lora.r"),
    ("mine", "encode.batch_size=0", "encode.batch_size"),
    ("mine", "negatives.rank_end=10", "negatives.rank_end"),
    ("mine", "record.task_type=essay", "record.task_type"),
    ("mine", "on_error=maybe", "on_error"),
    ("export", "dtype=float8", "dtype"),
    ("export", "verify_atol=0", "verify_atol"),
    ("export", "prompts.mode=shout", "prompts.mode"),
    ("decontam", "chunk_size=lots", "chunk_size"),
    ("decontam", "ngram.threshold=1.5", "ngram.threshold"),
    ("decontam", "fields=[query,title]", "fields"),
    ("report", "on_error=maybe", "on_error"),
    ("report", "+labels.a=1", "labels.a"),
])
def test_bad_type_or_range_is_refused_by_name(tool, override, key):
    assert f"config key '{key}" in _refused(tool, *override.split())


@pytest.mark.parametrize("tool, overrides, key", [
    ("mine", ["out=o.jsonl"], "input"), ("export", [], "checkpoint"), ("decontam", ["output=r.json"], "train")])
def test_missing_required_key_is_named_in_one_line(tool, overrides, key):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(tool, overrides=overrides)
    with pytest.raises(ConfigError) as exc:
        BINDERS[tool](cfg)
    assert str(exc.value) == f"config key '{key}': required, not set"


def test_evaluate_settings_survive_a_dump_for_the_workers():
    job = _bind("evaluate", "eval.tasks=[STS12]", "lora=r8", "eval.truncate_dim=8")
    again = EvaluateJob.from_dump(job.dump())
    assert again == job and again.settings.eval.tasks == ["STS12"] and again.encoder.lora.r == 8
