"""The training entry point's typed config boundary: `TrainSettings.from_config(cfg)` checks the composed
config once, when `embedforge-train` starts, and everything after it takes typed settings.

- our groups are typed (config_schema.Schema): model/lora/pooling (model/settings.py), data
  (data/settings.py), the loss module's keys, optim, paths and the top-level keys; an unknown key anywhere
  is refused by name;
- the library groups are bound to their `_target_`'s signature: trainer (Lightning's Trainer), logger,
  callbacks, the loss callable, the optimiser and scheduler partials;
- the cross-field rules live here, once: the declared global batch, and GradCache's consequences for the
  trainer (activation checkpointing off unless asked, no gradient accumulation, clipping by the module).
Paths that name earlier runs (`model.init_from=run:<name>`, `ckpt_path=last`) are resolved here too, so the
checkpoints and the run record name the real folders.
"""

from __future__ import annotations

import glob
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, NonNegativeInt, PositiveInt

from embedforge.config_schema import Schema, bind, check_target, to_plain
from embedforge.data.settings import DataSettings
from embedforge.errors import ConfigError
from embedforge.losses import MODULE_KEYS, build_loss
from embedforge.model.encoder import ENCODER_FILE
from embedforge.model.settings import EncoderGroups, EncoderSettings, ModelGroup

log = logging.getLogger(__name__)

RUN_PREFIX = "run:"


class TrainConfigError(ConfigError):
    """A training config value is wrong; the message starts with the config key."""


def _fail(key: str, message: str):
    raise TrainConfigError(f"config key '{key}': {message}")


class TopLevel(Schema):
    """conf/train.yaml's own keys; the groups are checked by their own schemas below."""

    run_name: str
    optimized_metric: str = "val/ndcg@10"
    seed: int = 42
    tags: list[str] = Field(default_factory=list)
    validate_before_fit: bool = True
    ckpt_path: str | None = None
    save_encoder: bool = True
    model: dict
    lora: dict | None = None
    pooling: dict
    loss: dict
    optim: dict
    data: dict
    trainer: dict
    logger: dict | None = None
    callbacks: dict | None = None
    paths: dict


class GradCacheGroup(Schema):
    chunk_size: PositiveInt | None = None  # null = off


class LossModuleGroup(Schema):
    """The loss group's keys that configure the training module (the rest go to the loss callable)."""

    share_negatives_across_devices: bool = True
    mask_duplicate_positives: bool = True
    grad_cache: GradCacheGroup = GradCacheGroup()
    name: str | None = None


@dataclass(frozen=True)
class LossSettings:
    callable: dict  # `_target_` and its arguments, checked against its signature and built once
    share_negatives: bool = True
    mask_duplicates: bool = True
    grad_cache_chunk: int | None = None

    def build(self):
        return build_loss(self.callable)


class OptimGroup(Schema):
    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0, default=0.0)
    warmup_steps: NonNegativeInt = 0
    betas: list[float] = Field(default_factory=lambda: [0.9, 0.999], min_length=2, max_length=2)
    optimizer: dict  # partial targets (conf/optim/*.yaml), bound to their signatures
    scheduler: dict


class PathsGroup(Schema):
    output_root: str
    output_dir: str
    checkpoint_dir: str


@dataclass(frozen=True)
class ModuleSettings:
    """What the LightningModule needs: the encoder to build, the loss, the optimiser, and what to keep in
    checkpoints (`hparams`, from which builder.load_encoder rebuilds the encoder)."""

    encoder: EncoderSettings
    compile: bool
    loss: LossSettings
    optim: OptimGroup
    trained_with: dict
    hparams: dict
    gradient_clip_val: float | None = None  # GradCache clips in the module (manual optimisation)


