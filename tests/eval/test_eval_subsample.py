"""eval.subsample: a seeded sample of a local task's evaluation split, the same items for every model,
scored by mteb exactly as the whole task restricted to those items, and kept apart from the whole task."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from embedforge.eval.instructions import InstructionPolicy
from embedforge.eval.local_tasks import load_local_task
from embedforge.eval.runner import TaskResolutionError, resolve_tasks, run_tasks

NONE = InstructionPolicy(mode="none")


def test_an_sts_sample_is_seeded_and_scored_on_its_items(minilm, tasks_root, tmp_path, fx):
    task = load_local_task(tasks_root / "MySTS", subsample=6)
    again = load_local_task(tasks_root / "MySTS", subsample=6)
    rows = task.dataset["default"]["test"]
    assert len(rows) == 6 and rows["sentence1"] == again.dataset["default"]["test"]["sentence1"]
    assert load_local_task(tasks_root / "MySTS", subsample=6, seed=1).dataset["default"]["test"]["sentence1"] != rows["sentence1"]
    order = [r[0] for r in fx.STS_ROWS]
    assert [order.index(s) for s in rows["sentence1"]] == sorted(order.index(s) for s in rows["sentence1"])  # file order
    out = run_tasks(minilm, [task], policy=NONE, out_dir=tmp_path)
    a, b = minilm.encode(rows["sentence1"]), minilm.encode(rows["sentence2"])
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert out.results[0].scores["test"][0]["main_score"] == pytest.approx(spearmanr(rows["score"], cos)[0], abs=1e-6)
    whole = run_tasks(minilm, [load_local_task(tasks_root / "MySTS")], policy=NONE, out_dir=tmp_path)
    assert whole.out_dir != out.out_dir  # the sample's results never overwrite the whole task's


def test_a_retrieval_sample_keeps_the_corpus_and_samples_queries(tasks_root, fx):
    data = load_local_task(tasks_root / "MyRetrieval", subsample=2).dataset["default"]["test"]
    assert len(data["queries"]) == 2 and len(data["corpus"]) == len(fx.DOCS)
    assert set(data["relevant_docs"]) == set(data["queries"]["id"])


def test_classification_samples_the_test_split_and_trains_on_all(tasks_root, fx):
    data = load_local_task(tasks_root / "MyClassification", subsample=2).dataset["default"]
    assert len(data["test"]) == 2 and len(data["train"]) == len(fx.CLASS_TRAIN)


def test_a_sample_larger_than_the_split_is_the_split(tasks_root, fx):
    assert len(load_local_task(tasks_root / "MySTS", subsample=1000).dataset["default"]["test"]) == len(fx.STS_ROWS)


def test_resolve_tasks_samples_by_name_and_refuses_a_task_it_cannot_sample(tasks_root, fx):
    tasks = resolve_tasks(["MySTS", "MyPairs"], data_dir=tasks_root, subsample={"MySTS": 3})
    assert [len(t.dataset["default"]["test"]) for t in tasks] == [3, len(fx.PAIRS)]
    assert [t.subsample for t in tasks] == [3, None]
    with pytest.raises(TaskResolutionError, match=r"^callbacks.mteb_eval.subsample.MyBitext: not a local task"):
        resolve_tasks(["MySTS"], data_dir=tasks_root, subsample={"MyBitext": 3}, key="callbacks.mteb_eval")
