"""The commits behind a report's rows: each row's records name the git sha they were made from and
whether the tree had uncommitted changes (run_record.git_state), so a reader can tie a figure to code."""

from __future__ import annotations

from pathlib import Path

from embedforge.run_record import RECORD_FILE, RunRecordError, read_run_record


def row_commits(sources: list[str]) -> dict[tuple[str, str], int]:
    """{(short sha, "clean" | "dirty" | "unknown"): records} over a row's run-record sources."""
    counts: dict[tuple[str, str], int] = {}
    for source in sources:
        path = Path(source)
        if path.name != RECORD_FILE:
            continue  # a summary.json holds scores only
        try:
            git = read_run_record(path).get("git") or {}
        except RunRecordError:
            continue  # the report has already said why it could not use it
        dirty = git.get("dirty")
        state = "unknown" if dirty is None else ("dirty" if dirty else "clean")
        key = (str(git.get("sha") or "?")[:12], state)
        counts[key] = counts.get(key, 0) + 1
    return counts


def commits_section(rows: dict) -> list[str]:
    lines = ["## Commits", "", "The code each row's run records were made from (`git.sha`; a dirty tree had uncommitted "
             "changes, so its figures cannot be tied to the commit alone).", "",
             "| row | commit (tree): records |", "|---|---|"]
    for key, row in rows.items():
        commits = row_commits(row.sources)
        cell = ", ".join(f"`{sha}` ({state}): {n}" for (sha, state), n in sorted(commits.items())) or "–"
        lines.append(f"| {key} | {cell} |")
    return lines + [""]
