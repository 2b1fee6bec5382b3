"""Build an Encoder from the Hydra groups `model`, `lora` and `pooling`."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from embedforge.model.encoder import Encoder
from embedforge.model.lora import LoraSettings


def lora_settings(lora_cfg: DictConfig | dict | None) -> LoraSettings | None:
    if lora_cfg is None:
        return None
    cfg = OmegaConf.to_container(lora_cfg, resolve=True) if isinstance(lora_cfg, DictConfig) else dict(lora_cfg)
    if not cfg.pop("enabled", True):
        return None
    targets = cfg.get("target_modules", "all-linear")
    return LoraSettings(r=cfg.get("r", 16), alpha=cfg.get("alpha", 32), dropout=cfg.get("dropout", 0.1),
                        target_modules=list(targets) if not isinstance(targets, str) else targets)


def build_encoder(model_cfg, lora_cfg=None, pooling_cfg=None) -> Encoder:
    pooling_cfg = pooling_cfg or {"mode": "last_token", "normalize": True}
    return Encoder.from_pretrained(
        model_cfg["pretrained"],
        pooling=pooling_cfg["mode"],
        normalize=pooling_cfg.get("normalize", True),
        max_length=int(model_cfg.get("max_length", 512)),
        lora=lora_settings(lora_cfg),
        dtype=model_cfg.get("torch_dtype", "auto"),
        attn_implementation=model_cfg.get("attn_implementation", "sdpa"),
        gradient_checkpointing=bool(model_cfg.get("gradient_checkpointing", False)),
    )
