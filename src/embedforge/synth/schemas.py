"""JSON Schemas of the replies our parser accepts, for `response_format: json_schema`.

With `json_schema` a server constrains decoding to the schema (OpenAI structured outputs, vLLM and
SGLang guided decoding, llama.cpp grammars), so even a small model writes exactly our keys and
types. Each schema holds exactly what `parsing.parse_brainstorm` / `parsing.parse_example` require:
the keys, string types, every key required, `additionalProperties: false`, and length bounds where
the prompt states one (`lengths=False` leaves out minLength/maxLength: OpenAI's strict mode refuses
them; llama.cpp, vLLM and SGLang enforce them). No `pattern`: llama.cpp's converter takes anchored
patterns only, and a blank string is rare enough to be left to the parser's `empty_value` reject.

The brainstorm schema is an object `{"tasks": [...]}`, because structured-output APIs want a
top-level object; the brainstorm prompt says so in that mode (`prompts.brainstorm_messages`).
"""

from __future__ import annotations

from typing import Any

from embedforge.synth.taxonomy import OUTPUT_KEYS

# Length bounds (characters) where a prompt states one in words: brainstormed definitions are asked
# for "under 25 words"; long_short labels for "a few words". A word is ~6 characters on average in
# English; the bounds are generous so a valid reply is never cut by them.
MAX_DEFINITION_CHARS = 300
MAX_LABEL_CHARS = 120
MAX_ITEM_TASKS = 100  # upper bound on items of one brainstorm reply (the prompt asks for tasks_per_call)

BRAINSTORM_KEY = "tasks"


def _string(max_length: int | None = None, lengths: bool = True) -> dict[str, Any]:
    s: dict[str, Any] = {"type": "string"}
    if lengths:
        s["minLength"] = 1
        if max_length:
            s["maxLength"] = max_length
    return s


def brainstorm_schema(num_tasks: int, lengths: bool = True) -> dict[str, Any]:
    """`{"tasks": [definition, ...]}` with 1..num_tasks definitions."""
    return {
        "type": "object",
        "properties": {
            BRAINSTORM_KEY: {
                "type": "array",
                "items": _string(MAX_DEFINITION_CHARS, lengths),
                "minItems": 1,
                "maxItems": max(1, min(int(num_tasks), MAX_ITEM_TASKS)),
            },
        },
        "required": [BRAINSTORM_KEY],
        "additionalProperties": False,
    }


def example_schema(task_type: str, lengths: bool = True) -> dict[str, Any]:
    """The object of one step-2 example: the task type's two or three string fields."""
    keys = [k for k in OUTPUT_KEYS[task_type] if k]
    props = {k: _string(None, lengths) for k in keys}
    if task_type == "long_short":
        for k in keys[1:]:  # label and misleading_label: "a few words long"
            props[k] = _string(MAX_LABEL_CHARS, lengths)
    return {"type": "object", "properties": props, "required": keys, "additionalProperties": False}


def schema_name(kind: str) -> str:
    """The `json_schema.name` sent with a request (OpenAI: ^[a-zA-Z0-9_-]{1,64}$)."""
    return "embedforge_brainstorm" if kind == "brainstorm" else f"embedforge_{kind}"


def response_format(mode: str | None, kind: str, num_tasks: int = 20, lengths: bool = True) -> dict[str, Any] | None:
    """The request's `response_format` for a generator mode (None, json_object, json_schema)."""
    if not mode:
        return None
    if mode == "json_object":
        return {"type": "json_object"}
    if mode == "json_schema":
        schema = brainstorm_schema(num_tasks, lengths) if kind == "brainstorm" else example_schema(kind, lengths)
        return {"type": "json_schema", "json_schema": {"name": schema_name(kind), "schema": schema, "strict": True}}
    raise ValueError(f"unknown response_format mode {mode!r}")
