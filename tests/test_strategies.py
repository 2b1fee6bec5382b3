"""Sharded-strategy helpers that can be checked without GPUs (Lightning refuses FSDP on the CPU)."""

from hydra.utils import instantiate


def test_fsdp_wrap_policy_makes_each_decoder_layer_a_unit(compose_train, tiny_mistral_path):
    from transformers import AutoModel

    policy = instantiate(compose_train("trainer=fsdp").trainer.strategy.auto_wrap_policy)
    model = AutoModel.from_pretrained(tiny_mistral_path)
    wrapped = [name for name, module in model.named_modules() if policy(module, False, 0)]
    assert wrapped == [f"layers.{i}" for i in range(model.config.num_hidden_layers)]
    assert all(policy(module, True, 0) for module in model.modules())  # always looks inside


def test_trainable_names_ignore_fsdp_wrapper_prefixes(compose_train):
    import torch

    from embedforge.train.module import FSDP_PREFIX, EmbeddingModule

    module = EmbeddingModule(compose_train("model=tiny-mistral", "lora=r8"))
    module.configure_model()
    plain = module.trainable_names()
    # what FSDP does to parameter names: the wrapped layer's path gains a `_fsdp_wrapped_module.` part
    layers = module.encoder.backbone.base_model.model.layers
    wrapper = torch.nn.Module()
    wrapper.add_module(FSDP_PREFIX.rstrip("."), layers[0])
    layers[0] = wrapper
    assert any(FSDP_PREFIX in n for n, _ in module.named_parameters())
    assert module.trainable_names() == plain


def test_compile_keeps_parameter_names(compose_train):
    from embedforge.train.module import EmbeddingModule

    names = []
    for compile_ in (False, True):
        module = EmbeddingModule(compose_train("model=tiny-mistral", "lora=r8", f"model.compile={compile_}"))
        module.configure_model()
        names.append((module.trainable_names(), set(module.state_dict())))
    assert names[0] == names[1]


def test_attention_auto_falls_back_to_sdpa_without_flash_attn():
    import importlib.util

    import torch

    from embedforge.model.loading import resolve_attention

    assert resolve_attention("sdpa", torch.bfloat16) == "sdpa" and resolve_attention(None, torch.float32) is None
    expected = ("flash_attention_2" if importlib.util.find_spec("flash_attn") and torch.cuda.is_available() else "sdpa")
    assert resolve_attention("auto", torch.bfloat16) == expected
    assert resolve_attention("auto", torch.float32) == "sdpa"  # FlashAttention-2 needs half precision
