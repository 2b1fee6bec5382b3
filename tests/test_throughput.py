"""Throughput and MFU: the FLOPs-per-token formula against torch's FLOP counter, the peak table,
and the callback's arithmetic on controlled clocks."""

import pytest
import torch
from lightning_fabric.utilities.throughput import measure_flops
from transformers import AutoModel, MistralConfig

from embedforge.model.lora import LoraSettings, apply_lora
from embedforge.train import callbacks as callbacks_module
from embedforge.train.callbacks import ThroughputLogger
from embedforge.train.throughput import (MatmulParams, matmul_params, mfu, peak_flops,
                                         training_flops_per_token)

# Deep and narrow-sequence, so attention scores (left out of the formula) stay a few percent.
SMALL_MISTRAL = dict(vocab_size=256, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
BATCH, SEQ = 2, 8


def _model(lora: bool):
    torch.manual_seed(0)
    model = AutoModel.from_config(MistralConfig(**SMALL_MISTRAL), attn_implementation="sdpa")
    if lora:
        model = apply_lora(model, LoraSettings(r=4, alpha=8, dropout=0.1))
    else:
        model.requires_grad_(True)
    model.train()
    return model


def _counted_flops_per_token(model, with_backward: bool) -> float:
    ids = torch.randint(0, 256, (BATCH, SEQ))
    # The embeddings' output requires grad, as every layer's input does after the first adapted one:
    # the formula counts activation gradients of every layer.
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)

    def forward():
        return model(inputs_embeds=embeds).last_hidden_state

    flops = measure_flops(model, forward, (lambda out: out.float().pow(2).sum()) if with_backward else None)
    return flops / (BATCH * SEQ)


def test_forward_is_two_flops_per_matmul_parameter_per_token():
    model = _model(lora=False)
    params = matmul_params(model)
    assert params.trainable > 0 and params.frozen == 0
    counted = _counted_flops_per_token(model, with_backward=False)
    assert counted == pytest.approx(2 * params.total, rel=0.02)


@pytest.mark.parametrize("lora, factor", [(False, 6), (True, 4)])
def test_training_flops_match_the_flop_counter(lora, factor):
    """Full fine-tuning ~6N, frozen-base LoRA ~4N: the formula against torch's FlopCounterMode."""
    model = _model(lora=lora)
    params = matmul_params(model)
    counted = _counted_flops_per_token(model, with_backward=True)
    formula = training_flops_per_token(params)
    assert counted == pytest.approx(formula, rel=0.02)
    assert formula == pytest.approx(factor * params.total, rel=0.05 if lora else 1e-9)


def test_embeddings_and_lora_counts():
    model = _model(lora=True)
    params = matmul_params(model)
    embedding = 256 * 128
    all_params = sum(p.numel() for p in model.parameters())
    lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    assert params.total == all_params - embedding
    assert params.trainable == lora


def test_recomputation_adds_a_forward():
    params = MatmulParams(frozen=1000, trainable=0)
    assert training_flops_per_token(params) == 4000
    assert training_flops_per_token(params, checkpointing=True) == 6000
    assert training_flops_per_token(params, grad_cache=True) == 6000
    full = MatmulParams(frozen=0, trainable=1000)
    assert training_flops_per_token(full) == 6000
    assert training_flops_per_token(full, checkpointing=True) == 8000


def test_peak_table():
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989.4e12
    assert peak_flops("NVIDIA H200") == 989.4e12
    assert peak_flops("NVIDIA A100-SXM4-40GB") == 312e12
    assert peak_flops("NVIDIA L4") == 121e12 and peak_flops("NVIDIA L40S") == 362.1e12
    assert peak_flops("NVIDIA A100-SXM4-96GB (some new board)") == 312e12  # by fragment
    assert peak_flops("Some Unknown Accelerator") is None
    assert peak_flops(None) is None
    assert mfu(1000.0, 6e9, None) is None
    assert mfu(1000.0, 6e9, 1e13) == pytest.approx(0.6)


class _StubModule:
    def __init__(self, encoder):
        self.encoder = encoder
        self.grad_cache = None
        self.device = torch.device("cpu")
        self.logged: list[dict] = []

    def log(self, name, value, batch_size=None):
        self.logged.append({name: value})


class _StubTrainer:
    world_size = 2


