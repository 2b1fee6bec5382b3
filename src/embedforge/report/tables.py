"""Table 1 (categories + average) and Table 5 (ablation deltas): ours, the paper's, and the differences.

Ours are computed from task scores: a category is the mean of our tasks of that type, the average
the mean over all our tasks (MTEB's average is over datasets, not over categories). A row evaluated
on other tasks than the paper's 56 says how many it has; a missing run or category is shown as
missing, never filled in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from embedforge.report.bootstrap import delta_interval, missing_items, unpaired
from embedforge.report.paper import Paper
from embedforge.report.runs import OurRow

MISSING = "missing"
NONE = "–"


@dataclass
class Summary:
    """A row's scores by category."""

    categories: dict[str, float]
    counts: dict[str, int]
    average: float | None
    n_tasks: int
    uncategorised: list[str] = field(default_factory=list)


def summarise(row: OurRow | None, task_type) -> Summary | None:
    if row is None or not row.scores:
        return None
    by_type: dict[str, list[float]] = {}
    uncategorised = []
    for task, score in row.scores.items():
        category = task_type(task)
        if category is None:
            uncategorised.append(task)
        else:
            by_type.setdefault(category, []).append(score)
    values = list(row.scores.values())
    return Summary({c: sum(v) / len(v) for c, v in by_type.items()}, {c: len(v) for c, v in by_type.items()},
                   sum(values) / len(values), len(values), uncategorised)


def _fmt(value: float | None, digits: int = 2, signed: bool = False) -> str:
    if value is None:
        return NONE
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def task_set_note(summary: Summary | None, paper: Paper, paper_tasks: set[str] | None, row: OurRow | None) -> str:
    if summary is None:
        return MISSING
    if summary.n_tasks != paper.n_tasks:
        return f"{summary.n_tasks} of {paper.n_tasks} tasks"
    if paper_tasks is not None and row is not None and set(row.scores) != paper_tasks:
        return f"{summary.n_tasks} tasks, not the paper's set"
    return f"{summary.n_tasks} tasks"


def table1(paper: Paper, rows: dict[str, OurRow], task_type, paper_tasks: set[str] | None = None) -> str:
    cats = paper.categories
    head = "| variant | | tasks | " + " | ".join(_SHORT.get(c, c) for c in cats) + " | Avg |"
    lines = [head, "|---|---|---|" + "---:|" * (len(cats) + 1)]
    for key, prow in paper.table1.items():
        ours = rows.get(key)
        summary = summarise(ours, task_type)
        note = task_set_note(summary, paper, paper_tasks, ours)
        lines.append(f"| {prow.label} | paper | {paper.n_tasks} | "
                     + " | ".join(_fmt(prow.scores[c], 1) for c in cats) + f" | {_fmt(prow.average, 1)} |")
        if summary is None:
            reason = MISSING if ours is None else "no scores"
            lines.append(f"| | ours | {reason} | " + " | ".join(MISSING for _ in cats) + f" | {MISSING} |")
            continue
        lines.append(f"| | ours | {note} | " + " | ".join(_fmt(summary.categories.get(c)) for c in cats)
                     + f" | {_fmt(summary.average)} |")
        deltas = [None if c not in summary.categories else summary.categories[c] - prow.scores[c] for c in cats]
        lines.append("| | ours − paper | | " + " | ".join(_fmt(d, signed=True) for d in deltas)
                     + f" | {_fmt(summary.average - prow.average, signed=True)} |")
    return "\n".join(lines) + "\n"


_SHORT = {"Classification": "Class", "Clustering": "Clust", "PairClassification": "PairCl", "Reranking": "Rerank",
          "Retrieval": "Retr", "Summarization": "Summ"}


@dataclass
class Delta:
    key: str
    label: str
    paper: float | None  # paper's delta vs its base (None: not in the paper)
    ours: float | None  # our delta vs our base on the tasks both have (None: missing)
    ours_average: float | None
    base_key: str
    note: str
    low: float | None = None  # 95% paired-bootstrap interval of `ours` (report/bootstrap.py)
    high: float | None = None
    effect: str = ""  # "detectable", "no detectable effect", or why there is no interval
    seeds: int = 1
    base_seeds: int = 1


def ours_delta(row: OurRow | None, base: OurRow | None) -> tuple[float | None, float | None, str]:
    """(delta on common tasks, the row's own average, note)."""
    if row is None or not row.scores:
        return None, None, MISSING if row is None else "no scores"
    average = sum(row.scores.values()) / len(row.scores)
    if base is None or not base.scores:
        return None, average, "base run missing"
    common = sorted(set(row.scores) & set(base.scores))
    if not common:
        return None, average, "no task in common with the base"
    delta = sum(row.scores[t] - base.scores[t] for t in common) / len(common)
    same = set(row.scores) == set(base.scores)
    return delta, average, f"{len(common)} tasks" + ("" if same else " in common with the base")


NO_EFFECT = "no detectable effect"


