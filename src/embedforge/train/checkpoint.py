"""Rebuild an Encoder from a training checkpoint (which stores only the trainable weights)."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf

from embedforge.model.builder import build_encoder
from embedforge.model.encoder import Encoder

PREFIX = "encoder."


def load_encoder_from_checkpoint(path: str | Path, map_location="cpu") -> Encoder:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    checkpoint = torch.load(path, map_location=map_location, weights_only=False)
    try:
        cfg = OmegaConf.create(checkpoint["hyper_parameters"]["cfg"])
    except KeyError as exc:
        raise ValueError(f"{path}: not an embedforge checkpoint (no hyper_parameters.cfg)") from exc
    encoder = build_encoder(cfg.model, cfg.lora, cfg.pooling)
    weights = {k[len(PREFIX):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(PREFIX)}
    missing_trainable = {n for n, p in encoder.named_parameters() if p.requires_grad} - set(weights)
    if missing_trainable:
        raise ValueError(f"{path}: checkpoint lacks {len(missing_trainable)} trainable tensors, e.g. {sorted(missing_trainable)[:3]}")
    encoder.load_state_dict(weights, strict=False)
    return encoder.eval()
