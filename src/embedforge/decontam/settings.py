"""`embedforge-decontam`'s typed settings (config_schema.Schema: unknown keys refused by name, strict types).

The CLI binds the composed config here once (`DecontamSettings.from_config`); the job (decontam/job.py)
reads only these objects. Paths are made absolute at binding time.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from embedforge.config_schema import Schema, bind
from embedforge.decontam.check import CheckSettings
from embedforge.decontam.train_side import FIELDS


class EvalGroup(Schema):
    """`eval:` of conf/decontam.yaml: which evaluation sets the training records are compared with."""

    data_dir: str | None = None
    tasks: list[str] | None = None
    mteb_tasks: list[str] = []
    splits: list[str] | None = None
    include_corpus: bool = True


class NgramGroup(Schema):
    n: Annotated[int, Field(gt=0)] = 13
    threshold: Annotated[float, Field(gt=0, le=1)] = 0.5


class DecontamSettings(Schema):
    """conf/decontam.yaml."""

    train: list[str]  # schema JSONL files or globs (one string is one pattern)
    fields: Annotated[list[Literal[FIELDS]], Field(min_length=1)] = ["query", "positive", "negatives"]
    eval: EvalGroup = EvalGroup()
    ngram: NgramGroup = NgramGroup()
    chunk_size: Annotated[int, Field(gt=0)] = 4096
    max_listed_matches: Annotated[int, Field(ge=0)] = 10000
    output: str
    clean_dir: str | None = None

    @field_validator("train", mode="before")
    @classmethod
    def _one_pattern(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @classmethod
    def from_config(cls, cfg: Any) -> DecontamSettings:
        """From the composed config; relative paths against Hydra's original working directory."""
        import hydra

        settings = bind(cls, cfg, "")
        absolute = hydra.utils.to_absolute_path
        ev = settings.eval
        return settings.model_copy(update={
            "train": [absolute(p) for p in settings.train], "output": absolute(settings.output),
            "clean_dir": absolute(settings.clean_dir) if settings.clean_dir else None,
            "eval": ev.model_copy(update={"data_dir": absolute(ev.data_dir) if ev.data_dir else None})})

    def check_settings(self) -> CheckSettings:
        return CheckSettings(n=self.ngram.n, threshold=self.ngram.threshold, chunk_size=self.chunk_size,
                             max_listed_matches=self.max_listed_matches)