def test_callback_rates_from_non_pad_tokens(monkeypatch):
    model = _model(lora=True)

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = model

    module, trainer = _StubModule(Encoder()), _StubTrainer()
    callback = ThroughputLogger(peak_flops=1e12)
    callback.on_train_start(trainer, module)
    expected_fpt = training_flops_per_token(matmul_params(model))
    assert callback.flops_per_token == expected_fpt

    clock = iter([10.0, 12.0, 16.0])  # start, end of step 1 (2 s), end of step 2 (4 s)
    monkeypatch.setattr(callbacks_module.time, "perf_counter", lambda: next(clock))
    batch = {"query_input_ids": torch.zeros(4, 5, dtype=torch.long),
             "query_attention_mask": torch.tensor([[1, 1, 1, 0, 0]] * 4),       # 12 tokens
             "doc_attention_mask": torch.tensor([[1, 1, 1, 1, 0, 0]] * 8)}      # 32 tokens
    callback.on_train_batch_start(trainer, module, batch, 0)
    callback.on_train_batch_end(trainer, module, None, batch, 0)
    callback.on_train_batch_start(trainer, module, batch, 1)
    callback.on_train_batch_end(trainer, module, None, batch, 1)

    logged = {}
    for entry in module.logged[3:]:  # the second step
        logged.update({name: float(value) for name, value in entry.items()})
    assert logged["train/examples_per_s"] == pytest.approx(4 * 2 / 4.0)
    assert logged["train/tokens_per_s"] == pytest.approx(44 * 2 / 4.0)
    assert logged["train/mfu"] == pytest.approx(44 / 4.0 * expected_fpt / 1e12)
    averages = callback.run_averages()  # warm-up step left out
    assert averages["examples_per_s"] == pytest.approx(2.0) and averages["steps_timed"] == 1
    assert averages["mfu"] == pytest.approx(logged["train/mfu"])


class _LoggingTrainer(_StubTrainer):
    """A trainer whose logger writes on the steps listed (what Lightning's logger connector decides)."""

    def __init__(self, logged_steps):
        self.step, self.logged_steps = 0, set(logged_steps)
        trainer = self

        class Connector:
            @property
            def should_update_logs(self):
                return trainer.step in trainer.logged_steps

        self._logger_connector = Connector()


def test_callback_logs_window_rates_on_the_logged_steps_only(monkeypatch):
    """Rates cover every step since the previous logged one; no values (no device syncs) in between.
    The first step is a window of its own (warm-up, left out of the run averages)."""
    model = _model(lora=True)

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = model

    module, trainer = _StubModule(Encoder()), _LoggingTrainer(logged_steps={4, 6})
    callback = ThroughputLogger()
    callback.on_train_start(trainer, module)
    # The clock is read at the start and where a window closes: step 1 (1 s), step 4 (steps 2-4 in 4 s),
    # step 6 (steps 5-6 in 4 s) and the end of training (step 7 in 1 s).
    clock = iter([0.0, 1.0, 5.0, 9.0, 10.0])
    monkeypatch.setattr(callbacks_module.time, "perf_counter", lambda: next(clock))
    batch = {"query_input_ids": torch.zeros(4, 5, dtype=torch.long),
             "query_attention_mask": torch.tensor([[1, 1, 1, 0, 0]] * 4),       # 12 tokens
             "doc_attention_mask": torch.tensor([[1, 1, 1, 1, 0, 0]] * 8)}      # 32 tokens
    for step in range(1, 8):
        trainer.step = step
        callback.on_train_batch_start(trainer, module, batch, step - 1)
        callback.on_train_batch_end(trainer, module, None, batch, step - 1)
        # examples_per_s and tokens_per_s (no peak, no MFU) on steps 1, 4 and 6 only
        assert len(module.logged) == 2 * sum(s <= step for s in (1, 4, 6))
    callback.on_train_end(trainer, module)
    assert len(module.logged) == 6
    rates = [{k: float(v) for k, v in e.items()} for e in module.logged]
    assert rates[0]["train/examples_per_s"] == pytest.approx(4 * 2 / 1.0)
    assert rates[2]["train/examples_per_s"] == pytest.approx(3 * 4 * 2 / 4.0)   # steps 2, 3, 4 in 4 s
    assert rates[3]["train/tokens_per_s"] == pytest.approx(3 * 44 * 2 / 4.0)
    assert rates[4]["train/examples_per_s"] == pytest.approx(2 * 4 * 2 / 4.0)   # steps 5, 6 in 4 s
    averages = callback.run_averages()  # steps 2-7 in 9 s (step 7 closed at train end)
    assert averages["steps_timed"] == 6
    assert averages["examples_per_s"] == pytest.approx(6 * 4 * 2 / 9.0)
    assert averages["tokens_per_s"] == pytest.approx(6 * 44 * 2 / 9.0)


def test_no_mfu_on_cpu_without_a_peak():
    callback = ThroughputLogger()
    module = _StubModule(torch.nn.Module())
    module.encoder.backbone = torch.nn.Linear(2, 2)
    callback.on_train_start(_StubTrainer(), module)
    assert callback.peak_flops is None
    assert callback.run_averages()["mfu"] is None


def test_default_callbacks_config_builds_the_logger(compose_train):
    from hydra.utils import instantiate

    cfg = compose_train()
    assert isinstance(instantiate(cfg.callbacks.throughput), ThroughputLogger)
