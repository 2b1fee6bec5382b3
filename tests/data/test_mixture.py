"""Mixtures: seeded ratios and caps, reproducible order, the demo unchanged, counts for the logs,
and bad input refused before any model exists."""

from collections import Counter
from pathlib import Path

import pytest
import torch

from embedforge.data.jsonl import load_examples
from embedforge.data.mixture import build_mixture, counts_table, sample_indices
from embedforge.data.sources import SourceError
from embedforge.data.settings import DataSettings
from embedforge.errors import ConfigError
from embedforge.train.datamodule import EmbeddingDataModule

FIXTURES = Path(__file__).parent / "fixtures"
DEMO_TRAIN = sorted((Path(__file__).parents[2] / "data" / "demo" / "train").glob("*.jsonl"))
# demo (280 records, ratio 1) + two public-format fixtures: MS MARCO (180 usable rows, ratio 0.5),
# HotpotQA parquet snapshot (150 rows, ratio 0.2)
THREE = ["+data/source@data.sources.msmarco_passage=msmarco_passage",
         f"data.sources.msmarco_passage.path={FIXTURES / 'msmarco_v2'}",
         "+data/source@data.sources.hotpotqa=hotpotqa", f"data.sources.hotpotqa.path={FIXTURES / 'hotpotqa_snapshot'}",
         "data.sources.hotpotqa.ratio=0.2"]


def identity_datamodule(cfg, seed=42):
    """The real data module, with batches left as lists of Examples (no tokenizer needed)."""
    dm = EmbeddingDataModule(cfg.data, tokenizer=None, seed=seed)
    dm.collator = lambda hard_negatives: (lambda batch: batch)
    dm.setup("fit")
    return dm


def test_sample_indices_keeps_ratio_caps_and_repeats():
    rng = lambda: __import__("random").Random(7)  # noqa: E731
    assert sample_indices(10, 1.0, None, rng()) == list(range(10))
    half = sample_indices(200, 0.5, None, rng())
    assert len(half) == 100 == len(set(half)) and half == sorted(half) and half != list(range(100))
    assert half == sample_indices(200, 0.5, None, rng())
    assert len(sample_indices(200, 0.5, 30, rng())) == 30
    assert Counter(sample_indices(4, 2.5, None, rng())).most_common(1)[0][1] == 3  # 2 copies + a sample of 2
    assert sample_indices(5, 0.01, None, rng()) != []  # at least one record


def test_mixture_reproduces_the_configured_ratios_over_10k_sampled_records(compose_train):
    cfg = compose_train(*THREE)
    dm = identity_datamodule(cfg)
    counts = dm.mixture_counts()
    assert {n: c["loaded"] for n, c in counts.items()} == {"demo": 280, "msmarco_passage": 180, "hotpotqa": 150}
    for name, c in counts.items():
        assert c["used"] == round(c["loaded"] * c["ratio"]), name
    expected = {n: c["used"] / 400 for n, c in counts.items()}
    dm.train_dataloader()
    names, ids = dm.mixture.names, dm.mixture.source_ids
    seen, epoch = Counter(), 0
    while sum(seen.values()) < 10_000:  # whole epochs of the sampler the training loader uses
        dm.sampler.set_epoch(epoch)
        for batch in dm.sampler:
            seen.update(names[ids[i]] for i in batch)
        epoch += 1
    total = sum(seen.values())
    shares = {n: seen[n] / total for n in expected}
    for name in expected:
        assert abs(shares[name] - expected[name]) < 0.01, (name, shares[name], expected[name], total)
    print(f"\n10k-record ratio check over {total} records ({epoch} epochs): "
          + ", ".join(f"{n} {shares[n]:.4f} (expected {expected[n]:.4f})" for n in expected))


def test_same_seed_same_order_other_seed_other_order(compose_train):
    cfg = compose_train(*THREE)
    orders = []
    for seed in (42, 42, 43):
        dm = identity_datamodule(cfg, seed)
        orders.append([[(e.source, e.query) for e in batch] for batch in dm.train_dataloader()])
    assert orders[0] == orders[1]
    assert orders[0] != orders[2]


def test_demo_gives_the_records_and_batches_of_the_pre_mixture_data_module(compose_train):
    """Reference: the old code path, DataLoader(sampler=randperm(seed * 100003 + epoch), batch_size, drop_last)."""
    cfg = compose_train("data=demo")
    dm = identity_datamodule(cfg, seed=42)
    old_examples = [e for path in DEMO_TRAIN for e in load_examples(path).examples]
    assert dm.train_examples == old_examples
    for epoch in range(3):
        permutation = torch.randperm(len(old_examples), generator=torch.Generator().manual_seed(42 * 100_003 + epoch))
        old = torch.utils.data.DataLoader(old_examples, batch_size=32, sampler=permutation.tolist(), drop_last=True,
                                          collate_fn=lambda batch: batch)
        new_loader = dm.train_dataloader()
        dm.sampler.set_epoch(epoch)
        assert [b for b in new_loader] == [b for b in old], epoch


