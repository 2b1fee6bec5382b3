"""A mixture: the configured sources, each loaded, validated and sampled by its ratio (and cap), with
a seeded, reproducible choice of records and a table of what each source contributed.

Ratio r of a source with n usable records keeps round(n * r) of them (at least one): r < 1 is a
seeded sample without replacement, r > 1 repeats the whole source floor(r) times plus a sample, r = 1
keeps every record in file order. `max_examples` caps the result. The choice depends only on the
seed and the source's name, so adding a source does not change what the others contribute.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

from embedforge.data.schema import Example
from embedforge.data.settings import DataSettings
from embedforge.data.sources import SourceLoad, build_source

log = logging.getLogger(__name__)

SHORTHAND = "train_files"  # data.train_files: train on these schema files only (replaces data.sources)


@dataclass
class Mixture:
    examples: list[Example] = field(default_factory=list)
    source_ids: list[int] = field(default_factory=list)  # index into `names`, one per example
    names: list[str] = field(default_factory=list)
    counts: dict[str, dict] = field(default_factory=dict)


def sample_indices(n: int, ratio: float, cap: int | None, rng: random.Random) -> list[int]:
    """Indices of the records a source contributes (see the module docstring)."""
    target = max(1, int(n * ratio + 0.5))
    if cap is not None:
        target = min(target, int(cap))
    if target == n:
        return list(range(n))
    copies, rest = divmod(target, n)
    return list(range(n)) * copies + sorted(rng.sample(range(n), rest))


def load_source(name: str, spec, on_error: str) -> SourceLoad:
    if name == SHORTHAND and SHORTHAND in spec:
        source = build_source(name, spec, on_error)
        source.base_key, source.files_key = "data", SHORTHAND
    else:
        source = build_source(name, spec, on_error)
    return source.load()


def build_mixture(data: DataSettings, seed: int) -> Mixture:
    """Load every source (all errors surface here, before any model exists), then sample."""
    on_error = data.on_error
    mixture = Mixture()
    for index, (name, spec) in enumerate(data.source_configs().items()):
        ratio = 1.0 if spec.get("ratio") is None else float(spec["ratio"])  # checked by DataSettings
        cap = spec.get("max_examples")
        loaded = load_source(name, spec, on_error)
        picked = sample_indices(len(loaded.examples), ratio, cap, random.Random(f"{seed}/{name}"))
        mixture.names.append(name)
        mixture.examples += [loaded.examples[i] for i in picked]
        mixture.source_ids += [index] * len(picked)
        mixture.counts[name] = {
            "type": str(spec.get("type")), "loaded": len(loaded.examples), "rejected": len(loaded.errors),
            "filtered": sum(loaded.filtered.values()), "ratio": ratio, "cap": cap, "sampled": len(picked),
        }
        if loaded.errors:
            log.warning("source %s: %d records rejected and reported above; %d kept", name, len(loaded.errors),
                        len(loaded.examples))
    limit = data.max_train_examples
    if limit and int(limit) < len(mixture.examples):
        # A seeded sample across the whole mixture (not the first records of the first files).
        keep = sorted(random.Random(f"{seed}/max_train_examples").sample(range(len(mixture.examples)), int(limit)))
        mixture.examples = [mixture.examples[i] for i in keep]
        mixture.source_ids = [mixture.source_ids[i] for i in keep]
    total = len(mixture.examples)
    for index, name in enumerate(mixture.names):
        used = sum(1 for s in mixture.source_ids if s == index)
        mixture.counts[name].update(used=used, share=used / total if total else 0.0)
    return mixture


def counts_table(counts: dict[str, dict]):
    """A rich Table of per-source counts (what the run prints before training)."""
    from rich.table import Table

    table = Table(title="Training data mixture")
    for column in ("source", "type", "loaded", "rejected", "filtered", "ratio", "cap", "used", "share"):
        table.add_column(column, justify="left" if column in ("source", "type") else "right")
    for name, c in counts.items():
        table.add_row(name, c["type"], str(c["loaded"]), str(c["rejected"]), str(c["filtered"]), f"{c['ratio']:g}",
                      "-" if c["cap"] is None else str(c["cap"]), str(c["used"]), f"{c['share']:.1%}")
    return table


def print_counts(counts: dict[str, dict]) -> None:
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # logs and pipes: wide enough that no column is cut
    console.print(counts_table(counts))
