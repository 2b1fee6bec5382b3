"""Per-item scores of an evaluation, kept so that a difference between two runs can be resampled
(report/bootstrap.py): a task's main score is recomputed from any resample of its test items.

From the predictions mteb writes (`mteb.evaluate(..., prediction_folder=)`) and the task's own data:
- STS (main score cosine_spearman): each pair's cosine similarity and gold score; the statistic is
  Spearman's rho between them (ties get average ranks, as scipy's spearmanr);
- Retrieval (ndcg_at_10): each judged query's nDCG@10, computed by mteb's own scorer; the statistic
  is their mean;
- Classification (accuracy): each test item's share of mteb's experiments (classifiers trained on
  different samples of the training split) that labelled it correctly; the statistic is their mean.
Other task types (or other main scores) keep no items: their deltas get no interval.
Scores are x 100, as everywhere in reports.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SUPPORTED = {"STS": "cosine_spearman", "Retrieval": "ndcg_at_10", "Classification": "accuracy"}
DIGITS = 6  # enough to recompute scores to 1e-4 points, small enough to commit with a record


def _split_and_subset(task) -> tuple[str, str] | None:
    splits = list(task.eval_splits)
    split = "test" if "test" in splits else splits[0]
    subsets = list(getattr(task, "hf_subsets", None) or ["default"])
    if len(subsets) != 1:
        return None  # multilingual tasks average subsets; resampling them is not supported here
    return split, subsets[0]


def _sts(task, predicted: dict, split: str, subset: str) -> dict:
    gold = [float(s) for s in task.dataset[subset][split]["score"]]
    scores = [float(s) for s in predicted["cosine_scores"]]
    return {"kind": "spearman", "predicted": scores, "gold": gold}


def _retrieval(task, predicted: dict, split: str, subset: str) -> dict:
    from mteb._evaluators.retrieval_metrics import calculate_retrieval_scores

    qrels = task.dataset[subset][split]["relevant_docs"]
    results = {qid: dict(docs) for qid, docs in predicted.items()}
    if getattr(task, "ignore_identical_ids", False):  # as mteb's evaluator does before scoring
        results = {qid: {d: s for d, s in docs.items() if d != qid} for qid, docs in results.items()}
    per_query = calculate_retrieval_scores(results, qrels, [10], bool(getattr(task, "skip_first_result", False))).all_scores
    ids = sorted(per_query)
    return {"kind": "mean", "ids": ids, "values": [per_query[q]["ndcg_cut_10"] for q in ids]}


def _classification(task, predicted: list, split: str, subset: str) -> dict:
    gold = np.asarray(task.dataset[subset][split]["label"])
    runs = np.asarray(predicted)  # (experiments, items)
    if runs.ndim != 2 or runs.shape[1] != len(gold):
        raise ValueError(f"{task.metadata.name}: predictions of shape {runs.shape} for {len(gold)} test items")
    return {"kind": "mean", "ids": list(range(len(gold))), "values": (runs == gold).mean(axis=0).tolist()}


def item_scores(task, predictions_file: Path) -> dict | None:
    """{kind, ..., main_score} for `task` from mteb's predictions file, or None where not supported."""
    kind = task.metadata.type
    if SUPPORTED.get(kind) != task.metadata.main_score or not predictions_file.is_file():
        return None
    where = _split_and_subset(task)
    if where is None:
        return None
    split, subset = where
    predicted = json.loads(predictions_file.read_text(encoding="utf-8"))[subset][split]
    read = {"STS": _sts, "Retrieval": _retrieval, "Classification": _classification}[kind]
    items = read(task, predicted, split, subset)
    for key in ("predicted", "gold", "values"):
        if key in items:
            items[key] = [round(float(v), DIGITS) for v in items[key]]
    items["split"] = split
    return items


def statistic(items: dict, index: np.ndarray | None = None) -> np.ndarray | float:
    """The task's main score x 100 on the items picked by `index` ((n,) or (resamples, n); None: all)."""
    if items["kind"] == "mean":
        values = np.asarray(items["values"], dtype=np.float64)
        picked = values if index is None else values[index]
        return 100.0 * picked.mean(axis=-1)
    if items["kind"] == "spearman":
        from scipy.stats import rankdata

        x, y = np.asarray(items["predicted"], dtype=np.float64), np.asarray(items["gold"], dtype=np.float64)
        if index is not None:
            x, y = x[index], y[index]
        rx, ry = rankdata(x, axis=-1), rankdata(y, axis=-1)
        rx -= rx.mean(axis=-1, keepdims=True)
        ry -= ry.mean(axis=-1, keepdims=True)
        rho = (rx * ry).sum(axis=-1) / np.sqrt((rx * rx).sum(axis=-1) * (ry * ry).sum(axis=-1))
        return 100.0 * rho
    raise ValueError(f"item scores: unknown kind {items['kind']!r}")


def n_items(items: dict) -> int:
    return len(items["values"] if items["kind"] == "mean" else items["predicted"])


def same_items(a: dict, b: dict) -> bool:
    """Whether two runs' items are the same test items in the same order (a paired comparison needs it)."""
    if a["kind"] != b["kind"] or n_items(a) != n_items(b):
        return False
    if a["kind"] == "spearman":
        return a["gold"] == b["gold"]
    return a["ids"] == b["ids"]
