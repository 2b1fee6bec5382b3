"""check_data_config: the `data` part of the start-up checks, without reading any source (so every
mixture composes and checks on any machine; reading and validating the data is `setup()`'s job)."""

from __future__ import annotations

from omegaconf import OmegaConf

from embedforge.data.batching import BATCHING_MODES
from embedforge.data.formatting import INSTRUCTION_MODES
from embedforge.data.sources import COMMON_KEYS, SOURCE_TYPES, TYPE_KEYS
from embedforge.data.sources.files import expand_files
from embedforge.data.sources.layouts import LAYOUTS
from embedforge.errors import ConfigError


class DataConfigError(ConfigError):
    pass


def _fail(key: str, message: str):
    raise DataConfigError(f"config key '{key}': {message}")


def _positive_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def check_source(name: str, spec) -> None:
    key = f"data.sources.{name}"
    if not OmegaConf.is_dict(spec) and not isinstance(spec, dict):
        _fail(key, f"must be a mapping with a 'type', got {spec!r}")
    type_name = spec.get("type")
    if type_name not in SOURCE_TYPES:
        _fail(f"{key}.type", f"unknown source type {type_name!r} (expected one of: {', '.join(SOURCE_TYPES)})")
    unknown = sorted(set(spec) - set(COMMON_KEYS) - set(TYPE_KEYS[type_name]))
    if unknown:
        _fail(f"{key}.{unknown[0]}", f"unknown setting for a '{type_name}' source "
                                     f"(known: {', '.join(COMMON_KEYS + TYPE_KEYS[type_name])})")
    ratio = spec.get("ratio", 1.0)
    if ratio is not None and not _positive_number(ratio):
        _fail(f"{key}.ratio", f"must be a number > 0, got {ratio!r}")
    cap = spec.get("max_examples")
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap <= 0):
        _fail(f"{key}.max_examples", f"must be an integer > 0 or null, got {cap!r}")
    if type_name == "hub":
        if spec.get("layout", "columns") not in LAYOUTS:
            _fail(f"{key}.layout", f"unknown layout {spec.get('layout')!r} (expected one of: {', '.join(LAYOUTS)})")
        path_given = "path" in spec and (OmegaConf.is_missing(spec, "path") or bool(spec.get("path")))
        if not spec.get("dataset") and not path_given:
            _fail(key, "needs 'dataset' (a hub id) or 'path' (local files)")
    if type_name == "jsonl" and not spec.get("files"):
        _fail(f"{key}.files", "required: schema JSONL file names or globs")


def check_data_config(data) -> None:
    """Fail at start, naming the key; file contents are checked by the data module's setup()."""
    if data.instruction_mode not in INSTRUCTION_MODES:
        _fail("data.instruction_mode", f"unknown mode '{data.instruction_mode}' (expected one of: {', '.join(INSTRUCTION_MODES)})")
    if "{query}" not in data.query_template:
        _fail("data.query_template", "must contain the {query} placeholder")
    for key in ("batch_size", "query_max_length", "doc_max_length"):
        if int(data[key]) <= 0:
            _fail(f"data.{key}", f"must be > 0, got {data[key]!r}")
    if int(data.hard_negatives) < 0:
        _fail("data.hard_negatives", f"must be >= 0, got {data.hard_negatives!r}")
    if data.on_error not in ("fail", "skip"):
        _fail("data.on_error", f"must be 'fail' or 'skip', got {data.on_error!r}")
    batching = data.get("batching", "mixed")
    if batching not in BATCHING_MODES:
        _fail("data.batching", f"unknown mode {batching!r} (expected one of: {', '.join(BATCHING_MODES)})")
    limit = data.get("max_train_examples")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0):
        _fail("data.max_train_examples", f"must be an integer > 0 or null, got {limit!r}")
    if data.get("train_files"):
        expand_files(data.train_files, "data.train_files")  # raises naming the key and the pattern
    else:
        sources = data.get("sources")
        if not sources:
            _fail("data.sources", "no training data: set data.sources (a mixture, conf/data/) or data.train_files")
        for name, spec in sources.items():
            check_source(str(name), spec)
    if data.get("val_files"):
        expand_files(data.val_files, "data.val_files")