def test_max_train_examples_is_a_seeded_random_sample(compose_train):
    cfg = compose_train("data.max_train_examples=16")
    first = identity_datamodule(cfg, seed=1).train_examples
    again = identity_datamodule(cfg, seed=1).train_examples
    other = identity_datamodule(cfg, seed=2).train_examples
    everything = [e for path in DEMO_TRAIN for e in load_examples(path).examples]
    assert len(first) == 16 and first == again and first != other
    assert first != everything[:16]
    assert all(e in everything for e in first)


def test_counts_are_exposed_and_printed(compose_train):
    dm = identity_datamodule(compose_train(*THREE))
    counts = dm.mixture_counts()
    assert counts["msmarco_passage"] == {"type": "hub", "loaded": 180, "rejected": 0, "filtered": 20, "ratio": 0.5,
                                         "cap": None, "sampled": 90, "used": 90, "share": 90 / 400}
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(counts_table(counts))
    text = console.export_text()
    assert "msmarco_passage" in text and "22.5%" in text


@pytest.mark.parametrize("override, key", [
    ("+data.sources.extra={type:parquet,files:[x]}", "data.sources.extra.type"),
    ("data.sources.demo.ratio=0", "data.sources.demo.ratio"),
    ("data.sources.demo.ratio=-0.5", "data.sources.demo.ratio"),
    ("+data.sources.demo.max_examples=0", "data.sources.demo.max_examples"),
    ("+data.sources.demo.ratios=0.5", "data.sources.demo.ratios"),
    ("data.batching=by_task", "data.batching"),
    ("~data.sources", "data.sources"),
])
def test_bad_mixture_config_fails_at_the_config_check_naming_the_key(compose_train, override, key, monkeypatch):
    from embedforge.train import run

    def no_model(*args, **kwargs):
        raise AssertionError("the model was built before the data config was checked")

    monkeypatch.setattr(run, "EmbeddingModule", no_model)
    cfg = compose_train(override)
    with pytest.raises(ConfigError) as err:
        DataSettings.from_config(cfg.data)
    assert f"'{key}'" in str(err.value)
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        run.train(cfg)


@pytest.mark.parametrize("overrides, message", [
    (["+data/source@data.sources.quora=quora"], r"data\.sources\.quora\.dataset: cannot load hub dataset "
                                                r"'sentence-transformers/quora-duplicates'.*data\.sources\.quora\.path="),
    (["+data/source@data.sources.nq=nq", f"data.sources.nq.path={FIXTURES / 'msmarco_v2'}"],
     r"data\.sources\.nq\.columns\.positive: column 'answer' is not in"),
    (["+data/source@data.sources.weak=weak_title_body", f"data.sources.weak.path={FIXTURES / 'msmarco_v2'}"],
     r"data\.sources\.weak\.path: .*corpus\.jsonl not found"),
    (["data.sources.demo.files=[tests/data/fixtures/make_fixtures.py]"], r"data\.sources\.demo: .*make_fixtures\.py:1: malformed JSON"),
])
def test_bad_data_fails_in_setup_naming_the_source_and_key(compose_train, overrides, message):
    cfg = compose_train(*overrides)
    DataSettings.from_config(cfg.data)  # structurally fine: only reading the data shows the problem
    with pytest.raises(SourceError, match=message):
        EmbeddingDataModule(cfg.data, tokenizer=None, seed=0).setup("fit")


def test_empty_source_fails_in_setup(compose_train, tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    cfg = compose_train(f"+data.sources.empty={{type:jsonl,files:[{tmp_path / 'empty.jsonl'}]}}")
    with pytest.raises(SourceError, match=r"data\.sources\.empty: no usable records \(0 rejected\)"):
        build_mixture(DataSettings.from_config(cfg.data), seed=0)


def test_bad_data_fails_in_train_before_the_model_is_built(compose_train, monkeypatch):
    from embedforge.train import run

    def no_model(*args, **kwargs):
        raise AssertionError("the model was built before the data was read")

    monkeypatch.setattr(run, "EmbeddingModule", no_model)
    cfg = compose_train("+data/source@data.sources.nq=nq", f"data.sources.nq.path={FIXTURES / 'msmarco_v2'}")
    with pytest.raises(SourceError, match=r"data\.sources\.nq\.columns\.positive"):
        run.train(cfg)


def test_pretrain_weak_mixture_trains_one_step(compose_train):
    from embedforge.train.run import train

    cfg = compose_train("data=pretrain_weak", f"data.sources.weak.path={FIXTURES / 'beir_mini'}", "model=tiny-mistral",
                        "pooling=last_token", "debug=fdr", "data.batch_size=4", "trainer=cpu", "data.val_files=null")
    assert train(cfg)["global_step"] == 1
