"""LoRA via peft: which linear layers to adapt, wrapping the backbone, and a leaner training forward.

peft's LoRA layer computes `base(x) + lora_B(lora_A(dropout(x))) * scaling` with separate modules:
each adapted layer draws its own dropout mask and keeps its own fp32 dropped copy of the input for
backward (on CPU also a fp32 mask), and the scaling and the sum make two more full-size output
tensors. q/k/v (and gate/up in Mistral) read the same input, so a layer pays that up to three times.
`SharedDropoutLoraLinear` (swapped in for peft's class, so saving, loading and merging are peft's own)
computes the same function with one autograd node that saves the input itself (shared storage with
its siblings) and a 1-byte mask, adds the low-rank product straight into the base output, and draws
one dropout mask per distinct input tensor within a parent module (q/k/v share one mask).

Why sharing a mask is sound: at inference LoRA is W x + s B A x either way; dropout is a training-time
regulariser, and each adapter still sees `x * m / (1 - p)` with m ~ Bernoulli(1 - p) elementwise, the
same distribution as before; only the masks of sibling adapters on the same input are now equal
instead of independent (as if dropout were applied once to the shared input). Each adapter's gradient
is unchanged in distribution.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
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
    # One dropout mask per input shared by the adapters that read it (q/k/v); False = peft's forward.
    share_dropout: bool = True

    def __post_init__(self):
        if not isinstance(self.r, int) or self.r <= 0:
            raise ValueError(f"lora.r must be a positive integer, got {self.r!r}")
        if self.alpha <= 0:
            raise ValueError(f"lora.alpha must be positive, got {self.alpha!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.share_dropout, bool):
            raise ValueError(f"lora.share_dropout must be true or false, got {self.share_dropout!r}")


def linear_layer_paths(model: nn.Module) -> list[str]:
    """Full module paths of every nn.Linear except heads/poolers."""
    return [name for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and not any(part in _NEVER_ADAPT for part in name.split("."))]


def linear_layer_names(model: nn.Module) -> list[str]:
    """Distinct leaf names of those layers (q_proj, k_proj, ..., down_proj) for display."""
    return sorted({path.split(".")[-1] for path in linear_layer_paths(model)})


def lora_config(model: nn.Module, settings: LoraSettings):
    """The peft LoraConfig for `model` (also what benchmarks hand to other trainers)."""
    from peft import LoraConfig

    targets = settings.target_modules
    if targets in ("all-linear", "all_linear"):
        # Full paths, not leaf names: BERT's pooler is also called "dense" and must stay out.
        targets = linear_layer_paths(model)
    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(targets),
        bias="none",
        **settings.extra,
    )


def apply_lora(model: nn.Module, settings: LoraSettings) -> nn.Module:
    from peft import get_peft_model

    peft_model = get_peft_model(model, lora_config(model, settings))
    if settings.share_dropout:
        use_shared_dropout_forward(peft_model)
    return peft_model


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ---------------------------------------------------------------------------------------------- lean forward
class _MaskCache:
    """The last (input, mask) drawn inside one parent module's forward; emptied when it returns."""

    def __init__(self) -> None:
        self.entry: tuple[torch.Tensor, int, float, torch.Tensor] | None = None

    def mask_for(self, x: torch.Tensor, p: float) -> torch.Tensor:
        entry = self.entry
        # `is` on the tensor (held strongly until the parent returns, so ids cannot be reused) and its
        # version counter (an in-place change makes it a different input).
        if entry is not None and entry[0] is x and entry[1] == x._version and entry[2] == p:
            return entry[3]
        mask = draw_keep_mask(x, p)
        self.entry = (x, x._version, p, mask)
        return mask

    def clear(self, *_args) -> None:
        self.entry = None


# Masked copies of the input are made a block of rows at a time, so the transient stays ~16 MB
# (fp32) whatever the batch: large temporaries are what inflates peak memory, on CPU above all.
_BLOCK_ELEMENTS = 1 << 22


