"""Experiment loggers. W&B is the default; with no credentials it runs offline and says how to sync."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

from hydra.utils import instantiate
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter

log = logging.getLogger(__name__)

def wandb_has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def build_logger(logger_cfg, resume_wandb_id: str | None = None):
    """Instantiate the configured logger (or None). For W&B without credentials, go offline; with
    `resume_wandb_id` (a resumed run), continue that W&B run instead of opening a new one."""
    if logger_cfg is None or not logger_cfg.get("_target_"):
        return None
    extra = {}
    if resume_wandb_id and "WandbLogger" in logger_cfg["_target_"]:
        extra = {"id": resume_wandb_id, "resume": "allow"}
        log.info("resuming W&B run %s", resume_wandb_id)
    if "WandbLogger" in logger_cfg["_target_"] and not os.environ.get("WANDB_MODE") and not wandb_has_credentials():
        os.environ["WANDB_MODE"] = "offline"
        log.warning("No W&B credentials found and WANDB_MODE is unset: logging offline. "
                    "Upload later with `wandb sync <save_dir>/wandb/offline-run-*`.")
    logger = instantiate(logger_cfg, **extra)
    if os.environ.get("WANDB_MODE") == "offline" and "WandbLogger" in logger_cfg["_target_"]:
        log.warning("W&B offline run directory: %s", Path(logger.save_dir or ".") / "wandb")
    return logger




class ResumableExperimentWriter(ExperimentWriter):
    """Before each save, learn the columns already in metrics.csv (another process may have written them)."""

    def save(self) -> None:
        if self.metrics and self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as fh:
                header = next(csv.reader(fh), [])
            self.metrics_keys = header + [k for k in self.metrics_keys if k not in header]
        super().save()


class ResumableCSVLogger(CSVLogger):
    """Lightning's CSVLogger for runs whose processes take turns on one metrics.csv.

    Under a spawning strategy (`trainer=ddp_sim`) validation and fitting run in fresh processes that
    append to the same file; the stock writer knows only the columns its own process logged and fails
    on the file's other ones ("dict contains fields not in fieldnames"). Ours widens the file instead.
    """

    @property
    def experiment(self):
        writer = super().experiment
        if not isinstance(writer, ResumableExperimentWriter):
            writer.__class__ = ResumableExperimentWriter
        return writer
