"""Two CPU processes (trainer=ddp_sim) give the loss and LoRA gradients of one process on the global batch."""

import copy

import pytest
import torch
from hydra.utils import instantiate

from embedforge.losses.infonce import info_nce
from embedforge.train.datamodule import EmbeddingDataModule
from embedforge.train.module import EmbeddingModule

from callbacks_for_tests import DumpFirstStep


def token_rows(ids, mask):
    return [tuple(row[m.bool()].tolist()) for row, m in zip(ids, mask)]


def duplicate_mask_by_tokens(batches, labels):
    """(Q, D) pair mask built from token ids (not the collator's text hashes): a document slot whose
    tokens equal query i's positive, other than its own slot, is hidden from query i."""
    slots = []
    for batch in batches:
        filled = iter(token_rows(batch["doc_input_ids"], batch["doc_attention_mask"]))
        slots += [next(filled) if used else None for used in batch["doc_mask"].tolist()]
    allowed = torch.ones(len(labels), len(slots), dtype=torch.bool)
    for i, own in enumerate(labels.tolist()):
        for j, slot in enumerate(slots):
            if j != own and slot is not None and slot == slots[own]:
                allowed[i, j] = False
    return allowed


def reference_loss_and_grads(module, batches, temperature):
    """Single process: all queries of both ranks against all documents of both ranks."""
    module.zero_grad()
    queries, docs, masks, labels, offset = [], [], [], [], 0
    for batch in batches:
        q = module.embed(batch["query_input_ids"], batch["query_attention_mask"])
        filled = module.embed(batch["doc_input_ids"], batch["doc_attention_mask"])
        slots = filled.new_zeros(batch["doc_mask"].shape[0], filled.shape[-1])
        slots = slots.index_put((batch["doc_mask"].nonzero(as_tuple=True)[0],), filled)
        labels.append(torch.arange(q.shape[0]) + offset)
        offset += slots.shape[0]
        queries.append(q), docs.append(slots), masks.append(batch["doc_mask"])
    labels = torch.cat(labels)
    loss = info_nce(torch.cat(queries), torch.cat(docs), temperature, labels=labels,
                    doc_mask=torch.cat(masks), pair_mask=duplicate_mask_by_tokens(batches, labels))
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in module.named_parameters() if p.requires_grad}


def run_two_processes(compose_train, tmp_path, share, *extra):
    cfg = compose_train("model=tiny-mistral", "pooling=last_token", "trainer=ddp_sim", "lora=r8", "lora.dropout=0.0",
                        "data.batch_size=4", "data.val_files=null", "trainer.max_steps=1",
                        f"loss.share_negatives_across_devices={share}", "loss.temperature=0.05", *extra)
    torch.manual_seed(0)
    module = EmbeddingModule(cfg)
    module.configure_model()  # built here so both workers start from the same perturbed weights
    for name, param in module.named_parameters():  # LoRA B starts at zero: perturb so all grads are non-trivial
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.05)
    initial = copy.deepcopy(module.state_dict())
    datamodule = EmbeddingDataModule(cfg.data, module.encoder.tokenizer, seed=0)
    clip = {"gradient_clip_val": None} if module.grad_cache is not None else {}  # manual optimisation
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False,
                          callbacks=[DumpFirstStep(str(tmp_path))], **clip)
    trainer.fit(module, datamodule=datamodule)

    dumps = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    module.load_state_dict(initial)  # spawn copies rank 0's trained weights back: undo
    module.train()
    ref_loss, ref_grads = reference_loss_and_grads(module, [d["batch"] for d in dumps], 0.05)

    return dumps, ref_loss, ref_grads


def test_two_process_training_matches_one_process_on_the_global_batch(compose_train, tmp_path):
    dumps, ref_loss, ref_grads = run_two_processes(compose_train, tmp_path, share=True)
    ddp_loss = (dumps[0]["loss"] + dumps[1]["loss"]) / 2
    assert torch.allclose(ddp_loss, ref_loss, atol=1e-5), (ddp_loss, ref_loss)
    assert len(ref_grads) > 0
    for name, ref in ref_grads.items():
        for rank in range(2):
            got = dumps[rank]["grads"][name.removeprefix("_forward_module.")]
            assert torch.allclose(got, ref, atol=1e-6, rtol=1e-4), (name, rank, (got - ref).abs().max())
    # the two ranks saw different examples, and the gradient is not trivially zero
    q0, q1 = (d["batch"]["query_input_ids"] for d in dumps)
    assert q0.shape != q1.shape or not torch.equal(q0, q1)
    assert any(g.abs().sum() > 0 for g in ref_grads.values())


def test_gradcache_under_two_processes_matches_one_process_on_the_global_batch(compose_train, tmp_path):
    """GradCache (chunks of 3 on each rank's 4 queries and 8 document slots) with shared negatives: every
    rank's gradients, after the one all-reduce at the last chunk, equal the single-process gradients."""
    dumps, ref_loss, ref_grads = run_two_processes(compose_train, tmp_path, True, "loss.grad_cache.chunk_size=3")
    for name, ref in ref_grads.items():
        for rank in range(2):
            got = dumps[rank]["grads"][name.removeprefix("_forward_module.")]
            assert (got - ref).norm() <= 1e-5 * ref.norm() + 1e-9, (name, rank, (got - ref).abs().max())
    assert any(g.abs().sum() > 0 for g in ref_grads.values())


@pytest.mark.slow
def test_without_sharing_negatives_the_gradients_differ(compose_train, tmp_path):
    """The check above can fail: each rank seeing only its own negatives is a different loss."""
    dumps, ref_loss, ref_grads = run_two_processes(compose_train, tmp_path, share=False)
    assert not torch.allclose((dumps[0]["loss"] + dumps[1]["loss"]) / 2, ref_loss, atol=1e-4)


def test_ddp_sim_run_with_csv_logger_records_real_steps_and_saves_trained_weights(compose_train, tmp_path):
    """As a user runs it: `trainer=ddp_sim logger=csv` finishes, the record counts the steps the spawned
    ranks trained, and the saved encoder holds the trained (not the initial) weights."""
    from embedforge.model.builder import load_encoder
    from embedforge.train.run import train

    cfg = compose_train("model=tiny-mistral", "pooling=last_token", "trainer=ddp_sim", "lora=r8",
                        "data.batch_size=4", "data.max_train_examples=16", "trainer.max_steps=2",
                        "data.val_batch_size=32", "run_name=ddpcsv", "optim.lr=1e-2", "optim.warmup_steps=1")
    cfg.logger = compose_train("logger=csv").logger
    record = train(cfg)
    run_dir = tmp_path / "runs" / "ddpcsv" / "run"
    assert record["global_step"] == 2
    header = (run_dir / "csv" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    assert "train/loss" in header and "val/ndcg@10" in header
    saved = {n: p for n, p in load_encoder(record["encoder_dir"]).named_parameters() if "lora_B" in n}
    stored = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert saved and all(p.abs().sum() > 0 for p in saved.values())  # LoRA B starts at zero: it was trained
    for name, param in saved.items():
        assert torch.allclose(param, stored["encoder." + name.replace(".default", "")]
                              if "encoder." + name.replace(".default", "") in stored else stored["encoder." + name])
