"""`trainer.precision` by the GPU's capability.

bf16 needs compute capability 8.0 (A100, H100, RTX 30xx+); V100s and T4s lack it. `auto` picks
bf16-mixed where the card has it and fp16 mixed precision (with Lightning's loss scaler) where it
does not, with a warning; an explicit bf16 setting on such a card is refused at startup, instead of
failing (or crawling through emulation) once the model is loaded.
"""

from __future__ import annotations

import logging

from embedforge.model.loading import native_bf16
from embedforge.errors import ConfigError

log = logging.getLogger(__name__)

AUTO = "auto"


def choose_precision(requested, *, on_gpu: bool, bf16_supported: bool, device_name: str = "this GPU") -> tuple[str, str | None]:
    """(the Lightning precision to use, a warning or None). Pure: the capability is passed in."""
    requested = str(requested)
    if requested == AUTO:
        if not on_gpu:
            return "32-true", None
        if bf16_supported:
            return "bf16-mixed", None
        return "16-mixed", (f"trainer.precision=auto: {device_name} has no bf16; training in fp16 mixed "
                            "precision with loss scaling (16-mixed) instead")
    if on_gpu and requested.startswith("bf16") and not bf16_supported:
        raise ConfigError(f"config key 'trainer.precision': {requested} needs bf16, which {device_name} lacks "
                               "(compute capability < 8.0, e.g. V100); use trainer.precision=auto or 16-mixed")
    return requested, None


def resolve_precision(trainer_cfg) -> str:
    """The precision `trainer_cfg` asks for, decided against the GPU this process sees."""
    import torch

    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    on_gpu = accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    bf16 = on_gpu and native_bf16()
    name = torch.cuda.get_device_name(0) if on_gpu else "this device"
    precision, warning = choose_precision(trainer_cfg.get("precision", "32-true"), on_gpu=on_gpu,
                                          bf16_supported=bf16, device_name=name)
    if warning:
        log.warning(warning)
    return precision
