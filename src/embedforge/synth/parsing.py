"""Strict parsing of LLM replies: JSON only (optionally inside one ``` fence), checked per task type.

Nothing here evaluates code; a reply is either valid JSON of the expected shape or rejected with a
short machine-readable reason (`invalid_json`, `missing_key:<k>`, ...).
"""

from __future__ import annotations

import json
import re
from typing import Any

from embedforge.data.schema import Example
from embedforge.synth.sampling import ItemPlan
from embedforge.synth.taxonomy import OUTPUT_KEYS

_FENCE_RE = re.compile(r"^```(?:json|JSON)?[ \t]*\n(.*?)\n?```$", re.DOTALL)


class ParseError(ValueError):
    """The reply is unusable; str(exc) is the reject reason."""


def extract_json(text: str | None) -> Any:
    if text is None or not text.strip():
        raise ParseError("empty_reply")
    body = text.strip()
    fenced = _FENCE_RE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise ParseError(f"invalid_json: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def parse_brainstorm(text: str | None) -> list[str]:
    """A JSON list of task definitions (strings); blank entries are dropped."""
    value = extract_json(text)
    if isinstance(value, dict) and len(value) == 1:  # tolerate {"tasks": [...]}
        value = next(iter(value.values()))
    if not isinstance(value, list):
        raise ParseError(f"wrong_type: expected a JSON list, got {type(value).__name__}")
    tasks = [v.strip() for v in value if isinstance(v, str) and v.strip()]
    if not tasks:
        raise ParseError("empty_list: no task definition strings in the reply")
    return tasks


def _text(obj: dict, key: str) -> str:
    if key not in obj:
        raise ParseError(f"missing_key:{key}")
    value = obj[key]
    if not isinstance(value, str):
        raise ParseError(f"not_a_string:{key}")
    if not value.strip():
        raise ParseError(f"empty_value:{key}")
    return value.strip()


def parse_example(text: str | None, task_type: str) -> tuple[str, str, str | None]:
    """(query, positive, negative or None) from a generation reply for `task_type`."""
    value = extract_json(text)
    if not isinstance(value, dict):
        raise ParseError(f"wrong_type: expected a JSON object, got {type(value).__name__}")
    q_key, p_key, n_key = OUTPUT_KEYS[task_type]
    query, positive = _text(value, q_key), _text(value, p_key)
    negative = _text(value, n_key) if n_key else None
    if negative is not None and negative == positive:
        raise ParseError(f"negative_equals_positive:{n_key}")
    if query == positive:
        raise ParseError(f"query_equals_positive:{p_key}")
    return query, positive, negative


def to_example(plan: ItemPlan, fields: tuple[str, str, str | None], source: str) -> Example:
    query, positive, negative = fields
    return Example(
        instruction=plan.task_definition,
        query=query,
        positive=positive,
        negatives=[negative] if negative else [],
        task_type=plan.task_type,
        language=plan.language_label,
        source=source,
    )


def normalize_definition(text: str) -> str:
    """Dedup key for brainstormed task definitions: case, spacing and final period ignored."""
    return " ".join(text.lower().split()).rstrip(".")


def dedup_definitions(lists: list[list[str]]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for tasks in lists:
        for t in tasks:
            k = normalize_definition(t)
            if k not in seen:
                seen.add(k)
                out.append(t)
    return out
