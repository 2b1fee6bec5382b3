"""`embedforge-evaluate`'s typed settings (config_schema.Schema: unknown keys refused by name, strict types).

The CLI binds the composed config here once (`EvaluateJob.from_config`); the job, its workers
(eval/parallel.py, which re-bind the `dump()`) and the passkey probe read only these objects.
Paths are made absolute at binding time, so a worker process resolves them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import PositiveInt

from embedforge.config_schema import Schema, bind, to_plain
from embedforge.data.formatting import INSTRUCTION_MODES
from embedforge.model.settings import EncoderGroups, LoraGroup, ModelGroup, PoolingGroup

ENCODER_KEYS = ("model", "lora", "pooling")


class InstructionsGroup(Schema):
    """`instructions:` of conf/evaluate.yaml; mode/template null follow the encoder's training format."""

    mode: Literal[INSTRUCTION_MODES] | None = None
    template: str | None = None
    by_task: dict[str, str] = {}
    by_type: dict[str, str] = {}
    normalize_by_type: dict[str, bool] = {}


class MtebEval(Schema):
    """conf/eval/{local,sts,mteb_eng}.yaml: MTEB tasks, local task folders or a benchmark."""

    mode: Literal["mteb", "passkey"] = "mteb"  # passkey binds PasskeyEval instead
    data_dir: str | None = None
    tasks: list[str] | None = None
    benchmark: str | None = None
    batch_size: PositiveInt = 32
    max_length: PositiveInt = 512
    truncate_dim: PositiveInt | None = None
    save_item_scores: bool = False
    # {task: items kept} for local folders: a seeded sample of each evaluation split (e.g. SICK-R: 2000)
    subsample: dict[str, PositiveInt] | None = None
    workers: PositiveInt | Literal["auto"] = 1
    # merged over instructions.normalize_by_type (mteb_eng: no normalisation for classification)
    normalize_by_type: dict[str, bool] = {}


class PasskeyEval(Schema):
    """conf/eval/passkey.yaml: personalised passkey retrieval per context length."""

    mode: Literal["passkey"] = "passkey"
    lengths: list[PositiveInt] = [128, 256, 512, 1024, 2048, 4096]
    n_docs: PositiveInt = 100
    n_queries: PositiveInt = 50
    seed: int = 0
    batch_size: PositiveInt = 8
    instruction: str = ""


class EvaluateSettings(Schema):
    """conf/evaluate.yaml's own keys (the encoder groups are bound apart, by EncoderGroups)."""

    eval: MtebEval | PasskeyEval
    instructions: InstructionsGroup = InstructionsGroup()
    checkpoint: str | None = None
    # replaces an encoder folder's own max_length (before eval.max_length caps it)
    encoder_max_length: PositiveInt | None = None
    device: str = "auto"
    output_dir: str = "runs/evaluate/results"
    record_dir: str | None = None
    seed: int | None = 42
    torch_threads: PositiveInt | None = None


@dataclass(frozen=True)
class EvaluateJob:
    """One evaluation, checked: its settings and the encoder's groups."""

    settings: EvaluateSettings
    encoder: EncoderGroups

    @classmethod
    def from_config(cls, cfg: Any) -> EvaluateJob:
        """From the composed config (a DictConfig or a dict); relative paths against Hydra's original cwd."""
        import hydra

        values = to_plain(cfg, "")
        own = {k: v for k, v in values.items() if k not in ENCODER_KEYS}
        own["eval"] = _bind_eval(own.get("eval"))
        settings = bind(EvaluateSettings, own, "")
        absolute = {key: hydra.utils.to_absolute_path(str(value))
                    for key in ("checkpoint", "output_dir", "record_dir") if (value := getattr(settings, key))}
        if settings.record_dir is None:
            from hydra.core.hydra_config import HydraConfig

            if HydraConfig.initialized():  # the run record goes to Hydra's run folder by default
                absolute["record_dir"] = HydraConfig.get().runtime.output_dir
        if isinstance(settings.eval, MtebEval) and settings.eval.data_dir:
            absolute["eval"] = settings.eval.model_copy(
                update={"data_dir": hydra.utils.to_absolute_path(settings.eval.data_dir)})
        return cls(settings.model_copy(update=absolute), EncoderGroups.from_config(values))

    def dump(self) -> dict:
        """Plain data (for a worker process), re-bound by `from_dump`."""
        return {"settings": self.settings.model_dump(),
                **{key: getattr(self.encoder, key).model_dump() for key in ENCODER_KEYS}}

    @classmethod
    def from_dump(cls, data: dict) -> EvaluateJob:
        settings = dict(data["settings"])
        settings["eval"] = _bind_eval(settings["eval"])
        return cls(bind(EvaluateSettings, settings, ""),
                   EncoderGroups(model=bind(ModelGroup, data["model"], "model"),
                                 lora=bind(LoraGroup, data["lora"], "lora"),
                                 pooling=bind(PoolingGroup, data["pooling"], "pooling")))

    def record_config(self) -> dict:
        """What the run record keeps as `config`: every setting, defaults included."""
        return {**self.settings.model_dump(mode="json"),
                **{key: getattr(self.encoder, key).model_dump(mode="json") for key in ENCODER_KEYS}}


def _bind_eval(node: Any) -> MtebEval | PasskeyEval:
    """The eval group by its mode: the passkey probe and MTEB evaluation take different keys."""
    values = node if isinstance(node, dict) else {}
    schema = PasskeyEval if values.get("mode") == "passkey" else MtebEval
    return bind(schema, node, "eval")
