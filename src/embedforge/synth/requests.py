"""What the pipeline and the batch runner share, so neither imports the other: one paid request, and
the part of the pipeline a batch runner works on (its cache, clients and counters)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Request:
    kind: str  # brainstorm | <task type>
    payload: dict[str, Any]
    key: str
    generator: int
    est_tokens: int


class BatchHost(Protocol):
    """The pipeline as the batch runner sees it."""

    s: Any  # the run's GenerateSettings
    stats: Any  # RunStats; the runner counts batches in stats.batches
    cache: Any  # RequestCache: a batch result is stored exactly as an online reply
    clients: list  # one client per endpoint
    endpoint_of: list[int]  # generator index -> endpoint index
    _paid_now: set[str]  # keys a batch paid for in this run
    _batch_errors: dict[str, str]  # key -> why the batch gave no result
