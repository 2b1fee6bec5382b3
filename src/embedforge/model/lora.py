"""LoRA via peft: which linear layers to adapt, and wrapping the backbone."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

# Layers that never feed the pooled embedding: adapting them would waste parameters and leave
# gradients unused under DDP.
_NEVER_ADAPT = ("pooler", "lm_head", "score", "classifier")


@dataclass
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.1
    target_modules: list[str] | str = "all-linear"
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.r, int) or self.r <= 0:
            raise ValueError(f"lora.r must be a positive integer, got {self.r!r}")
        if self.alpha <= 0:
            raise ValueError(f"lora.alpha must be positive, got {self.alpha!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout!r}")


def linear_layer_paths(model: nn.Module) -> list[str]:
    """Full module paths of every nn.Linear except heads/poolers."""
    return [name for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and not any(part in _NEVER_ADAPT for part in name.split("."))]


def linear_layer_names(model: nn.Module) -> list[str]:
    """Distinct leaf names of those layers (q_proj, k_proj, ..., down_proj) for display."""
    return sorted({path.split(".")[-1] for path in linear_layer_paths(model)})


def apply_lora(model: nn.Module, settings: LoraSettings) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    targets = settings.target_modules
    if targets in ("all-linear", "all_linear"):
        # Full paths, not leaf names: BERT's pooler is also called "dense" and must stay out.
        targets = linear_layer_paths(model)
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(targets),
        bias="none",
        **settings.extra,
    )
    return get_peft_model(model, config)


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
