"""What a check found: per (task, part) counts and shares, as a console table and as JSON."""

from __future__ import annotations

import json
from pathlib import Path

from embedforge.decontam.check import CheckResult, CheckSettings
from embedforge.decontam.eval_side import EvalItems


def summarise(items: EvalItems, result: CheckResult, settings: CheckSettings, train_files: list[Path],
              fields: list[str]) -> dict:
    rows = []
    sizes = items.group_sizes()
    per_group = {g: [0, 0, 0] for g in range(len(items.groups))}  # exact, ngram only, any
    for item, g in enumerate(items.group):
        exact, ngram = bool(result.found_exact[item]), bool(result.found_ngram[item])
        per_group[g][0] += exact
        per_group[g][1] += ngram and not exact
        per_group[g][2] += exact or ngram
    for g, (task, part) in enumerate(items.groups):
        exact, ngram_only, found = per_group[g]
        rows.append({"task": task, "part": part, "items": sizes[g], "found_exact": exact,
                     "found_ngram_only": ngram_only, "found": found,
                     "share_found": round(found / sizes[g], 6) if sizes[g] else 0.0,
                     "training_records_involved": len(result.records_per_group[g])})
    rate = result.records_total / result.seconds if result.seconds > 0 else None
    return {
        "train_files": [str(p) for p in train_files], "fields": fields,
        "settings": {"n": settings.n, "threshold": settings.threshold},
        "training_records": result.records_total, "training_texts": result.texts_checked,
        "bad_records": result.records_bad, "flagged_records": result.records_flagged,
        "eval_items": len(items.texts), "tasks": rows,
        "seconds": round(result.seconds, 3), "records_per_second": round(rate, 1) if rate else None,
        "matches_total": result.n_matches, "matches": result.matches,
        "matches_truncated": result.n_matches > len(result.matches),
        "errors": result.errors, "clean_files": result.clean_files,
    }


def print_table(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    s = summary["settings"]
    table = Table(title=f"Contamination: {summary['training_records']:,} training records vs "
                        f"{summary['eval_items']:,} eval items (exact + word {s['n']}-gram >= {s['threshold']})")
    for name, justify in (("task", "left"), ("part", "left"), ("items", "right"), ("exact", "right"),
                          ("n-gram only", "right"), ("found", "right"), ("share", "right"), ("train records", "right")):
        table.add_column(name, justify=justify)
    for row in summary["tasks"]:
        table.add_row(row["task"], row["part"], f"{row['items']:,}", str(row["found_exact"]), str(row["found_ngram_only"]),
                      str(row["found"]), _percent(row["share_found"]), str(row["training_records_involved"]))
    console = Console(width=None if Console().is_terminal else 120)
    console.print(table)
    console.print(f"flagged training records: {summary['flagged_records']:,}; bad lines: {summary['bad_records']:,}; "
                  f"{summary['records_per_second'] or 0:,.0f} records/s")


def _percent(share: float) -> str:
    return f"{100 * share:.2f}%" if share == 0 or share >= 1e-4 else f"{100 * share:.4f}%"


def write_json(summary: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    return path