def with_interval(d: Delta, row: OurRow | None, base: OurRow | None) -> Delta:
    """Fill `d`'s paired-bootstrap interval where both rows keep item scores for every common task."""
    if d.ours is None or row is None or base is None:
        return d
    d.seeds, d.base_seeds = row.seeds, base.seeds
    common = sorted(set(row.scores) & set(base.scores))
    row_items, base_items = [r["items"] for r in row.runs], [r["items"] for r in base.runs]
    lacking = missing_items(row_items + base_items, common) if row_items and base_items else common
    if lacking:
        d.effect = ("no interval: records without item scores" if lacking == common
                    else f"no interval: no item scores for {', '.join(lacking[:3])}")
        return d
    different = unpaired(row_items, base_items, common)
    if different:
        d.effect = f"no interval: other test items than the base in {', '.join(different[:3])}"
        return d
    interval = delta_interval(row_items, base_items, common)
    d.low, d.high = interval.low, interval.high
    d.effect = "detectable" if interval.detectable else NO_EFFECT
    return d


def deltas(paper: Paper, rows: dict[str, OurRow], baseline: str | None = None) -> list[Delta]:
    """Table 5 rows: the paper's ablations, then our rows that are not paper rows at all."""
    out = []
    for key, prow in paper.table5.items():
        base_key = baseline or prow.base
        delta, average, note = ours_delta(rows.get(key), rows.get(base_key))
        out.append(with_interval(Delta(key, prow.label, prow.average - paper.base_average(prow), delta, average,
                                       base_key, note), rows.get(key), rows.get(base_key)))
    known = set(paper.table1) | set(paper.table5)
    base_key = baseline or "synthetic_msmarco"
    for key, row in rows.items():
        if key in known or key == base_key:
            continue
        delta, average, note = ours_delta(row, rows.get(base_key))
        out.append(with_interval(Delta(key, row.label, None, delta, average, base_key, note + "; not in the paper"),
                                 row, rows.get(base_key)))
    return out


def _ours_cell(d: Delta) -> str:
    if d.ours is None:
        return MISSING if d.note == MISSING else NONE
    cell = _fmt(d.ours, signed=True)
    if d.low is not None:
        cell += f" [{_fmt(d.low, signed=True)}, {_fmt(d.high, signed=True)}]"
    return cell


def _seeds_cell(d: Delta) -> str:
    return f"{d.seeds} / {d.base_seeds}" if d.ours is not None else NONE


def table5(paper: Paper, rows: dict[str, OurRow], baseline: str | None = None) -> str:
    lines = ["| ablation | paper avg | paper Δ | ours avg | ours Δ [95% CI] | effect | seeds (row / base) | our base | note |",
             "|---|---:|---:|---:|---:|---|---:|---|---|"]
    base_row = rows.get(baseline or "synthetic_msmarco")
    for d in deltas(paper, rows, baseline):
        prow = paper.table5.get(d.key)
        ours_avg = MISSING if d.ours_average is None and d.note == MISSING else _fmt(d.ours_average)
        base = f"{d.base_key}" + ("" if rows.get(d.base_key) else f" ({MISSING})")
        lines.append(f"| {d.label} | {_fmt(prow.average, 1) if prow else NONE} | {_fmt(d.paper, 1, True)} | {ours_avg} "
                     f"| {_ours_cell(d)} | {d.effect or NONE} | {_seeds_cell(d)} | {base} | {d.note} |")
    if base_row is not None and base_row.scores:
        avg = sum(base_row.scores.values()) / len(base_row.scores)
        lines.append(f"| *base: {base_row.label}* | | | {_fmt(avg)} | | | {base_row.seeds} | | {len(base_row.scores)} tasks |")
    return "\n".join(lines) + "\n"


def all_rows(rows: dict[str, OurRow], task_type, paper: Paper) -> str:
    """Every one of our rows by category (the small grids' view: any task set)."""
    summaries = {k: summarise(r, task_type) for k, r in rows.items()}
    cats = [c for c in paper.categories if any(s and c in s.categories for s in summaries.values())]
    cats += sorted({c for s in summaries.values() if s for c in s.categories} - set(cats))
    lines = ["| row | label | tasks | " + " | ".join(_SHORT.get(c, c) for c in cats) + " | Avg |",
             "|---|---|---:|" + "---:|" * (len(cats) + 1)]
    for key, row in rows.items():
        s = summaries[key]
        if s is None:
            lines.append(f"| {key} | {row.label} | 0 | " + " | ".join(NONE for _ in cats) + f" | {MISSING} |")
            continue
        lines.append(f"| {key} | {row.label} | {s.n_tasks} | " + " | ".join(_fmt(s.categories.get(c)) for c in cats)
                     + f" | {_fmt(s.average)} |")
    return "\n".join(lines) + "\n"


def per_task(rows: dict[str, OurRow]) -> str:
    tasks = sorted({t for r in rows.values() for t in r.scores})
    if not tasks:
        return ""
    lines = ["| row | " + " | ".join(tasks) + " |", "|---|" + "---:|" * len(tasks)]
    for key, row in rows.items():
        lines.append(f"| {key} | " + " | ".join(_fmt(row.scores.get(t)) if t in row.scores else MISSING for t in tasks)
                     + " |")
    return "\n".join(lines) + "\n"
