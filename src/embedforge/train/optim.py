"""AdamW and the paper's schedule: linear warmup then linear decay to zero (docs/method.md section 3).
conf/optim/adamw.yaml names both as partial targets; the module supplies parameters and step count."""

from __future__ import annotations

import torch

from embedforge.errors import ConfigError


def linear_warmup_decay(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int):
    """Factor (step + 1) / warmup during warmup (reaching 1 at its last step), then (total - step) /
    (total - warmup): 1 at the first step after warmup, 1 / (total - warmup) at the last step."""
    warmup_steps = max(0, int(warmup_steps))
    total_steps = max(1, int(total_steps))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        remaining = total_steps - step
        return max(0.0, remaining / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def adamw(params, lr: float, weight_decay: float, betas=(0.9, 0.999), eps: float = 1e-8) -> torch.optim.AdamW:
    """Decay only matrices (weights, LoRA A/B), not biases or norm weights (1-d tensors), as is
    standard for transformers. Frozen parameters are left out."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ConfigError("optimizer: the model has no trainable parameters (check the lora group and model.init_from)")
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=tuple(betas), eps=eps)
