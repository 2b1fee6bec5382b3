"""Each local task type through mteb's evaluators, checked against an independent computation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score

from embedforge.eval.instructions import InstructionPolicy
from embedforge.eval.local_tasks import load_local_task
from embedforge.eval.runner import resolve_tasks, run_tasks

NONE = InstructionPolicy(mode="none")


def _run(encoder, folder, tmp_path=None):
    task = load_local_task(folder)
    out = run_tasks(encoder, [task], policy=NONE, out_dir=tmp_path)
    return task, out.results[0], out


def _cos(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def test_sts_matches_scipy_spearman(minilm, tasks_root, tmp_path, fx):
    task, result, out = _run(minilm, tasks_root / "MySTS", tmp_path)
    s1 = minilm.encode([r[0] for r in fx.STS_ROWS])
    s2 = minilm.encode([r[1] for r in fx.STS_ROWS])
    expected = spearmanr([r[2] for r in fx.STS_ROWS], _cos(s1, s2))[0]
    scores = result.scores["test"][0]
    assert task.metadata.main_score == "cosine_spearman"
    assert scores["main_score"] == pytest.approx(expected, abs=1e-6)
    assert (out.out_dir / "MySTS.json").is_file()  # mteb results format, one file per task


def test_retrieval_matches_direct_ndcg(minilm, tasks_root, fx):
    task, result, _ = _run(minilm, tasks_root / "MyRetrieval")
    doc_ids = list(fx.DOCS)
    docs = minilm.encode([f"{t} {x}" for t, x in fx.DOCS.values()])
    ranks = []
    for qid, text in fx.QUERIES.items():
        sims = docs @ minilm.encode([text])[0]
        order = [doc_ids[i] for i in np.argsort(-sims)]
        ranks.append(order.index(fx.QRELS[qid]))
    # one relevant document per query: nDCG@10 = 1 / log2(rank + 2)
    expected = float(np.mean([1.0 / np.log2(r + 2) if r < 10 else 0.0 for r in ranks]))
    assert result.scores["test"][0]["ndcg_at_10"] == pytest.approx(expected, abs=1e-4)
    assert expected > 0.9  # the fixture is (nearly) trivially solvable


def test_classification_separable_fixture(minilm, tasks_root):
    task, result, _ = _run(minilm, tasks_root / "MyClassification")
    assert task.metadata.main_score == "accuracy"
    assert result.scores["test"][0]["accuracy"] == pytest.approx(1.0)


def test_pair_classification_matches_sklearn_ap(minilm, tasks_root, fx):
    _, result, _ = _run(minilm, tasks_root / "MyPairs")
    cos = _cos(minilm.encode([p[0] for p in fx.PAIRS]), minilm.encode([p[1] for p in fx.PAIRS]))
    expected = average_precision_score([p[2] for p in fx.PAIRS], cos)
    assert result.scores["test"][0]["cosine_ap"] == pytest.approx(expected, abs=1e-6)


def test_bitext_matches_direct_nearest_neighbour(minilm, tasks_root, fx):
    task, result, _ = _run(minilm, tasks_root / "MyBitext")
    accuracy = {s["hf_subset"]: s["accuracy"] for s in result.scores["test"]}
    assert set(accuracy) == set(fx.BITEXT)
    for subset, rows in fx.BITEXT.items():
        src, tgt = minilm.encode([r[0] for r in rows]), minilm.encode([r[1] for r in rows])
        direct = float(np.mean((src @ tgt.T).argmax(axis=1) == np.arange(len(rows))))
        assert accuracy[subset] == pytest.approx(direct)


def test_named_mteb_task_reuses_its_metadata(tmp_path, fx):
    folder = fx.make_sts(tmp_path, "stsb", mteb_task="STSBenchmark")
    task = load_local_task(folder)
    assert type(task).__name__ == "STSBenchmarkSTS" or task.metadata.name == "STSBenchmark"
    assert task.metadata.name == "STSBenchmark" and task.metadata.main_score == "cosine_spearman"
    assert task.data_loaded and len(task.dataset["default"]["test"]) == len(fx.STS_ROWS)


def test_resolve_all_folders_in_data_dir(tasks_root):
    names = sorted(t.metadata.name for t in resolve_tasks(data_dir=tasks_root))
    assert names == ["MyBitext", "MyClassification", "MyPairs", "MyRetrieval", "MySTS"]
