"""Stream training records line by line, never stopping at a bad one.

Lines are read as bytes and decoded one at a time, so a byte that is not UTF-8 on line 3 is a
`file:line: reason` like a JSON or schema error on line 2, counted and reported, instead of an
exception that ends the whole check.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from embedforge.data.schema import SchemaError, validate_record
from embedforge.errors import ConfigError

FIELDS = ("query", "positive", "negatives", "instruction")


class TrainSideError(ConfigError):
    """The training side is misconfigured (no files, unknown field); the message names the key."""


@dataclass
class TrainRecord:
    path: Path
    lineno: int
    raw: bytes  # the line as read, for an exact cleaned copy
    texts: list[tuple[str, str]] | None  # (field, text); None for a bad line
    error: str | None = None


def expand_paths(patterns: list[str], key: str = "train") -> list[Path]:
    if not patterns:
        raise TrainSideError(f"{key}: no training files given")
    paths: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(str(pattern), recursive=True))
        if not matches:
            raise TrainSideError(f"{key}: {pattern!r} matches no file")
        paths += [Path(m) for m in matches if Path(m).is_file()]
    return list(dict.fromkeys(paths))


def record_texts(record: dict, fields: list[str]) -> list[tuple[str, str]]:
    texts = []
    for name in fields:
        if name == "negatives":
            texts += [(f"negatives[{i}]", neg) for i, neg in enumerate(record["negatives"])]
        elif record[name]:
            texts.append((name, record[name]))
    return texts


def iter_records(paths: list[Path], fields: list[str]) -> Iterator[TrainRecord]:
    for path in paths:
        with path.open("rb") as handle:
            for lineno, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield TrainRecord(path, lineno, raw, None, f"{path}:{lineno}: not UTF-8 "
                                      f"(byte 0x{raw[exc.start]:02x} at byte {exc.start + 1})")
                    continue
                try:
                    record = validate_record(json.loads(line))
                except json.JSONDecodeError as exc:
                    yield TrainRecord(path, lineno, raw, None, f"{path}:{lineno}: malformed JSON ({exc.msg} at column {exc.colno})")
                    continue
                except SchemaError as exc:
                    yield TrainRecord(path, lineno, raw, None, f"{path}:{lineno}: {exc}")
                    continue
                yield TrainRecord(path, lineno, raw, record_texts(record, fields))
