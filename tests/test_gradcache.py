"""GradCache gives the loss and LoRA gradients of the plain loss on the same batch (same dropout masks),
for InfoNCE and Matryoshka, with hard negatives and LoRA dropout on; and it trains through Lightning."""

import pytest
import torch

from embedforge.data.jsonl import load_examples
from embedforge.losses.gradcache import GradCache
from embedforge.paths import REPO_ROOT
from embedforge.train.datamodule import EmbeddingDataModule
from embedforge.train.module import EmbeddingModule


def _module_and_batch(compose_train, *overrides, size=12):
    cfg = compose_train("model=tiny-mistral", "pooling=last_token", "lora=r8", *overrides)
    module = EmbeddingModule(cfg)
    torch.manual_seed(0)
    module.configure_model()
    for name, param in module.named_parameters():  # LoRA B starts at zero: perturb so gradients are non-trivial
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.05)
    examples = load_examples(REPO_ROOT / "data/demo/train/short_long.jsonl").examples[:size // 2]
    examples += load_examples(REPO_ROOT / "data/demo/train/short_short.jsonl").examples[:size - size // 2]
    datamodule = EmbeddingDataModule(cfg.data, module.encoder.tokenizer, seed=0)
    batch = datamodule.collator(int(cfg.data.hard_negatives))(examples)
    return module, batch


def _groups(batch):
    return [{"input_ids": batch["query_input_ids"], "attention_mask": batch["query_attention_mask"]},
            {"input_ids": batch["doc_input_ids"], "attention_mask": batch["doc_attention_mask"]}]


def _loss_from(module, batch):
    mask = batch["doc_mask"]

    def loss_from(embeddings):
        queries, filled = embeddings
        docs = filled.new_zeros(mask.shape[0], filled.shape[-1]).index_put((mask.nonzero(as_tuple=True)[0],), filled)
        return module.loss_from_embeddings(queries, docs, batch)
    return loss_from


def close(a, b, rel=1e-5):
    """Equal up to float rounding: the difference is tiny next to the tensor's own size."""
    return bool((a - b).norm() <= rel * b.norm() + 1e-12)


def _grads(module):
    grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.requires_grad}
    module.zero_grad()
    return grads


def _reference(module, batch, chunk):
    """The full-graph loss on embeddings made chunk by chunk with gradients (the same dropout draws)."""
    embed = lambda c: module.embed(c["input_ids"], c["attention_mask"])  # noqa: E731
    parts = [torch.cat([embed({k: v[i:i + chunk] for k, v in g.items()}) for i in range(0, len(g["input_ids"]), chunk)])
             for g in _groups(batch)]
    loss, _ = _loss_from(module, batch)(parts)
    loss.backward()
    return loss.detach(), _grads(module)


@pytest.mark.parametrize("loss, dropout, chunk", [("infonce", 0.1, 4), pytest.param("infonce", 0.1, 5, marks=pytest.mark.slow),
                                                  ("matryoshka_infonce", 0.1, 3), ("infonce", 0.0, 4)])
def test_gradcache_equals_the_full_graph_loss(compose_train, loss, dropout, chunk):
    extra = ["loss.dims=[64,32,16]", "loss.weights=[1.0,0.5,0.25]"] if loss == "matryoshka_infonce" else []
    module, batch = _module_and_batch(compose_train, f"loss={loss}", f"lora.dropout={dropout}", *extra)
    module.train()
    assert batch["doc_mask"].sum() < batch["doc_mask"].numel()  # hard negatives, some slots empty

    torch.manual_seed(123)
    cached_loss, _ = GradCache(chunk).step(lambda c: module.embed(c["input_ids"], c["attention_mask"]), _groups(batch),
                                           _loss_from(module, batch))
    cached = _grads(module)
    torch.manual_seed(123)
    ref_loss, ref = _reference(module, batch, chunk)

    assert torch.allclose(cached_loss, ref_loss, rtol=1e-5), (cached_loss, ref_loss)
    assert cached and any(g.abs().sum() > 0 for g in ref.values())
    for name, grad in ref.items():
        assert close(cached[name], grad), (name, (cached[name] - grad).norm() / grad.norm())
    if dropout == 0.0:  # without dropout the chunking itself changes nothing: equal to the plain step
        plain_loss, _ = module.contrastive_step(batch)
        plain_loss.backward()
        assert torch.allclose(cached_loss, plain_loss.detach(), rtol=1e-5)
        for name, grad in _grads(module).items():
            assert close(cached[name], grad, rel=1e-4), name


def test_dropout_masks_are_replayed(compose_train):
    """The check above can fail: without replaying the RNG, dropout draws new masks and gradients differ."""
    module, batch = _module_and_batch(compose_train, "lora.dropout=0.3")
    module.train()
    gc = GradCache(4)
    import embedforge.losses.gradcache as gradcache

    torch.manual_seed(5)
    gc.step(lambda c: module.embed(c["input_ids"], c["attention_mask"]), _groups(batch), _loss_from(module, batch))
    replayed = _grads(module)
    original = gradcache._set_rng_state
    try:
        gradcache._set_rng_state = lambda state, device: None  # no replay
        torch.manual_seed(5)
        gc.step(lambda c: module.embed(c["input_ids"], c["attention_mask"]), _groups(batch), _loss_from(module, batch))
    finally:
        gradcache._set_rng_state = original
    drifted = _grads(module)
    assert any(not close(replayed[n], drifted[n], rel=1e-3) for n in replayed)


def test_gradcache_trains_through_lightning(compose_train):
    from embedforge.train.run import train

    record = train(compose_train("model=tiny-mistral", "pooling=last_token", "lora=r8", "data.batch_size=8",
                                 "data.max_train_examples=16", "data.val_files=null", "validate_before_fit=false",
                                 "loss.grad_cache.chunk_size=3", "run_name=gc", "model.gradient_checkpointing=true"))
    assert record["global_step"] == 2 and record["train_metrics"]["train/loss"] > 0


def test_gradcache_config_errors(compose_train):
    from embedforge.train.settings import TrainConfigError
    from embedforge.train.run import train

    with pytest.raises(ValueError, match="loss.grad_cache.chunk_size"):
        GradCache(0)
    with pytest.raises(TrainConfigError, match="trainer.accumulate_grad_batches"):
        train(compose_train("model=tiny-mistral", "loss.grad_cache.chunk_size=4", "trainer.accumulate_grad_batches=2"))
