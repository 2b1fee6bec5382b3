"""Sources: each turns rows into Example records with its instruction, task type and language.

A source is one entry under `data.sources` (conf/data/*.yaml); `type` picks the class below, and the
other keys are its settings (common ones in base.COMMON_KEYS, the type's own in TYPE_KEYS).
"""

from __future__ import annotations

from embedforge.data.sources.base import COMMON_KEYS, Source, SourceError, SourceLoad
from embedforge.data.sources.public import PublicDatasetSource
from embedforge.data.sources.schema_files import SchemaFilesSource, SyntheticSource
from embedforge.data.sources.weak import TitleBodySource

SOURCE_TYPES: dict[str, type[Source]] = {
    cls.type_name: cls for cls in (SchemaFilesSource, SyntheticSource, PublicDatasetSource, TitleBodySource)
}

# Settings each type accepts besides COMMON_KEYS (anything else is a typo and is refused).
TYPE_KEYS: dict[str, tuple[str, ...]] = {
    "jsonl": ("files",),
    "synthetic": ("path",),
    "hub": ("dataset", "config", "revision", "split", "data_files", "path", "layout", "columns", "note"),
    "beir_title_body": ("path", "judged_in", "not_judged_in"),
}


def build_source(name: str, cfg, on_error: str = "fail") -> Source:
    type_name = cfg.get("type") if cfg is not None else None
    if type_name not in SOURCE_TYPES:
        raise SourceError(f"data.sources.{name}.type: unknown source type {type_name!r} "
                          f"(expected one of: {', '.join(SOURCE_TYPES)})")
    return SOURCE_TYPES[type_name](name, cfg, on_error)


__all__ = ["COMMON_KEYS", "SOURCE_TYPES", "TYPE_KEYS", "Source", "SourceError", "SourceLoad", "build_source"]
