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


def test_fsdp_sim_builds_a_cpu_trainer_that_lightnings_own_strategy_refuses(compose_train):
    """Lightning refuses its FSDPStrategy on the CPU by exact type; the subclass is accepted, and its
    precision plugin clips by norm (Lightning's FSDPPrecision raises on trainer.gradient_clip_val)."""
    import pytest
    from pytorch_lightning.plugins.precision.fsdp import FSDPPrecision
    from pytorch_lightning.strategies import FSDPStrategy
    from pytorch_lightning.utilities.exceptions import MisconfigurationException

    from embedforge.train.strategies import FSDPTrainStrategy

    cfg = compose_train("trainer=fsdp_sim").trainer
    trainer = instantiate(cfg, logger=False)
    assert type(trainer.strategy) is FSDPTrainStrategy and trainer.num_devices == 2
    assert trainer.strategy.kwargs["use_orig_params"] and trainer.strategy._state_dict_type == "full"
    assert type(trainer.precision_plugin) is not FSDPPrecision
    with pytest.raises(MisconfigurationException, match="not supported"):
        FSDPPrecision("32-true").clip_grad_by_norm(None, 1.0)
    lightning_own = {k: v for k, v in cfg.strategy.items() if k not in ("_target_", "start_method")}
    with pytest.raises(Exception, match="requires a GPU accelerator"):  # Hydra wraps Lightning's ValueError
        instantiate(cfg, logger=False, strategy=FSDPStrategy(**instantiate(lightning_own)))


def test_deepspeed_without_what_it_needs_stops_with_one_line(compose_train, monkeypatch):
    """trainer=deepspeed_zero3 is refused at start, naming what this machine lacks: the package first,
    then CUDA GPUs; other trainers pass."""
    import importlib.util

    import pytest

    from embedforge.errors import ServiceError
    from embedforge.train import strategies

    cfg = compose_train("trainer=deepspeed_zero3").trainer
    strategies.check_deepspeed_ready(compose_train("trainer=fsdp_sim").trainer)
    real_find_spec = importlib.util.find_spec

    def deepspeed_spec(found):
        return lambda name, *a: (object() if found else None) if name == "deepspeed" else real_find_spec(name, *a)

    monkeypatch.setattr(importlib.util, "find_spec", deepspeed_spec(False))
    with pytest.raises(ServiceError) as err:
        strategies.check_deepspeed_ready(cfg)
    assert str(err.value) == "trainer=deepspeed_zero3: deepspeed is not installed (pip install -e '.[deepspeed]')"
    monkeypatch.setattr(importlib.util, "find_spec", deepspeed_spec(True))
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(ServiceError) as err:
        strategies.check_deepspeed_ready(cfg)
    assert str(err.value).startswith("trainer=deepspeed_zero3: needs CUDA GPUs; this machine has none")
    assert "\n" not in str(err.value)


def test_train_refuses_deepspeed_before_reading_data(compose_train, monkeypatch):
    import importlib.util

    import pytest

    from embedforge.errors import ServiceError
    from embedforge.train.run import train

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "deepspeed" else real_find_spec(name, *a))
    with pytest.raises(ServiceError, match="deepspeed is not installed"):
        train(compose_train("trainer=deepspeed_zero3", "data.sources.demo.files=[/nonexistent/*.jsonl]"))


def test_deepspeed_is_told_the_micro_batch(compose_train):
    """Lightning otherwise reads it from the loader's batch_sampler, which ours does not have."""
    cfg = compose_train("trainer=deepspeed_zero3", "data.batch_size=8")
    assert cfg.trainer.strategy.logging_batch_size_per_gpu == 8
