"""How an instruction and a query become one input text (PAPER.md section 3).

Queries carry the task instruction; documents never do, so a document index is built once and
serves every task.
"""

from __future__ import annotations

DEFAULT_QUERY_TEMPLATE = "Instruct: {instruction}\nQuery: {query}"

# Instruction modes for ablations: the paper's instruction, none at all, or only the task type.
INSTRUCTION_MODES = ("instruction", "none", "task_type")


def format_query(query: str, instruction: str, template: str = DEFAULT_QUERY_TEMPLATE, mode: str = "instruction",
                 task_type: str | None = None) -> str:
    """Render the text a query is embedded as.

    mode="instruction": the template with the task instruction (empty instruction -> bare query).
    mode="none": the bare query (the no-instruction ablation).
    mode="task_type": the template with the task type name in place of the instruction.
    """
    if mode == "none":
        return query
    if mode == "task_type":
        if not task_type:
            raise ValueError("instruction mode 'task_type' needs the record's task_type")
        instruction = task_type.replace("_", "-")
    elif mode != "instruction":
        raise ValueError(f"data.instruction_mode: unknown mode '{mode}' (expected one of: {', '.join(INSTRUCTION_MODES)})")
    if not instruction.strip():
        return query
    return template.format(instruction=instruction.strip(), query=query)
