"""Per-item scores (eval.save_item_scores) give back each task's main score, and any resample of them
the score of that resample, checked against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from embedforge.eval.instructions import InstructionPolicy
from embedforge.eval.item_scores import same_items, statistic
from embedforge.eval.local_tasks import load_local_task
from embedforge.eval.runner import run_tasks

NONE = InstructionPolicy(mode="none")


@pytest.fixture(scope="module")
def evaluated(minilm, tasks_root, tmp_path_factory):
    names = ["MySTS", "MyRetrieval", "MyClassification", "MyPairs"]
    tasks = [load_local_task(tasks_root / n) for n in names]
    out = run_tasks(minilm, tasks, policy=NONE, out_dir=tmp_path_factory.mktemp("results"), save_item_scores=True)
    return {t.metadata.name: r for t, r in zip(tasks, out.results)}, out.item_scores


def test_items_give_back_the_main_score(evaluated):
    results, items = evaluated
    assert set(items) == {"MySTS", "MyRetrieval", "MyClassification"}  # pair classification: max_ap, no items
    for name, found in items.items():
        assert statistic(found) == pytest.approx(100 * results[name].scores["test"][0]["main_score"], abs=1e-3), name


def test_retrieval_items_are_per_query_ndcg(evaluated, minilm, fx):
    _, items = evaluated
    found = items["MyRetrieval"]
    doc_ids = list(fx.DOCS)
    docs = minilm.encode([f"{t} {x}" for t, x in fx.DOCS.values()])
    for qid, value in zip(found["ids"], found["values"]):
        sims = docs @ minilm.encode([fx.QUERIES[qid]])[0]
        rank = [doc_ids[i] for i in np.argsort(-sims)].index(fx.QRELS[qid])
        assert value == pytest.approx(1 / np.log2(rank + 2) if rank < 10 else 0.0, abs=1e-5), qid


def test_a_resample_scores_as_scipy_on_that_resample():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 6, 300).astype(float)  # many ties, as STS gold scores have
    predicted = gold + rng.normal(0, 2, 300)
    items = {"kind": "spearman", "predicted": predicted.tolist(), "gold": gold.tolist()}
    index = rng.integers(0, 300, (5, 300))  # with replacement: repeated items tie with themselves
    got = statistic(items, index)
    for row, value in zip(index, got):
        assert value == pytest.approx(100 * spearmanr(predicted[row], gold[row])[0], abs=1e-9)
    means = {"kind": "mean", "ids": list(range(300)), "values": predicted.tolist()}
    assert statistic(means, index) == pytest.approx(100 * predicted[index].mean(axis=1))


def test_pairing_needs_the_same_items():
    a = {"kind": "mean", "ids": ["q1", "q2"], "values": [1.0, 0.0]}
    assert same_items(a, {**a, "values": [0.5, 0.5]})
    assert not same_items(a, {**a, "ids": ["q2", "q1"]})
    assert not same_items(a, {"kind": "spearman", "predicted": [1, 2], "gold": [1, 2]})
