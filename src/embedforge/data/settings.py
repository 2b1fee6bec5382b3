"""The typed `data` group (config_schema.Schema): the mixture's sources, one typed spec per source type,
and the batching and formatting settings. Checked once when training starts, without reading any source
(so every mixture composes and checks on any machine); reading and validating the data is the data
module's `setup()`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, NonNegativeInt, PositiveInt, field_validator, model_validator

from embedforge.config_schema import Schema, bind
from embedforge.errors import ConfigError
from embedforge.data.batching import BATCHING_MODES
from embedforge.data.formatting import INSTRUCTION_MODES
from embedforge.data.sources.files import expand_files
from embedforge.data.sources.layouts import LAYOUTS

Patterns = Union[str, list[str]]  # file names or globs


class _SourceSpec(Schema):
    """Settings every source type takes (the mixture's sampling, and defaults for its records)."""

    ratio: Annotated[float, Field(gt=0)] | None = 1.0
    max_examples: PositiveInt | None = None
    instruction: str | None = None
    task_type: str | None = None
    language: str | None = None
    max_negatives: NonNegativeInt | None = None

    def as_source_config(self) -> dict:
        """The settings the source reads: only those the config set (a source keeps its own defaults)."""
        return self.model_dump(exclude_unset=True) | {"type": self.type}


class JsonlSpec(_SourceSpec):
    type: Literal["jsonl"]
    files: Patterns = Field(min_length=1)


class SyntheticSpec(_SourceSpec):
    type: Literal["synthetic"]
    path: str | None = None


class HubSpec(_SourceSpec):
    type: Literal["hub"]
    dataset: str | None = None
    config: str | None = None
    revision: str | None = None
    split: str | None = None
    data_files: str | list[str] | dict[str, Any] | None = None
    path: str | None = None
    layout: Literal[LAYOUTS] = "columns"
    columns: dict[str, Any] | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _dataset_or_path(self):
        if not self.dataset and not self.path:  # `path: ???` counts: it is set on the command line later
            raise ValueError("needs 'dataset' (a hub id) or 'path' (local files)")
        return self


class TitleBodySpec(_SourceSpec):
    type: Literal["beir_title_body"]
    path: str | None = None
    judged_in: list[str] | None = None  # qrels splits whose documents are kept (e.g. [train])
    not_judged_in: list[str] | None = None  # qrels splits whose documents are dropped (e.g. [test])


SOURCE_SPECS: dict[str, type[_SourceSpec]] = {
    "jsonl": JsonlSpec, "synthetic": SyntheticSpec, "hub": HubSpec, "beir_title_body": TitleBodySpec}


class DataSettings(Schema):
    sources: dict[str, Any] | None = None  # name -> its type's spec (below)
    train_files: Patterns | None = None  # these files only, replacing `sources`
    val_files: Patterns | None = None
    on_error: Literal["fail", "skip"] = "fail"
    batch_size: PositiveInt = 32
    global_batch_size: PositiveInt | None = None
    val_batch_size: PositiveInt = 64
    batching: Literal[BATCHING_MODES] = "mixed"
    group_by_length: bool = False
    length_window: PositiveInt = 64
    hard_negatives: NonNegativeInt = 1
    query_max_length: PositiveInt = 512
    doc_max_length: PositiveInt = 512
    instruction_mode: Literal[INSTRUCTION_MODES] = "instruction"
    query_template: str = "Instruct: {instruction}\nQuery: {query}"
    num_workers: NonNegativeInt | Literal["auto"] = "auto"
    pin_memory: bool | Literal["auto"] = "auto"
    drop_last: bool = True
    max_train_examples: PositiveInt | None = None

    @field_validator("sources")
    @classmethod
    def _typed_sources(cls, sources: dict | None) -> dict | None:
        if sources is None:
            return None
        typed = {}
        for name, spec in sources.items():
            key = f"data.sources.{name}"
            if not isinstance(spec, dict):
                raise ConfigError(f"config key '{key}': must be a mapping with a 'type', got {spec!r}")
            kind = spec.get("type")
            if kind not in SOURCE_SPECS:
                raise ConfigError(f"config key '{key}.type': unknown source type {kind!r} "
                                  f"(expected one of: {', '.join(SOURCE_SPECS)})")
            typed[name] = bind(SOURCE_SPECS[kind], spec, key)
        return typed

    @field_validator("query_template")
    @classmethod
    def _has_query(cls, value: str) -> str:
        if "{query}" not in value:
            raise ValueError("must contain the {query} placeholder")
        return value

    @model_validator(mode="after")
    def _some_training_data(self):
        if not self.train_files and not self.sources:
            raise ConfigError("config key 'data.sources': no training data: set data.sources (a mixture, "
                              "conf/data/) or data.train_files")
        return self

    @classmethod
    def from_config(cls, node: Any, *, check_files: bool = True) -> DataSettings:
        """The `data` group checked; file patterns must match (a typo fails now, not after the model loads),
        unless `check_files` is off (planning a run for another machine)."""
        if isinstance(node, DataSettings):
            return node
        settings = bind(cls, node, "data", missing_ok=True)
        if not check_files:
            return settings
        if settings.train_files:
            expand_files(settings.train_files, "data.train_files")  # raises naming the key and the pattern
        if settings.val_files:
            expand_files(settings.val_files, "data.val_files")
        return settings

    def source_configs(self) -> dict[str, dict]:
        """{name: settings} of the sources to load, in configuration order (`train_files`: one jsonl source)."""
        if self.train_files:
            files = [self.train_files] if isinstance(self.train_files, str) else list(self.train_files)
            return {"train_files": {"type": "jsonl", "train_files": files}}
        return {name: spec.as_source_config() for name, spec in (self.sources or {}).items()}


