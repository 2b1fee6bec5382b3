"""One training run from a composed config: check, build, validate, fit, validate, save, record."""

from __future__ import annotations

import glob
import json
import logging
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from embedforge.model.builder import load_tokenizer
from embedforge.model.settings import EncoderGroups
from embedforge.model.encoder import ENCODER_FILE
from embedforge.run_record import RECORD_FILE, build_run_record, environment, redact, write_run_record
from embedforge.train.config_checks import TrainConfigError, check_global_batch, check_train_config, global_batch
from embedforge.train.datamodule import EmbeddingDataModule
from embedforge.train.loggers import build_logger
from embedforge.train.module import EmbeddingModule, effective_checkpointing
from embedforge.train.precision import resolve_precision
from embedforge.train.preemption import PreemptionCheckpoint
from embedforge.train.strategies import check_deepspeed_ready

log = logging.getLogger(__name__)


RUN_PREFIX = "run:"


def resolve_init_from(cfg: DictConfig) -> str | None:
    """`model.init_from`: an encoder folder, a .ckpt, or `run:<run_name>` = the newest encoder folder of
    that run name (so a two-stage chain is two commands with no paths to copy)."""
    value = cfg.model.get("init_from")
    if value in (None, "", "null"):
        return None
    value = str(value)
    if value.startswith(RUN_PREFIX):
        name = value[len(RUN_PREFIX):]
        pattern = Path(cfg.paths.output_root) / name / "*" / "encoder" / ENCODER_FILE
        found = sorted(glob.glob(str(pattern)), key=lambda p: Path(p).stat().st_mtime)
        if not found:
            raise TrainConfigError(f"config key 'model.init_from': {value!r} found no encoder matching {pattern} "
                                   f"(run the stage with run_name={name} first)")
        return str(Path(found[-1]).parent)
    path = Path(value)
    if not (path.suffix == ".ckpt" and path.is_file()) and not (path / ENCODER_FILE).is_file():
        raise TrainConfigError(f"config key 'model.init_from': {value} is neither an encoder folder "
                               f"(with {ENCODER_FILE}) nor a .ckpt file")
    return str(path.resolve())


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


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """`last` = the newest last.ckpt of any earlier run with this run_name (each run has its own folder)."""
    if cfg.ckpt_path in (None, "", "null"):
        return None
    if cfg.ckpt_path == "last":
        pattern = Path(cfg.paths.output_root) / cfg.run_name / "*" / "checkpoints" / "last.ckpt"
        found = sorted(glob.glob(str(pattern)), key=lambda p: Path(p).stat().st_mtime)
        if not found:
            raise TrainConfigError(f"config key 'ckpt_path': 'last' found no checkpoint matching {pattern}")
        return found[-1]
    if not Path(cfg.ckpt_path).is_file():
        raise TrainConfigError(f"config key 'ckpt_path': no checkpoint at {cfg.ckpt_path}")
    return str(cfg.ckpt_path)


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


def _run_id(cfg: DictConfig) -> str:
    """<run_name>/<run folder name>: unique per run, and the folder it names holds the run record."""
    return f"{cfg.run_name}/{Path(cfg.paths.output_dir).name}"


def _spawns_workers(trainer: pl.Trainer) -> bool:
    # An isinstance check, so a rename upstream fails at import instead of silently returning False.
    from pytorch_lightning.strategies.launchers.multiprocessing import _MultiProcessingLauncher

    return isinstance(getattr(trainer.strategy, "launcher", None), _MultiProcessingLauncher)


