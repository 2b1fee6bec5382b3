"""Helpers for sharded strategies (conf/trainer/fsdp.yaml, deepspeed_zero3.yaml)."""

from __future__ import annotations

import functools

from torch import nn


def _wrap_by_class_name(module: nn.Module, recurse: bool, nonwrapped_numel: int, names: frozenset[str]) -> bool:
    # FSDP asks twice per module: recurse=True ("look inside?") and recurse=False ("wrap this one?").
    return True if recurse else type(module).__name__ in names


def layer_wrap_policy(layer_names: list[str]):
    """An FSDP auto-wrap policy that makes every transformer layer (by class name, so no model import
    is needed in the config) its own sharded unit."""
    return functools.partial(_wrap_by_class_name, names=frozenset(layer_names))
