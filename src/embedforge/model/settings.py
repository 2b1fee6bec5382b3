"""The typed `model`, `lora` and `pooling` groups (config_schema.Schema: unknown keys refused by name), and
EncoderSettings, what the builder needs to build an encoder whatever the source of its weights.

Every job that builds an encoder from a config (train, evaluate, mine, export, decontam, plan) binds the
three groups here once (`EncoderGroups.from_config`) and hands the typed result inward.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field, PositiveInt

from embedforge.config_schema import Schema, bind
from embedforge.model.lora import LoraSettings
from embedforge.model.pooling import POOLING_MODES

INIT_MODES = ("merge", "continue")
DTYPES = ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16")
Positive = Annotated[float, Field(gt=0)]


class ModelGroup(Schema):
    """`conf/model/*.yaml` plus the training-only keys of `conf/train.yaml`'s `model:` block."""

    pretrained: str
    max_length: PositiveInt = 512
    torch_dtype: Literal[DTYPES] = "auto"
    attn_implementation: str | None = "sdpa"
    gradient_checkpointing: bool = False
    # training: an earlier stage's encoder (folder, .ckpt or run:<run_name>) and how to start from it
    init_from: str | None = None
    init_mode: Literal[INIT_MODES] = "merge"
    compile: bool = False
    checkpointing_with_grad_cache: bool = False


class LoraGroup(Schema):
    """`conf/lora/*.yaml`: our keys, and peft LoraConfig options passed through (DoRA and a LoRA bias then
    take peft's forward; rsLoRA only changes the scaling, which the lean forward reads from peft)."""

    enabled: bool = True
    r: PositiveInt = 16
    alpha: Positive = 32
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    target_modules: str | list[str] = "all-linear"
    share_dropout: bool = True
    use_dora: bool | None = None
    use_rslora: bool | None = None
    lora_bias: bool | None = None

    def settings(self) -> LoraSettings | None:
        if not self.enabled:
            return None
        alpha = int(self.alpha) if float(self.alpha).is_integer() else self.alpha
        extra = {k: v for k in ("use_dora", "use_rslora", "lora_bias") if (v := getattr(self, k)) is not None}
        return LoraSettings(r=self.r, alpha=alpha, dropout=self.dropout, target_modules=self.target_modules,
                            share_dropout=self.share_dropout, extra=extra)


class PoolingGroup(Schema):
    mode: Literal[POOLING_MODES] = "last_token"
    normalize: bool = True


@dataclass
class EncoderSettings:
    """Everything needed to build an encoder, whatever the source of its weights."""

    pretrained: str
    pooling: str = "last_token"
    normalize: bool = True
    max_length: int = 512
    lora: LoraSettings | None = None
    dtype: str = "auto"
    attn_implementation: str | None = "sdpa"
    gradient_checkpointing: bool = False
    init_from: str | None = None
    init_mode: str = "merge"
    # Full fine-tuning keeps fp32 master weights (autocast computes in bf16); frozen weights may be bf16.
    for_training: bool = False
    trained_with: dict = field(default_factory=dict)


@dataclass(frozen=True)
class EncoderGroups:
    """The three groups that define an encoder, checked."""

    model: ModelGroup
    lora: LoraGroup
    pooling: PoolingGroup

    @classmethod
    def from_config(cls, cfg: Any, *, pretrained: str | None = None) -> EncoderGroups:
        """From a composed config (or a checkpoint's saved one) holding `model` and optionally `lora`,
        `pooling` (absent = no LoRA, last-token pooling). `pretrained` replaces model.pretrained."""
        extra = {"pretrained": pretrained} if pretrained else {}
        lora = cfg.get("lora")
        return cls(model=bind(ModelGroup, cfg.get("model"), "model", **extra),
                   lora=bind(LoraGroup, lora if lora is not None else {"enabled": False}, "lora"),
                   pooling=bind(PoolingGroup, cfg.get("pooling"), "pooling"))

    def settings(self, *, for_training: bool = False, gradient_checkpointing: bool | None = None,
                 trained_with: dict | None = None) -> EncoderSettings:
        model = self.model
        return EncoderSettings(
            pretrained=model.pretrained, pooling=self.pooling.mode, normalize=self.pooling.normalize,
            max_length=model.max_length, lora=self.lora.settings(), dtype=model.torch_dtype,
            attn_implementation=model.attn_implementation,
            gradient_checkpointing=model.gradient_checkpointing if gradient_checkpointing is None else gradient_checkpointing,
            init_from=model.init_from, init_mode=model.init_mode, for_training=for_training,
            trained_with=dict(trained_with or {}))
