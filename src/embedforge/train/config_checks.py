"""Fail at start, naming the config key, instead of an hour into a run."""

from __future__ import annotations

from omegaconf import DictConfig

from embedforge.losses import build_loss
from embedforge.model.builder import INIT_MODES
from embedforge.model.pooling import POOLING_MODES
from embedforge.data.sources.checks import check_data_config


class TrainConfigError(ValueError):
    """A training config value is wrong; the message starts with the config key."""


def _fail(key: str, message: str):
    raise TrainConfigError(f"config key '{key}': {message}")


def check_train_config(cfg: DictConfig) -> None:
    if cfg.pooling.mode not in POOLING_MODES:
        _fail("pooling.mode", f"unknown pooling '{cfg.pooling.mode}' (expected one of: {', '.join(POOLING_MODES)})")
    temperature = cfg.loss.get("temperature", 1.0)
    if not isinstance(temperature, (int, float)) or temperature <= 0:
        _fail("loss.temperature", f"must be a number > 0, got {temperature!r}")
    try:
        build_loss(cfg.loss)  # the loss's own argument checks, before any model loads
    except ValueError as exc:
        message = str(exc)
        key = message.split(":")[0] if message.startswith("loss.") else "loss._target_"
        _fail(key, message.split(": ", 1)[-1])
    if cfg.model.get("init_mode", "merge") not in INIT_MODES:
        _fail("model.init_mode", f"unknown mode {cfg.model.init_mode!r} (expected one of: {', '.join(INIT_MODES)})")
    if cfg.lora.get("enabled", False):
        r = cfg.lora.get("r")
        if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
            _fail("lora.r", f"must be a positive integer, got {r!r}")
        if cfg.lora.get("alpha", 1) <= 0:
            _fail("lora.alpha", f"must be > 0, got {cfg.lora.alpha!r}")
    check_data_config(cfg.data)  # data/sources/checks.py; the data itself is read and checked by setup()
    if float(cfg.optim.lr) <= 0:
        _fail("optim.lr", f"must be > 0, got {cfg.optim.lr!r}")
    if int(cfg.optim.warmup_steps) < 0:
        _fail("optim.warmup_steps", f"must be >= 0, got {cfg.optim.warmup_steps!r}")
