"""How an instruction and a query become one input text (docs/method.md section 3).

Queries carry the task instruction; documents never do, so a document index is built once and
serves every task.
"""

from __future__ import annotations

from embedforge.errors import ConfigError, DataError

DEFAULT_QUERY_TEMPLATE = "Instruct: {instruction}\nQuery: {query}"

# Instruction modes for ablations: the paper's instruction, none at all, or only a task-type prefix.
INSTRUCTION_MODES = ("instruction", "none", "task_type")

# The task-type prefix ablation (paper, Appendix A): "classify: " for classification-like inputs,
# "query: " for the other asymmetric tasks, nothing for symmetric ones. Keys are our training task
# types and MTEB's task types, so training and evaluation use the same prefixes.
CLASSIFY, QUERY, NO_PREFIX = "classify: ", "query: ", ""
TASK_TYPE_PREFIXES = {
    # training records (data/schema.py TASK_TYPES): the four matching subgroups are asymmetric
    "long_short": CLASSIFY,
    "short_long": QUERY,
    "short_short": QUERY,
    "long_long": QUERY,
    "sts": NO_PREFIX,
    "bitext": NO_PREFIX,
    # MTEB task types. Clustering is topic classification of single texts: it takes the classify prefix.
    "Classification": CLASSIFY,
    "MultilabelClassification": CLASSIFY,
    "Clustering": CLASSIFY,
    "Retrieval": QUERY,
    "Reranking": QUERY,
    "InstructionRetrieval": QUERY,
    "InstructionReranking": QUERY,
    "STS": NO_PREFIX,
    "BitextMining": NO_PREFIX,
    "PairClassification": NO_PREFIX,
    "Summarization": NO_PREFIX,
}


def task_type_prefix(task_type: str | None) -> str:
    if not task_type:
        raise DataError("instruction mode 'task_type' needs the record's task_type")
    if task_type in TASK_TYPE_PREFIXES:
        return TASK_TYPE_PREFIXES[task_type]
    if "Retrieval" in task_type or "Reranking" in task_type:  # mteb's Any2AnyRetrieval and the like
        return QUERY
    raise DataError(f"instruction mode 'task_type': no prefix known for task type {task_type!r} "
                     f"(known: {', '.join(TASK_TYPE_PREFIXES)})")


def format_query(query: str, instruction: str, template: str = DEFAULT_QUERY_TEMPLATE, mode: str = "instruction",
                 task_type: str | None = None) -> str:
    """Render the text a query is embedded as.

    mode="instruction": the template with the task instruction (empty instruction -> bare query).
    mode="none": the bare query (the no-instruction ablation).
    mode="task_type": the paper's task-type prefix ("classify: ", "query: " or none) before the query.
    """
    if mode == "none":
        return query
    if mode == "task_type":
        return task_type_prefix(task_type) + query
    if mode != "instruction":
        raise ConfigError(f"data.instruction_mode: unknown mode '{mode}' (expected one of: {', '.join(INSTRUCTION_MODES)})")
    if not instruction.strip():
        return query
    return template.format(instruction=instruction.strip(), query=query)