def train(cfg: DictConfig) -> dict:
    check_train_config(cfg)
    check_deepspeed_ready(cfg.trainer)  # a missing package or GPU: one line now, not after the weights load
    # What really runs, so the resolved config, checkpoints and run record say it (not what was asked).
    cfg.trainer.precision = resolve_precision(cfg.trainer)
    checkpointing = effective_checkpointing(cfg)
    if bool(cfg.model.get("gradient_checkpointing", False)) != checkpointing:
        log.info("loss.grad_cache is on: activation checkpointing off (model.checkpointing_with_grad_cache=true keeps it)")
    with open_dict(cfg):
        cfg.model.gradient_checkpointing = checkpointing
    ckpt_path = resolve_ckpt_path(cfg)
    init_from = resolve_init_from(cfg)
    if init_from:
        cfg.model.init_from = init_from  # resolved once: checkpoints and records name the real folder
    pl.seed_everything(int(cfg.seed), workers=True)
    started, env = time.perf_counter(), environment()  # git state of the code that runs, not of its end

    # Data first (tokenizer only): a bad record fails in seconds, before any weights load.
    tokenizer = load_tokenizer(EncoderGroups.from_config(cfg).settings())
    datamodule = EmbeddingDataModule(cfg.data, tokenizer, seed=int(cfg.seed))
    datamodule.setup("fit")
    run_id, parent = _run_id(cfg), parent_run_id(init_from)
    module = EmbeddingModule(cfg, run_id=run_id, parent_run_id=parent)
    resumed_wandb = torch.load(ckpt_path, map_location="cpu", weights_only=True).get("wandb_run_id") if ckpt_path else None
    logger = build_logger(cfg.get("logger"), resume_wandb_id=resumed_wandb)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c and c.get("_target_")]
    extra = {}
    if module.grad_cache is not None:  # manual optimisation: the module clips, Lightning must not
        if int(cfg.trainer.get("accumulate_grad_batches") or 1) != 1:
            raise TrainConfigError("config key 'trainer.accumulate_grad_batches': must be 1 with loss.grad_cache "
                                   "(GradCache grows the contrastive batch itself: raise data.batch_size)")
        module.gradient_clip_val = cfg.trainer.get("gradient_clip_val")
        extra["gradient_clip_val"] = None
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=logger or False, callbacks=callbacks, **extra)
    check_global_batch(cfg, num_nodes=trainer.num_nodes, devices=trainer.num_devices)  # devices=auto resolved now
    if _spawns_workers(trainer):
        module.configure_model()  # spawned workers get a copy; the main process must hold the weights too
    resolved = redact(OmegaConf.to_container(cfg, resolve=True))
    if logger is not None:
        logger.log_hyperparams({**resolved, "data_mixture": datamodule.mixture_counts()})

    has_val = bool(cfg.data.get("val_files"))
    before = trainer.validate(module, datamodule=datamodule, verbose=False)[0] if has_val and cfg.validate_before_fit else {}
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    train_metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
    preempted = _preemption(callbacks)  # a pre-empted run has seconds left: no validation after fit
    after = trainer.validate(module, datamodule=datamodule, verbose=False)[0] if has_val and not preempted else {}
    wall = time.perf_counter() - started

    trained_steps = trainer.global_step or int(train_metrics.get("train/global_step", 0))
    record = build_run_record(
        "train", env=env,
        run_name=cfg.run_name,
        run_id=run_id,
        parent_run={"run_id": parent, "encoder": init_from, "init_mode": cfg.model.init_mode} if init_from else None,
        wandb_run_id=_wandb_run_id(logger),
        data=datamodule.mixture_counts() if hasattr(datamodule, "mixture_counts") else None,
        val_before=before,
        val_after=after,
        global_step=trained_steps,
        train_metrics=train_metrics,
        throughput=_throughput(trainer),
        encoder=module.encoder.describe() if module.encoder is not None else None,
        wall_time_s=round(wall, 1),
        resumed_from=str(Path(ckpt_path).resolve()) if ckpt_path else None,
        preempted=preempted,
        distributed={"world_size": trainer.world_size, "num_nodes": trainer.num_nodes,
                     "devices_per_node": trainer.num_devices,
                     "global_batch_size": global_batch(cfg, num_nodes=trainer.num_nodes, devices=trainer.num_devices)},
        precision=str(trainer.precision),
        activation_checkpointing=bool(cfg.model.gradient_checkpointing),
        config=resolved,
        mteb_eval=_in_training_mteb(callbacks),
    )
    if trainer.is_global_zero and not cfg.trainer.get("fast_dev_run"):
        out = Path(cfg.paths.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        if cfg.save_encoder:
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
