"""Our rows: task scores per table row, from run records on disk or from a W&B project.

Input on disk: a list of globs (or {path, row, label} entries) matching run folders or JSON files:
- a training run folder / its run_record.json (kind "train"): one row, keyed by its config;
- an evaluation run folder / its run_record.json (kind "evaluate"): scores; they join the training
  row whose run_id they name (`evaluated`), else form a row of their own;
- a summary.json ({task: score x 100}): a row of its own.

A row's key (which paper row it stands beside): the entry's `row`, else a `row:<key>` tag in the
run's config, else a tag that is a paper row key, else its run_name (a leading "paper_"/"paper/" and
"ablation_" are dropped when that gives a paper row key; a leading "<tag>_" of one of its tags is
dropped, so grid runs named <grid>_<row> are keyed by row), else the folder name.
"""

from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from embedforge.errors import DataError
from embedforge.report.provenance import add_commits, count_commit
from embedforge.report.versions import add_versions, merge_versions
from embedforge.run_record import RECORD_FILE, RunRecordError, read_json_object, read_run_record

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
ROW_TAG = "row:"


class ReportInputError(DataError):
    """An input is missing or malformed; the message names the file (and line) or the config key."""


@dataclass
class RunInput:
    path: str
    row: str | None = None
    label: str | None = None


@dataclass
class OurRow:
    key: str
    label: str
    scores: dict[str, float] = field(default_factory=dict)  # task -> main score x 100
    sources: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    run_id: str | None = None
    order: str = ""  # newest wins among runs with one key
    versions: dict[str, str] = field(default_factory=dict)  # key package -> version(s) of the records behind it
    commits: dict[tuple[str, str], int] = field(default_factory=dict)  # (sha, tree state) -> records (provenance.py)
    # one entry per seed: {"seed", "scores", "items" (task -> per-item scores, eval.save_item_scores)};
    # `scores` above is their mean per task
    runs: list[dict] = field(default_factory=list)

    @property
    def seeds(self) -> int:
        return max(1, len(self.runs))


@dataclass
class Collected:
    rows: dict[str, OurRow]
    skipped: list[str]  # "<where>: <why>" for every input that could not be used


def row_key(config: dict | None, tags: list | None, run_name: str | None, known: set[str]) -> str | None:
    tags = [str(t) for t in (tags if tags is not None else (config or {}).get("tags") or [])]
    for tag in tags:
        if tag.startswith(ROW_TAG):
            return tag[len(ROW_TAG):]
    for tag in tags:
        if tag in known:
            return tag
    name = run_name or (config or {}).get("run_name")
    if not name:
        return None
    candidate = str(name)
    for prefix in ("paper_", "paper/", "paper-", "ablation_"):
        if candidate not in known and candidate.startswith(prefix):
            candidate = candidate[len(prefix):]
    if candidate in known:
        return candidate
    for tag in tags:  # a grid's runs are named <grid tag>_<row>: the row is the key
        if candidate.startswith(f"{tag}_") and len(candidate) > len(tag) + 1:
            return candidate[len(tag) + 1:]
    return str(name)


def _read(path: Path) -> dict:
    """A summary.json as a JSON object; any other file is a run record (embedforge.run_record reads both)."""
    try:
        return read_run_record(path) if path.name != SUMMARY_FILE else read_json_object(path)
    except RunRecordError as exc:
        raise ReportInputError(str(exc)) from None


def _scores(data: dict, path: Path) -> dict[str, float]:
    bad = [k for k, v in data.items() if isinstance(v, bool) or not isinstance(v, (int, float))]
    if bad:
        raise ReportInputError(f"{path}: scores must be numbers (task: score x 100); not for {bad[:3]}")
    return {str(k): float(v) for k, v in data.items()}


def _resolve_file(path: Path) -> Path:
    if path.is_dir():
        for name in (RECORD_FILE, SUMMARY_FILE):
            if (path / name).is_file():
                return path / name
        raise ReportInputError(f"{path}: holds neither {RECORD_FILE} nor {SUMMARY_FILE}")
    return path


