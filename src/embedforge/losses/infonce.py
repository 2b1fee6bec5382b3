"""InfoNCE over in-batch and hard negatives (docs/method.md section 3).

For query i the candidates are every document slot of the (global) batch: its own positive, the
other queries' positives and all hard negatives. Similarity is cosine / temperature; the loss is
cross-entropy with the positive as the target.

| input        | shape            | note                                                     |
|--------------|------------------|----------------------------------------------------------|
| queries      | (Q, H)           | L2-normalised or not: cosine is taken here               |
| documents    | (D, H)           | D >= Q; slot layout [positives, negatives of slot 1, ...] |
| labels       | (Q,)             | index of each query's positive in `documents`            |
| doc_mask     | (D,) bool / None | False marks an empty slot (a record with no negative)    |
| pair_mask    | (Q, D) bool/None | False hides a document from one query only (duplicates)  |
| output       | ()               | mean loss over queries                                   |

With `temperature = 1 / scale` and labels = arange(Q) this is sentence-transformers'
MultipleNegativesRankingLoss; a test checks it. `InfoNCELoss` is the same function as a
`conf/loss/*.yaml` target: the training module calls every loss as
`loss(queries, documents, labels=..., doc_mask=..., pair_mask=...)`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def similarity_logits(queries: torch.Tensor, documents: torch.Tensor, temperature: float,
                      doc_mask: torch.Tensor | None = None, pair_mask: torch.Tensor | None = None) -> torch.Tensor:
    if temperature <= 0:
        raise ValueError(f"loss.temperature must be > 0, got {temperature}")
    q = F.normalize(queries.float(), dim=-1)
    d = F.normalize(documents.float(), dim=-1)
    logits = q @ d.T / temperature
    if doc_mask is not None:
        logits = logits.masked_fill(~doc_mask.to(logits.device).unsqueeze(0), float("-inf"))
    if pair_mask is not None:
        logits = logits.masked_fill(~pair_mask.to(logits.device), float("-inf"))
    return logits


def info_nce(queries: torch.Tensor, documents: torch.Tensor, temperature: float = 0.02,
             labels: torch.Tensor | None = None, doc_mask: torch.Tensor | None = None,
             pair_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean InfoNCE loss; `labels` defaults to arange(Q) (positive i sits in slot i)."""
    if labels is None:
        labels = torch.arange(queries.shape[0], device=queries.device)
    logits = similarity_logits(queries, documents, temperature, doc_mask, pair_mask)
    return F.cross_entropy(logits, labels)


def ranking_accuracy(queries: torch.Tensor, documents: torch.Tensor, labels: torch.Tensor | None = None,
                     doc_mask: torch.Tensor | None = None, pair_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Share of queries whose positive scores above every other candidate."""
    if labels is None:
        labels = torch.arange(queries.shape[0], device=queries.device)
    logits = similarity_logits(queries, documents, 1.0, doc_mask, pair_mask)
    return (logits.argmax(dim=-1) == labels).float().mean()


class InfoNCELoss:
    """`info_nce` with its temperature bound: the target of conf/loss/infonce.yaml."""

    def __init__(self, temperature: float = 0.02):
        if not isinstance(temperature, (int, float)) or temperature <= 0:
            raise ValueError(f"loss.temperature: must be a number > 0, got {temperature!r}")
        self.temperature = float(temperature)

    def __call__(self, queries: torch.Tensor, documents: torch.Tensor, labels: torch.Tensor | None = None,
                 doc_mask: torch.Tensor | None = None, pair_mask: torch.Tensor | None = None) -> torch.Tensor:
        return info_nce(queries, documents, self.temperature, labels=labels, doc_mask=doc_mask, pair_mask=pair_mask)

    def __repr__(self) -> str:
        return f"InfoNCELoss(temperature={self.temperature})"
