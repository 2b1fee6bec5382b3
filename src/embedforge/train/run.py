"""One training run from a composed config: check, build, validate, fit, validate, save, record."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from embedforge.model.builder import load_tokenizer
from embedforge.model.encoder import ENCODER_FILE
from embedforge.run_record import RECORD_FILE, build_run_record, environment, redact, write_run_record
from embedforge.train.datamodule import EmbeddingDataModule
from embedforge.train.loggers import build_logger
from embedforge.train.module import EmbeddingModule
from embedforge.train.preemption import PreemptionCheckpoint
from embedforge.train.settings import TrainSettings
from embedforge.train.strategies import check_deepspeed_ready

log = logging.getLogger(__name__)


def parent_run_id(init_from: str | None) -> str | None:
    """The run id an earlier stage recorded in its encoder folder or checkpoint (read without loading weights)."""
    if not init_from:
        return None
    path = Path(init_from)
    if path.suffix == ".ckpt":
        hparams = torch.load(path, map_location="cpu", weights_only=True).get("hyper_parameters") or {}
        return (hparams.get("trained_with") or {}).get("run_id")
    meta = json.loads((path / ENCODER_FILE).read_text())
    return (meta.get("trained_with") or {}).get("run_id")


def _wandb_run_id(logger) -> str | None:
    if logger is None or type(logger).__name__ != "WandbLogger":
        return None
    try:
        return logger.experiment.id
    except Exception:  # a disabled or failed W&B run has no id; the record says so with null
        return None


def _throughput(trainer: pl.Trainer) -> dict | None:
    """Averages from the throughput callback, if one ran (train/callbacks.py)."""
    for callback in trainer.callbacks:
        averages = getattr(callback, "run_averages", None)
        if callable(averages):
            return averages()
    return None


def format_metrics(before: dict, after: dict) -> str:
    keys = sorted(set(before) | set(after))
    def cell(value) -> str:
        return "-" if value is None else f"{value:.4f}"

    lines = [f"{'metric':<16} {'before':>8} {'after':>8}"]
    lines += [f"{key:<16} {cell(before.get(key)):>8} {cell(after.get(key)):>8}" for key in keys]
    return "\n".join(lines)


def _preemption(callbacks) -> dict | None:
    """Where a signal stopped the run (train/preemption.py): the signal, step, checkpoint, requeue."""
    for c in callbacks:
        if isinstance(c, PreemptionCheckpoint) and c.stopped_at_step is not None:
            return {"signal": c.requested, "step": c.stopped_at_step, "checkpoint": str(c.path), "requeued": c.requeued}
    return None


def _in_training_mteb(callbacks) -> dict | None:
    """The in-training MTEB evaluation's scores per step and its last ones (what sweeps maximise)."""
    history = [h for c in callbacks for h in (getattr(c, "history", None) or [])]
    if not history:
        return None
    return {"history": [{"step": step, **metrics} for step, metrics in history], "final": history[-1][1]}


def _run_id(settings: TrainSettings) -> str:
    """<run_name>/<run folder name>: unique per run, and the folder it names holds the run record."""
    return f"{settings.run_name}/{Path(settings.paths.output_dir).name}"


def _spawns_workers(trainer: pl.Trainer) -> bool:
    # An isinstance check, so a rename upstream fails at import instead of silently returning False.
    from pytorch_lightning.strategies.launchers.multiprocessing import _MultiProcessingLauncher

    return isinstance(getattr(trainer.strategy, "launcher", None), _MultiProcessingLauncher)


