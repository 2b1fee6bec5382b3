"""Matryoshka InfoNCE: InfoNCE summed over nested prefixes of the embedding, so its first 256 (or
512, ...) dimensions are a usable embedding on their own (Kusupati et al., 2022).

loss = sum_k weights[k] * info_nce(q[:, :dims[k]], d[:, :dims[k]])

Each prefix is re-normalised inside `info_nce` (cosine similarity), as sentence-transformers'
`MatryoshkaLoss(MultipleNegativesRankingLoss)` does; a test checks that the two agree.

| input     | shape    | note                                   |
|-----------|----------|----------------------------------------|
| queries   | (Q, H)   | H >= max(dims)                         |
| documents | (D, H)   |                                        |
| output    | ()       | weighted sum of the per-prefix losses  |
"""

from __future__ import annotations

from typing import Sequence

import torch

from embedforge.losses.infonce import info_nce


class MatryoshkaInfoNCELoss:
    def __init__(self, dims: Sequence[int], weights: Sequence[float] | None = None, temperature: float = 0.02):
        dims = [int(d) for d in dims]
        if not dims or any(d <= 0 for d in dims):
            raise ValueError(f"loss.dims: must be a non-empty list of positive sizes, got {dims}")
        weights = [1.0] * len(dims) if weights is None else [float(w) for w in weights]
        if len(weights) != len(dims):
            raise ValueError(f"loss.weights: one weight per entry of loss.dims ({len(dims)}), got {len(weights)}")
        if any(w < 0 for w in weights) or not any(w > 0 for w in weights):
            raise ValueError(f"loss.weights: must be >= 0 with at least one > 0, got {weights}")
        if not isinstance(temperature, (int, float)) or temperature <= 0:
            raise ValueError(f"loss.temperature: must be a number > 0, got {temperature!r}")
        self.dims, self.weights, self.temperature = dims, weights, float(temperature)

    def check_dim(self, embedding_dim: int) -> None:
        too_big = [d for d in self.dims if d > embedding_dim]
        if too_big:
            raise ValueError(f"loss.dims: {too_big} exceed the model's embedding size {embedding_dim}")

    def __call__(self, queries: torch.Tensor, documents: torch.Tensor, labels: torch.Tensor | None = None,
                 doc_mask: torch.Tensor | None = None, pair_mask: torch.Tensor | None = None) -> torch.Tensor:
        self.check_dim(queries.shape[-1])
        total = queries.new_zeros((), dtype=torch.float32)
        for dim, weight in zip(self.dims, self.weights):
            total = total + weight * info_nce(queries[:, :dim], documents[:, :dim], self.temperature, labels=labels,
                                              doc_mask=doc_mask, pair_mask=pair_mask)
        return total

    def __repr__(self) -> str:
        return f"MatryoshkaInfoNCELoss(dims={self.dims}, weights={self.weights}, temperature={self.temperature})"
