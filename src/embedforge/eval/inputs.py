"""What an evaluation takes from its settings before any task runs: the encoder on its device and the
instruction policy. Shared by the job (eval/job.py) and each evaluation worker (eval/parallel.py)."""

from __future__ import annotations

from embedforge.errors import ConfigError
from embedforge.eval.settings import EvaluateJob, MtebEval


def encoder_for_evaluation(job: EvaluateJob, device: str | None = None):
    """The encoder to evaluate (`checkpoint`, or model/lora/pooling), on `device` (default: the setting)."""
    from embedforge.model.builder import encoder_from_groups

    settings = job.settings
    encoder = encoder_from_groups(job.encoder, settings.checkpoint)
    if settings.encoder_max_length is not None:  # a folder keeps its training length (often short to save compute)
        encoder.max_length = settings.encoder_max_length
    return encoder.to(resolve_device(device or settings.device))


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


def instruction_policy(job: EvaluateJob, trained_with: dict | None = None):
    """The evaluation's instruction policy. `instructions.mode` and `.template` left null follow the
    encoder: what it was trained with (recorded in its folder), else the paper's instruction format."""
    from embedforge.data.formatting import DEFAULT_QUERY_TEMPLATE
    from embedforge.eval.instructions import InstructionPolicy

    instructions = job.settings.instructions
    trained_with = trained_with or {}
    override = job.settings.eval.normalize_by_type if isinstance(job.settings.eval, MtebEval) else {}
    return InstructionPolicy(
        mode=instructions.mode if instructions.mode is not None else trained_with.get("instruction_mode") or "instruction",
        template=(instructions.template if instructions.template is not None
                  else trained_with.get("query_template") or DEFAULT_QUERY_TEMPLATE),
        by_task=dict(instructions.by_task), by_type=dict(instructions.by_type),
        normalize_by_type={**instructions.normalize_by_type, **override})
