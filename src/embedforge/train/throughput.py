"""Training FLOPs per token and model FLOPs utilisation (MFU).

FLOPs per non-pad token, from the parameter count of the model's matrix multiplies (embedding
tables excluded: a lookup is not a matmul; BERT's pooler too: it sees one token per sequence):

    flops_per_token = 2 * F * (N_frozen + N_trainable)      forward passes
                    + 2 * N_frozen                           backward: activation gradients only
                    + 4 * N_trainable                        backward: activation + weight gradients

with F = 1 + [activation checkpointing] + [GradCache] (each re-runs the forward once). So:
frozen-base LoRA (N_trainable ~ 0) 4N, or 6N with checkpointing or GradCache; full fine-tuning 6N,
or 8N with checkpointing. Attention-score FLOPs (4 * layers * seq_len * hidden per token forward)
are left out, as in the usual 6N rule: about 2% of Mistral-7B's forward at length 512, so MFU is
slightly understated there. Pad tokens are not counted: the MFU is that of useful work.

MFU = tokens/s on one device * flops_per_token / that device's peak dense bf16 FLOP/s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from torch import nn

log = logging.getLogger(__name__)

# Peak dense (no 2:4 sparsity) bf16 tensor-core FLOP/s per GPU, FP32 accumulate, from NVIDIA's data
# sheets, keyed by torch.cuda.get_device_name(). V100 has no bf16: its fp16 peak is listed (train it
# with fp16 autocast). Lightning's own table lists sparse figures for some cards (H200, H100 NVL),
# which would halve the reported MFU, hence this one.
PEAK_BF16_FLOPS: dict[str, float] = {
    "NVIDIA H200": 989.4e12,
    "NVIDIA H200 NVL": 835.5e12,
    "NVIDIA H100 80GB HBM3": 989.4e12,      # SXM
    "NVIDIA H100 PCIe": 756.0e12,
    "NVIDIA H100 NVL": 835.5e12,
    "NVIDIA A100-SXM4-80GB": 312e12,
    "NVIDIA A100-SXM4-40GB": 312e12,
    "NVIDIA A100 80GB PCIe": 312e12,
    "NVIDIA A100-PCIE-40GB": 312e12,
    "Tesla V100-SXM2-16GB": 125e12,           # fp16
    "Tesla V100-SXM2-32GB": 125e12,           # fp16
    "Tesla V100-PCIE-16GB": 112e12,           # fp16
    "Tesla V100-PCIE-32GB": 112e12,           # fp16
    "NVIDIA L4": 121e12,
    "NVIDIA L40S": 362.1e12,
    "NVIDIA L40": 181e12,
    "NVIDIA A10": 125e12,
    "NVIDIA A10G": 70e12,                     # AWS's figure for its A10 variant (lower clocks); not verified here
    "NVIDIA GeForce RTX 4090": 165.2e12,
    "NVIDIA GeForce RTX 3090": 71e12,
    "NVIDIA RTX A6000": 154.8e12,
}

# Name fragments for names that vary by board or driver (checked in order, case-insensitive).
_FRAGMENTS: list[tuple[str, float]] = [
    ("h200", 989.4e12), ("h100 nvl", 835.5e12), ("h100 pcie", 756.0e12), ("h100", 989.4e12),
    ("a100", 312e12), ("v100-sxm", 125e12), ("v100", 112e12), ("l40s", 362.1e12), ("l40", 181e12),
    ("l4", 121e12), ("a10g", 70e12), ("a10", 125e12), ("rtx 4090", 165.2e12), ("rtx 3090", 71e12),
]


def peak_flops(device_name: str | None) -> float | None:
    """Peak dense bf16 FLOP/s of a GPU by its torch.cuda.get_device_name(); None if unknown (or CPU)."""
    if not device_name:
        return None
    if device_name in PEAK_BF16_FLOPS:
        return PEAK_BF16_FLOPS[device_name]
    lowered = device_name.lower()
    for fragment, value in _FRAGMENTS:
        if fragment in lowered:
            return value
    return None


def device_peak_flops(device) -> float | None:
    """Peak of a torch.device; None on CPU (MFU is not reported there) and for unknown GPUs."""
    import torch

    if getattr(device, "type", str(device)) != "cuda" or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(device)
    value = peak_flops(name)
    if value is None:
        log.warning("no peak FLOP/s known for GPU %r: MFU not reported (pass peak_flops to the callback)", name)
    return value


@dataclass(frozen=True)
class MatmulParams:
    frozen: int
    trainable: int

    @property
    def total(self) -> int:
        return self.frozen + self.trainable


def matmul_params(model: nn.Module) -> MatmulParams:
    """Parameters that take part in per-token matrix multiplies: everything but embedding tables
    and poolers (norm weights and biases are counted: they are a rounding error)."""
    skip: set[int] = set()
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding) or name.split(".")[-1] == "pooler":
            skip.update(id(p) for p in module.parameters())
    frozen = trainable = 0
    seen: set[int] = set()
    for param in model.parameters():
        if id(param) in skip or id(param) in seen:
            continue
        seen.add(id(param))
        if param.requires_grad:
            trainable += param.numel()
        else:
            frozen += param.numel()
    return MatmulParams(frozen=frozen, trainable=trainable)


def training_flops_per_token(params: MatmulParams, *, checkpointing: bool = False, grad_cache: bool = False) -> float:
    """The formula in the module docstring."""
    forwards = 1 + int(checkpointing) + int(grad_cache)
    return 2.0 * forwards * params.total + 2.0 * params.frozen + 4.0 * params.trainable


def mfu(tokens_per_s: float, flops_per_token: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation of one device; None when the peak is unknown (CPU)."""
    if not peak:
        return None
    return tokens_per_s * flops_per_token / peak
