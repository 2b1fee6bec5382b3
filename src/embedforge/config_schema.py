"""The typed config boundary: each entry point turns its composed Hydra config into typed settings once,
at the CLI, and passes those inward (never the whole DictConfig).

Two kinds of groups, two ways of checking them:
- our own groups (model, lora, pooling, data, synth, ...) are pydantic models (`Schema`): types, ranges and
  allowed values are declared on the fields, a few cross-field rules sit in the model's validators, and an
  unknown key is refused by name (a typo must not train something other than what was asked);
- groups that name a `_target_` (trainer, logger, callbacks, optimiser, scheduler) belong to the library
  they instantiate: their keys are bound to the target's signature before anything runs (`check_target`),
  as torchtune does, so `trainer.max_step=10` fails at start instead of inside Lightning.
pydantic rather than Hydra structured configs: the groups stay plain YAML that experiments extend and
sweeps override, and the error can name the key in our one-line form (errors.py).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, ConfigDict, ValidationError

from embedforge.errors import ConfigError

S = TypeVar("S", bound="Schema")

HYDRA_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")


class Schema(BaseModel):
    """A config group's typed settings: unknown keys refused, values checked, frozen once built."""

    # strict: YAML and Hydra overrides arrive typed, so `r: true` or `lr: "1e-4"` is a mistake, not a value
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, strict=True)


def to_plain(node: Any, key: str, *, missing_ok: bool = False) -> Any:
    """A DictConfig/ListConfig as plain Python, interpolations resolved; a missing value (`???`) names its
    key, unless `missing_ok` (then it stays the string "???", for settings filled in later)."""
    if isinstance(node, (DictConfig, ListConfig)):
        if not missing_ok and isinstance(node, DictConfig):  # omegaconf's own message runs over several lines
            missing = sorted(OmegaConf.missing_keys(node))
            if missing:
                raise ConfigError(f"config key '{_join(key, missing[0])}': required, not set")
        try:
            return OmegaConf.to_container(node, resolve=True, throw_on_missing=not missing_ok)
        except OmegaConfBaseException as exc:
            where = getattr(exc, "full_key", None)
            raise ConfigError(f"config key '{_join(key, where) if where else key}': "
                              f"{getattr(exc, 'msg', None) or exc}") from None
    return node


def _join(prefix: str, rest: str | None) -> str:
    if not rest:
        return prefix
    if not prefix or rest == prefix or rest.startswith(prefix + "."):
        return rest
    return f"{prefix}.{rest}"


# pydantic names the branch of a union that failed inside the location (e.g. "constrained-int",
# "literal['auto']"): not part of the config key.
_TYPE_LABELS = {"str", "int", "float", "bool", "list", "dict", "none", "tuple", "set"}


def _is_branch_label(part) -> bool:
    return isinstance(part, str) and (part in _TYPE_LABELS or "[" in part or "-" in part)


def _key_of(key: str, loc: tuple) -> str:
    return _join(key, ".".join(str(p) for p in loc if not _is_branch_label(p)))


def describe_error(exc: ValidationError, key: str, schema: type[BaseModel]) -> str:
    """The first problem of a ValidationError as `config key '<key>.<field>': <what is wrong>`; the
    branches of a union that all failed at that key are joined with "or"."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    where = _key_of(key, first["loc"])
    same = [e for e in errors if _key_of(key, e["loc"]) == where]
    more = f" (and {len(errors) - len(same)} more)" if len(errors) > len(same) else ""
    if first["type"] == "extra_forbidden":
        owner = _owner(schema, tuple(p for p in first["loc"][:-1] if not _is_branch_label(p)))
        known = ", ".join(owner.model_fields) if owner is not None else ""
        return f"config key '{where}' is unknown" + (f" (known: {known})" if known else "") + more
    if first["type"] == "missing":
        return f"config key '{where}': required, not set{more}"
    message = first["msg"].removeprefix("Value error, ")
    if message.startswith("config key '"):  # a nested bind() already named the key (e.g. a data source)
        return message + more
    if len(same) > 1:
        message = " or ".join(dict.fromkeys(e["msg"].removeprefix("Value error, ") for e in same))
    shown = "" if first["type"].startswith("value_error") else f", got {first.get('input')!r}"
    return f"config key '{where}': {message}{shown}{more}"


def _owner(schema: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The nested model a location points into (for the list of known keys)."""
    current: Any = schema
    for part in loc:
        field = getattr(current, "model_fields", {}).get(part) if isinstance(part, str) else None
        if field is None:
            continue  # a list index or a dict key: the model stays the item's
        current = _model_in(field.annotation)
        if current is None:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def bind(schema: type[S], node: Any, key: str, *, missing_ok: bool = False, **extra: Any) -> S:
    """`node` (a config group, a dict, or None for all defaults) checked into `schema`; a bad or unknown
    key raises ConfigError naming it (`key` is the group's path in the composed config, e.g. "lora").
    `extra` replaces keys of `node`."""
    values = to_plain(node, key, missing_ok=missing_ok)
    values = {} if values is None else values
    if not isinstance(values, dict):
        raise ConfigError(f"config key '{key}': must be a mapping, got {values!r}")
    try:
        return schema.model_validate({**values, **extra})
    except ValidationError as exc:
        raise ConfigError(describe_error(exc, key, schema)) from None


def check_target(node: Any, key: str, *, ignore: tuple[str, ...] = ()) -> None:
    """Bind a `_target_` group's keys to the target's signature: an unknown keyword is refused by name
    unless the target takes **kwargs. A null or absent `_target_` (e.g. logger=none) is not checked."""
    values = to_plain(node, key)
    if not isinstance(values, dict) or not values.get("_target_"):
        return
    target = str(values["_target_"])
    module_name, _, attr = target.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"config key '{key}._target_': cannot import {target!r} ({exc})") from None
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):  # a builtin without a signature: nothing to bind against
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    known = [name for name, p in params.items()
             if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    unknown = sorted(set(values) - set(HYDRA_KEYS) - set(known) - set(ignore))
    if unknown:
        raise ConfigError(f"config key '{key}.{unknown[0]}' is not an argument of {target} "
                          f"(its arguments: {', '.join(k for k in known if k != 'self')})")
