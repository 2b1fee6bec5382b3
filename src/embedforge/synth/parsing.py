"""Strict parsing of LLM replies: JSON only (optionally inside one ``` fence), checked per task type.

Nothing here evaluates code; a reply is either valid JSON of the expected shape or rejected with a
short machine-readable reason (`invalid_json`, `missing_key:<k>`, ...). The message content may come
in any JSON shape (see `reply_text`); every shape ends as text or as a ParseError, never a crash.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

from embedforge.data.schema import Example
from embedforge.synth.sampling import ItemPlan
from embedforge.synth.taxonomy import OUTPUT_KEYS

_FENCE_RE = re.compile(r"^```(?:json|JSON)?[ \t]*\n(.*?)\n?```$", re.DOTALL)


class ParseError(ValueError):
    """The reply is unusable; str(exc) is the reject reason."""


_JSON_TYPE_NAMES = {dict: "object", list: "list", str: "string", int: "number", float: "number",
                    bool: "boolean", type(None): "null"}


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type (object, list, string, number, boolean, null)."""
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def strip_reasoning(text: str) -> tuple[str, bool]:
    """(answer, whether a reasoning block was removed) of a reply that may open with its reasoning.

    Reasoning models put their thoughts first: "<think>...</think>answer", or "...</think>answer"
    when the chat template opened the block inside the prompt. Only a block at the start is
    removed; a block that is opened and never closed is an unfinished answer.
    """
    head = text.lstrip()
    if head.startswith("<think>"):
        end = head.find("</think>")
        if end < 0:
            raise ParseError("unfinished_reasoning: the <think> block is never closed")
        return head[end + len("</think>"):], True
    end = text.find("</think>")
    if end >= 0 and "<think>" not in text:
        return text[end + len("</think>"):], True
    return text, False


def _part_text(part: Any) -> tuple[str | None, str | None]:
    """(text, refusal) of one content part: a string, or {"type": "text"|"output_text", "text": ...}."""
    if isinstance(part, str):
        return part, None
    if isinstance(part, dict):
        kind = part.get("type")
        if kind == "refusal" and isinstance(part.get("refusal"), str):
            return None, part["refusal"]
        if kind in (None, "text", "output_text") and isinstance(part.get("text"), str):
            return part["text"], None
    return None, None


def reply_text(content: Any, refusal: str | None = None) -> str:
    """The reply's text from any content shape an OpenAI-compatible server sends.

    string: itself; list of content parts: their text joined; {"type": "text", "text": ...}: the
    text; any other JSON object: the object itself as JSON (servers in JSON mode sometimes send it
    parsed); null: a refusal or an empty reply; anything else: wrong_content_type. Raises ParseError.
    """
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts, refusals = [], []
        for part in content:
            text, refused = _part_text(part)
            if text is not None:
                texts.append(text)
            if refused is not None:
                refusals.append(refused)
        if texts:
            return "".join(texts)
        if refusals or refusal:
            raise ParseError(f"refusal: {_clip((refusals or [refusal])[0])}")
        raise ParseError("no_text_parts: the content list holds no text part")
    if isinstance(content, dict):
        text, refused = _part_text(content)
        if text is not None and set(content) <= {"type", "text", "annotations"}:
            return text
        if refused is not None:
            raise ParseError(f"refusal: {_clip(refused)}")
        return json.dumps(content, ensure_ascii=False)
    if content is None:
        if refusal:
            raise ParseError(f"refusal: {_clip(refusal)}")
        raise ParseError("empty_reply")
    raise ParseError(f"wrong_content_type: {type(content).__name__}")


def _clip(text: Any, limit: int = 120) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "..."


def extract_json(text: Any) -> Any:
    if not isinstance(text, str):
        text = reply_text(text)
    text, _ = strip_reasoning(text)
    if not text.strip():
        raise ParseError("empty_reply")
    body = text.strip()
    fenced = _FENCE_RE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise ParseError(f"invalid_json: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:  # e.g. absurdly deep nesting or a 5000-digit number
        raise ParseError(f"invalid_json: {type(exc).__name__}") from None


def parse_brainstorm(text: Any) -> list[str]:
    """A JSON list of task definitions (strings); blank entries are dropped."""
    value = extract_json(text)
    if isinstance(value, dict):  # {"tasks": [...]} (structured outputs), or any one key holding a list
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(value) == 1 and lists:
            value = lists[0]
        elif len(value) == 1:
            (key, inner), = value.items()
            raise ParseError(
                f"wrong_type: expected a JSON list, got object whose only key {_clip(repr(key), 40)} "
                f"holds {json_type(inner)}, not a list"
            )
        else:
            keys = ", ".join(repr(k) for k in list(value)[:5]) or "none"
            raise ParseError(
                f"wrong_type: expected a JSON list, got object (keys: {_clip(keys, 80)}; "
                f"a list is also taken inside a one-key object such as {{\"tasks\": [...]}})"
            )
    if not isinstance(value, list):
        raise ParseError(f"wrong_type: expected a JSON list, got {json_type(value)}")
    # Blank and punctuation-only entries ("...", copied from an example shape) are no definitions.
    tasks = [v.strip() for v in value if isinstance(v, str) and normalize_definition(v)]
    if not tasks:
        kinds = sorted({json_type(v) for v in value}) or ["nothing"]
        raise ParseError(f"empty_list: no task definition strings in the reply (the list holds {', '.join(kinds)}"
                         f"{'; strings without words' if 'string' in kinds else ''})")
    return tasks


def _text(obj: dict, key: str) -> str:
    if key not in obj:
        found = ", ".join(repr(k) for k in list(obj)[:5]) or "none"
        raise ParseError(f"missing_key:{key} (found keys: {_clip(found, 80)})")
    value = obj[key]
    if not isinstance(value, str):
        raise ParseError(f"not_a_string:{key} (got {json_type(value)})")
    if not value.strip():
        raise ParseError(f"empty_value:{key}")
    return value.strip()


def parse_example(text: Any, task_type: str) -> tuple[str, str, str | None]:
    """(query, positive, negative or None) from a generation reply for `task_type`."""
    value = extract_json(text)
    if not isinstance(value, dict):
        raise ParseError(f"wrong_type: expected a JSON object, got {json_type(value)}")
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


_EDGE_PUNCT = " \t\n\"'`.,;:!?-*\u201c\u201d\u2018\u2019\u00ab\u00bb\u3002"
_LIST_MARK_RE = re.compile(r"^(?:\d+[.)]|[-*\u2022])\s+")


def normalize_definition(text: str) -> str:
    """Dedup key for brainstormed task definitions.

    Unicode compatibility forms, case, spacing, list markers ("3. ", "- "), surrounding quotes and
    final punctuation are ignored: "1. Find X." and "find  x" are the same task.
    """
    key = unicodedata.normalize("NFKC", text).casefold()
    key = " ".join(key.split())
    key = _LIST_MARK_RE.sub("", key)
    return key.strip(_EDGE_PUNCT)


def dedup_definitions(lists: list[list[str]]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for tasks in lists:
        for t in tasks:
            k = normalize_definition(t)
            if k and k not in seen:
                seen.add(k)
                out.append(t)
    return out


def example_text_key(record: dict) -> tuple:
    """Exact-duplicate key of an accepted example: its texts (the paper removes exact duplicates).

    The model that wrote it and the labels are left out, so two generators writing the same
    example count as one.
    """
    return (record["instruction"], record["query"], record["positive"], tuple(record["negatives"]))
