"""Experiment loggers. W&B is the default; with no credentials it runs offline and says how to sync."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from hydra.utils import instantiate

log = logging.getLogger(__name__)

SECRET_MARKERS = ("api_key", "apikey", "token", "secret", "password")


def redact(obj):
    """Drop values under keys that look like credentials before a config is logged anywhere."""
    if isinstance(obj, dict):
        return {k: ("<redacted>" if any(m in str(k).lower() for m in SECRET_MARKERS) and not str(k).endswith("_env")
                    else redact(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj


def wandb_has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def build_logger(logger_cfg):
    """Instantiate the configured logger (or None). For W&B without credentials, go offline."""
    if logger_cfg is None or not logger_cfg.get("_target_"):
        return None
    if "WandbLogger" in logger_cfg["_target_"] and not os.environ.get("WANDB_MODE") and not wandb_has_credentials():
        os.environ["WANDB_MODE"] = "offline"
        log.warning("No W&B credentials found and WANDB_MODE is unset: logging offline. "
                    "Upload later with `wandb sync <save_dir>/wandb/offline-run-*`.")
    logger = instantiate(logger_cfg)
    if os.environ.get("WANDB_MODE") == "offline" and "WandbLogger" in logger_cfg["_target_"]:
        log.warning("W&B offline run directory: %s", Path(logger.save_dir or ".") / "wandb")
    return logger
