"""Batches: `same_source` batches hold one source each (one process, two simulated ranks, and two real
gloo processes under trainer=ddp_sim); the order depends only on (seed, epoch); resume skips batches."""

import json
from collections import Counter
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DistributedSampler

from embedforge.data.batching import SourceBatchSampler

# three sources of 60, 20 and 20 records, interleaved (a mixture would not be) to test the grouping
SOURCES = [i % 3 if i < 60 else 0 for i in range(100)]


def sampler(**kwargs):
    args = dict(source_ids=SOURCES, batch_size=4, seed=5, mode="same_source")
    return SourceBatchSampler(**{**args, **kwargs})


def sources_of(batch):
    return {SOURCES[i] for i in batch}


def test_same_source_batches_hold_one_source_and_cover_each_in_proportion():
    s = sampler()
    batches = list(s)
    assert all(len(sources_of(b)) == 1 for b in batches)
    sizes = Counter(SOURCES)
    per_source = Counter(next(iter(sources_of(b))) for b in batches)
    assert per_source == {src: n // 4 for src, n in sizes.items()} == {0: 15, 1: 5, 2: 5}  # drop_last
    assert len({i for b in batches for i in b}) == sum(len(b) for b in batches)  # no record twice


def test_sources_are_drawn_in_proportion_to_their_size():
    first = Counter()
    for epoch in range(3000):
        s = sampler()
        s.set_epoch(epoch)
        first[next(iter(sources_of(next(iter(s)))))] += 1
    # source 0 has 15 of 25 batches, sources 1 and 2 five each
    shares = {src: first[src] / 3000 for src in range(3)}
    assert abs(shares[0] - 15 / 25) < 0.03 and abs(shares[1] - 5 / 25) < 0.03 and abs(shares[2] - 5 / 25) < 0.03, shares


def test_order_depends_only_on_seed_and_epoch():
    for mode in ("mixed", "same_source"):
        a, b = sampler(mode=mode), sampler(mode=mode)
        assert list(a) == list(b)
        b.set_epoch(1)
        assert list(a) != list(b)
        assert list(a) != list(sampler(mode=mode, seed=6))


def test_two_ranks_take_slices_of_the_same_global_batch():
    for mode in ("mixed", "same_source"):
        ranks = [list(sampler(mode=mode, num_replicas=2, rank=r)) for r in range(2)]
        glob = sampler(mode=mode, num_replicas=2).global_batches()
        assert len(ranks[0]) == len(ranks[1]) == len(glob) > 0
        for step, (b0, b1) in enumerate(zip(*ranks)):
            assert len(b0) == len(b1) == 4 and not set(b0) & set(b1)
            assert b0 + b1 == glob[step].tolist()
            if mode == "same_source":
                assert len(sources_of(b0) | sources_of(b1)) == 1, step  # both ranks: one source at this step


def test_mixed_keeps_a_partial_last_batch_only_when_asked_and_alone():
    assert [len(b) for b in sampler(mode="mixed", batch_size=30, drop_last=False)] == [30, 30, 30, 10]
    assert [len(b) for b in sampler(mode="mixed", batch_size=30)] == [30, 30, 30]
    assert len(sampler(mode="mixed", batch_size=30, drop_last=False, num_replicas=2)) == 1  # 60 of 100 records


def test_resume_skips_the_batches_already_trained():
    full = sampler()
    full.set_epoch(3)
    everything = list(full)
    interrupted = sampler()
    interrupted.set_epoch(3)
    iterator = iter(interrupted)
    head = [next(iterator) for _ in range(7)]
    state = interrupted.state_dict()
    assert state == {"seed": 5, "epoch": 3, "batches_yielded": 7, "mode": "same_source"}
    resumed = sampler()
    resumed.load_state_dict(json.loads(json.dumps(state)))
    assert head + list(resumed) == everything
    assert list(resumed) == everything  # the skip applies to one pass only
    with pytest.raises(ValueError, match="seed"):
        sampler(seed=9).load_state_dict(state)


def test_lightning_leaves_it_in_place_under_ddp():
    assert isinstance(sampler(), DistributedSampler)


class RecordQueryLengths(pl.Callback):
    """Per rank: the token counts of every query of every batch (source A's queries are short, B's long)."""

    def __init__(self, folder: str):
        self.folder, self.steps = folder, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.steps.append(batch["query_attention_mask"].sum(1).tolist())

    def on_train_end(self, trainer, pl_module):
        Path(self.folder, f"rank{trainer.global_rank}.json").write_text(json.dumps(self.steps))


def write_source(path, n, query):
    rows = [{"instruction": "", "query": query.format(i=i), "positive": f"passage {i}", "negatives": [],
             "task_type": "short_long", "language": "en", "source": path.stem} for i in range(n)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


@pytest.mark.slow
def test_same_source_under_ddp_sim_every_rank_gets_the_same_source_at_each_step(compose_train, tmp_path):
    from hydra.utils import instantiate

    from embedforge.model.builder import load_tokenizer
    from embedforge.model.settings import EncoderGroups
    from embedforge.train.datamodule import EmbeddingDataModule
    from embedforge.train.module import EmbeddingModule

    write_source(tmp_path / "short.jsonl", 12, "fox")
    write_source(tmp_path / "long.jsonl", 20, "the quick brown fox jumps over the lazy dog again and again {i}")
    cfg = compose_train("model=tiny-mistral", "pooling=last_token", "trainer=ddp_sim", "lora=r8", "data.batch_size=2",
                        "data.val_files=null", "trainer.max_epochs=1", "data.batching=same_source",
                        "data.instruction_mode=none", f"data.sources.demo.files=[{tmp_path / 'short.jsonl'}]",
                        f"+data.sources.long={{type:jsonl,files:[{tmp_path / 'long.jsonl'}]}}")
    tokenizer = load_tokenizer(EncoderGroups.from_config(cfg).settings())
    datamodule = EmbeddingDataModule(cfg.data, tokenizer, seed=0)
    datamodule.setup("fit")  # all data read and checked before the model and the processes start
    module = EmbeddingModule(cfg)
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False,
                          callbacks=[RecordQueryLengths(str(tmp_path))])
    trainer.fit(module, datamodule=datamodule)

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 3 + 5  # global batches of 4: 12 // 4 short, 20 // 4 long
    kinds = []
    for step, (q0, q1) in enumerate(zip(*ranks)):
        lengths = q0 + q1
        assert len(lengths) == 4
        assert all(n < 6 for n in lengths) or all(n >= 10 for n in lengths), (step, lengths)
        kinds.append(lengths[0] < 6)
    assert Counter(kinds) == {True: 3, False: 5}
