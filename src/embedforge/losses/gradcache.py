"""GradCache (Gao et al., 2021): a contrastive batch far larger than activation memory allows.

1. Embed every input group (queries, documents) chunk by chunk without gradients, saving the RNG
   state before each chunk.
2. Compute the loss on those embeddings as leaf tensors (gathered across devices by the caller's
   `loss_from`, as usual) and backpropagate it to the embeddings only: the cached gradients.
3. Re-embed chunk by chunk with gradients, the RNG state replayed so dropout draws the same masks,
   and backpropagate `(embedding * cached gradient).sum()`: the chain rule, one chunk at a time.

The parameter gradients equal those of the full-batch loss on the same embeddings; activation memory
grows with the chunk, not the batch. The loss is any callable of embeddings (`conf/loss/*.yaml`), so
this wraps InfoNCE and Matryoshka alike without knowing which.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager, Sequence

import torch

Inputs = dict[str, torch.Tensor]


def chunks_of(inputs: Inputs, chunk_size: int) -> list[Inputs]:
    rows = next(iter(inputs.values())).shape[0]
    return [{k: v[start:start + chunk_size] for k, v in inputs.items()} for start in range(0, rows, chunk_size)]


def _rng_state(device: torch.device | None) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device | None) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class GradCache:
    def __init__(self, chunk_size: int):
        if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size <= 0:
            raise ValueError(f"loss.grad_cache.chunk_size: must be a positive integer or null, got {chunk_size!r}")
        self.chunk_size = chunk_size

    def step(self, embed: Callable[[Inputs], torch.Tensor], groups: Sequence[Inputs],
             loss_from: Callable[[list[torch.Tensor]], tuple[torch.Tensor, Any]],
             backward: Callable[[torch.Tensor], None] = torch.Tensor.backward,
             no_sync: Callable[[], ContextManager] = contextlib.nullcontext,
             device: torch.device | None = None) -> tuple[torch.Tensor, Any]:
        """Run one GradCache step; parameter gradients are left in `.grad` as `loss.backward()` would.

        embed: inputs of one chunk -> embeddings. groups: e.g. [query inputs, document inputs].
        loss_from: full embeddings per group -> (loss, extra). backward: e.g. Lightning's manual_backward.
        no_sync: a context that defers the gradient all-reduce (DDP's `no_sync`); the last chunk runs outside it.
        """
        chunked = [chunks_of(group, self.chunk_size) for group in groups]
        states: list[list[dict]] = []
        embeddings: list[torch.Tensor] = []
        with torch.no_grad():
            for group in chunked:
                states.append([])
                parts = []
                for chunk in group:
                    states[-1].append(_rng_state(device))
                    parts.append(embed(chunk))
                embeddings.append(torch.cat(parts).detach().requires_grad_(True))
        after_first_pass = _rng_state(device)

        loss, extra = loss_from(embeddings)
        cached = torch.autograd.grad(loss, embeddings)

        jobs = [(g, i) for g, group in enumerate(chunked) for i in range(len(group))]
        for n, (g, i) in enumerate(jobs):
            _set_rng_state(states[g][i], device)
            start = i * self.chunk_size
            with no_sync() if n < len(jobs) - 1 else contextlib.nullcontext():
                emb = embed(chunked[g][i])
                backward((emb * cached[g][start:start + emb.shape[0]].to(emb.dtype)).sum())
        _set_rng_state(after_first_pass, device)
        return loss.detach(), extra
