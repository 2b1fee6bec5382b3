"""Pooling: turn per-token hidden states into one vector per sequence.

Every mode locates tokens through the attention mask, never through positions, so the result is
the same whether a batch is left-padded, right-padded or not padded at all.

| input           | shape      |
|-----------------|------------|
| hidden_states   | (B, L, H)  |
| attention_mask  | (B, L)     |
| output          | (B, H)     |
"""

from __future__ import annotations

import torch
from torch import nn

from embedforge.errors import ConfigError

POOLING_MODES = ("last_token", "mean", "weighted_mean", "cls")


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last attended token of each row (works for left and right padding)."""
    length = attention_mask.shape[1]
    flipped_first = attention_mask.flip(dims=[1]).int().argmax(dim=1)
    return length - 1 - flipped_first


def first_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    return attention_mask.int().argmax(dim=1)


class Pooling(nn.Module):
    def __init__(self, mode: str):
        super().__init__()
        if mode not in POOLING_MODES:
            raise ConfigError(f"pooling.mode: unknown pooling '{mode}' (expected one of: {', '.join(POOLING_MODES)})")
        self.mode = mode

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.to(hidden_states.dtype)
        rows = torch.arange(hidden_states.shape[0], device=hidden_states.device)
        if self.mode == "last_token":
            return hidden_states[rows, last_token_index(attention_mask)]
        if self.mode == "cls":
            return hidden_states[rows, first_token_index(attention_mask)]
        if self.mode == "mean":
            weights = mask
        else:  # weighted_mean: later tokens have seen more context in a causal model (SGPT)
            weights = torch.cumsum(mask, dim=1) * mask
        summed = (hidden_states * weights.unsqueeze(-1)).sum(dim=1)
        return summed / weights.sum(dim=1, keepdim=True).clamp(min=1e-9)

    def extra_repr(self) -> str:
        return f"mode={self.mode}"
