"""Find the training run record of an encoder and the evaluation scores recorded for it.

Layout written by embedforge-train: runs/<name>/<time>/run_record.json beside runs/<name>/<time>/encoder/
(and checkpoints/ for .ckpt files). Evaluation records (embedforge-evaluate) name the training run
they evaluated (`evaluated`: its run_id) and hold `results` ({task: score x 100}).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from embedforge.errors import DataError
from embedforge.run_record import RECORD_FILE, RunRecordError, read_json_object, read_run_record

log = logging.getLogger(__name__)


class RecordError(DataError):
    """A run record named in the config is missing or malformed; the message names the file."""


def read_record(path: Path, key: str) -> dict:
    """A run record named by config key `key` (embedforge.run_record's reader; errors name the key)."""
    try:
        return read_run_record(path)
    except RunRecordError as exc:
        raise RecordError(f"{key}: {exc}") from None


def read_json(path: Path, key: str) -> dict:
    """A summary.json or other score file ({task: score x 100})."""
    try:
        return read_json_object(path)
    except RunRecordError as exc:
        raise RecordError(f"{key}: {exc}") from None


def find_training_record(source: Path) -> Path | None:
    """run_record.json of the training run that wrote `source` (an encoder folder or a .ckpt), if any."""
    source = source.resolve()
    candidates = [source.parent / RECORD_FILE]
    if source.suffix == ".ckpt":  # runs/<name>/<time>/checkpoints/<file>.ckpt
        candidates.append(source.parent.parent / RECORD_FILE)
    for path in candidates:
        if path.is_file():
            return path
    return None


@dataclass
class Scores:
    """Task scores (x 100) with where each came from."""

    scores: dict[str, float] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)


def scores_from(path: Path, key: str) -> dict[str, float]:
    """{task: score} from an evaluation run record, a summary.json, or a folder holding either."""
    if path.is_dir():
        for name in (RECORD_FILE, "summary.json"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise RecordError(f"{key}: {path} holds neither {RECORD_FILE} nor summary.json")
    if path.name == RECORD_FILE:
        data = read_record(path, key)
        if data.get("kind") != "evaluate":
            raise RecordError(f"{key}: {path} is a {data.get('kind')!r} record, not an evaluation record")
        data = data.get("results") or {}
    else:
        data = read_json(path, key)
    bad = [k for k, v in data.items() if not isinstance(v, (int, float))]
    if bad:
        raise RecordError(f"{key}: {path}: scores must be numbers; not for {bad[:3]}")
    return {k: float(v) for k, v in data.items()}


def evaluations_of(run_id: str | None, runs_root: Path | None) -> list[Path]:
    """Evaluation records under runs_root/evaluate/*/ that name `run_id` as what they evaluated."""
    if not run_id or runs_root is None or not (runs_root / "evaluate").is_dir():
        return []
    found = []
    for path in sorted((runs_root / "evaluate").glob(f"*/{RECORD_FILE}")):
        try:
            record = read_run_record(path)
        except RunRecordError as exc:
            log.warning("skipping unreadable evaluation record %s: %s", path, exc)
            continue
        if record.get("kind") == "evaluate" and record.get("evaluated") == run_id:
            found.append(path)
    return found


def collect_scores(paths: list[Path], key: str = "model_card.scores") -> Scores:
    """Merge scores from several files; a later file's score for the same task wins (it is newer)."""
    out = Scores()
    for path in paths:
        out.scores.update(scores_from(path, key))
        out.sources.append(str(path))
    return out
