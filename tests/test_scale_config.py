"""Issue 18 (config side): precision by GPU capability, multi-node keys, the declared global batch,
and the run record saying what ran (world size, nodes, precision, activation checkpointing)."""

import json
import logging

import pytest
import torch

from embedforge.errors import ConfigError
from embedforge.train.settings import TrainConfigError
from embedforge.train.precision import choose_precision, resolve_precision
from embedforge.train.run import train

TINY = ["model=tiny-mistral", "pooling=last_token", "lora=r8", "data.batch_size=8", "data.max_train_examples=16",
        "data.val_files=null", "validate_before_fit=false", "trainer.max_steps=2"]


# ---------------------------------------------------------------------------------------------- precision
def test_auto_precision_follows_the_cards_bf16():
    assert choose_precision("auto", on_gpu=True, bf16_supported=True) == ("bf16-mixed", None)
    precision, warning = choose_precision("auto", on_gpu=True, bf16_supported=False, device_name="Tesla V100")
    assert precision == "16-mixed" and "Tesla V100" in warning and "bf16" in warning
    assert choose_precision("auto", on_gpu=False, bf16_supported=False) == ("32-true", None)
    assert choose_precision("32-true", on_gpu=True, bf16_supported=False) == ("32-true", None)


def test_explicit_bf16_on_a_card_without_it_is_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"^config key 'trainer\.precision': bf16-mixed .*V100") as err:
        choose_precision("bf16-mixed", on_gpu=True, bf16_supported=False, device_name="Tesla V100-SXM2-32GB")
    assert "\n" not in str(err.value)
    assert choose_precision("bf16-mixed", on_gpu=True, bf16_supported=True) == ("bf16-mixed", None)


@pytest.mark.parametrize("bf16, expected_precision, expected_dtype",
                         [(True, "bf16-mixed", torch.bfloat16), (False, "16-mixed", torch.float16)])
def test_gpu_trainer_config_on_a_mocked_card(compose_train, monkeypatch, caplog, bf16, expected_precision,
                                             expected_dtype):
    """conf/trainer/gpu.yaml as composed, against a mocked CUDA device with or without native bf16;
    the frozen weights' dtype (model.torch_dtype=auto) follows the same capability."""
    from embedforge.model.loading import resolve_dtype

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16 or including_emulation)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla V100" if not bf16 else "H100")
    cfg = compose_train("trainer=gpu")
    with caplog.at_level(logging.WARNING):
        assert resolve_precision(cfg.trainer) == expected_precision
    assert ("16-mixed" in caplog.text) == (not bf16)
    assert resolve_dtype("auto") == expected_dtype
    with pytest.raises(ConfigError, match="trainer.precision") if not bf16 else _nothing():
        resolve_precision(compose_train("trainer=gpu", "trainer.precision=bf16-mixed").trainer)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ---------------------------------------------------------------------------------------------- nodes and batch
def test_num_nodes_overrides_without_plus(compose_train):
    for trainer in ("cpu", "gpu", "ddp", "fsdp", "deepspeed_zero3", "ddp_sim"):
        assert compose_train(f"trainer={trainer}", "trainer.num_nodes=2").trainer.num_nodes == 2
    assert compose_train().trainer.num_nodes == 1
    paper = compose_train("experiment=paper/synthetic_msmarco", "trainer.num_nodes=4", "data.batch_size=64")
    assert paper.trainer.num_nodes == 4


@pytest.mark.parametrize("overrides, ok", [
    (["trainer.num_nodes=4", "data.batch_size=64"], True),          # the paper's 32 V100s
    (["trainer.num_nodes=1", "data.batch_size=256"], True),         # 8 GPUs x 256 (the file's default)
    (["trainer.num_nodes=2"], False),                               # 2 x 8 x 256 = 4096
    (["trainer.devices=4"], False),                                 # 1 x 4 x 256 = 1024
    (["trainer.accumulate_grad_batches=2", "loss.grad_cache.chunk_size=null"], False),
    (["data.batch_size=128", "trainer.accumulate_grad_batches=2", "loss.grad_cache.chunk_size=null"], True),
    (["trainer.num_nodes=2", "data.global_batch_size=null"], True),  # the check switched off
])
def test_the_declared_global_batch_is_checked_at_start(compose_train, overrides, ok):
    from embedforge.train.settings import TrainSettings

    cfg = compose_train("experiment=paper/synthetic_msmarco", *overrides)
    if ok:
        TrainSettings.from_config(cfg)
        return
    with pytest.raises(TrainConfigError) as err:
        TrainSettings.from_config(cfg)
    message = str(err.value)
    assert message.startswith("config key 'data.global_batch_size': declares 2048") and "\n" not in message
    for key in ("trainer.num_nodes", "trainer.devices", "data.batch_size", "trainer.accumulate_grad_batches"):
        assert key in message


def test_a_wrong_global_batch_stops_a_tiny_run_before_training(compose_train):
    with pytest.raises(TrainConfigError, match="data.global_batch_size"):
        train(compose_train(*TINY, "run_name=gb", "data.global_batch_size=64"))  # 1 x 1 x 8 = 8


# ---------------------------------------------------------------------------------------------- what ran
def test_the_run_record_holds_world_size_nodes_precision_and_checkpointing(compose_train, tmp_path):
    cfg = compose_train(*TINY, "run_name=dist", "data.global_batch_size=8", "model.gradient_checkpointing=true",
                        "loss.grad_cache.chunk_size=4")
    train(cfg)
    record = json.loads((tmp_path / "runs/dist/run/run_record.json").read_text())
    assert record["distributed"] == {"world_size": 1, "num_nodes": 1, "devices_per_node": 1, "global_batch_size": 8}
    assert record["precision"] == "32-true"
    # GradCache turns checkpointing off: the record and its resolved config say so, not what was asked
    assert record["activation_checkpointing"] is False
    assert record["config"]["model"]["gradient_checkpointing"] is False


def test_checkpointing_kept_under_grad_cache_is_recorded(compose_train, tmp_path):
    cfg = compose_train(*TINY, "run_name=ckpt", "model.gradient_checkpointing=true", "loss.grad_cache.chunk_size=4",
                        "model.checkpointing_with_grad_cache=true")
    record = train(cfg)
    assert record["activation_checkpointing"] is True and record["config"]["model"]["gradient_checkpointing"] is True
