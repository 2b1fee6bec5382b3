"""Which retrieved documents become a query's hard negatives.

Ranks are 1-based positions in the query's retrieval list, known positives included, so
`rank_start=30, rank_end=100` means "from the 30th to the 100th hit", skipping the top 29 (where
unjudged relevant documents crowd) as in the paper's "negatives from the top-100".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embedforge.errors import ConfigError

SAMPLE_MODES = ("random", "top")


@dataclass
class SelectSettings:
    rank_start: int = 30
    rank_end: int = 100
    num_negatives: int = 7
    sample: str = "random"  # random: a seeded draw from the window; top: its highest-ranked ones
    margin: float | None = None  # keep only scores <= positive score - margin
    max_score_ratio: float | None = None  # keep only scores <= ratio * positive score (e.g. 0.95)
    seed: int = 42

    def check(self, key: str = "negatives") -> None:
        if int(self.rank_start) < 1:
            raise ConfigError(f"{key}.rank_start: must be >= 1, got {self.rank_start}")
        if int(self.rank_end) < int(self.rank_start):
            raise ConfigError(f"{key}.rank_end: must be >= {key}.rank_start ({self.rank_start}), got {self.rank_end}")
        if int(self.num_negatives) < 1:
            raise ConfigError(f"{key}.num_negatives: must be >= 1, got {self.num_negatives}")
        if self.sample not in SAMPLE_MODES:
            raise ConfigError(f"{key}.sample: unknown mode {self.sample!r} (expected one of: {', '.join(SAMPLE_MODES)})")
        if self.margin is not None and float(self.margin) < 0:
            raise ConfigError(f"{key}.margin: must be >= 0 or null, got {self.margin}")
        if self.max_score_ratio is not None and not 0 < float(self.max_score_ratio) <= 1:
            raise ConfigError(f"{key}.max_score_ratio: must be in (0, 1] or null, got {self.max_score_ratio}")


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
