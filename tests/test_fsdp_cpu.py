"""trainer=fsdp_sim: FSDP (each decoder layer its own unit, LoRA trained, backbone frozen) on two CPU
processes gives the loss and LoRA gradients of one process on the global batch, checkpoints only the
adapter under unwrapped names, resumes mid-epoch exactly, and saves an encoder that reloads."""

import copy

import pytest
import torch
from hydra.utils import instantiate

from embedforge.train.datamodule import EmbeddingDataModule
from embedforge.train.module import FSDP_PREFIX, EmbeddingModule

from callbacks_for_sharded_tests import DumpFullGradsFirstStep
from test_ddp_sim import reference_loss_and_grads

BASE = ["model=tiny-mistral", "pooling=last_token", "trainer=fsdp_sim", "lora=r8", "data.val_files=null"]


def relative_difference(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float((got - ref).norm() / ref.norm().clamp_min(1e-12))


def fsdp_first_step(compose_train, tmp_path, *extra):
    """(per-rank dumps, single-process loss and gradients over both ranks' batches, from the same weights)."""
    # no clipping (trainer.gradient_clip_val=null: under GradCache the module would clip): the gradients
    # are read after the step (clipping over the shards is checked elsewhere)
    cfg = compose_train(*BASE, "lora.dropout=0.0", "data.batch_size=4", "trainer.max_steps=1",
                        "loss.temperature=0.05", "trainer.gradient_clip_val=null", *extra)
    torch.manual_seed(0)
    module = EmbeddingModule(cfg)
    module.configure_model()
    for name, param in module.named_parameters():  # LoRA B starts at zero: perturb so all grads are non-trivial
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.05)
    initial = copy.deepcopy(module.state_dict())
    datamodule = EmbeddingDataModule(cfg.data, module.encoder.tokenizer, seed=0)
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False, gradient_clip_val=None,
                          callbacks=[DumpFullGradsFirstStep(str(tmp_path))])
    trainer.fit(module, datamodule=datamodule)
    dumps = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    module.load_state_dict(initial)  # the launcher copied rank 0's trained weights back: undo
    module.train()
    ref_loss, ref_grads = reference_loss_and_grads(module, [d["batch"] for d in dumps], 0.05)
    return dumps, ref_loss, ref_grads


@pytest.mark.parametrize("extra", [(), ("loss.grad_cache.chunk_size=3",)], ids=["plain", "gradcache"])
def test_fsdp_on_two_processes_matches_one_process_on_the_global_batch(compose_train, tmp_path, extra):
    dumps, ref_loss, ref_grads = fsdp_first_step(compose_train, tmp_path, *extra)
    loss = (dumps[0]["loss"] + dumps[1]["loss"]) / 2
    assert relative_difference(loss, ref_loss) <= 1e-5, (loss, ref_loss)
    assert len(ref_grads) > 0 and any(g.abs().sum() > 0 for g in ref_grads.values())
    worst = 0.0
    for name, ref in ref_grads.items():
        for rank in range(2):
            got = dumps[rank]["grads"][name]
            assert got.shape == ref.shape, (name, got.shape)  # gathered, not this rank's shard
            worst = max(worst, relative_difference(got, ref))
            assert relative_difference(got, ref) <= 1e-5, (name, rank, (got - ref).abs().max())
    print(f"fsdp_sim {extra or 'plain'}: loss rel diff {relative_difference(loss, ref_loss):.2e}, "
          f"max grad rel diff {worst:.2e} over {len(ref_grads)} LoRA tensors")
    q0, q1 = (d["batch"]["query_input_ids"] for d in dumps)  # the ranks saw different examples
    assert q0.shape != q1.shape or not torch.equal(q0, q1)


