"""Fail at start, naming the config key, instead of an hour into a run."""

from __future__ import annotations

from omegaconf import DictConfig

from embedforge.errors import ConfigError
from embedforge.losses import build_loss
from embedforge.model.settings import EncoderGroups
from embedforge.data.sources.checks import check_data_config


class TrainConfigError(ConfigError):
    """A training config value is wrong; the message starts with the config key."""


def _fail(key: str, message: str):
    raise TrainConfigError(f"config key '{key}': {message}")


def check_train_config(cfg: DictConfig) -> None:
    try:  # model, lora (unknown keys such as lora.use_dorra) and pooling, before any model loads
        EncoderGroups.from_config(cfg)
    except ConfigError as exc:
        raise TrainConfigError(str(exc)) from None
    temperature = cfg.loss.get("temperature", 1.0)
    if not isinstance(temperature, (int, float)) or temperature <= 0:
        _fail("loss.temperature", f"must be a number > 0, got {temperature!r}")
    try:
        build_loss(cfg.loss)  # the loss's own argument checks, before any model loads
    except ValueError as exc:
        message = str(exc)
        key = message.split(":")[0] if message.startswith("loss.") else "loss._target_"
        _fail(key, message.split(": ", 1)[-1])
    check_data_config(cfg.data)  # data/sources/checks.py; the data itself is read and checked by setup()
    devices, nodes = cfg.trainer.get("devices", 1), cfg.trainer.get("num_nodes", 1)
    if isinstance(devices, int) and isinstance(nodes, int):  # "auto" devices: checked once the trainer knows
        check_global_batch(cfg, num_nodes=nodes, devices=devices)
    if float(cfg.optim.lr) <= 0:
        _fail("optim.lr", f"must be > 0, got {cfg.optim.lr!r}")
    if int(cfg.optim.warmup_steps) < 0:
        _fail("optim.warmup_steps", f"must be >= 0, got {cfg.optim.warmup_steps!r}")


def global_batch(cfg: DictConfig, *, num_nodes: int, devices: int) -> int:
    """Contrastive examples per optimiser step: nodes x devices x per-device batch x gradient accumulation."""
    return num_nodes * devices * int(cfg.data.batch_size) * int(cfg.trainer.get("accumulate_grad_batches") or 1)


def check_global_batch(cfg: DictConfig, *, num_nodes: int, devices: int) -> None:
    """data.global_batch_size (null = not checked): the batch a recipe declares must be the one that runs,
    not whatever trainer.devices and data.batch_size multiply to on this cluster."""
    declared = cfg.data.get("global_batch_size")
    if declared is None:
        return
    accumulate = int(cfg.trainer.get("accumulate_grad_batches") or 1)
    actual = global_batch(cfg, num_nodes=num_nodes, devices=devices)
    if actual != int(declared):
        _fail("data.global_batch_size", f"declares {declared}, but trainer.num_nodes ({num_nodes}) x trainer.devices "
              f"({devices}) x data.batch_size ({cfg.data.batch_size}) x trainer.accumulate_grad_batches ({accumulate}) "
              f"= {actual}; change those, or data.global_batch_size=null to skip the check")
