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