def _row_blocks(rows: int, width: int):
    step = max(1, _BLOCK_ELEMENTS // max(width, 1))
    return ((start, min(start + step, rows)) for start in range(0, rows, step))


def draw_keep_mask(x: torch.Tensor, p: float) -> torch.Tensor:
    """Bernoulli(1 - p) keep mask shaped like x, as bool (1 byte an element), from the global RNG
    (so GradCache and activation checkpointing replay it); drawn in blocks of rows."""
    mask = torch.empty(x.shape, device=x.device, dtype=torch.bool)
    flat = mask.view(-1, x.shape[-1]) if x.dim() > 1 else mask.view(1, -1)
    for start, stop in _row_blocks(flat.shape[0], flat.shape[1]):
        torch.ge(torch.rand(stop - start, flat.shape[1], device=x.device), p, out=flat[start:stop])
    return mask


def _masked_matmul(x2: torch.Tensor, mask2: torch.Tensor | None, other: torch.Tensor, dtype, left=None):
    """(x2 * mask2) @ other, or left @ (x2 * mask2) when `left` is given, block by block of rows."""
    if mask2 is None:
        x = x2.to(dtype)
        return x @ other if left is None else left @ x
    rows = x2.shape[0]
    out = (torch.empty(rows, other.shape[1], device=x2.device, dtype=dtype) if left is None
           else torch.zeros(left.shape[0], x2.shape[1], device=x2.device, dtype=dtype))
    for start, stop in _row_blocks(rows, x2.shape[1]):
        # where(), not a multiply: a bool factor would be converted to float first (a full extra copy).
        block = torch.where(mask2[start:stop], x2[start:stop].to(dtype), 0.0)
        if left is None:
            torch.mm(block, other, out=out[start:stop])
        else:
            out.addmm_(left[:, start:stop], block)
    return out


class _LoraDelta(torch.autograd.Function):
    """result += scale * (x * mask / (1 - p)) @ A^T @ B^T, in place; saves x (shared with sibling
    adapters), the bool mask and the rank-r product only."""

    @staticmethod
    def forward(ctx, result, x, mask, weight_a, weight_b, scale, keep_scale, compute_dtype):
        with torch.autocast(device_type=x.device.type, enabled=False):
            x2 = x.reshape(-1, x.shape[-1])
            mask2 = None if mask is None else mask.reshape(x2.shape)
            a, b = weight_a.to(compute_dtype), weight_b.to(compute_dtype)
            low = _masked_matmul(x2, mask2, a.t(), compute_dtype)
            if mask is not None:
                low.mul_(keep_scale)  # the 1 / (1 - p) of inverted dropout, on the rank-r side
            flat = result.view(-1, result.shape[-1])
            if flat.dtype == compute_dtype:
                torch.addmm(flat, low, b.t(), alpha=scale, out=flat)  # in place (addmm_ escapes FLOP counters)
            else:
                flat.add_((low @ b.t()).mul_(scale).to(flat.dtype))
        ctx.mark_dirty(result)
        ctx.save_for_backward(x, mask, weight_a, weight_b, low)
        ctx.scale, ctx.keep_scale, ctx.compute_dtype = scale, keep_scale, compute_dtype
        return result

    @staticmethod
    def backward(ctx, grad):
        x, mask, weight_a, weight_b, low = ctx.saved_tensors
        dtype = ctx.compute_dtype
        g = grad.reshape(-1, grad.shape[-1]).to(dtype)
        a, b = weight_a.to(dtype), weight_b.to(dtype)
        grad_low = (g @ b).mul_(ctx.scale)                      # (T, r)
        if mask is not None:
            grad_low.mul_(ctx.keep_scale)
        grad_x = grad_a = grad_b = None
        if ctx.needs_input_grad[4]:
            grad_b = (g.t() @ low).mul_(ctx.scale).to(weight_b.dtype)
        if ctx.needs_input_grad[3]:
            x2 = x.reshape(-1, x.shape[-1])
            mask2 = None if mask is None else mask.reshape(x2.shape)
            grad_a = _masked_matmul(x2, mask2, None, dtype, left=grad_low.t()).to(weight_a.dtype)
        if ctx.needs_input_grad[1]:
            grad_x = grad_low @ a
            if mask is not None:
                grad_x = torch.where(mask.reshape(grad_x.shape), grad_x, 0.0)
            grad_x = grad_x.reshape(x.shape).to(x.dtype)
        return grad, grad_x, None, grad_a, grad_b, None, None, None


def _peft_linear_class():
    from peft.tuners.lora.layer import Linear

    return Linear


_SHARED_CLASS: type | None = None


def _shared_class() -> type:
    """Built on first use (peft is imported lazily); module-level `__getattr__` below lets pickle
    (spawned DDP workers) find it by name."""
    global _SHARED_CLASS
    if _SHARED_CLASS is None:
        _SHARED_CLASS = _make_shared_class(_peft_linear_class())
    return _SHARED_CLASS


def __getattr__(name: str):
    if name == "SharedDropoutLoraLinear":
        return _shared_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _make_shared_class(Linear: type) -> type:
    class SharedDropoutLoraLinear(Linear):
        """peft's lora.Linear with the lean forward above for the plain case (one active vanilla
        adapter, not merged); anything else (DoRA, mixed adapters, merged) takes peft's forward."""

        _mask_cache: _MaskCache | None = None

        def forward(self, x, *args, **kwargs):
            adapters = [a for a in self.active_adapters if a in self.lora_A]
            if (args or kwargs or self.disable_adapters or self.merged or len(adapters) != 1
                    or adapters[0] in self.lora_variant or not isinstance(self.base_layer, nn.Linear)):
                return super().forward(x, *args, **kwargs)
            name = adapters[0]
            lora_a, lora_b = self.lora_A[name], self.lora_B[name]
            if lora_b.bias is not None:
                return super().forward(x, *args, **kwargs)
            result = self.base_layer(x)
            dropout = self.lora_dropout[name]
            p = float(getattr(dropout, "p", 0.0))
            mask = None
            if dropout.training and p > 0.0:
                mask = self._mask_cache.mask_for(x, p) if self._mask_cache is not None else draw_keep_mask(x, p)
            device_type = x.device.type
            compute_dtype = (torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type)
                             else lora_a.weight.dtype)
            return _LoraDelta.apply(result, x, mask, lora_a.weight, lora_b.weight, float(self.scaling[name]),
                                    1.0 / (1.0 - p), compute_dtype)

    SharedDropoutLoraLinear.__module__ = __name__
    SharedDropoutLoraLinear.__qualname__ = "SharedDropoutLoraLinear"
    return SharedDropoutLoraLinear


def use_shared_dropout_forward(model: nn.Module) -> int:
    """Swap every peft lora.Linear in `model` for SharedDropoutLoraLinear (same parameters and state
    dict); siblings under one parent share a mask cache, emptied when the parent's forward returns.
    Returns how many layers were swapped."""
    linear_cls, shared_cls = _peft_linear_class(), _shared_class()
    swapped = 0
    for parent in model.modules():
        children = [c for c in parent.children() if type(c) is linear_cls]
        if not children:
            continue
        cache = _MaskCache()
        parent.register_forward_pre_hook(cache.clear)
        parent.register_forward_hook(cache.clear)
        for child in children:
            child.__class__ = shared_cls
            child._mask_cache = cache
            swapped += 1
    return swapped
