"""The report's contamination section: what `embedforge-decontam` found of the evaluated tasks in a grid's
training data (its decontam.json, written by experiments/run_grid.sh DECONTAM_TRAIN)."""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path

from embedforge.report.runs import ReportInputError


def decontam_section(patterns: list[str], relative_to: Path) -> list[str]:
    files = sorted({p for pattern in patterns for p in glob.glob(os.path.expanduser(pattern), recursive=True)})
    if not patterns:
        return []
    lines = ["## Contamination check (embedforge-decontam)", ""]
    if not files:
        return [*lines, f"No decontam.json found ({', '.join(patterns)}): the training data was not checked.", ""]
    for path in files:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            tasks, records = data["tasks"], data["training_records"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ReportInputError(f"decontam: {path}: not an embedforge-decontam report ({exc})") from None
        shown = os.path.relpath(path, relative_to)
        lines += [f"[{shown}]({shown}): {records:,} training records ({len(data.get('train_files') or [])} files), "
                  f"{data.get('flagged_records', 0):,} flagged (word {data['settings']['n']}-grams >= "
                  f"{data['settings']['threshold']}, or exact).", "",
                  "| task | part | eval items | found | share | training records involved |",
                  "|---|---|---:|---:|---:|---:|"]
        lines += [f"| {t['task']} | {t['part']} | {t['items']:,} | {t['found']:,} | {100 * t['share_found']:.2f}% "
                  f"| {t['training_records_involved']:,} |" for t in tasks]
        lines.append("")
    return lines
