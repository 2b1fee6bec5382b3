"""LoRA on all linear layers: the paper's 42M on Mistral-7B, and the decoder paths on the tiny model."""

import torch
from transformers import AutoModel, MistralConfig

from embedforge.model.encoder import Encoder
from embedforge.model.lora import LoraSettings, apply_lora, count_trainable, linear_layer_names

# mistralai/Mistral-7B-v0.1 config.json (architecture fields), so no download is needed.
MISTRAL_7B = dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=32768,
                  rope_theta=10000.0, sliding_window=4096)


def test_mistral_7b_r16_all_linear_has_the_papers_trainable_parameter_count():
    with torch.device("meta"):
        model = AutoModel.from_config(MistralConfig(**MISTRAL_7B))
    assert linear_layer_names(model) == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    peft_model = apply_lora(model, LoraSettings(r=16, alpha=32, dropout=0.1))
    assert count_trainable(peft_model) == 41_943_040


def test_lora_rank_scales_parameter_count():
    with torch.device("meta"):
        model = AutoModel.from_config(MistralConfig(**MISTRAL_7B))
    assert count_trainable(apply_lora(model, LoraSettings(r=8))) == 41_943_040 // 2


def test_bert_pooler_is_not_adapted():
    from embedforge.model.loading import load_backbone

    model, _ = load_backbone("embedded:all-MiniLM-L6-v2")
    names = linear_layer_names(model)
    assert "dense" in names and "query" in names
    peft_model = apply_lora(model, LoraSettings(r=4))
    assert not [n for n, p in peft_model.named_parameters() if p.requires_grad and "pooler" in n]


def test_gradient_checkpointing_gives_the_same_lora_gradients(tiny_mistral_path):
    texts = ["Instruct: find it\nQuery: rope", "a document about rotary embeddings", "x y z"]
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        enc = Encoder.from_pretrained(str(tiny_mistral_path), pooling="last_token", lora=LoraSettings(r=4, dropout=0.0),
                                      gradient_checkpointing=checkpointing)
        # Perturb LoRA B (zero at init) so the adapter changes the output and has full gradients.
        for name, param in enc.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(param, std=0.1)
        enc.train()
        feats = enc.tokenize(texts)
        enc(feats["input_ids"], feats["attention_mask"]).pow(2).sum().backward()
        grads.append({n: p.grad.clone() for n, p in enc.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 0
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-6), name
    assert any(g.abs().sum() > 0 for g in grads[0].values())
