"""What an evaluation takes from its config before any task runs: the encoder on its device and the
instruction policy. Shared by the job (eval/job.py) and each evaluation worker (eval/parallel.py)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from embedforge.errors import ConfigError


def encoder_for_evaluation(cfg: DictConfig):
    """The encoder to evaluate (`checkpoint`, or model/lora/pooling), on `device`."""
    from embedforge.model.builder import encoder_from_groups
    from embedforge.model.settings import EncoderGroups

    own_length = cfg.get("encoder_max_length")
    if own_length is not None and (not isinstance(own_length, int) or own_length <= 0):  # before the slow load
        raise ConfigError(f"encoder_max_length: must be a positive integer or null, got {own_length!r}")
    ckpt = cfg.get("checkpoint")
    encoder = encoder_from_groups(EncoderGroups.from_config(cfg), hydra.utils.to_absolute_path(str(ckpt)) if ckpt else None)
    if own_length is not None:  # a folder keeps its training length (often short to save compute)
        encoder.max_length = own_length
    return encoder.to(resolve_device(cfg.get("device", "auto")))


def resolve_device(name: str | None):
    """`device`: auto (the GPU when there is one), cpu, cuda, cuda:N. On a GPU `encode` runs in bf16 autocast."""
    import torch

    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(str(name))
    except RuntimeError as exc:
        raise ConfigError(f"device: unknown device {name!r} ({exc})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} asked for, but torch sees no CUDA GPU (use device=cpu or auto)")
    return device


def instruction_policy(cfg: DictConfig, trained_with: dict | None = None):
    """The evaluation's instruction policy. `instructions.mode` and `.template` left null follow the
    encoder: what it was trained with (recorded in its folder), else the paper's instruction format."""
    from embedforge.data.formatting import DEFAULT_QUERY_TEMPLATE
    from embedforge.eval.instructions import InstructionPolicy

    instructions = OmegaConf.to_container(cfg.instructions, resolve=True)
    trained_with = trained_with or {}
    if instructions.get("mode") is None:
        instructions["mode"] = trained_with.get("instruction_mode") or "instruction"
    if instructions.get("template") is None:
        instructions["template"] = trained_with.get("query_template") or DEFAULT_QUERY_TEMPLATE
    override = cfg.eval.get("normalize_by_type")
    override = OmegaConf.to_container(override, resolve=True) if override is not None else {}
    instructions["normalize_by_type"] = {**(instructions.get("normalize_by_type") or {}), **override}
    return InstructionPolicy.from_config(instructions)
