"""Per-device training memory: an explicit model, term by term (docs/performance.md, "Preflight").

Activations are counted as the tensors autograd saves for backward, per token and per layer, for the
project's LoRA forward (model/lora.py: q/k/v share one dropped input copy, as do gate/up; masks are
bit-packed; the input x itself is not kept) with e = bytes per activation element (4 in fp32, 2 under
bf16/fp16 autocast). The terms were read off a saved-tensor probe (saved_tensors_hooks) of SmolLM2 and
MiniLM and checked against peak RSS by benchmarks/preflight_memory.py.

Llama-like decoder (Llama, Mistral, SmolLM2), per token per layer, LoRA on all linear layers:
    2 x 4h      the two RMSNorm inputs, upcast to fp32 (the norm weight is frozen: its output is not kept)
    3 x e h     the dropped input copies: q/k/v (shared), o_proj, gate/up (shared)
    4 x e m     SiLU input, SiLU output, up output, down_proj's dropped copy
    e (2h + 2kv) attention: q, out and k, v (kv wide with FlashAttention-2 or without padding, where
                SDPA runs grouped-query attention; h wide after repeat_kv when a padding mask is given)
    4 a         the attention's log-sum-exp (fp32, one per head)
    (3h + m)/8  the bit-packed dropout masks; 7 r x (4 or e) the rank-r products; 8 the norms' rstd
    + with SDPA and a padding mask, one additive mask per layer: e L bytes per token.
BERT-like encoder (MiniLM; CPU math attention with dropout), per token per layer:
    7 e h (two LayerNorm inputs, three LoRA dropped copies, two dropout outputs) + 3 e h (q, k, v)
    + 2 e m (GELU input, intermediate dropped copy) + 3 e a L (scores, softmax, dropped probabilities)
    + (3h + m)/8 + 6 r x 4 + 16.
Without LoRA dropout (p = 0) the dropped copies are the inputs themselves; the model keeps them
(an upper bound). Full fine-tuning also keeps each norm's output (e h per norm).

Checkpointing (non-reentrant, per decoder layer) keeps only each layer's input (e h per token per
layer) plus, while one layer is recomputed and backpropagated, that layer's activations. Without
checkpointing, backward needs working buffers in the layer it is in beyond what it has freed:
`TRANSIENT_MLP_WIDTHS` x e m per token (the gradient of the MLP's widest tensor). Outside the layers:
4 h per token (the final RMSNorm's fp32 input; BERT's embedding LayerNorm input). The adapter's fp32
weights and AdamW moments (12 bytes a parameter) live all run; its gradients (4 bytes) are counted
under GradCache (earlier chunks' gradients coexist with later chunks' activations) and for full
fine-tuning, not for a plain LoRA step, whose peak comes as backward starts, before they exist. GradCache runs the activations of one chunk of sequences at
a time (its no-grad first pass keeps nothing); without it, of the whole per-device batch (queries and
documents are encoded one after the other, and both graphs live until the loss's backward).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from embedforge.plan.arch import Arch

GiB = 2**30
# CUDA context, cuBLAS/NCCL workspaces and allocator fragmentation per GPU: a stated constant, not modelled.
FRAMEWORK_OVERHEAD_BYTES = 3 * GiB
# Backward's working buffers in the layer in progress: gradients of the MLP's widest tensors, this
# many m-wide tensors per token (checked on CPU by benchmarks/preflight_memory.py).
TRANSIENT_MLP_WIDTHS = 1
# AdamW on fp32 trainable weights: the weight and two moments live all run (4 bytes each); the
# gradient (4 bytes) during backward and the step (Lightning frees it between steps).
STATE_BYTES_PER_TRAINABLE = 12
GRAD_BYTES_PER_TRAINABLE = 4


@dataclass(frozen=True)
class Workload:
    """What one device runs in one step."""

    sequences: int            # per device per step: queries + documents (B x (2 + hard negatives))
    length: int               # tokens per sequence (max_length: the worst case, no padding saved)
    queries: int              # per device (for the loss's logits)
    world: int                # data-parallel ranks
    act_bytes: int            # bytes per activation element (4 fp32, 2 bf16/fp16)
    weight_bytes: int         # bytes per frozen weight
    chunk: int | None = None  # GradCache chunk (sequences), None = off
    checkpointing: bool = False
    lora_r: int | None = 16   # None = full fine-tuning
    lora_dropout: float = 0.1
    shard_weights: bool = False   # FSDP / ZeRO-3: weights (and optimiser state) split by world
    padded: bool = True       # a padding mask reaches attention (SDPA then expands k/v and keeps a mask)
    flash_attention: bool = False
    embedding_dim: int = 0


@dataclass
class Memory:
    terms: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.terms.values())


def layer_bytes_per_token(arch: Arch, w: Workload) -> float:
    """Saved activations of one layer for one token (module docstring)."""
    h, m, a, e, L = arch.hidden, arch.intermediate, arch.heads, w.act_bytes, w.length
    r = w.lora_r or 0
    masks = (3 * h + m) / 8 if (w.lora_r and w.lora_dropout > 0) else 0
    if arch.encoder_only:
        return 7 * e * h + 3 * e * h + 2 * e * m + 3 * e * a * L + masks + 6 * r * 4 + 16
    kv = arch.kv_dim if (w.flash_attention or not w.padded) else h
    per = 2 * 4 * h + 3 * e * h + 4 * e * m + e * (2 * h + 2 * kv) + 4 * a + masks + 7 * r * 4 + 8
    if w.lora_r is None:
        per += 2 * e * h  # the norms' outputs (their weights train)
    if w.padded and not w.flash_attention:
        per += e * L
    return per


def activation_bytes(arch: Arch, w: Workload) -> dict[str, int]:
    seqs = min(w.chunk, w.sequences) if w.chunk else w.sequences
    tokens = seqs * w.length
    layer = layer_bytes_per_token(arch, w) * tokens
    out: dict[str, int] = {}
    if w.checkpointing:
        out["activations: layer inputs kept"] = int(w.act_bytes * arch.hidden * tokens * arch.layers)
        # In fp32 the first norm keeps the layer input itself, already counted above.
        shared = 4 * arch.hidden * tokens if (w.act_bytes == 4 and not arch.encoder_only) else 0
        out["activations: one layer recomputed"] = int(layer - shared)
    else:
        out["activations: all layers"] = int(layer * arch.layers)
    # Outside the layers: the final norm's fp32 input (decoders), the embedding LayerNorm's input (BERT).
    out["activations: outside the layers"] = int(4 * arch.hidden * tokens)
    if not w.checkpointing:  # with it, the recomputed layer's own tensors, freed as its backward runs, cover them
        out["backward transient (MLP gradients)"] = int(TRANSIENT_MLP_WIDTHS * w.act_bytes * arch.intermediate * tokens)
    return out


def loss_bytes(w: Workload) -> int:
    """Embeddings (fp32) of every rank's documents and local queries, their GradCache gradients, and
    the logits matrix with softmax's saved copy and its gradient."""
    dim = w.embedding_dim
    docs_all = (w.sequences - w.queries) * w.world
    embeddings = 4 * dim * (w.sequences + docs_all) * (2 if w.chunk else 1)
    logits = 4 * w.queries * docs_all * 3
    return int(embeddings + logits)


def estimate(arch: Arch, w: Workload) -> Memory:
    shard = w.world if w.shard_weights else 1
    frozen = arch.total_params - arch.trainable_params
    terms = {"weights (frozen)": int(frozen * w.weight_bytes / shard)}
    trainable = arch.total_params if w.lora_r is None else arch.trainable_params
    if w.lora_r is None:  # full fine-tuning: fp32 master weights (autocast computes in bf16)
        terms["weights (frozen)"] = 0
    name = "trainable" if w.lora_r is None else "adapter"
    terms[f"{name}: fp32 weights + AdamW moments"] = int(trainable * STATE_BYTES_PER_TRAINABLE / shard)
    if w.chunk or w.lora_r is None:
        # A plain LoRA step peaks as backward starts, before any gradient exists (measured); under GradCache
        # the gradients of earlier chunks are there while later chunks run, and full fine-tuning's are huge.
        terms[f"{name}: gradients"] = int(trainable * GRAD_BYTES_PER_TRAINABLE / shard)
    terms.update(activation_bytes(arch, w))
    terms["loss: embeddings + logits"] = loss_bytes(w)
    return Memory(terms)