@dataclass(frozen=True)
class TrainSettings:
    run_name: str
    optimized_metric: str
    seed: int
    validate_before_fit: bool
    save_encoder: bool
    ckpt_path: str | None  # resolved: a file, or None
    encoder: EncoderGroups  # model.init_from resolved, model.gradient_checkpointing what runs (GradCache)
    loss: LossSettings
    optim: OptimGroup
    data: DataSettings
    paths: PathsGroup
    trainer: dict  # Lightning Trainer arguments as they will be passed (precision resolved)
    logger: dict | None
    callbacks: dict[str, dict]
    resolved: dict = field(repr=False)  # the composed config with what really runs, for records and loggers

    @classmethod
    def from_config(cls, cfg: Any) -> TrainSettings:
        try:
            return _bind_train(cfg)
        except TrainConfigError:
            raise
        except ConfigError as exc:  # one error type for the training entry point
            raise TrainConfigError(str(exc)) from None

    @property
    def init_from(self) -> str | None:
        return self.encoder.model.init_from

    @property
    def grad_cache(self) -> bool:
        return self.loss.grad_cache_chunk is not None

    def trained_with(self, run_id: str | None = None, parent_run_id: str | None = None) -> dict:
        """How this run formats its inputs (what evaluation and export must repeat), and its lineage."""
        return {"instruction_mode": self.data.instruction_mode, "query_template": self.data.query_template,
                "run_id": run_id, "parent_run_id": parent_run_id}

    def module(self, *, run_id: str | None = None, parent_run_id: str | None = None) -> ModuleSettings:
        trained_with = self.trained_with(run_id, parent_run_id)
        return ModuleSettings(
            encoder=self.encoder.settings(for_training=True, trained_with=trained_with),
            compile=self.encoder.model.compile, loss=self.loss, optim=self.optim, trained_with=trained_with,
            hparams={"cfg": self.resolved, "trained_with": trained_with},
            gradient_clip_val=self.resolved["trainer"].get("gradient_clip_val") if self.grad_cache else None)

    def global_batch(self, *, num_nodes: int, devices: int) -> int:
        return global_batch(self.data, accumulation(self.trainer), num_nodes=num_nodes, devices=devices)

    def check_global_batch(self, *, num_nodes: int, devices: int) -> None:
        check_global_batch(self.data, accumulation(self.trainer), num_nodes=num_nodes, devices=devices)


def accumulation(trainer: dict) -> int:
    return int(trainer.get("accumulate_grad_batches") or 1)


def global_batch(data: DataSettings, accumulate: int, *, num_nodes: int, devices: int) -> int:
    """Contrastive examples per optimiser step: nodes x devices x per-device batch x accumulation."""
    return num_nodes * devices * data.batch_size * accumulate


def check_global_batch(data: DataSettings, accumulate: int, *, num_nodes: int, devices: int) -> None:
    """data.global_batch_size (null = not checked): the batch a recipe declares must be the one that runs."""
    declared = data.global_batch_size
    if declared is None:
        return
    actual = global_batch(data, accumulate, num_nodes=num_nodes, devices=devices)
    if actual != declared:
        _fail("data.global_batch_size", f"declares {declared}, but trainer.num_nodes ({num_nodes}) x trainer.devices "
              f"({devices}) x data.batch_size ({data.batch_size}) x trainer.accumulate_grad_batches ({accumulate}) "
              f"= {actual}; change those, or data.global_batch_size=null to skip the check")


def activation_checkpointing(model: ModelGroup, loss: LossSettings) -> bool:
    """Whether activation checkpointing really runs: model.gradient_checkpointing, except under GradCache,
    which already recomputes the forward chunk by chunk (checkpointing would do it twice) unless
    model.checkpointing_with_grad_cache=true."""
    return model.gradient_checkpointing and (loss.grad_cache_chunk is None or model.checkpointing_with_grad_cache)


def bind_loss(node: Any) -> LossSettings:
    plain = to_plain(node, "loss") or {}
    module = bind(LossModuleGroup, {k: v for k, v in plain.items() if k in MODULE_KEYS}, "loss")
    spec = {k: v for k, v in plain.items() if k not in MODULE_KEYS}
    if not spec.get("_target_"):
        _fail("loss._target_", "the loss group must name the loss callable (see conf/loss/infonce.yaml)")
    check_target(spec, "loss")
    try:
        build_loss(spec)  # the loss's own argument checks (temperature > 0, dims ...), before any model loads
    except ValueError as exc:
        message = str(exc)
        key = message.split(":")[0] if message.startswith("loss.") else "loss._target_"
        _fail(key, message.split(": ", 1)[-1])
    return LossSettings(callable=spec, share_negatives=module.share_negatives_across_devices,
                        mask_duplicates=module.mask_duplicate_positives, grad_cache_chunk=module.grad_cache.chunk_size)


def bind_callbacks(node: Any) -> dict[str, dict]:
    callbacks = {}
    for name, spec in (to_plain(node, "callbacks") or {}).items():
        if spec and spec.get("_target_"):
            check_target(spec, f"callbacks.{name}")
            callbacks[name] = spec
    return callbacks


