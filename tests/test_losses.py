"""Losses as config targets: Matryoshka InfoNCE equals sentence-transformers' MatryoshkaLoss(MNRL);
the InfoNCE target equals the plain function; duplicated positives are masked, not used as negatives."""

import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss, MultipleNegativesRankingLoss

from embedforge.data.collate import ContrastiveCollator
from embedforge.data.schema import Example
from embedforge.losses import build_loss
from embedforge.losses.duplicates import duplicate_pair_mask, text_hash
from embedforge.losses.infonce import InfoNCELoss, info_nce
from embedforge.losses.matryoshka import MatryoshkaInfoNCELoss


class _EmbeddingsIn(torch.nn.Module):
    """A sentence-transformers module whose 'features' are already embeddings. Wrapped in a real
    SentenceTransformer (public API only), so MatryoshkaLoss gets everything it asks of a model."""

    def forward(self, features):
        return {**features, "sentence_embedding": features["emb"]}

    def get_sentence_embedding_dimension(self):
        return 64


@pytest.mark.parametrize("weights", [None, [1.0, 0.5, 0.25]])
def test_matryoshka_equals_sentence_transformers(weights):
    torch.manual_seed(0)
    dims, temperature = [64, 32, 8], 0.05
    q1 = torch.randn(6, 64, requires_grad=True)
    d1 = torch.randn(12, 64, requires_grad=True)  # positives + one hard negative per query
    q2, d2 = q1.detach().clone().requires_grad_(), d1.detach().clone().requires_grad_()

    ours = MatryoshkaInfoNCELoss(dims, weights, temperature)(q1, d1)
    model = SentenceTransformer(modules=[_EmbeddingsIn()], device="cpu")
    theirs = MatryoshkaLoss(model, MultipleNegativesRankingLoss(model, scale=1 / temperature), dims, weights)(
        [{"emb": q2}, {"emb": d2[:6]}, {"emb": d2[6:]}], labels=None)
    assert torch.allclose(ours, theirs, atol=1e-5), (ours, theirs)
    ours.backward(), theirs.backward()
    assert torch.allclose(q1.grad, q2.grad, atol=1e-6) and torch.allclose(d1.grad, d2.grad, atol=1e-6)


def test_matryoshka_is_more_than_the_full_size_loss():
    torch.manual_seed(1)
    q, d = torch.randn(4, 16), torch.randn(8, 16)
    full = info_nce(q, d, 0.02)
    assert torch.allclose(MatryoshkaInfoNCELoss([16], None, 0.02)(q, d), full)
    assert not torch.allclose(MatryoshkaInfoNCELoss([16, 4], None, 0.02)(q, d), full)


def test_infonce_target_equals_the_function():
    torch.manual_seed(2)
    q, d = torch.randn(5, 8), torch.randn(10, 8)
    mask = torch.ones(10, dtype=torch.bool)
    mask[7] = False
    loss = build_loss({"_target_": "embedforge.losses.infonce.InfoNCELoss", "temperature": 0.05,
                       "share_negatives_across_devices": True, "mask_duplicate_positives": True})
    assert isinstance(loss, InfoNCELoss)
    assert torch.equal(loss(q, d, doc_mask=mask), info_nce(q, d, 0.05, doc_mask=mask))


@pytest.mark.parametrize("cfg, key", [
    ({"_target_": "embedforge.losses.matryoshka.MatryoshkaInfoNCELoss", "dims": [8, 4], "weights": [1.0]}, "loss.weights"),
    ({"_target_": "embedforge.losses.matryoshka.MatryoshkaInfoNCELoss", "dims": [0]}, "loss.dims"),
    ({"_target_": "embedforge.losses.infonce.InfoNCELoss", "temperature": -1}, "loss.temperature"),
    ({"temperature": 0.02}, "loss._target_"),
])
def test_bad_loss_config_names_the_key(cfg, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        build_loss(cfg)


def test_matryoshka_dims_larger_than_the_model_fail_at_start(compose_train):
    from embedforge.train.module import EmbeddingModule

    module = EmbeddingModule(compose_train("model=tiny-mistral", "loss=matryoshka_infonce"))
    with pytest.raises(ValueError, match="loss.dims"):
        module.configure_model()


# ------------------------------------------------------------------------------------------- duplicates
def _examples():
    # classification-style records share their label text; record 3's negative is record 0's positive
    return [Example("Classify", "great film", "positive", ["negative"], "long_short"),
            Example("Classify", "awful film", "negative", ["positive"], "long_short"),
            Example("Classify", "loved it", "positive", ["negative"], "long_short"),
            Example("Find", "capital of France", "Paris is the capital.", ["positive"], "short_long")]


def test_duplicate_positive_is_masked_like_a_hand_masked_batch(tiny_mistral_path):
    from transformers import AutoTokenizer

    from embedforge.model.tokenize import ensure_pad_token

    tokenizer = AutoTokenizer.from_pretrained(tiny_mistral_path)
    ensure_pad_token(tokenizer)
    batch = ContrastiveCollator(tokenizer, hard_negatives=1)(_examples())
    slots = ["positive", "negative", "positive", "Paris is the capital.", "negative", "positive", "negative", "positive"]
    assert batch["doc_hash"].tolist() == [text_hash(s) for s in slots]
    labels = torch.arange(4)
    mask = duplicate_pair_mask(batch["doc_hash"][:4], batch["doc_hash"], labels)

    by_hand = torch.ones(4, 8, dtype=torch.bool)
    for i, j in [(0, 2), (0, 5), (0, 7), (2, 0), (2, 5), (2, 7), (1, 4), (1, 6)]:
        by_hand[i, j] = False  # same text as query i's positive, not its own slot
    assert torch.equal(mask, by_hand)

    torch.manual_seed(3)
    q, d = torch.randn(4, 16), torch.randn(8, 16)
    masked = info_nce(q, d, 0.05, labels=labels, pair_mask=mask)
    assert torch.allclose(masked, info_nce(q, d, 0.05, labels=labels, pair_mask=by_hand))
    assert not torch.allclose(masked, info_nce(q, d, 0.05, labels=labels))  # the mask matters
    # a query with no duplicate (query 3) keeps every candidate: its row equals the unmasked loss row
    rows = torch.nn.functional.cross_entropy
    logits = torch.nn.functional.normalize(q) @ torch.nn.functional.normalize(d).T / 0.05
    assert torch.allclose(rows(logits[3:4], labels[3:4]),
                          rows(logits[3:4].masked_fill(~mask[3:4], float("-inf")), labels[3:4]))


def test_module_masks_duplicates_and_can_be_switched_off(compose_train):
    from embedforge.train.module import EmbeddingModule

    losses = {}
    for on in (True, False):
        cfg = compose_train("model=tiny-mistral", "pooling=last_token", "lora=r8", "lora.dropout=0",
                            f"loss.mask_duplicate_positives={on}")
        module = EmbeddingModule(cfg)
        torch.manual_seed(0)
        module.configure_model()
        tokenizer = module.encoder.tokenizer
        batch = ContrastiveCollator(tokenizer, hard_negatives=1)(_examples())
        losses[on] = module.contrastive_step(batch)[0]
        if on:
            q, docs = module.embed_batch(batch)
            labels = torch.arange(4)
            expected = info_nce(q, docs, float(cfg.loss.temperature), labels=labels, doc_mask=batch["doc_mask"],
                                pair_mask=duplicate_pair_mask(batch["doc_hash"][:4], batch["doc_hash"], labels))
            assert torch.allclose(losses[on], expected, atol=1e-6)
    assert not torch.allclose(losses[True], losses[False])
