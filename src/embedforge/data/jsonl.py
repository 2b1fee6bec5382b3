"""Read Example records from JSONL, validating every line and accounting for every bad one."""

from __future__ import annotations

import gzip
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal

from embedforge.data.schema import Example, SchemaError
from embedforge.errors import ConfigError, DataError

log = logging.getLogger(__name__)

OnError = Literal["fail", "skip"]


class DataFileError(DataError):
    """Raised for a bad data file; the message names the file and line."""


@dataclass
class LoadReport:
    """What a load produced: the good examples and one `file:line: reason` per bad record."""

    path: Path
    examples: list[Example] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def n_lines(self) -> int:
        return len(self.examples) + len(self.errors)

    def summary(self) -> str:
        return f"{self.path}: {len(self.examples)} records loaded, {len(self.errors)} rejected"


def iter_json_lines(path: str | Path) -> Iterator[tuple[int, Any, str | None]]:
    """(line number, decoded value, None) or (line number, None, reason) for each non-blank line.

    The one JSONL reader of the project: callers decide whether a bad line fails, is skipped with a
    warning, or is counted, but they all report it as `file:line`. Lines are read as bytes and
    decoded one by one, so a line that is not UTF-8 is one more `reason` on its own line instead of
    an exception that stops the whole file (and hides the problems of earlier lines). A `.gz` file
    is read through gzip.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield lineno, None, (f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})")
                continue
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line), None
            except json.JSONDecodeError as exc:
                yield lineno, None, f"malformed JSON ({exc.msg} at column {exc.colno})"


def load_examples(path: str | Path, on_error: OnError = "fail") -> LoadReport:
    """Load every record of `path`.

    on_error="fail": the first bad record raises DataFileError naming `file:line` (and nothing is
    returned half-read). on_error="skip": bad records are kept out of `examples`, each one is listed
    in `errors` and logged, and the count is in the summary, so nothing disappears silently.
    Blank lines are ignored.
    """
    if on_error not in ("fail", "skip"):
        raise ConfigError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: data file not found")
    report = LoadReport(path=path)
    for lineno, obj, reason in iter_json_lines(path):
        try:
            if reason:
                raise SchemaError(reason)
            report.examples.append(Example.from_dict(obj))
        except SchemaError as exc:
            message = f"{path}:{lineno}: {exc}"
            if on_error == "fail":
                raise DataFileError(message) from None
            report.errors.append(message)
            log.warning("rejected record %s", message)
    if report.errors:
        log.warning("%s (on_error=skip)", report.summary())
    return report


def write_examples(path: str | Path, examples: list[Example]) -> None:
    """Write examples as JSONL (UTF-8, one object per line, non-ASCII kept readable)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for ex in examples:
            fh.write(json.dumps(ex.to_dict(), ensure_ascii=False) + "\n")
