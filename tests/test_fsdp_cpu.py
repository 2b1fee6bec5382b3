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
    cfg = compose_train(*BASE, "lora.dropout=0.0", "data.batch_size=4", "trainer.max_steps=1",
                        "loss.temperature=0.05", *extra)
    torch.manual_seed(0)
    module = EmbeddingModule(cfg)
    module.configure_model()
    for name, param in module.named_parameters():  # LoRA B starts at zero: perturb so all grads are non-trivial
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.05)
    initial = copy.deepcopy(module.state_dict())
    datamodule = EmbeddingDataModule(cfg.data, module.encoder.tokenizer, seed=0)
    # no clipping: the gradients are read after the step (clipping over the shards is checked elsewhere)
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
