"""Paired bootstrap intervals for the difference between two rows of a report.

A row's delta is the mean over the tasks both rows have of (row score - base score). Each resample
draws the test items of every task with replacement, the same items for both rows (paired: the item-
to-item variation both rows share cancels), and, where a row has several seeds, its seeds with
replacement too; the task scores are recomputed from the resampled items (eval/item_scores.py) and
averaged over the drawn seeds. The interval is the resamples' 2.5th-97.5th percentiles (95%).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embedforge.eval.item_scores import n_items, same_items, statistic

RESAMPLES = 2000
LEVEL = 0.95


@dataclass
class Interval:
    low: float
    high: float
    resamples: int
    seeds: tuple[int, int]  # runs (seeds) of the row and of its base

    @property
    def detectable(self) -> bool:
        """False when the interval contains 0: no detectable effect."""
        return self.low > 0 or self.high < 0


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def mean_difference_interval(a: np.ndarray, b: np.ndarray, resamples: int = RESAMPLES, level: float = LEVEL,
                             rng: np.random.Generator | None = None) -> tuple[float, float]:
    """Interval for mean(a - b) over paired items: the simplest case of `delta_interval`."""
    rng = rng or np.random.default_rng(0)
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    index = rng.integers(0, len(diff), (resamples, len(diff)))
    return percentile_interval(diff[index].mean(axis=1), level)


def missing_items(runs: list[dict], tasks: list[str]) -> list[str]:
    """Tasks for which some run keeps no item scores."""
    return [t for t in tasks if any(t not in (run or {}) for run in runs)]


def unpaired(row_runs: list[dict], base_runs: list[dict], tasks: list[str]) -> list[str]:
    """Tasks whose runs were scored on different test items (a paired resample is impossible)."""
    return [t for t in tasks
            if not all(same_items(row_runs[0][t], run[t]) for run in [*row_runs[1:], *base_runs])]


def delta_interval(row_runs: list[dict], base_runs: list[dict], tasks: list[str], resamples: int = RESAMPLES,
                   level: float = LEVEL, seed: int = 0) -> Interval:
    """95% interval of mean over `tasks` of (row - base); each run is {task: item scores}. Every run must
    keep items for every task, on the same items (check with missing_items / unpaired first)."""
    rng = np.random.default_rng(seed)
    deltas = np.zeros(resamples)
    row_pick = _seed_draws(rng, len(row_runs), resamples)
    base_pick = _seed_draws(rng, len(base_runs), resamples)
    for task in tasks:
        index = rng.integers(0, n_items(row_runs[0][task]), (resamples, n_items(row_runs[0][task])))
        row = np.stack([statistic(run[task], index) for run in row_runs])  # (seeds, resamples)
        base = np.stack([statistic(run[task], index) for run in base_runs])
        deltas += _pooled(row, row_pick) - _pooled(base, base_pick)
    low, high = percentile_interval(deltas / len(tasks), level)
    return Interval(low, high, resamples, (len(row_runs), len(base_runs)))


def _seed_draws(rng: np.random.Generator, seeds: int, resamples: int) -> np.ndarray:
    """(resamples, seeds) indices of the seeds each resample averages (all of them for one seed)."""
    if seeds == 1:
        return np.zeros((resamples, 1), dtype=np.int64)
    return rng.integers(0, seeds, (resamples, seeds))


def _pooled(stats: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """Per resample, the mean of the drawn seeds' scores."""
    return stats[picks, np.arange(stats.shape[1])[:, None]].mean(axis=1)
