"""The model a training config names, built on the meta device: shapes and parameter counts, no weights.

The config.json comes from the local folder a name resolves to (embedded:/tiny: names, folders, the
Hugging Face cache), or, for the paper's two backbones, from copies shipped in plan/configs/ (public
values), so the plan works offline and without downloading 14 GB.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import torch

from embedforge.errors import ConfigError
from embedforge.train.throughput import MatmulParams, matmul_params

# Hub ids whose config.json ships with the package (written from the models' public configs).
SHIPPED_CONFIGS = {
    "mistralai/Mistral-7B-v0.1": "mistral-7b-v0.1.json",
    "meta-llama/Llama-2-7b-hf": "llama-2-7b-hf.json",
}


class PlanError(ConfigError):
    """The plan cannot be made; the message names the config key."""


@dataclass(frozen=True)
class Arch:
    """What the memory model needs of a backbone."""

    model_type: str
    encoder_only: bool        # BERT-like (post-norm, GELU MLP, dropout) vs a Llama-like decoder
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    total_params: int
    trainable_params: int
    matmul: MatmulParams

    @property
    def kv_dim(self) -> int:
        return self.hidden * self.kv_heads // self.heads


def hf_config(pretrained: str):
    """transformers config of a model name, without weights (and without the network for shipped ones)."""
    from transformers import AutoConfig

    from embedforge.model.loading import ModelLoadError, resolve_pretrained

    if pretrained in SHIPPED_CONFIGS:
        try:  # a local copy / the cache first: it is the real one
            return AutoConfig.from_pretrained(pretrained, local_files_only=True)
        except OSError:
            path = resources.files("embedforge.plan") / "configs" / SHIPPED_CONFIGS[pretrained]
            with resources.as_file(path) as file:
                return AutoConfig.from_pretrained(str(file))
    try:
        return AutoConfig.from_pretrained(resolve_pretrained(pretrained), local_files_only=True)
    except (OSError, ModelLoadError) as exc:
        shipped = ", ".join(SHIPPED_CONFIGS)
        raise PlanError(f"config key 'model.pretrained': no config.json found for '{pretrained}' offline "
                        f"(shipped: {shipped}; or point it at a local folder): {exc}") from None


def meta_model(config, lora=None, attn_implementation: str = "sdpa"):
    """AutoModel (no LM head, as training builds it) on the meta device, with LoRA applied as training does."""
    from transformers import AutoModel

    from embedforge.model.lora import apply_lora

    with torch.device("meta"):
        model = AutoModel.from_config(config, attn_implementation=attn_implementation)
    for param in model.parameters():
        param.requires_grad_(lora is None)  # LoRA: frozen base; none: full fine-tuning
    if lora is not None:
        model = apply_lora(model, lora)
    return model


def describe(pretrained: str, lora=None) -> Arch:
    config = hf_config(pretrained)
    model = meta_model(config, lora)
    seen: set[int] = set()
    total = trainable = 0
    for param in model.parameters():
        if id(param) not in seen:
            seen.add(id(param))
            total += param.numel()
            trainable += param.numel() if param.requires_grad else 0
    heads = int(config.num_attention_heads)
    return Arch(model_type=str(config.model_type), encoder_only=not getattr(config, "is_decoder", False)
                and config.model_type in ("bert", "roberta", "xlm-roberta", "mpnet", "distilbert"),
                hidden=int(config.hidden_size), intermediate=int(config.intermediate_size),
                layers=int(config.num_hidden_layers), heads=heads,
                kv_heads=int(getattr(config, "num_key_value_heads", None) or heads),
                vocab=int(config.vocab_size), total_params=total, trainable_params=trainable,
                matmul=matmul_params(model))


def lora_params_formula(arch: Arch, r: int) -> int:
    """LoRA on every linear layer of the blocks: r x (in + out) per adapted layer. The planner's own
    count, checked against peft's (tests/test_plan.py)."""
    h, m, kv = arch.hidden, arch.intermediate, arch.kv_dim
    if arch.encoder_only:  # q, k, v, attention output, intermediate, output
        per_layer = 4 * (h + h) + (h + m) + (m + h)
    else:  # q, k, v, o, gate, up, down
        per_layer = (h + h) + 2 * (h + kv) + (h + h) + 2 * (h + m) + (m + h)
    return arch.layers * r * per_layer
