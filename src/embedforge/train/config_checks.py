"""Fail at start, naming the config key, instead of an hour into a run."""

from __future__ import annotations

from omegaconf import DictConfig

from embedforge.data.formatting import INSTRUCTION_MODES
from embedforge.model.pooling import POOLING_MODES
from embedforge.train.datamodule import expand_files


class ConfigError(ValueError):
    pass


def _fail(key: str, message: str):
    raise ConfigError(f"config key '{key}': {message}")


def check_train_config(cfg: DictConfig) -> None:
    if cfg.pooling.mode not in POOLING_MODES:
        _fail("pooling.mode", f"unknown pooling '{cfg.pooling.mode}' (expected one of: {', '.join(POOLING_MODES)})")
    temperature = cfg.loss.temperature
    if not isinstance(temperature, (int, float)) or temperature <= 0:
        _fail("loss.temperature", f"must be a number > 0, got {temperature!r}")
    if cfg.lora.get("enabled", False):
        r = cfg.lora.get("r")
        if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
            _fail("lora.r", f"must be a positive integer, got {r!r}")
        if cfg.lora.get("alpha", 1) <= 0:
            _fail("lora.alpha", f"must be > 0, got {cfg.lora.alpha!r}")
    data = cfg.data
    if data.instruction_mode not in INSTRUCTION_MODES:
        _fail("data.instruction_mode", f"unknown mode '{data.instruction_mode}' (expected one of: {', '.join(INSTRUCTION_MODES)})")
    if "{query}" not in data.query_template:
        _fail("data.query_template", "must contain the {query} placeholder")
    for key in ("batch_size", "query_max_length", "doc_max_length"):
        if int(data[key]) <= 0:
            _fail(f"data.{key}", f"must be > 0, got {data[key]!r}")
    if int(data.hard_negatives) < 0:
        _fail("data.hard_negatives", f"must be >= 0, got {data.hard_negatives!r}")
    if data.on_error not in ("fail", "skip"):
        _fail("data.on_error", f"must be 'fail' or 'skip', got {data.on_error!r}")
    expand_files(data.train_files, "data.train_files")  # raises naming the key and the pattern
    if data.get("val_files"):
        expand_files(data.val_files, "data.val_files")
    if float(cfg.optim.lr) <= 0:
        _fail("optim.lr", f"must be > 0, got {cfg.optim.lr!r}")
    if int(cfg.optim.warmup_steps) < 0:
        _fail("optim.warmup_steps", f"must be >= 0, got {cfg.optim.warmup_steps!r}")