@dataclass
class _Item:
    path: Path
    data: dict
    spec: RunInput
    kind: str  # train / evaluate / summary


def _load_items(inputs: list[RunInput], on_error: str, skipped: list[str]) -> list[_Item]:
    items, seen = [], set()
    for index, spec in enumerate(inputs):
        matches = sorted(glob.glob(os.path.expanduser(spec.path), recursive=True))
        if not matches:
            skipped.append(f"runs[{index}] {spec.path!r}: matched nothing")
            continue
        for match in matches:
            try:
                path = _resolve_file(Path(match))
                if path.resolve() in seen:
                    continue
                seen.add(path.resolve())
                data = _read(path)
                if path.name == SUMMARY_FILE and "kind" not in data:
                    items.append(_Item(path, _scores(data, path), spec, "summary"))
                elif data.get("kind") in ("train", "evaluate"):
                    if data["kind"] == "evaluate":
                        _scores(data.get("results") or {}, path)
                    items.append(_Item(path, data, spec, data["kind"]))
                else:
                    raise ReportInputError(f"{path}: not a run record (kind {data.get('kind')!r}) nor a {SUMMARY_FILE}")
            except ReportInputError as exc:
                if on_error == "fail":
                    raise
                log.warning("skipped: %s", exc)
                skipped.append(str(exc))
    return items


def _folder_key(record_file: Path) -> str:
    """The row a record file stands for by where it lies: its folder, or in the layout of
    experiments/run_grid.sh (<grid>/records/<row>/{train,evaluate}/run_record.json) the row's folder."""
    folder = record_file.parent
    if folder.name in ("train", "evaluate"):
        folder = folder.parent
    if folder.name.startswith("seed") and folder.name[4:].isdigit():  # run_grid.sh SEEDS: <row>/seed<s>/
        folder = folder.parent
    return folder.name


def _seed(config: dict | None):
    seed = (config or {}).get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def _pool_seeds(old: OurRow, row: OurRow) -> None:
    """`row` is another seed of `old`'s row: its scores join the per-task means."""
    old.runs += row.runs
    old.sources += row.sources
    add_versions(old.versions, row.versions)
    add_commits(old.commits, row.commits)
    tasks = {t for run in old.runs for t in run["scores"]}
    old.scores = {t: sum(r["scores"][t] for r in old.runs if t in r["scores"])
                  / sum(t in r["scores"] for r in old.runs) for t in sorted(tasks)}
    counts = {sum(t in r["scores"] for r in old.runs) for t in tasks}
    if len(counts) > 1:
        old.notes = [n for n in old.notes if not n.startswith("seeds differ")] + [
            "seeds differ in their tasks: a task's mean is over the seeds that have it"]


def _add(rows: dict[str, OurRow], row: OurRow, order: str) -> None:
    """One row per key. Runs with one key and different seeds are pooled (run_grid.sh SEEDS); otherwise
    the newest (timestamped folders sort by time) is used."""
    row.order = order
    old = rows.get(row.key)
    if old is None:
        rows[row.key] = row
        return
    old_seeds = {r["seed"] for r in old.runs}
    new_seeds = {r["seed"] for r in row.runs}
    if row.runs and old.runs and None not in old_seeds | new_seeds and not old_seeds & new_seeds:
        _pool_seeds(old, row)
        return
    newer, older = (row, old) if order >= old.order else (old, row)
    newer.notes.append(f"an older run with this key is not used: {older.sources[0]}")
    rows[row.key] = newer


