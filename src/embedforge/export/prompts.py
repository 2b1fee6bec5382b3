"""Query prompts for the exported model, named the way mteb looks them up.

`SentenceTransformer.encode(texts, prompt_name=...)` prepends the prompt string, so a prompt is the
part of our query template before `{query}` with the instruction filled in: "Instruct: <instruction>
\\nQuery: ". mteb's sentence-transformers wrapper picks a prompt by name in this order: "<task>-<side>",
"<task>", "<type>-<side>", "<type>", "<side>". The names follow our evaluation's placement rules
(eval/instructions.py): retrieval-like tasks put the instruction on queries only ("SciFact-query",
"Retrieval-query"), symmetric tasks on every input ("STSBenchmark", "STS"). Documents never get one.
"""

from __future__ import annotations

from dataclasses import dataclass

from embedforge.data.formatting import TASK_TYPE_PREFIXES, format_query
from embedforge.errors import ConfigError
from embedforge.eval.instructions import InstructionPolicy

QUERY_PLACEHOLDER = "\x00query\x00"  # stands in for the text, to cut the rendered template at it


class PromptExportError(ConfigError):
    """The instruction format cannot be written as a sentence-transformers prompt."""


def is_asymmetric(task_type: str) -> bool:
    """Task types whose queries and documents mteb encodes separately (prompt_type query/document)."""
    return "Retrieval" in task_type or "Reranking" in task_type


def prompt_name(name: str, task_type: str) -> str:
    return f"{name}-query" if is_asymmetric(task_type) else name


def render_prefix(policy: InstructionPolicy, instruction: str, task_type: str) -> str:
    """The text our format_query puts before the query, or an error when it also writes after it."""
    rendered = format_query(QUERY_PLACEHOLDER, instruction, policy.template, mode=policy.mode, task_type=task_type)
    prefix, found, suffix = rendered.partition(QUERY_PLACEHOLDER)
    if not found or suffix:
        raise PromptExportError(
            f"instructions.template {policy.template!r} puts text after {{query}}: sentence-transformers prompts "
            "are prefixes only, so this format cannot be exported as prompts (set prompts.enabled=false to export "
            "without them)")
    return prefix


@dataclass
class TaskInfo:
    name: str
    type: str
    metadata: object  # mteb TaskMetadata (or anything with .name, .type, .prompt)


class _TypeOnly:
    """Metadata stand-in for a task type: no task prompt, so the policy falls back to its by_type table."""

    def __init__(self, task_type: str):
        self.name, self.type, self.prompt = f"<{task_type}>", task_type, None


def build_prompts(policy: InstructionPolicy, tasks: list[TaskInfo], task_types: list[str] | None = None) -> dict[str, str]:
    """{prompt name: prefix} for each task type and each task; empty when the mode adds no text."""
    if policy.mode == "none":
        return {}
    if task_types is None:
        task_types = list(policy.by_type) if policy.mode == "instruction" else [
            t for t in TASK_TYPE_PREFIXES if t[0].isupper()]  # MTEB's types, not our training subgroups
    prompts: dict[str, str] = {}
    for task_type in task_types:
        prefix = render_prefix(policy, policy.instruction(_TypeOnly(task_type)), task_type)
        if prefix:
            prompts[prompt_name(task_type, task_type)] = prefix
    for task in tasks:
        prefix = render_prefix(policy, policy.instruction(task.metadata), task.type)
        type_prefix = prompts.get(prompt_name(task.type, task.type), "")
        if prefix != type_prefix:  # a task prompt only where it differs from its type's (even if empty)
            prompts[prompt_name(task.name, task.type)] = prefix
    if "Retrieval-query" in prompts:  # encode_query() without a prompt name uses "query"
        prompts["query"] = prompts["Retrieval-query"]
    return prompts


def mteb_tasks(names: list[str] | None, benchmark: str | None) -> list[TaskInfo]:
    """Task metadata from mteb (offline: it ships with the package) for named tasks and a benchmark."""
    import mteb

    found: dict[str, TaskInfo] = {}
    if benchmark:
        try:
            bench = mteb.get_benchmark(benchmark)
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"prompts.benchmark: unknown mteb benchmark {benchmark!r} ({exc})") from None
        for task in bench.tasks:
            found[task.metadata.name] = TaskInfo(task.metadata.name, task.metadata.type, task.metadata)
    for name in names or []:
        try:
            task = mteb.get_task(name)
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"prompts.tasks: unknown mteb task {name!r} ({exc})") from None
        found[task.metadata.name] = TaskInfo(task.metadata.name, task.metadata.type, task.metadata)
    return list(found.values())
