"""Assemble the report: collect our rows, build the tables and the plot, write report.md / report.json / PNG."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from embedforge.errors import ConfigError
from embedforge.report.categories import TaskTypes
from embedforge.report.curve import curve_section, plot_curve, read_curve
from embedforge.report.decontam_section import decontam_section
from embedforge.report.paper import Paper, load_paper
from embedforge.report.plot import plot_deltas
from embedforge.report.provenance import commits_section
from embedforge.report.runs import Collected, RunInput, collect_records, collect_wandb
from embedforge.report.tables import all_rows, deltas, per_task, summarise, table1, table5
from embedforge.report.versions import KEY_PACKAGES, MARK, version_differences


@dataclass
class ReportSettings:
    runs: list[RunInput] = field(default_factory=list)
    wandb_project: str | None = None
    wandb_filters: dict | None = None
    baseline: str | None = None  # our row every delta is taken against (null: each paper row's own base)
    labels: dict[str, str] = field(default_factory=dict)
    task_types: dict[str, str] = field(default_factory=dict)
    data_dirs: list[Path] = field(default_factory=list)
    on_error: str = "fail"
    compare_task_set: bool = True  # 56-task rows: check the names against mteb's MTEB(eng, v1)
    decontam: list[str] = field(default_factory=list)  # decontam.json files/globs shown in their own section
    title: str = "Results beside the paper"
    curve_run: str | None = None  # a training record whose in-training scores make a learning curve
    curve_untrained: list[str] = field(default_factory=list)  # untrained records: the curve's horizontal lines


def _paper_tasks(paper: Paper) -> set[str] | None:
    try:
        import mteb

        return {t.metadata.name for t in mteb.get_benchmark("MTEB(eng, v1)").tasks}
    except Exception:  # not essential: the count check still runs
        return None


def collect(settings: ReportSettings, paper: Paper) -> Collected:
    known = set(paper.table1) | set(paper.table5)
    labels = {**{k: r.label for k, r in {**paper.table1, **paper.table5}.items()}, **settings.labels}
    if settings.wandb_project:
        return collect_wandb(settings.wandb_project, known, labels, settings.wandb_filters)
    if not settings.runs:
        raise ConfigError("runs: empty; give run folders/globs (runs=[runs/paper_*/*,runs/evaluate/*]) or wandb.project")
    return collect_records(settings.runs, known, labels, settings.on_error)


def build_report(settings: ReportSettings, out_dir: Path, paper: Paper | None = None) -> dict:
    paper = paper or load_paper()
    collected = collect(settings, paper)
    rows = collected.rows
    differences = mark_version_differences(rows)
    task_type = TaskTypes(settings.task_types, settings.data_dirs)
    paper_tasks = None
    if settings.compare_task_set and any(len(r.scores) == paper.n_tasks for r in rows.values()):
        paper_tasks = _paper_tasks(paper)
    delta_rows = deltas(paper, rows, settings.baseline)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = plot_deltas(delta_rows, out_dir / "ablation_deltas.png", quantity=measured_quantity(rows, settings.baseline))
    uncategorised = sorted({t for r in rows.values() for t in (summarise(r, task_type) or _Empty).uncategorised})
    parts = [f"# {settings.title}", "",
             f"Paper: {paper.source}. Ours: {len(rows)} rows from "
             + (f"W&B project `{settings.wandb_project}`" if settings.wandb_project else f"{len(settings.runs)} input pattern(s)")
             + ". Scores are main scores x 100; categories are means over our tasks of that MTEB type, "
               "averages means over all our tasks.", "",
             *(["## Table 1: data variants", "", table1(paper, rows, task_type, paper_tasks)]
               if set(rows) & set(paper.table1) or not rows else []),  # a grid without those rows skips it
             "## Table 5: ablations (Δ = row − its base)", "",
             "Our deltas are taken on the tasks a row shares with its base, with a 95% paired-bootstrap interval "
             "over the test items (and over seeds where a row has several; report/bootstrap.py). "
             "\"no detectable effect\": the interval contains 0.", "", table5(paper, rows, settings.baseline),
             f"![ablation deltas]({png.name})", "",
             "## All our rows by category", "", all_rows(rows, task_type, paper),
             "## Per task", "", per_task(rows)]
    if uncategorised:
        parts += [f"Tasks without a known category (not in mteb, no local task.json; excluded from the category "
                  f"columns, included in averages): {', '.join(uncategorised)}", ""]
    if settings.curve_run:
        curve = read_curve(settings.curve_run, settings.curve_untrained)
        parts += curve_section(curve, plot_curve(curve, out_dir / "learning_curve.png"))
    parts += versions_table(rows, differences)
    parts += commits_section(rows)
    parts += decontam_section(settings.decontam, out_dir)
    notes = [f"- `{k}`: {'; '.join(r.notes)}" for k, r in rows.items() if r.notes]
    if notes:
        parts += ["## Notes", "", *notes, ""]
    if collected.skipped:
        parts += [f"## Inputs not used ({len(collected.skipped)})", "", *[f"- {s}" for s in collected.skipped], ""]
    parts += ["## Sources", "", *[f"- `{k}`: " + ", ".join(f"`{s}`" for s in r.sources) for k, r in rows.items()], ""]
    markdown = "\n".join(parts)
    (out_dir / "report.md").write_text(markdown, encoding="utf-8")
    data = {"rows": {k: {"label": r.label, "scores": r.scores, "sources": r.sources, "notes": r.notes,
                         "versions": r.versions, "version_differences": differences.get(k, [])}
                     for k, r in rows.items()},
            "deltas": [asdict(d) for d in delta_rows], "skipped": collected.skipped}
    (out_dir / "report.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    return {"markdown": out_dir / "report.md", "json": out_dir / "report.json", "png": png,
            "rows": len(rows), "skipped": len(collected.skipped)}


def measured_quantity(rows: dict, baseline: str | None) -> str:
    """What our deltas average, in words: the base row's tasks by name (few), or their count."""
    base = rows.get(baseline or "synthetic_msmarco")
    if base is None or not base.scores:
        return "average over the tasks a row shares with its base"
    tasks = sorted(base.scores)
    return f"mean of {', '.join(tasks)}" if len(tasks) <= 4 else f"mean over {len(tasks)} tasks"


def mark_version_differences(rows: dict) -> dict[str, list[str]]:
    """Mark (label suffix and a note) every row whose key package versions differ from the table's others."""
    differences = version_differences({k: r.versions for k, r in rows.items()})
    for key, found in differences.items():
        rows[key].label = f"{rows[key].label} {MARK}"
        rows[key].notes.append("key package versions differ from the other rows: " + "; ".join(found))
    return differences


def versions_table(rows: dict, differences: dict[str, list[str]]) -> list[str]:
    packages = [p for p in KEY_PACKAGES if any(p in r.versions for r in rows.values())]
    if not packages:
        return []
    lines = ["## Package versions", "",
             f"{MARK}: a row whose key package versions differ from the rest of this report's rows (bold below); "
             "its deltas may partly be an upstream release." if differences else
             "Every row ran on the same key package versions.", "",
             "| row | " + " | ".join(packages) + " |", "|---|" + "---|" * len(packages)]
    for key, row in rows.items():
        differing = {d.split(" ", 1)[0] for d in differences.get(key, [])}
        cells = [(f"**{row.versions[p]}**" if p in differing else row.versions[p]) if p in row.versions else "–"
                 for p in packages]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return [*lines, ""]


class _Empty:
    uncategorised: list[str] = []
