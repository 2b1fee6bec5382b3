"""The check: index the eval side once, stream the training side in chunks, record every match.

A training text matches an eval item when their normalised texts are equal ("exact"), or when at
least `threshold` of the item's distinct word n-grams occur in the training text ("ngram";
items shorter than n words can only match exactly). A training record is flagged when any of its
checked fields matches any item.
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import Field, NonNegativeInt, PositiveInt

from embedforge.config_schema import Schema

from embedforge.decontam.eval_side import EvalItems
from embedforge.decontam.ngrams import NgramIndex
from embedforge.decontam.normalize import normalize, words
from embedforge.decontam.train_side import TrainRecord, iter_records
from embedforge.errors import ConfigError


class CheckSettings(Schema):
    """`ngram.n`, `ngram.threshold`, `chunk_size`, `max_listed_matches` of conf/decontam.yaml."""

    n: PositiveInt = 13
    threshold: Annotated[float, Field(gt=0, le=1)] = 0.5
    chunk_size: PositiveInt = 4096  # training records per vectorised lookup
    max_listed_matches: NonNegativeInt = 10000  # matches listed in the JSON (all are counted)


class EvalIndex:
    def __init__(self, items: EvalItems, n: int):
        self.items = items
        normalised = [normalize(t) for t in items.texts]
        self.exact: dict[str, list[int]] = {}
        for item, text in enumerate(normalised):
            self.exact.setdefault(text, []).append(item)
        self.ngrams = NgramIndex.build([t.split() for t in normalised], n)


@dataclass
class CheckResult:
    found_exact: np.ndarray
    found_ngram: np.ndarray
    records_total: int = 0
    records_bad: int = 0
    records_flagged: int = 0
    texts_checked: int = 0
    errors: list[str] = field(default_factory=list)
    matches: list[dict] = field(default_factory=list)
    n_matches: int = 0
    records_per_group: list[set] = field(default_factory=list)  # record numbers involved, per (task, part)
    seconds: float = 0.0
    clean_files: list[str] = field(default_factory=list)


def clean_paths(paths: list[Path], clean_dir: Path) -> dict[Path, Path]:
    """Where the cleaned copy of each input goes: the inputs' layout below their common folder."""
    resolved = [p.resolve() for p in paths]
    common = Path(os.path.commonpath([p.parent for p in resolved]))
    out = {p: clean_dir.resolve() / r.relative_to(common) for p, r in zip(paths, resolved)}
    clash = [str(p) for p, o in out.items() if o == p.resolve()]
    if clash:
        raise ConfigError(f"clean_dir: the cleaned copy would overwrite the input {clash[0]}")
    return out


def run_check(index: EvalIndex, paths: list[Path], fields: list[str], settings: CheckSettings,
              clean_dir: Path | None = None) -> CheckResult:
    n_items = len(index.items.texts)
    result = CheckResult(found_exact=np.zeros(n_items, bool), found_ngram=np.zeros(n_items, bool),
                         records_per_group=[set() for _ in index.items.groups])
    start = time.perf_counter()
    with ExitStack() as stack:
        writers = {}
        if clean_dir is not None:
            for src, dst in clean_paths(paths, clean_dir).items():
                dst.parent.mkdir(parents=True, exist_ok=True)
                writers[src] = stack.enter_context(dst.open("wb"))
                result.clean_files.append(str(dst))
        chunk: list[TrainRecord] = []
        for record in iter_records(paths, fields):
            chunk.append(record)
            if len(chunk) >= settings.chunk_size:
                _check_chunk(index, chunk, settings, result, writers)
                chunk = []
        if chunk:
            _check_chunk(index, chunk, settings, result, writers)
    result.seconds = time.perf_counter() - start
    return result


def _check_chunk(index: EvalIndex, chunk: list[TrainRecord], settings: CheckSettings, result: CheckResult,
                 writers: dict) -> None:
    owner, field_names, token_lists = [], [], []
    flagged = [False] * len(chunk)
    base = result.records_total
    found: list[tuple[int, int, int, str, float]] = []  # (record in chunk, text, item, kind, containment)
    for r, record in enumerate(chunk):
        if record.texts is None:
            result.records_bad += 1
            result.errors.append(record.error)
            continue
        for name, text in record.texts:
            tokens = words(text)
            t = len(token_lists)
            owner.append(r)
            field_names.append(name)
            token_lists.append(tokens)
            for item in index.exact.get(" ".join(tokens), ()):
                found.append((r, t, item, "exact", 1.0))
    result.texts_checked += len(token_lists)
    text_idx, item_idx, share = index.ngrams.containment(token_lists)
    keep = share >= float(settings.threshold)
    exact_pairs = {(t, item) for _, t, item, _, _ in found}
    for t, item, s in zip(text_idx[keep].tolist(), item_idx[keep].tolist(), share[keep].tolist()):
        if (t, item) not in exact_pairs:  # an exact copy is listed once, as exact
            found.append((owner[t], t, item, "ngram", s))
    items = index.items
    for r, t, item, kind, s in found:
        if kind == "exact":
            result.found_exact[item] = True
        else:
            result.found_ngram[item] = True
        flagged[r] = True
        result.records_per_group[items.group[item]].add(base + r)
        result.n_matches += 1
        if len(result.matches) < settings.max_listed_matches:
            task, part = items.groups[items.group[item]]
            record = chunk[r]
            result.matches.append({"file": str(record.path), "line": record.lineno, "field": field_names[t],
                                   "task": task, "part": part, "eval_item": items.item_ids[item], "kind": kind,
                                   "containment": round(s, 4)})
    for r, record in enumerate(chunk):
        if flagged[r]:
            result.records_flagged += 1
        elif record.texts is not None and writers:
            writers[record.path].write(record.raw if record.raw.endswith(b"\n") else record.raw + b"\n")
    result.records_total += len(chunk)
