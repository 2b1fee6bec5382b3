"""Our InfoNCE equals sentence-transformers' MultipleNegativesRankingLoss (scale = 1 / temperature)."""

import pytest
import torch
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from embedforge.losses.infonce import info_nce, ranking_accuracy


class _Identity(torch.nn.Module):
    """Stands in for a SentenceTransformer: the 'features' are already embeddings."""

    def forward(self, features):
        return {"sentence_embedding": features["emb"]}


def st_loss(q, docs_by_column, temperature):
    loss = MultipleNegativesRankingLoss(model=_Identity(), scale=1.0 / temperature)
    return loss([{"emb": q}] + [{"emb": d} for d in docs_by_column], labels=None)


@pytest.mark.parametrize("hard_negatives", [0, 1, 3])
@pytest.mark.parametrize("temperature", [0.02, 0.05, 1.0])
def test_matches_sentence_transformers(hard_negatives, temperature):
    torch.manual_seed(hard_negatives)
    batch, dim = 8, 16
    q = torch.randn(batch, dim, dtype=torch.float64).float()
    columns = [torch.randn(batch, dim) for _ in range(1 + hard_negatives)]
    ours = info_nce(q, torch.cat(columns), temperature)
    theirs = st_loss(q, columns, temperature)
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-5), (ours, theirs)


def test_gradients_match_sentence_transformers():
    torch.manual_seed(0)
    q1 = torch.randn(6, 8, requires_grad=True)
    d1 = torch.randn(12, 8, requires_grad=True)
    q2, d2 = q1.detach().clone().requires_grad_(), d1.detach().clone().requires_grad_()
    info_nce(q1, d1, 0.05).backward()
    st_loss(q2, [d2[:6], d2[6:]], 0.05).backward()
    assert torch.allclose(q1.grad, q2.grad, atol=1e-6) and torch.allclose(d1.grad, d2.grad, atol=1e-6)


def test_masked_slot_equals_dropping_it():
    torch.manual_seed(1)
    q, docs = torch.randn(4, 8), torch.randn(8, 8)
    mask = torch.ones(8, dtype=torch.bool)
    mask[5] = False
    keep = mask.nonzero().squeeze(1)
    assert torch.allclose(info_nce(q, docs, 0.1, doc_mask=mask), info_nce(q, docs[keep], 0.1))


def test_perfect_alignment_gives_low_loss_and_full_accuracy():
    q = torch.eye(4)
    assert info_nce(q, q.clone(), 0.02) < 1e-6
    assert ranking_accuracy(q, torch.roll(q, 1, 0)) == 0.0
    assert ranking_accuracy(q, q.clone()) == 1.0


def test_rejects_non_positive_temperature():
    with pytest.raises(ValueError, match="loss.temperature"):
        info_nce(torch.randn(2, 4), torch.randn(2, 4), 0.0)