def resolve_init_from(value: str | None, output_root: str) -> str | None:
    """`model.init_from`: an encoder folder, a .ckpt, or `run:<run_name>` = the newest encoder folder of
    that run name (so a two-stage chain is two commands with no paths to copy)."""
    if value in (None, "", "null"):
        return None
    if value.startswith(RUN_PREFIX):
        name = value[len(RUN_PREFIX):]
        pattern = Path(output_root) / name / "*" / "encoder" / ENCODER_FILE
        found = sorted(glob.glob(str(pattern)), key=lambda p: Path(p).stat().st_mtime)
        if not found:
            _fail("model.init_from", f"{value!r} found no encoder matching {pattern} "
                                     f"(run the stage with run_name={name} first)")
        return str(Path(found[-1]).parent)
    path = Path(value)
    if not (path.suffix == ".ckpt" and path.is_file()) and not (path / ENCODER_FILE).is_file():
        _fail("model.init_from", f"{value} is neither an encoder folder (with {ENCODER_FILE}) nor a .ckpt file")
    return str(path.resolve())


def resolve_ckpt_path(value: str | None, output_root: str, run_name: str) -> str | None:
    """`last` = the newest last.ckpt of any earlier run with this run_name (each run has its own folder)."""
    if value in (None, "", "null"):
        return None
    if value == "last":
        pattern = Path(output_root) / run_name / "*" / "checkpoints" / "last.ckpt"
        found = sorted(glob.glob(str(pattern)), key=lambda p: Path(p).stat().st_mtime)
        if not found:
            _fail("ckpt_path", f"'last' found no checkpoint matching {pattern}")
        return found[-1]
    if not Path(value).is_file():
        _fail("ckpt_path", f"no checkpoint at {value}")
    return str(value)


def _bind_train(cfg: Any) -> TrainSettings:
    from embedforge.train.precision import resolve_precision

    resolved = to_plain(cfg, "", missing_ok=True)
    top = bind(TopLevel, resolved, "")
    encoder = EncoderGroups.from_config(resolved)
    loss = bind_loss(resolved["loss"])
    optim = bind(OptimGroup, resolved["optim"], "optim")
    check_target(optim.optimizer, "optim.optimizer")
    check_target(optim.scheduler, "optim.scheduler")
    data = DataSettings.from_config(resolved["data"])
    paths = bind(PathsGroup, resolved["paths"], "paths")
    check_target(resolved["logger"], "logger")
    callbacks = bind_callbacks(resolved.get("callbacks"))

    trainer = dict(resolved["trainer"])
    check_target(trainer, "trainer")
    # What really runs, so the resolved config, checkpoints and run record say it (not what was asked).
    trainer["precision"] = resolve_precision(trainer)
    resolved["trainer"] = {**resolved["trainer"], "precision": trainer["precision"]}

    # GradCache's consequences, decided here once.
    checkpointing = activation_checkpointing(encoder.model, loss)
    if encoder.model.gradient_checkpointing != checkpointing:
        log.info("loss.grad_cache is on: activation checkpointing off (model.checkpointing_with_grad_cache=true keeps it)")
    if loss.grad_cache_chunk is not None:
        if accumulation(trainer) != 1:
            _fail("trainer.accumulate_grad_batches", "must be 1 with loss.grad_cache (GradCache grows the "
                                                     "contrastive batch itself: raise data.batch_size)")
        trainer["gradient_clip_val"] = None  # manual optimisation: the module clips, Lightning must not

    init_from = resolve_init_from(encoder.model.init_from, paths.output_root)
    encoder = EncoderGroups(encoder.model.model_copy(update={"init_from": init_from, "gradient_checkpointing": checkpointing}),
                            encoder.lora, encoder.pooling)
    resolved["model"] = {**resolved["model"], "gradient_checkpointing": checkpointing,
                         **({"init_from": init_from} if init_from else {})}
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1)
    if isinstance(devices, int) and isinstance(nodes, int):  # "auto" devices: checked once the trainer knows
        check_global_batch(data, accumulation(trainer), num_nodes=nodes, devices=devices)
    return TrainSettings(
        run_name=top.run_name, optimized_metric=top.optimized_metric, seed=top.seed, validate_before_fit=top.validate_before_fit,
        save_encoder=top.save_encoder, ckpt_path=resolve_ckpt_path(top.ckpt_path, paths.output_root, top.run_name),
        encoder=encoder, loss=loss, optim=optim,
        data=data, paths=paths, trainer=trainer, logger=resolved["logger"], callbacks=callbacks, resolved=resolved)

