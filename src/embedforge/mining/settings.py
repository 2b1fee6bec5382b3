"""`embedforge-mine`'s typed settings (config_schema.Schema: unknown keys refused by name, strict types).

The CLI binds the composed config here once (`MineJob.from_config`); the mining job reads only these
objects. The `negatives` and `index` groups are the library's own SelectSettings and IndexSettings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PositiveInt

from embedforge.config_schema import Schema, bind, to_plain
from embedforge.data.formatting import DEFAULT_QUERY_TEMPLATE, INSTRUCTION_MODES
from embedforge.data.schema import TASK_TYPES
from embedforge.mining.pipeline import MineSettings
from embedforge.mining.search import IndexSettings
from embedforge.mining.select import SelectSettings
from embedforge.model.settings import EncoderGroups

ENCODER_KEYS = ("model", "lora", "pooling")
Required = Annotated[str, Field(min_length=1)]


class QueryGroup(Schema):
    instruction: str | None = None
    template: str = DEFAULT_QUERY_TEMPLATE
    mode: Literal[INSTRUCTION_MODES] = "instruction"


class RecordGroup(Schema):
    task_type: Literal[TASK_TYPES] = "short_long"
    language: str = "en"
    source: str | None = None


class EncodeGroup(Schema):
    batch_size: PositiveInt = 32
    max_length: Annotated[int, Field(ge=2)] | None = None
    torch_threads: PositiveInt | None = None


class MineConfig(Schema):
    """conf/mine.yaml's own keys (the encoder groups are bound apart, by EncoderGroups)."""

    input: Required  # a BEIR folder or a schema JSONL file
    out: Required
    checkpoint: str | None = None
    split: str = "train"
    corpus: str | None = None
    on_error: Literal["fail", "skip"] = "fail"
    query: QueryGroup = QueryGroup()
    record: RecordGroup = RecordGroup()
    negatives: SelectSettings = SelectSettings()
    index: IndexSettings = IndexSettings()
    encode: EncodeGroup = EncodeGroup()
    cache_dir: str | None = None
    # Lightning Trainer keyword arguments for the predict loop, passed through as they are
    trainer: dict[str, Any] = {}


@dataclass(frozen=True)
class MineJob:
    """One mining run, checked: the pipeline's settings, the encoder's groups and its checkpoint."""

    settings: MineSettings
    encoder: EncoderGroups
    checkpoint: str | None
    torch_threads: int | None

    @classmethod
    def from_config(cls, cfg: Any) -> MineJob:
        """From the composed config; relative paths against Hydra's original working directory."""
        values = to_plain(cfg, "")
        config = bind(MineConfig, {k: v for k, v in values.items() if k not in ENCODER_KEYS}, "")
        settings = MineSettings(
            input=_path(config.input), out=_path(config.out), split=config.split, corpus=_path(config.corpus),
            on_error=config.on_error, instruction=config.query.instruction, template=config.query.template,
            query_mode=config.query.mode, task_type=config.record.task_type, language=config.record.language,
            source=config.record.source, select=config.negatives, index=config.index,
            batch_size=config.encode.batch_size, max_length=config.encode.max_length,
            cache_dir=_path(config.cache_dir), trainer=dict(config.trainer))
        return cls(settings, EncoderGroups.from_config(values), _absolute(config.checkpoint),
                   config.encode.torch_threads)


def _absolute(value: str | None) -> str | None:
    import hydra

    return hydra.utils.to_absolute_path(value) if value else None


def _path(value: str | None) -> Path | None:
    return Path(_absolute(value)) if value else None
