"""Retrieval metrics for the validation loop: each query against every distinct validation positive."""

from __future__ import annotations

import torch


def retrieval_metrics(queries: torch.Tensor, corpus: torch.Tensor, relevant: torch.Tensor, k: int = 10) -> dict:
    """Top-1 accuracy, MRR@k and nDCG@k with one relevant document per query.

    queries (Q, H), corpus (C, H), relevant (Q,) = index of each query's positive in corpus.
    With a single relevant document the ideal DCG is 1, so nDCG@k = 1 / log2(rank + 1) when rank <= k.
    """
    q = torch.nn.functional.normalize(queries.float(), dim=-1)
    c = torch.nn.functional.normalize(corpus.float(), dim=-1)
    scores = q @ c.T
    positive_scores = scores.gather(1, relevant.view(-1, 1))
    # rank = 1 + number of documents scoring strictly higher than the positive
    rank = 1 + (scores > positive_scores).sum(dim=1)
    within = rank <= k
    ndcg = torch.where(within, 1.0 / torch.log2(rank.float() + 1), torch.zeros_like(rank, dtype=torch.float))
    mrr = torch.where(within, 1.0 / rank.float(), torch.zeros_like(rank, dtype=torch.float))
    return {"acc@1": (rank == 1).float().mean().item(), f"mrr@{k}": mrr.mean().item(), f"ndcg@{k}": ndcg.mean().item()}
