"""Render the step-1 (brainstorm) and step-2 (generate) prompts from the text templates.

Templates are `templates/{brainstorm,generate}_<task_type>.txt`, using `$name` placeholders
(string.Template, so the JSON braces in them need no escaping). Each template starts with a
`[kind: step/task_type]` line: it tells a reader (and the fake test server) what the prompt is for.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from string import Template

from embedforge.synth.sampling import ItemPlan
from embedforge.synth.settings import GenerateSettings, SynthConfigError
from embedforge.synth.taxonomy import BRAINSTORM_TYPES, language_name

Messages = list[dict[str, str]]
KIND_RE = re.compile(r"^\[kind: (brainstorm|generate)/([a-z_]+)\]", re.MULTILINE)


@lru_cache(maxsize=None)
def load_template(step: str, task_type: str) -> Template:
    name = f"{step}_{task_type}.txt"
    path = resources.files("embedforge.synth") / "templates" / name
    if not path.is_file():
        raise FileNotFoundError(f"prompt template {name} not found in embedforge/synth/templates")
    return Template(path.read_text(encoding="utf-8"))


def _render(step: str, task_type: str, values: dict[str, str]) -> Messages:
    try:
        text = load_template(step, task_type).substitute(values)
    except KeyError as exc:
        raise SynthConfigError(
            f"synth.placeholders.{task_type}.{exc.args[0]}: template {step}_{task_type}.txt needs this "
            f"placeholder but the config does not define it"
        ) from None
    return [{"role": "user", "content": text}]


# The brainstorm reply's shape. JSON mode and structured outputs need a top-level object, so there
# the list goes inside {"tasks": [...]} (schemas.brainstorm_schema); plain mode keeps the bare list.
REPLY_LIST = "Reply with a JSON array of strings, one string per task definition, and nothing else."
# No literal placeholder strings here: a small model copied '{"tasks": ["...", "..."]}' verbatim.
REPLY_OBJECT = (
    'Reply with a JSON object with a single field, "tasks", whose value is the list of your task '
    "definitions, one string per definition. Write nothing else."
)


def brainstorm_messages(task_type: str, num_tasks: int, response_format: str | None = None) -> Messages:
    """The step-1 prompt; `response_format` (json_object, json_schema) asks for {"tasks": [...]}."""
    if task_type not in BRAINSTORM_TYPES:
        raise ValueError(f"task type '{task_type}' has a fixed definition and no brainstorm step")
    reply = REPLY_OBJECT if response_format else REPLY_LIST
    return _render("brainstorm", task_type, {"num_tasks": str(num_tasks), "reply_format": reply})


def item_messages(plan: ItemPlan) -> Messages:
    values = dict(plan.placeholders)
    values["task"] = plan.task_definition
    values["language"] = language_name(plan.language)
    if plan.target_language:
        values["src_language"] = language_name(plan.language)
        values["tgt_language"] = language_name(plan.target_language)
    return _render("generate", plan.task_type, values)


def check_templates(settings: GenerateSettings) -> None:
    """Render every active template once so a missing placeholder fails before any request."""
    from embedforge.synth.sampling import Planner

    planner = Planner(settings)
    seen: set[str] = set()
    for i in range(min(settings.num_examples, 2000)):
        plan = planner.item(i)
        if plan.task_type not in seen:
            seen.add(plan.task_type)
            item_messages(plan)
        if len(seen) == len(settings.synth.tasks.values):
            break
    for t in settings.synth.tasks.values:
        if t in BRAINSTORM_TYPES:
            for g in settings.generators:
                brainstorm_messages(t, settings.synth.tasks_per_call, g.response_format)


def prompt_kind(messages: Messages) -> tuple[str, str] | None:
    """('brainstorm'|'generate', task_type) from the template marker, or None."""
    for m in messages:
        match = KIND_RE.search(str(m.get("content", "")))
        if match:
            return match.group(1), match.group(2)
    return None