def test_fsdp_run_saves_only_the_adapter_and_an_encoder_that_reloads(compose_train, tmp_path, monkeypatch):
    """As a user runs it (train(), trainer=fsdp_sim, the default gradient clipping by norm on): last.ckpt
    holds every LoRA tensor, under its plain name, and nothing else; the saved encoder folder reloads
    to the weights the ranks trained and embeds as the in-memory encoder that was saved."""
    from embedforge.model.builder import load_encoder
    from embedforge.model.encoder import Encoder
    from embedforge.train.run import train

    saved = []
    original_save = Encoder.save
    monkeypatch.setattr(Encoder, "save", lambda self, folder: saved.append(self) or original_save(self, folder))
    cfg = compose_train(*BASE, "data.batch_size=4", "data.max_train_examples=16", "trainer.max_steps=2",
                        "run_name=fsdpckpt", "optim.lr=1e-2", "optim.warmup_steps=1", "trainer.gradient_clip_val=0.5")
    record = train(cfg)
    assert record["global_step"] == 2
    stored = torch.load(tmp_path / "runs" / "fsdpckpt" / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    keys = set(stored["state_dict"])
    plain = EmbeddingModule(cfg)
    plain.configure_model()
    assert keys == plain.trainable_names()  # every adapter tensor, unwrapped names, no frozen backbone weight
    assert all("lora_" in k and FSDP_PREFIX not in k for k in keys)
    print(f"fsdp_sim checkpoint: {len(keys)} tensors, e.g. {sorted(keys)[0]}")

    (in_memory,) = saved
    reloaded = load_encoder(record["encoder_dir"])
    trained = dict(in_memory.named_parameters())
    for name, param in reloaded.named_parameters():
        if "lora_" in name:
            assert torch.equal(param, trained[name]), name
            assert torch.equal(param, stored["state_dict"]["encoder." + name]), name  # the ranks' weights
    assert any(p.abs().sum() > 0 for n, p in reloaded.named_parameters() if "lora_B" in n)  # B starts at 0: trained
    texts = ["query: what is a sharded model", "passage: each rank holds a slice of every layer", "hello"]
    diff = abs(reloaded.encode(texts) - in_memory.encode(texts)).max()
    print(f"fsdp_sim reload: max abs embedding diff {diff:.2e}")
    assert diff <= 1e-6


@pytest.mark.slow
def test_fsdp_stop_mid_epoch_then_resume_is_exact(compose_train, tmp_path):
    """Two FSDP ranks, stopped after 2 of 4 steps (step checkpoint every 2) and resumed with ckpt_path=last:
    the same batches in the same order and the uninterrupted run's adapter and AdamW state."""
    from embedforge.train.run import train
    from test_resume_mid_epoch import COMMON, assert_same_training_state, batches, final_state

    common = [*COMMON, "trainer=fsdp_sim", "data.max_train_examples=32"]
    full_log, split_log = tmp_path / "full", tmp_path / "split"
    train(compose_train(*common, "run_name=full", f"+callbacks.record.path={full_log}"))
    train(compose_train(*common, "run_name=split", f"+callbacks.record.path={split_log}",
                        "+callbacks.stop._target_=callbacks_for_tests.StopAfterSteps", "+callbacks.stop.steps=2"))
    assert final_state(tmp_path / "runs", "split")["global_step"] == 2
    train(compose_train(*common, "run_name=split", f"+callbacks.record.path={split_log}", "ckpt_path=last",
                        "paths.output_dir=${paths.output_root}/${run_name}/resumed"))
    for rank in range(2):
        assert batches(split_log, rank) == batches(full_log, rank) and len(batches(full_log, rank)) == 4
    full, split = final_state(tmp_path / "runs", "full"), final_state(tmp_path / "runs", "split")
    assert_same_training_state(full, split)
    diff = max(float((full["state_dict"][k] - split["state_dict"][k]).abs().max()) for k in full["state_dict"])
    print(f"fsdp_sim resume: {len(full['state_dict'])} adapter tensors, max abs diff {diff:.2e}")
