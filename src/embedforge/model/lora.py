"""LoRA via peft: which linear layers to adapt, wrapping the backbone, and a leaner training forward.

peft's LoRA layer computes `base(x) + lora_B(lora_A(dropout(x))) * scaling` with separate modules:
each adapted layer draws its own dropout mask and keeps its own fp32 dropped copy of the input for
backward (on CPU also a fp32 mask), and the scaling and the sum make two more full-size output
tensors. q/k/v (and gate/up in Mistral) read the same input, so a layer pays that up to three times.
`SharedDropoutLoraLinear` (swapped in for peft's class, so saving, loading and merging are peft's own)
computes the same function as one autograd node for base and adapter (`_LoraLinear`), with one
dropout mask and one dropped copy per distinct input tensor within a parent module (q/k/v share
them), the copy saved instead of the input and the mask bit-packed. docs/performance.md has the
measurements.

Why sharing a mask is sound: at inference LoRA is W x + s B A x either way; dropout is a training-time
regulariser, and each adapter still sees `x * m / (1 - p)` with m ~ Bernoulli(1 - p) elementwise, the
same distribution as before; only the masks of sibling adapters on the same input are now equal
instead of independent (as if dropout were applied once to the shared input). Each adapter's gradient
is unchanged in distribution.
"""

from __future__ import annotations

import sys
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
    """The last input's dropout (keep mask, dropped copy) drawn inside one parent module's forward, so
    sibling adapters reading the same tensor (q/k/v) share both; emptied when the parent returns."""

    def __init__(self) -> None:
        self.entry: tuple | None = None

    def dropped(self, x: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor, float]:
        entry = self.entry
        # `is` on the tensor (held strongly until the parent returns, so ids cannot be reused) and its
        # version counter (an in-place change makes it a different input).
        if entry is not None and entry[0] is x and entry[1] == x._version and entry[2] == p:
            return entry[3]
        value = dropout_input(x, p)
        self.entry = (x, x._version, p, value)
        return value

    def clear(self, *_args) -> None:
        self.entry = None


# Dropout works a block of rows at a time, so its temporaries stay small whatever the batch: ~256K
# elements on CPU (reused by the allocator and cache-resident), ~32M on accelerators (few kernel
# launches; their caching allocator reuses temporaries anyway).
_BLOCK_ELEMENTS = 1 << 18
_DEVICE_BLOCK_ELEMENTS = 1 << 25
# Keep decisions compare uniform 16-bit integers to a threshold: p is used as round(p * 2^16) / 2^16.
_LEVELS = 1 << 16


