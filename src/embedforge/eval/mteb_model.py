"""Our Encoder behind mteb's encoder protocol, plus a fingerprint of its weights for result folders.

The adapter only formats texts (instruction policy) and calls `Encoder.encode`, so evaluation uses
exactly the training-time pooling, truncation, EOS handling and normalisation.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import numpy as np
import torch
from mteb.models.abs_encoder import AbsEncoder

from embedforge.eval.instructions import InstructionPolicy


def encoder_fingerprint(encoder) -> str:
    """A short hash of the encoder's settings and weights, so a changed checkpoint never reuses results.

    Trainable (e.g. LoRA) tensors are hashed whole; frozen ones through a strided sample, which keeps
    this to seconds for a 7B backbone while any retrained or swapped backbone still changes it.
    """
    digest = hashlib.sha256(json.dumps(encoder.describe(), sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, param in encoder.backbone.named_parameters():
            flat = param.detach().reshape(-1)
            if not param.requires_grad and flat.numel() > 4096:
                flat = flat[:: max(1, flat.numel() // 4096)]
            digest.update(name.encode())
            digest.update(flat.float().cpu().numpy().tobytes())
    return digest.hexdigest()[:12]


def model_slug(encoder) -> str:
    name = encoder.pretrained or "encoder"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name.split(":")[-1].rstrip("/").split("/")[-1]) or "encoder"


class EmbedforgeMTEBModel(AbsEncoder):
    """mteb encoder protocol over an `embedforge.model.encoder.Encoder`.

    `seen` (when `record=True`) keeps every formatted text with its task and prompt type, for tests.
    """

    def __init__(self, encoder, policy: InstructionPolicy | None = None, *, max_length: int | None = None,
                 batch_size: int = 32, name: str | None = None, revision: str | None = None, record: bool = False,
                 truncate_dim: int | None = None):
        from mteb.models.model_meta import ModelMeta, ScoringFunction

        self.model = encoder
        self.policy = policy or InstructionPolicy()
        self.max_length = min(max_length or encoder.max_length, encoder.max_length)
        self.batch_size = batch_size
        self.truncate_dim = truncate_dim
        self.seen: list[tuple[str, Any, str]] | None = [] if record else None
        self.mteb_model_meta = ModelMeta.create_empty(overwrites={
            "name": name or f"embedforge/{model_slug(encoder)}",
            "revision": revision or encoder_fingerprint(encoder),
            "max_tokens": self.max_length,
            "embed_dim": truncate_dim or encoder.embedding_dim,
            "similarity_fn_name": ScoringFunction.COSINE,
            "use_instructions": self.policy.mode != "none",
            "framework": ["PyTorch"],
        })

    def encode(self, inputs, *, task_metadata, hf_split: str, hf_subset: str, prompt_type=None, **kwargs) -> np.ndarray:
        texts = [text for batch in inputs for text in batch["text"]]
        texts = self.policy.format(texts, task_metadata, prompt_type)
        if self.seen is not None:
            self.seen.extend((task_metadata.name, getattr(prompt_type, "value", prompt_type), t) for t in texts)
        if not texts:
            raise ValueError(f"{task_metadata.name} ({hf_split}/{hf_subset}): nothing to encode (empty input)")
        # Encoder.encode sorts by length, so one call over the whole list pads least.
        return self.model.encode(texts, batch_size=int(kwargs.get("batch_size") or self.batch_size),
                                 max_length=self.max_length, normalize=self.policy.normalize(task_metadata),
                                 dim=self.truncate_dim)
