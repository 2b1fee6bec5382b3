"""Readers for the local evaluation folder format (docs/evaluation.md "Local task folders").

Every reader validates each row and raises LocalTaskError naming `file:line` for a bad one, so a
broken data file never turns into a silently wrong score.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from embedforge.data.jsonl import iter_json_lines
from embedforge.errors import DataError

LOCAL_TASK_TYPES = ("STS", "Classification", "PairClassification", "BitextMining", "Retrieval")


class LocalTaskError(DataError):
    """A local task folder or one of its files is missing or malformed; the message says where."""


def read_task_json(folder: Path) -> dict[str, Any]:
    if not folder.is_dir():
        raise LocalTaskError(f"{folder}: local task folder not found")
    path = folder / "task.json"
    if not path.is_file():
        raise LocalTaskError(f"{path}: missing (every local task folder needs a task.json)")
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LocalTaskError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg})") from None
    if not isinstance(spec, dict):
        raise LocalTaskError(f"{path}: expected a JSON object")
    if spec.get("type") not in LOCAL_TASK_TYPES:
        raise LocalTaskError(f"{path}: 'type' must be one of {', '.join(LOCAL_TASK_TYPES)}, got {spec.get('type')!r}")
    splits = spec.get("splits", ["test"])
    if not isinstance(splits, list) or not splits or not all(isinstance(s, str) for s in splits):
        raise LocalTaskError(f"{path}: 'splits' must be a non-empty list of split names, got {splits!r}")
    spec["splits"] = splits
    return spec


def read_task_rows(path: Path, required: dict[str, tuple[type, ...]], check=None) -> list[dict[str, Any]]:
    """Rows of a JSONL file, each checked for the `required` keys and their types (and `check(row)`,
    which returns an error message or None)."""
    if not path.is_file():
        raise LocalTaskError(f"{path}: file not found")
    rows = []
    for lineno, row, reason in iter_json_lines(path):
        if reason:
            raise LocalTaskError(f"{path}:{lineno}: {reason}")
        if not isinstance(row, dict):
            raise LocalTaskError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        for key, types in required.items():
            if key not in row:
                raise LocalTaskError(f"{path}:{lineno}: missing key '{key}'")
            # bool is an int subclass: a true/false label or score is a data error, not 1/0.
            if not isinstance(row[key], types) or isinstance(row[key], bool):
                names = "/".join(t.__name__ for t in types)
                raise LocalTaskError(f"{path}:{lineno}: '{key}' must be {names}, got {row[key]!r}")
        problem = check(row) if check else None
        if problem:
            raise LocalTaskError(f"{path}:{lineno}: {problem}")
        rows.append(row)
    if not rows:
        raise LocalTaskError(f"{path}: no rows")
    return rows


TEXT = (str,)
NUMBER = (int, float)
LABEL = (str, int)


def read_sts(path: Path) -> dict[str, list]:
    rows = read_task_rows(path, {"sentence1": TEXT, "sentence2": TEXT, "score": NUMBER})
    return {k: [r[k] for r in rows] for k in ("sentence1", "sentence2", "score")}


def read_pairs(path: Path) -> dict[str, list]:
    def binary(row):
        return None if row["label"] in (0, 1) else f"'label' must be 0 or 1, got {row['label']!r}"

    rows = read_task_rows(path, {"sentence1": TEXT, "sentence2": TEXT, "label": (int,)}, check=binary)
    return {k: [r[k] for r in rows] for k in ("sentence1", "sentence2", "label")}


def read_classification(path: Path) -> dict[str, list]:
    rows = read_task_rows(path, {"text": TEXT, "label": LABEL})
    return {"text": [r["text"] for r in rows], "label": [r["label"] for r in rows]}


def read_bitext(path: Path) -> dict[str, list]:
    rows = read_task_rows(path, {"sentence1": TEXT, "sentence2": TEXT})
    return {k: [r[k] for r in rows] for k in ("sentence1", "sentence2")}


def read_corpus(path: Path) -> dict[str, list]:
    rows = read_task_rows(path, {"_id": LABEL, "text": TEXT})
    seen: set[str] = set()
    for row in rows:
        doc_id = str(row["_id"])
        if doc_id in seen:
            raise LocalTaskError(f"{path}: duplicate document _id {doc_id!r}")
        seen.add(doc_id)
    return {"id": [str(r["_id"]) for r in rows], "title": [str(r.get("title") or "") for r in rows],
            "text": [r["text"] for r in rows]}


def read_queries(path: Path) -> dict[str, list]:
    rows = read_task_rows(path, {"_id": LABEL, "text": TEXT})
    return {"id": [str(r["_id"]) for r in rows], "text": [r["text"] for r in rows]}


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """BEIR qrels TSV (query-id, corpus-id, score) with a header line -> {query: {doc: score}}."""
    if not path.is_file():
        raise LocalTaskError(f"{path}: file not found")
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for lineno, fields in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if lineno == 1 or not fields or not "".join(fields).strip():
                continue  # header
            if len(fields) != 3:
                raise LocalTaskError(f"{path}:{lineno}: expected 3 tab-separated fields, got {len(fields)}")
            try:
                score = int(float(fields[2]))
            except ValueError:
                raise LocalTaskError(f"{path}:{lineno}: score must be a number, got {fields[2]!r}") from None
            qrels.setdefault(fields[0], {})[fields[1]] = score
    if not qrels:
        raise LocalTaskError(f"{path}: no judgements")
    return qrels
