"""Last-token pooling and the EOS guarantee hold for left, right and no padding (tiny Mistral)."""

import pytest
import torch

from embedforge.data.collate import ContrastiveCollator
from embedforge.data.formatting import format_query
from embedforge.data.schema import Example
from embedforge.model.builder import encoder_from_pretrained
from embedforge.model.pooling import Pooling
from embedforge.model.tokenize import tokenize

TEXTS = ["a short one", "a considerably longer sentence about rotary position embeddings", "x"]


@pytest.fixture(scope="module")
def encoder(tiny_mistral_path):
    torch.manual_seed(0)
    return encoder_from_pretrained(str(tiny_mistral_path), pooling="last_token", max_length=32).eval()


def embed_one_by_one(encoder):
    rows = []
    for text in TEXTS:  # a batch of one has no padding at all
        feats = encoder.tokenize([text])
        assert feats["attention_mask"].all()
        rows.append(encoder(feats["input_ids"], feats["attention_mask"]))
    return torch.cat(rows)


@pytest.mark.parametrize("mode", ["last_token", "mean", "weighted_mean", "cls"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_pooling_is_padding_invariant(encoder, side, mode):
    encoder.pooling = Pooling(mode)
    encoder.tokenizer.padding_side = side
    with torch.no_grad():
        unpadded = embed_one_by_one(encoder)
        feats = encoder.tokenize(TEXTS)
        assert not feats["attention_mask"].all(), "the batch should need padding"
        padded = encoder(feats["input_ids"], feats["attention_mask"])
    assert torch.allclose(padded, unpadded, atol=1e-5), (padded - unpadded).abs().max()
    encoder.tokenizer.padding_side = "right"
    encoder.pooling = Pooling("last_token")


@pytest.mark.parametrize("side", ["left", "right"])
def test_every_sequence_ends_with_eos_even_when_truncated(encoder, side):
    tok = encoder.tokenizer
    tok.padding_side = side
    long_text = " ".join(["embedding"] * 200)
    feats = tokenize(tok, [long_text, "hi"], max_length=16)
    ids, mask = feats["input_ids"], feats["attention_mask"]
    assert ids.shape[1] == 16
    last = mask.shape[1] - 1 - mask.flip(1).int().argmax(1)
    assert (ids[torch.arange(2), last] == tok.eos_token_id).all()
    assert ids[0, 0] == tok.bos_token_id  # the tokenizer's own BOS is kept
    # the truncated text keeps max_length - 1 tokens of its own before the appended EOS
    assert int(mask[0].sum()) == 16
    tok.padding_side = "right"


def test_bert_tokenizer_keeps_its_own_sep_and_full_length():
    from transformers import AutoTokenizer

    from embedforge.model.loading import resolve_pretrained

    tok = AutoTokenizer.from_pretrained(resolve_pretrained("embedded:all-MiniLM-L6-v2"))
    feats = tokenize(tok, [" ".join(["word"] * 300)], max_length=256)
    assert feats["input_ids"].shape[1] == 256
    assert feats["input_ids"][0, -1] == tok.sep_token_id
    assert (feats["input_ids"][0] == tok.sep_token_id).sum() == 1


def test_collator_formats_queries_only_and_masks_missing_negatives(encoder):
    examples = [
        Example("Find the capital", "France?", "Paris is the capital.", ["Lyon is a city."], "short_long", "en", "t"),
        Example("Match headlines", "Rain in Oslo", "Oslo gets rain", [], "short_short", "en", "t"),
    ]
    collator = ContrastiveCollator(encoder.tokenizer, query_max_length=64, doc_max_length=64, hard_negatives=1)
    batch = collator(examples)
    assert batch["doc_mask"].tolist() == [True, True, True, False]
    assert batch["doc_input_ids"].shape[0] == 3  # only filled slots are encoded
    decoded = encoder.tokenizer.batch_decode(batch["query_input_ids"], skip_special_tokens=True)
    assert decoded[0].startswith("Instruct: Find the capital\nQuery: France?")
    docs = encoder.tokenizer.batch_decode(batch["doc_input_ids"], skip_special_tokens=True)
    assert not any("Instruct" in d for d in docs)


def test_instruction_modes():
    assert format_query("q", "Do X") == "Instruct: Do X\nQuery: q"
    assert format_query("q", "Do X", mode="none") == "q"
    assert format_query("q", "Do X", mode="task_type", task_type="short_long") == "query: q"
    assert format_query("q", "Do X", mode="task_type", task_type="long_short") == "classify: q"
    assert format_query("q", "Do X", mode="task_type", task_type="sts") == "q"
    assert format_query("q", "Do X", template="{instruction} | {query}") == "Do X | q"
    with pytest.raises(ValueError, match="data.instruction_mode"):
        format_query("q", "x", mode="bogus")
