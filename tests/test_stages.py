"""Chained stages: stage 2 starts from stage 1's encoder (folder or .ckpt; LoRA or full fine-tuning),
with a fresh adapter (merge) or the same one (continue), and its records name the parent run."""

import json
from pathlib import Path

import pytest
import torch

from embedforge.model.builder import EncoderSettings, build_encoder, load_encoder
from embedforge.model.lora import LoraSettings, count_trainable
from embedforge.train.module import EmbeddingModule
from embedforge.train.run import train

TEXTS = ["Instruct: find the capital\nQuery: capital of France", "Paris is the capital of France.",
         "a short one", "Die Hauptstadt von Deutschland ist Berlin."]
BASE = ["model=tiny-mistral", "pooling=last_token", "data.max_train_examples=16", "data.batch_size=8",
        "data.val_files=null", "validate_before_fit=false", "optim.warmup_steps=1", "trainer.max_steps=2"]


def stage1(compose_train, lora="r8", name="stage1"):
    record = train(compose_train(*BASE, f"lora={lora}", f"run_name={name}", "optim.lr=5e-3"))
    return record


def embeddings(encoder):
    return torch.from_numpy(encoder.encode(TEXTS, batch_size=4))


def fresh_adapter_size(tiny_mistral_path, r):
    return count_trainable(build_encoder(EncoderSettings(pretrained=str(tiny_mistral_path), dtype="float32",
                                                         lora=LoraSettings(r=r, alpha=2 * r))))


def stage2_module(compose_train, *overrides):
    module = EmbeddingModule(compose_train(*BASE, "run_name=stage2", *overrides))
    module.configure_model()
    return module


@pytest.mark.parametrize("parent_lora, source", [("r8", "folder"), ("r8", "ckpt"), ("none", "folder")])
def test_stage2_starts_where_stage1_ended_with_a_fresh_adapter(compose_train, tiny_mistral_path, tmp_path,
                                                               parent_lora, source):
    record = stage1(compose_train, parent_lora)
    init = record["encoder_dir"] if source == "folder" else str(tmp_path / "runs/stage1/run/checkpoints/last.ckpt")
    parent = load_encoder(init)
    child = stage2_module(compose_train, f"model.init_from={init}", "lora=r16")
    assert torch.allclose(embeddings(child.encoder), embeddings(parent), atol=1e-5)
    # exactly the new adapter is trainable: a fresh r16 LoRA, not stage 1's weights or adapter
    assert count_trainable(child) == fresh_adapter_size(tiny_mistral_path, 16)
    assert child.encoder.lora.r == 16
    # and stage 1 really moved away from the base model (otherwise the check above is trivial)
    base = build_encoder(EncoderSettings(pretrained=str(tiny_mistral_path), dtype="float32"))
    assert not torch.allclose(embeddings(base), embeddings(parent), atol=1e-4)


def test_continue_mode_keeps_training_the_same_adapter(compose_train, tiny_mistral_path):
    record = stage1(compose_train, "r8")
    parent = load_encoder(record["encoder_dir"])
    child = stage2_module(compose_train, f"model.init_from={record['encoder_dir']}", "model.init_mode=continue",
                          "lora=r8")
    assert torch.allclose(embeddings(child.encoder), embeddings(parent), atol=1e-5)
    assert count_trainable(child) == fresh_adapter_size(tiny_mistral_path, 8)
    trained = {n: p for n, p in parent.named_parameters() if "lora_B" in n}
    assert trained and all(p.abs().sum() > 0 for p in trained.values())
    child_params = dict(child.encoder.named_parameters())
    assert all(child_params[n].requires_grad and torch.equal(child_params[n], p) for n, p in trained.items())


def test_continue_mode_with_other_lora_settings_is_refused(compose_train):
    record = stage1(compose_train, "r8")
    with pytest.raises(ValueError, match="init_mode"):
        stage2_module(compose_train, f"model.init_from={record['encoder_dir']}", "model.init_mode=continue", "lora=r16")


def test_two_stage_chain_from_the_command_line_records_its_parent(compose_train):
    first = stage1(compose_train, "r8", name="pre")
    second = train(compose_train(*BASE, "lora=r16", "run_name=fine", "model.init_from=run:pre"))
    assert second["parent_run"]["run_id"] == first["run_id"] == "pre/run"
    assert second["parent_run"]["encoder"] == first["encoder_dir"]
    assert second["global_step"] == 2
    # the stage-2 encoder folder rebuilds through stage 1 (merged) + its own adapter
    meta = json.loads((Path(second["encoder_dir"]) / "embedforge_encoder.json").read_text())
    assert meta["base_encoder"] == first["encoder_dir"] and meta["lora"]["r"] == 16
    assert meta["trained_with"]["parent_run_id"] == "pre/run" and meta["trained_with"]["run_id"] == "fine/run"
    reloaded = load_encoder(second["encoder_dir"])
    again = load_encoder(second["encoder_dir"])
    assert torch.allclose(embeddings(reloaded), embeddings(again), atol=1e-6)
    assert not torch.allclose(embeddings(reloaded), embeddings(load_encoder(first["encoder_dir"])), atol=1e-4)


def test_init_from_run_name_without_a_run_is_a_clear_error(compose_train):
    from embedforge.train.settings import TrainConfigError

    with pytest.raises(TrainConfigError, match="model.init_from"):
        train(compose_train(*BASE, "model.init_from=run:never-ran"))
    with pytest.raises(TrainConfigError, match="model.init_from"):
        train(compose_train(*BASE, "model.init_from=/no/such/folder"))


def test_demo_chain_experiments_run_in_order(compose_train):
    """experiment=demo_pretrain, then experiment=demo_finetune (model.init_from=run:demo_pretrain)."""
    fixture = Path(__file__).parent / "data" / "fixtures" / "beir_mini"
    tiny = ["model=tiny-mistral", "data.batch_size=4", "trainer.max_steps=2", "validate_before_fit=false"]
    first = train(compose_train("experiment=demo_pretrain", *tiny, f"data.sources.weak.path={fixture}"))
    second = train(compose_train("experiment=demo_finetune", *tiny))
    assert first["run_id"] == "demo_pretrain/run" and second["parent_run"]["run_id"] == "demo_pretrain/run"
    assert second["encoder"]["base_encoder"] == first["encoder_dir"] and second["global_step"] == 2


@pytest.mark.parametrize("source", ["folder", "ckpt", "run"])
def test_continue_mode_trains_with_one_forward_whatever_the_source(compose_train, tmp_path, source):
    """init_mode=continue from an encoder folder, run:<name> or a .ckpt: the same (lean) LoRA layers."""
    from embedforge.model.lora import SharedDropoutLoraLinear

    record = stage1(compose_train, "r8")
    init = {"folder": record["encoder_dir"], "run": "run:stage1",
            "ckpt": str(tmp_path / "runs/stage1/run/checkpoints/last.ckpt")}[source]
    if source == "run":
        from embedforge.train.settings import resolve_init_from

        cfg = compose_train(*BASE, f"model.init_from={init}")
        init = resolve_init_from(cfg.model.init_from, cfg.paths.output_root)
    child = stage2_module(compose_train, f"model.init_from={init}", "model.init_mode=continue", "lora=r8")
    layers = [m for m in child.encoder.modules() if hasattr(m, "lora_A")]
    assert len(layers) == 14 and all(type(m) is SharedDropoutLoraLinear for m in layers)
