"""The commits behind a report's rows: each row's records name the git sha they were made from and
whether the tree had uncommitted changes (run_record.git_state), so a reader can tie a figure to code.
Counted while the records are read (report/runs.py), beside their package versions."""

from __future__ import annotations


def count_commit(commits: dict[tuple[str, str], int], record: dict) -> None:
    """Add one record to a row's {(short sha, "clean" | "dirty" | "unknown"): records}."""
    git = record.get("git") or {}
    dirty = git.get("dirty")
    key = (str(git.get("sha") or "?")[:12], "unknown" if dirty is None else ("dirty" if dirty else "clean"))
    commits[key] = commits.get(key, 0) + 1


def add_commits(commits: dict[tuple[str, str], int], more: dict[tuple[str, str], int]) -> None:
    for key, n in more.items():
        commits[key] = commits.get(key, 0) + n


def commits_section(rows: dict) -> list[str]:
    lines = ["## Commits", "", "The code each row's run records were made from (`git.sha`; a dirty tree had uncommitted "
             "changes, so its figures cannot be tied to the commit alone).", "",
             "| row | commit (tree): records |", "|---|---|"]
    for key, row in rows.items():
        cell = ", ".join(f"`{sha}` ({state}): {n}" for (sha, state), n in sorted(row.commits.items())) or "–"
        lines.append(f"| {key} | {cell} |")
    return lines + [""]