def _row_blocks(rows: int, width: int, device: torch.device):
    block = _BLOCK_ELEMENTS if device.type == "cpu" else _DEVICE_BLOCK_ELEMENTS
    step = max(1, block // max(width, 1))
    return ((start, min(start + step, rows)) for start in range(0, rows, step))


def _drop_levels(p: float) -> int:
    return round(p * _LEVELS)


def effective_p(p: float) -> float:
    """The drop probability the masks really have (p on a 2^-16 grid); 1 / (1 - it) rescales kept values."""
    return _drop_levels(p) / _LEVELS


def draw_keep_mask(rows: int, width: int, p: float, device) -> torch.Tensor:
    """(rows, width) bool, True where an element is kept (probability 1 - `effective_p(p)`), from the
    global RNG so GradCache and activation checkpointing replay it.

    Why not torch.bernoulli or rand() >= p: those cost one generator call per element. One 64-bit
    word over its full range holds four independent uniform 16-bit lanes, so this draws a quarter of
    the words (4x faster on CPU) for a p rounded to 1/65536."""
    count = rows * width
    words = torch.empty((count + 3) // 4, device=device, dtype=torch.int64).random_(-(1 << 63), None)
    lanes = words.view(torch.int16)[:count].view(rows, width)  # int16: [-32768, 32767]
    return lanes >= -(_LEVELS // 2) + _drop_levels(p)


# Masks are kept for backward packed 8 to a byte: bit i of byte j is element 8j + i. Multiplying a
# word of eight 0/1 bytes by _GATHER moves byte i's bit to bit 56 + i; _SPREAD copies a byte into all
# eight, _SELECT keeps bit i in byte i, and adding _ROUND carries any set bit to the byte's top.
_GATHER, _SPREAD, _ROUND, _LOW = 0x0102040810204080, 0x0101010101010101, 0x7F7F7F7F7F7F7F7F, 0x0101010101010101
_SELECT = 0x8040201008040201 - (1 << 64)  # as a signed 64-bit constant
_CAN_PACK = sys.byteorder == "little"     # the byte-to-word views assume it


def pack_mask(mask: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Bool tensor (numel a multiple of 8) -> uint8 tensor of its bits, 1/8 of the size."""
    words = mask.reshape(-1).view(torch.uint8).view(-1, 8).view(torch.int64).view(-1)
    bits = (words * _GATHER).bitwise_right_shift_(56)  # one word-sized temporary
    return bits.to(torch.uint8) if out is None else out.copy_(bits)


def unpack_mask(packed: torch.Tensor, shape) -> torch.Tensor:
    """The inverse of pack_mask."""
    words = packed.to(torch.int64)  # the only temporary; it becomes the mask
    words.mul_(_SPREAD).bitwise_and_(_SELECT).add_(_ROUND).bitwise_right_shift_(7).bitwise_and_(_LOW)
    return words.view(torch.uint8).view(torch.bool).view(shape)


def keep_mask(keep: torch.Tensor, shape) -> torch.Tensor:
    """A stored keep mask (flat: packed uint8 or bool) as a bool tensor of `shape`."""
    return keep.view(shape) if keep.dtype == torch.bool else unpack_mask(keep, shape)


def _stored_rows(keep: torch.Tensor, width: int, start: int, stop: int) -> torch.Tensor:
    """The part of a stored keep mask (packed: 8 elements a byte; bool: 1) that holds rows start:stop."""
    per_item = 8 if keep.dtype == torch.uint8 else 1
    return keep[start * width // per_item:stop * width // per_item]


def dropout_input(x: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(keep mask for backward, x with dropped elements zeroed, 1 / (1 - effective p)).

    The mask is bit-packed (uint8) when the width is a multiple of 8, else bool: at 1 bit an element
    LoRA's dropout costs less memory than full fine-tuning's gradients and optimizer state save.
    The rescaling is left to the rank-r side, where it costs r numbers a token instead of d_in. The
    copy is detached: the gradient to x is the adapter's own business (_LoraLinear.backward)."""
    width = x.shape[-1]
    x2 = x.detach().reshape(-1, width)
    dropped = torch.empty_like(x2)
    packed = _CAN_PACK and width % 8 == 0
    keep = torch.empty(x2.numel() // 8 if packed else x2.numel(), device=x.device,
                       dtype=torch.uint8 if packed else torch.bool)
    for start, stop in _row_blocks(x2.shape[0], width, x.device):
        block = draw_keep_mask(stop - start, width, p, x.device)
        # A 0/1 multiply via uint8 -> float is vectorised; masked_fill and bool -> float are not (4x slower).
        torch.mul(x2[start:stop], block.view(torch.uint8).to(x.dtype), out=dropped[start:stop])
        stored = _stored_rows(keep, width, start, stop)
        if packed:
            pack_mask(block, out=stored)
        else:
            stored.copy_(block.view(-1))
    return keep, dropped.view(x.shape), 1.0 / (1.0 - effective_p(p))


def _zero_dropped(grad2: torch.Tensor, keep: torch.Tensor) -> None:
    """grad2 (T, d) *= keep mask, in place, a block of rows at a time."""
    width = grad2.shape[1]
    for start, stop in _row_blocks(grad2.shape[0], width, grad2.device):
        block = keep_mask(_stored_rows(keep, width, start, stop), (stop - start, width))
        grad2[start:stop].mul_(block.view(torch.uint8).to(grad2.dtype))


class _LoraLinear(torch.autograd.Function):
    """out = x W^T + bias + scale * keep_scale * (x_dropped A^T) B^T as one autograd node.

    Against peft's `base(x) + B(A(dropout(x))) * s`: no separate base node (whose output, a view,
    would need a CopySlices clone when the low-rank term is added in place), one gradient for x
    (base and adapter summed by one addmm), the low-rank term added into the base output in place,
    and, saved for backward, the frozen weight (as autograd keeps it), the dropped input (shared
    with sibling adapters; x itself is not kept), the bit-packed mask and the rank-r product."""

    @staticmethod
    def forward(ctx, x, weight, bias, dropped, keep, weight_a, weight_b, scale, keep_scale, base_dtype, lora_dtype):
        with torch.autocast(device_type=x.device.type, enabled=False):
            x2 = x.reshape(-1, x.shape[-1])
            w = weight.to(base_dtype)
            out = x2.to(base_dtype) @ w.t() if bias is None else torch.addmm(bias.to(base_dtype), x2.to(base_dtype), w.t())
            a, b = weight_a.to(lora_dtype), weight_b.to(lora_dtype)
            low = dropped.reshape(x2.shape).to(lora_dtype) @ a.t()
            if keep is not None:
                low.mul_(keep_scale)  # inverted dropout's 1 / (1 - p), on the rank-r side
            if out.dtype == lora_dtype:
                torch.addmm(out, low, b.t(), alpha=scale, out=out)  # in place (addmm_ escapes FLOP counters)
            else:
                out.add_((low @ b.t()).mul_(scale).to(out.dtype))
        # x is needed only for a trainable base weight (LoRA freezes it; kept general).
        ctx.save_for_backward(w, dropped, keep, weight_a, weight_b, low, x if weight.requires_grad else None)
        ctx.scale, ctx.keep_scale, ctx.lora_dtype = scale, keep_scale, lora_dtype
        ctx.x_dtype, ctx.weight_dtype = x.dtype, weight.dtype
        ctx.bias_dtype = None if bias is None else bias.dtype
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad):
        w, dropped, keep, weight_a, weight_b, low, x = ctx.saved_tensors
        lora_dtype = ctx.lora_dtype
        g = grad.reshape(-1, grad.shape[-1])
        g_lora = g.to(lora_dtype)
        a, b = weight_a.to(lora_dtype), weight_b.to(lora_dtype)
        grad_low = (g_lora @ b).mul_(ctx.scale)                # (T, r)
        if keep is not None:
            grad_low.mul_(ctx.keep_scale)
        needs = ctx.needs_input_grad
        g_base = g.to(w.dtype)
        grad_x = grad_w = grad_bias = grad_a = grad_b = None
        if needs[0]:
            from_adapter = grad_low @ a                          # (T, d_in)
            if keep is not None:
                _zero_dropped(from_adapter, keep)
            if from_adapter.dtype == w.dtype:
                grad_x = torch.addmm(from_adapter, g_base, w, out=from_adapter)
            else:
                grad_x = (g_base @ w).add_(from_adapter.to(w.dtype))
            grad_x = grad_x.view(*grad.shape[:-1], w.shape[1]).to(ctx.x_dtype)
        if needs[1]:
            grad_w = (g_base.t() @ x.reshape(-1, x.shape[-1]).to(w.dtype)).to(ctx.weight_dtype)
        if needs[2] and ctx.bias_dtype is not None:
            grad_bias = g.sum(0).to(ctx.bias_dtype)
        if needs[5]:
            grad_a = (grad_low.t() @ dropped.reshape(-1, dropped.shape[-1]).to(lora_dtype)).to(weight_a.dtype)
        if needs[6]:
            grad_b = (g_lora.t() @ low).mul_(ctx.scale).to(weight_b.dtype)
        return grad_x, grad_w, grad_bias, None, None, grad_a, grad_b, None, None, None, None


def _has_hooks(*modules: nn.Module) -> bool:
    # e.g. DeepSpeed ZeRO-3 gathers a module's parameters in its forward hooks: reading weights
    # directly would skip them.
    return any(m._forward_pre_hooks or m._forward_hooks for m in modules)


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
            # Under torch.compile peft's forward traces without graph breaks; ours would break at the
            # mask's random_ and the cache's _version check.
            if args or kwargs or torch.compiler.is_compiling():
                return super().forward(x, *args, **kwargs)
            adapters = [a for a in self.active_adapters if a in self.lora_A]
            # peft releases without `lora_variant` (before 0.16) cannot tell us about DoRA & co: theirs.
            variants = getattr(self, "lora_variant", None)
            # The exact class: FP8 / compressed / bit layers subclass nn.Linear and dequantise in their
            # own forward, which reading base.weight here would skip.
            if (self.disable_adapters or self.merged or len(adapters) != 1 or variants is None
                    or adapters[0] in variants or type(self.base_layer) is not nn.Linear):
                return super().forward(x, *args, **kwargs)
            name = adapters[0]
            base, lora_a, lora_b = self.base_layer, self.lora_A[name], self.lora_B[name]
            device_type = x.device.type
            autocast = torch.is_autocast_enabled(device_type)
            if (lora_b.bias is not None or _has_hooks(self, base, lora_a, lora_b)
                    or (not autocast and x.dtype != base.weight.dtype)):
                return super().forward(x, *args, **kwargs)
            dropout = self.lora_dropout[name]
            p = float(getattr(dropout, "p", 0.0))
            keep, dropped, keep_scale = None, x, 1.0
            if dropout.training and p > 0.0:
                keep, dropped, keep_scale = (self._mask_cache.dropped(x, p) if self._mask_cache is not None
                                             else dropout_input(x, p))
            autocast_dtype = torch.get_autocast_dtype(device_type) if autocast else None
            base_dtype, lora_dtype = autocast_dtype or base.weight.dtype, autocast_dtype or lora_a.weight.dtype
            return _LoraLinear.apply(x, base.weight, base.bias, dropped, keep, lora_a.weight, lora_b.weight,
                                     float(self.scaling[name]), keep_scale, base_dtype, lora_dtype)

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
        # always_call: non-reentrant checkpointing stops its recompute (an exception) inside the last
        # adapted layer it needs; the cache must still be emptied, or it keeps that input alive.
        parent.register_forward_hook(cache.clear, always_call=True)
        for child in children:
            child.__class__ = shared_cls
            child._mask_cache = cache
            swapped += 1
    return swapped
