"""Length grouping (data.group_by_length): every record once per epoch, seeded, fewer pad tokens,
and same_source batches still hold one source."""

import torch

from embedforge.data.batching import SourceBatchSampler


def _lengths(n, seed=0):
    return torch.randint(1, 500, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def _pad_share(batches, lengths):
    pads = total = 0
    for batch in batches:
        size = [lengths[i] for i in batch]
        pads += sum(max(size) - s for s in size)
        total += max(size) * len(size)
    return pads / total


def test_grouped_batches_cover_the_epoch_once_and_pad_less():
    lengths = _lengths(640)
    plain = SourceBatchSampler([0] * 640, 16, seed=3)
    grouped = SourceBatchSampler([0] * 640, 16, seed=3, lengths=lengths, length_window=8)
    for epoch in (0, 1):
        plain.set_epoch(epoch), grouped.set_epoch(epoch)
        batches = list(grouped)
        assert sorted(i for b in batches for i in b) == list(range(640))
        assert batches == list(grouped)  # same seed and epoch, same order
        assert _pad_share(batches, lengths) < 0.5 * _pad_share(list(plain), lengths)
    grouped.set_epoch(0)
    first = list(grouped)
    grouped.set_epoch(1)
    assert first != list(grouped)  # a new order each epoch
    # batch order is shuffled: not simply longest first
    maxima = [max(lengths[i] for i in b) for b in first]
    assert maxima != sorted(maxima, reverse=True)


def test_grouping_keeps_same_source_batches_pure():
    sources = [0] * 300 + [1] * 200
    lengths = _lengths(500, seed=1)
    sampler = SourceBatchSampler(sources, 10, seed=0, mode="same_source", lengths=lengths, length_window=4)
    batches = list(sampler)
    assert all(len({sources[i] for i in b}) == 1 for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(500))


def test_datamodule_passes_lengths_when_asked(compose_train, tiny_mistral_path):
    from transformers import AutoTokenizer

    from embedforge.model.tokenize import ensure_pad_token
    from embedforge.train.datamodule import EmbeddingDataModule

    tokenizer = AutoTokenizer.from_pretrained(tiny_mistral_path)
    ensure_pad_token(tokenizer)
    shares = []
    for grouped in (False, True):
        cfg = compose_train("data.batch_size=8", f"data.group_by_length={grouped}")
        datamodule = EmbeddingDataModule(cfg.data, tokenizer, seed=0)
        datamodule.setup("fit")
        loader = datamodule.train_dataloader()
        assert (datamodule.sampler.lengths is not None) == grouped
        masks = [b[k] for b in loader for k in ("query_attention_mask", "doc_attention_mask")]
        shares.append(sum(int((m == 0).sum()) for m in masks) / sum(m.numel() for m in masks))
    assert shares[1] < shares[0]
