"""Which retrieved documents become a query's hard negatives.

Ranks are 1-based positions in the query's retrieval list, known positives included, so
`rank_start=30, rank_end=100` means "from the 30th to the 100th hit", skipping the top 29 (where
unjudged relevant documents crowd) as in the paper's "negatives from the top-100".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, NonNegativeFloat, PositiveInt, ValidationInfo, field_validator

from embedforge.config_schema import Schema

SAMPLE_MODES = ("random", "top")


class SelectSettings(Schema):
    """`negatives:` of conf/mine.yaml (checked when built: the ranks, the sample mode, the score limits)."""

    rank_start: PositiveInt = 30
    rank_end: PositiveInt = 100
    num_negatives: PositiveInt = 7
    sample: Literal[SAMPLE_MODES] = "random"  # random: a seeded draw from the window; top: its highest-ranked ones
    margin: NonNegativeFloat | None = None  # keep only scores <= positive score - margin
    max_score_ratio: Annotated[float, Field(gt=0, le=1)] | None = None  # keep only scores <= ratio * positive score
    seed: int = 42

    @field_validator("rank_end")
    @classmethod
    def _window_not_empty(cls, rank_end: int, info: ValidationInfo) -> int:
        start = info.data.get("rank_start")
        if start is not None and rank_end < start:
            raise ValueError(f"must be >= rank_start ({start}), got {rank_end}")
        return rank_end


@dataclass
class Candidate:
    row: int
    rank: int  # 1-based
    score: float


def window_candidates(rows: np.ndarray, scores: np.ndarray, positive_score: float, known_positives,
                      settings: SelectSettings) -> list[Candidate]:
    """Every retrieved row in the rank window that is no known positive and passes the margins."""
    ceiling = np.inf
    if settings.margin is not None:
        ceiling = min(ceiling, positive_score - float(settings.margin))
    if settings.max_score_ratio is not None:
        ceiling = min(ceiling, positive_score * float(settings.max_score_ratio))
    out = []
    last = min(int(settings.rank_end), len(rows))
    for pos in range(int(settings.rank_start) - 1, last):
        row = int(rows[pos])
        if row < 0 or row in known_positives or scores[pos] > ceiling:
            continue
        out.append(Candidate(row, pos + 1, float(scores[pos])))
    return out


def select_negatives(candidates: list[Candidate], settings: SelectSettings, target_index: int) -> list[Candidate]:
    """`num_negatives` of the candidates: the best-ranked (top) or a draw seeded by (seed, target)."""
    n = min(int(settings.num_negatives), len(candidates))
    if settings.sample == "top" or n == len(candidates):
        chosen = candidates[:n]
        if settings.sample == "random":  # still shuffle, so the first slot is not always the hardest
            rng = np.random.default_rng([int(settings.seed), target_index])
            chosen = [chosen[i] for i in rng.permutation(n)]
        return chosen
    rng = np.random.default_rng([int(settings.seed), target_index])
    return [candidates[i] for i in rng.choice(len(candidates), size=n, replace=False)]