def train(cfg: DictConfig | TrainSettings) -> dict:
    """Train from a composed config (checked here, once, into TrainSettings) or from checked settings."""
    settings = cfg if isinstance(cfg, TrainSettings) else TrainSettings.from_config(cfg)
    check_deepspeed_ready(settings.trainer)  # this machine lacks the package or GPU: one line, before the weights
    pl.seed_everything(settings.seed, workers=True)
    started, env = time.perf_counter(), environment()  # git state of the code that runs, not of its end

    # Data first (tokenizer only): a bad record fails in seconds, before any weights load.
    tokenizer = load_tokenizer(settings.encoder.settings())
    datamodule = EmbeddingDataModule(settings.data, tokenizer, seed=settings.seed)
    datamodule.setup("fit")
    init_from, ckpt_path = settings.init_from, settings.ckpt_path
    run_id, parent = _run_id(settings), parent_run_id(init_from)
    module = EmbeddingModule(settings.module(run_id=run_id, parent_run_id=parent))
    resumed_wandb = torch.load(ckpt_path, map_location="cpu", weights_only=True).get("wandb_run_id") if ckpt_path else None
    logger = build_logger(settings.logger, resume_wandb_id=resumed_wandb)
    callbacks = [instantiate(spec) for spec in settings.callbacks.values()]
    trainer: pl.Trainer = instantiate(settings.trainer, logger=logger or False, callbacks=callbacks)
    settings.check_global_batch(num_nodes=trainer.num_nodes, devices=trainer.num_devices)  # devices=auto resolved now
    if _spawns_workers(trainer):
        module.configure_model()  # spawned workers get a copy; the main process must hold the weights too
    resolved = redact(settings.resolved)
    if logger is not None:
        logger.log_hyperparams({**resolved, "data_mixture": datamodule.mixture_counts()})

    has_val = bool(settings.data.val_files)
    before = trainer.validate(module, datamodule=datamodule, verbose=False)[0] if has_val and settings.validate_before_fit else {}
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    train_metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
    preempted = _preemption(callbacks)  # a pre-empted run has seconds left: no validation after fit
    after = trainer.validate(module, datamodule=datamodule, verbose=False)[0] if has_val and not preempted else {}
    wall = time.perf_counter() - started

    trained_steps = trainer.global_step or int(train_metrics.get("train/global_step", 0))
    record = build_run_record(
        "train", env=env,
        run_name=settings.run_name,
        run_id=run_id,
        parent_run={"run_id": parent, "encoder": init_from, "init_mode": settings.encoder.model.init_mode} if init_from else None,
        wandb_run_id=_wandb_run_id(logger),
        data=datamodule.mixture_counts() if hasattr(datamodule, "mixture_counts") else None,
        val_before=before,
        val_after=after,
        val_history=module.val_history or None,
        global_step=trained_steps,
        train_metrics=train_metrics,
        throughput=_throughput(trainer),
        encoder=module.encoder.describe() if module.encoder is not None else None,
        wall_time_s=round(wall, 1),
        resumed_from=str(Path(ckpt_path).resolve()) if ckpt_path else None,
        preempted=preempted,
        distributed={"world_size": trainer.world_size, "num_nodes": trainer.num_nodes,
                     "devices_per_node": trainer.num_devices,
                     "global_batch_size": settings.global_batch(num_nodes=trainer.num_nodes, devices=trainer.num_devices)},
        precision=str(trainer.precision),
        activation_checkpointing=settings.encoder.model.gradient_checkpointing,
        config=resolved,
        mteb_eval=_in_training_mteb(callbacks),
    )
    if trainer.is_global_zero and not settings.trainer.get("fast_dev_run"):
        out = Path(settings.paths.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        if settings.save_encoder:
            record["encoder_dir"] = str(module.encoder.save(out / "encoder"))
        write_run_record(out, record)
        if before or after:
            print("\nValidation (held-out demo records; corpus = distinct validation positives)")
            print(format_metrics({k.removeprefix("val/"): v for k, v in before.items()},
                                 {k.removeprefix("val/"): v for k, v in after.items()}))
        print(f"\ntrained {trained_steps} steps in {wall:.1f} s; run record: {out / RECORD_FILE}")
    if logger is not None and type(logger).__name__ == "WandbLogger":
        import wandb

        wandb.finish()  # so the next run of a Hydra multirun opens a run of its own
    return record
