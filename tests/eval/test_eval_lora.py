"""A LoRA encoder evaluated unmerged scores the same as its merged copy; fingerprints track weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedforge.eval.instructions import InstructionPolicy
from embedforge.eval.local_tasks import load_local_task
from embedforge.eval.mteb_model import encoder_fingerprint
from embedforge.eval.runner import run_tasks


@pytest.fixture(scope="module")
def lora_encoder():
    from embedforge.model.builder import encoder_from_pretrained
    from embedforge.model.lora import LoraSettings

    encoder = encoder_from_pretrained("tiny:mistral", lora=LoraSettings(r=8), dtype="float32")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in encoder.backbone.named_parameters():
            if "lora_B" in name:  # B starts at zero: without this LoRA would be a no-op
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return encoder


def test_lora_is_not_a_noop(lora_encoder, fx):
    texts = [r[0] for r in fx.STS_ROWS]
    with lora_encoder.backbone.disable_adapter():
        base = lora_encoder.encode(texts)
    assert np.abs(lora_encoder.encode(texts) - base).max() > 1e-3


@pytest.mark.parametrize("name", ["MySTS", "MyRetrieval", "MyPairs"])
def test_unmerged_equals_merged(lora_encoder, tasks_root, name):
    policy = InstructionPolicy()
    merged = lora_encoder.merged()
    a = run_tasks(lora_encoder, [load_local_task(tasks_root / name)], policy=policy).results[0]
    b = run_tasks(merged, [load_local_task(tasks_root / name)], policy=policy).results[0]
    assert a.scores["test"][0]["main_score"] == pytest.approx(b.scores["test"][0]["main_score"], abs=1e-4)


def test_fingerprint_changes_with_weights(lora_encoder):
    before = encoder_fingerprint(lora_encoder)
    assert encoder_fingerprint(lora_encoder) == before  # deterministic
    param = next(p for n, p in lora_encoder.backbone.named_parameters() if "lora_B" in n)
    with torch.no_grad():
        param[0, 0] += 1.0
    try:
        assert encoder_fingerprint(lora_encoder) != before
    finally:
        with torch.no_grad():
            param[0, 0] -= 1.0
