"""What every source shares: its settings, its load result, and the one way a row becomes an Example."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING, OmegaConf

from embedforge.data.schema import Example, SchemaError, validate_record
from embedforge.errors import DataError

log = logging.getLogger(__name__)

# Keys every source accepts, whatever its type (the type adds its own, see TYPE_KEYS in __init__).
COMMON_KEYS = ("type", "ratio", "max_examples", "instruction", "task_type", "language", "max_negatives")


class SourceError(DataError):
    """A source cannot be read as configured; the message names the source and the config key."""


@dataclass
class SourceLoad:
    """Everything a source produced: good examples, one `where: reason` per bad row, and rows that
    were readable but unusable for this source (e.g. a corpus document without a title), by reason."""

    name: str
    examples: list[Example] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    filtered: dict[str, int] = field(default_factory=dict)

    def filter(self, reason: str) -> None:
        self.filtered[reason] = self.filtered.get(reason, 0) + 1


class Source:
    """Base class: `name` (its key under data.sources) and its config node; subclasses implement `read`."""

    type_name = "base"
    default_task_type = "short_long"
    default_language = "en"
    default_instruction = ""

    def __init__(self, name: str, cfg: Any, on_error: str = "fail", base_key: str | None = None):
        self.name = name
        self.cfg = cfg
        self.on_error = on_error
        self.base_key = base_key or f"data.sources.{name}"

    def key(self, sub: str | None = None) -> str:
        """The config key of this source (or of one of its settings), for error messages."""
        return self.base_key + (f".{sub}" if sub else "")

    def setting(self, key: str, default: Any = None) -> Any:
        """A setting of this source's config, or `default`; a missing mandatory value (???) is an error."""
        if self.cfg is None or key not in self.cfg:
            return default
        if (OmegaConf.is_config(self.cfg) and OmegaConf.is_missing(self.cfg, key)) or self.cfg[key] == MISSING:
            raise SourceError(f"{self.key(key)}: required, but not set ({self.missing_hint(key)})")
        value = self.cfg[key]
        return default if value is None else value

    def missing_hint(self, key: str) -> str:
        return f"set it on the command line, e.g. {self.key(key)}=..."

    def file_setting(self, key: str, file_in_folder: str, not_found_hint: str | None = None):
        """The file a path setting names: the file itself, or `file_in_folder` inside the folder it names."""
        from embedforge.data.sources.files import resolve_path

        given = self.setting(key)
        if given is None:
            raise SourceError(f"{self.key(key)}: required ({self.missing_hint(key)})")
        path = resolve_path(given)
        if path.is_dir():
            path = path / file_in_folder
        if not path.is_file():
            hint = f"; {not_found_hint}" if not_found_hint else f" ({self.missing_hint(key)})"
            raise SourceError(f"{self.key(key)}: {path} not found{hint}")
        return path

    def read(self, load: SourceLoad) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def load(self) -> SourceLoad:
        result = SourceLoad(self.name)
        self.read(result)
        if not result.examples:
            detail = f"{len(result.errors)} rejected" + (f", filtered: {result.filtered}" if result.filtered else "")
            raise SourceError(f"{self.key()}: no usable records ({detail})")
        return result

    # -- building records ---------------------------------------------------------------------

    def reject(self, load: SourceLoad, where: str, reason: str) -> None:
        """One bad row: fail now (on_error=fail) or report and count it (on_error=skip)."""
        message = f"{where}: {reason}"
        if self.on_error == "fail":
            raise SourceError(f"{self.key()}: {message}")
        load.errors.append(message)
        log.warning("source %s: rejected %s", self.name, message)

    def instruction_override(self) -> str | None:
        value = self.setting("instruction")
        return None if value is None else str(value)

    def make_example(self, query: Any, positive: Any, negatives: list[Any]) -> Example:
        """An Example with this source's instruction, task type and language; SchemaError if a
        field is unusable (the caller reports it with the row's position)."""
        limit = self.setting("max_negatives")
        if limit is not None:
            negatives = negatives[: int(limit)]
        instruction = self.instruction_override()
        record = {
            "instruction": self.default_instruction if instruction is None else instruction,
            "query": query,
            "positive": positive,
            "negatives": negatives,
            "task_type": str(self.setting("task_type", self.default_task_type)),
            "language": str(self.setting("language", self.default_language)),
            "source": self.name,
        }
        return Example(**validate_record(record))

    def with_override(self, example: Example) -> Example:
        """A schema record as this source delivers it: its own instruction unless the source sets one."""
        instruction = self.instruction_override()
        return example if instruction is None else dataclasses.replace(example, instruction=instruction)


__all__ = ["COMMON_KEYS", "SchemaError", "Source", "SourceError", "SourceLoad"]
