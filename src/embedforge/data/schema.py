"""The one record schema every training example uses, and its validator.

A record is one JSON object per line (JSONL):

    {"instruction": str, "query": str, "positive": str, "negatives": [str, ...],
     "task_type": one of TASK_TYPES, "language": str, "source": str}

`negatives` may be empty (short-short and long-long matching have no hard negative in the paper).
`instruction` may be empty only for records meant for no-instruction training.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from embedforge.errors import DataError

# The paper's six synthetic task types (docs/method.md section 1). Public retrieval data uses "short_long".
TASK_TYPES: tuple[str, ...] = (
    "short_long",  # retrieval: short query, long document
    "long_short",  # classification: long text, short label
    "short_short",  # short-short matching
    "long_long",  # long-long matching
    "sts",  # monolingual semantic textual similarity
    "bitext",  # bitext retrieval across two languages
)

REQUIRED_FIELDS: tuple[str, ...] = (
    "instruction",
    "query",
    "positive",
    "negatives",
    "task_type",
    "language",
    "source",
)


class SchemaError(DataError):
    """A record does not follow the Example schema; the message says which field and why."""


@dataclass(frozen=True)
class Example:
    instruction: str
    query: str
    positive: str
    negatives: list[str] = field(default_factory=list)
    task_type: str = "short_long"
    language: str = "en"
    source: str = "unknown"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, obj: Any) -> "Example":
        """Validate a decoded JSON value and build an Example, or raise SchemaError."""
        return cls(**validate_record(obj))


def _require_text(obj: dict, key: str, *, allow_empty: bool = False) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise SchemaError(f"field '{key}' must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise SchemaError(f"field '{key}' is empty")
    return value


def validate_record(obj: Any) -> dict[str, Any]:
    """Check one decoded record against the schema; return it as a plain dict of the known fields."""
    if not isinstance(obj, dict):
        raise SchemaError(f"record must be a JSON object, got {type(obj).__name__}")
    missing = [k for k in REQUIRED_FIELDS if k not in obj]
    if missing:
        raise SchemaError(f"missing field(s): {', '.join(missing)}")
    unknown = sorted(set(obj) - set(REQUIRED_FIELDS))
    if unknown:
        raise SchemaError(f"unknown field(s): {', '.join(unknown)}")
    record = {
        "instruction": _require_text(obj, "instruction", allow_empty=True),
        "query": _require_text(obj, "query"),
        "positive": _require_text(obj, "positive"),
        "task_type": _require_text(obj, "task_type"),
        "language": _require_text(obj, "language"),
        "source": _require_text(obj, "source"),
    }
    if record["task_type"] not in TASK_TYPES:
        raise SchemaError(
            f"unknown task_type '{record['task_type']}' (expected one of: {', '.join(TASK_TYPES)})"
        )
    negatives = obj["negatives"]
    if not isinstance(negatives, list):
        raise SchemaError(f"field 'negatives' must be a list of strings, got {type(negatives).__name__}")
    for i, neg in enumerate(negatives):
        if not isinstance(neg, str) or not neg.strip():
            raise SchemaError(f"field 'negatives[{i}]' must be a non-empty string")
    record["negatives"] = list(negatives)
    return record
