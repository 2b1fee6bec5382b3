"""Which instruction a task's inputs get, which inputs get it, and whether to normalise (docs/method.md 3).

Source of the instruction, first hit wins: mteb's task metadata `prompt`, the `by_task` table
(tasks mteb gives no prompt), the `by_type` table (STS -> "Retrieve semantically similar text.", ...).
Placement: retrieval-style tasks (mteb passes prompt_type query/document) put it on queries only,
so a document index serves every task; symmetric tasks (prompt_type None: STS, classification,
clustering, pair classification, bitext, summarisation) put it on every input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from embedforge.data.formatting import DEFAULT_QUERY_TEMPLATE, INSTRUCTION_MODES, format_query
from embedforge.errors import ConfigError


@dataclass
class InstructionPolicy:
    mode: str = "instruction"
    template: str = DEFAULT_QUERY_TEMPLATE
    by_task: dict[str, str] = field(default_factory=dict)
    by_type: dict[str, str] = field(default_factory=dict)
    # task type -> bool; a type not listed keeps the encoder's own normalisation.
    normalize_by_type: dict[str, bool] = field(default_factory=dict)

    def __post_init__(self):
        if self.mode not in INSTRUCTION_MODES:
            raise ConfigError(f"instructions.mode: unknown mode {self.mode!r} (expected one of {', '.join(INSTRUCTION_MODES)})")
        if "{query}" not in self.template:
            raise ConfigError(f"instructions.template must contain '{{query}}', got {self.template!r}")

    @classmethod
    def from_config(cls, cfg: Any | None) -> "InstructionPolicy":
        if cfg is None:
            return cls.default()
        from embedforge.config_schema import bind
        from embedforge.eval.settings import InstructionsGroup

        group = bind(InstructionsGroup, cfg, "instructions")
        return cls(**{k: (dict(v) if isinstance(v, dict) else v) for k, v in group if v is not None})

    @classmethod
    def default(cls) -> "InstructionPolicy":
        """The table shipped in conf/evaluate.yaml (`instructions:`), for callers outside Hydra."""
        from omegaconf import OmegaConf

        from embedforge.paths import CONF_DIR

        return cls.from_config(OmegaConf.load(CONF_DIR / "evaluate.yaml")["instructions"])

    def instruction(self, task_metadata) -> str:
        """The task's instruction text (before the template)."""
        prompt = task_metadata.prompt
        if isinstance(prompt, dict):
            prompt = prompt.get("query") or next(iter(prompt.values()), None)
        if prompt:
            return str(prompt).strip()
        if task_metadata.name in self.by_task:
            return self.by_task[task_metadata.name]
        return self.by_type.get(task_metadata.type, "")

    def format(self, texts: list[str], task_metadata, prompt_type) -> list[str]:
        """The texts as the encoder should see them for this task and input side."""
        if self.mode == "none":
            return list(texts)
        side = getattr(prompt_type, "value", prompt_type)
        if side == "document":
            return list(texts)  # documents never carry the instruction
        instruction = self.instruction(task_metadata)
        return [format_query(t, instruction, self.template, mode=self.mode, task_type=task_metadata.type)
                for t in texts]

    def normalize(self, task_metadata) -> bool | None:
        """True/False to force, None to keep the encoder's own setting."""
        return self.normalize_by_type.get(task_metadata.type)