def collect_records(inputs: list[RunInput], known: set[str], labels: dict[str, str],
                    on_error: str = "fail") -> Collected:
    if on_error not in ("fail", "skip"):
        raise ReportInputError(f"on_error: expected fail or skip, got {on_error!r}")
    skipped: list[str] = []
    items = _load_items(inputs, on_error, skipped)
    evaluations: dict[str, list[_Item]] = {}
    for item in items:
        if item.kind == "evaluate" and item.data.get("evaluated"):
            evaluations.setdefault(str(item.data["evaluated"]), []).append(item)
    rows: dict[str, OurRow] = {}
    attached: set[int] = set()
    for item in (i for i in items if i.kind == "train"):
        data = item.data
        key = item.spec.row or row_key(data.get("config"), None, data.get("run_name"), known) or _folder_key(item.path)
        row = OurRow(key, item.spec.label or labels.get(key) or key,
                     run_id=data.get("run_id"), sources=[str(item.path)])
        merge_versions(row.versions, data)
        count_commit(row.commits, data)
        kept = {}  # per-item scores of its evaluations
        for evaluation in sorted(evaluations.get(str(data.get("run_id")), []), key=lambda e: str(e.path)):
            row.scores.update(_scores(evaluation.data.get("results") or {}, evaluation.path))  # newer wins per task
            kept.update(evaluation.data.get("item_scores") or {})  # as do its items
            row.sources.append(str(evaluation.path))
            merge_versions(row.versions, evaluation.data)
            count_commit(row.commits, evaluation.data)
            attached.add(id(evaluation))
        if not row.scores:
            row.notes.append("no evaluation record names this run")
        row.runs = [{"seed": _seed(data.get("config")), "scores": dict(row.scores), "items": kept}]
        _add(rows, row, str(item.path))
    for item in (i for i in items if i.kind in ("evaluate", "summary") and id(i) not in attached):
        if item.kind == "evaluate":
            config = item.data.get("config") or {}
            key = item.spec.row or row_key(config, None, None, known) or _folder_key(item.path)
            scores = _scores(item.data.get("results") or {}, item.path)
            if item.data.get("evaluated"):
                skipped.append(f"{item.path}: evaluates run {item.data['evaluated']!r}, which no input holds; "
                               f"shown as row {key!r}")
        else:
            key, scores = item.spec.row or _folder_key(item.path), item.data
        row = OurRow(key, item.spec.label or labels.get(key) or key, dict(scores), sources=[str(item.path)])
        row.runs = [{"seed": None, "scores": dict(scores),
                     "items": (item.data.get("item_scores") or {}) if item.kind == "evaluate" else {}}]
        if item.kind == "evaluate":
            merge_versions(row.versions, item.data)
            count_commit(row.commits, item.data)
        _add(rows, row, str(item.path))
    return Collected(rows=rows, skipped=skipped)


def collect_wandb(project: str, known: set[str], labels: dict[str, str], filters: dict | None = None) -> Collected:
    """Rows from a W&B project: each run's config (run_name, tags) and its logged eval/<task> scores."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "disabled", "dryrun"):
        raise ReportInputError(f"wandb.project={project}: the W&B API needs the network, but WANDB_MODE={mode} "
                               "(use runs=[...] with local run records instead)")
    try:
        import wandb

        api = wandb.Api(timeout=30)
        runs = list(api.runs(project, filters=filters or {}))
    except Exception as exc:  # no network, no login, unknown project
        raise ReportInputError(f"wandb.project={project}: cannot read the project through the W&B API "
                               f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    rows: dict[str, OurRow] = {}
    skipped: list[str] = []
    for run in runs:
        config = dict(run.config or {})
        key = row_key(config, list(run.tags or []) + list(config.get("tags") or []), config.get("run_name") or run.name,
                      known) or run.name
        scores = {k[len("eval/"):]: float(v) for k, v in dict(run.summary).items()
                  if k.startswith("eval/") and not k.startswith("eval/category/") and isinstance(v, (int, float))}
        row = OurRow(key, labels.get(key) or str(config.get("run_name") or run.name), scores,
                     sources=[f"wandb:{project}/{run.id}"], run_id=run.id)
        if not scores:
            row.notes.append("no eval/<task> scores logged")
        _add(rows, row, str(getattr(run, "created_at", "")))
    return Collected(rows=rows, skipped=skipped)
