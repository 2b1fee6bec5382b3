"""Instruction placement per task type, instruction sources, and per-type normalisation."""

from __future__ import annotations

import pytest

from embedforge.eval.instructions import InstructionPolicy
from embedforge.eval.local_tasks import load_local_task
from embedforge.eval.mteb_model import EmbedforgeMTEBModel
from embedforge.eval.runner import run_tasks

TEMPLATE = "Instruct: {instruction}\nQuery: {query}"
BY_TYPE = {"STS": "Retrieve semantically similar text.", "BitextMining": "Retrieve parallel sentences.",
           "Classification": "Classify the sentiment.", "PairClassification": "Retrieve duplicates.",
           "Retrieval": "Find the passage."}


def _seen(encoder, folder, policy):
    model = EmbedforgeMTEBModel(encoder, policy, record=True, revision="test")
    run_tasks(encoder, [load_local_task(folder)], policy=policy, model=model)
    return model.seen


@pytest.mark.parametrize("name, instruction", [("MySTS", BY_TYPE["STS"]), ("MyClassification", BY_TYPE["Classification"]),
                                               ("MyPairs", BY_TYPE["PairClassification"]),
                                               ("MyBitext", BY_TYPE["BitextMining"])])
def test_symmetric_tasks_instruct_every_input(minilm, tasks_root, name, instruction):
    seen = _seen(minilm, tasks_root / name, InstructionPolicy(by_type=BY_TYPE))
    assert seen and all(text.startswith(f"Instruct: {instruction}\nQuery: ") for _, _, text in seen)


def test_retrieval_instructs_queries_only(minilm, tasks_root, fx):
    seen = _seen(minilm, tasks_root / "MyRetrieval", InstructionPolicy(by_type=BY_TYPE))
    queries = [t for _, side, t in seen if side == "query"]
    documents = [t for _, side, t in seen if side == "document"]
    assert sorted(queries) == sorted(f"Instruct: Find the passage.\nQuery: {q}" for q in fx.QUERIES.values())
    assert sorted(documents) == sorted(f"{t} {x}" for t, x in fx.DOCS.values())


def test_mode_none_leaves_texts_bare(minilm, tasks_root, fx):
    seen = _seen(minilm, tasks_root / "MySTS", InstructionPolicy(mode="none", by_type=BY_TYPE))
    assert {t for _, _, t in seen} == {r[0] for r in fx.STS_ROWS} | {r[1] for r in fx.STS_ROWS}


def test_mteb_prompt_wins_over_tables(minilm, tmp_path, fx):
    # A local SciFact folder reuses mteb's metadata, whose query prompt is the E5 instruction.
    folder = fx.make_retrieval(tmp_path, "scifact", mteb_task="SciFact")
    policy = InstructionPolicy(by_type=BY_TYPE, by_task={"SciFact": "ignored"})
    seen = _seen(minilm, folder, policy)
    queries = [t for _, side, t in seen if side == "query"]
    assert queries and all(t.startswith("Instruct: Given a scientific claim, retrieve documents that support or "
                                        "refute the claim\nQuery: ") for t in queries)


def test_by_task_before_by_type():
    class Meta:
        name, type, prompt = "MyTask", "STS", None

    policy = InstructionPolicy(by_task={"MyTask": "Task-specific."}, by_type=BY_TYPE)
    assert policy.instruction(Meta) == "Task-specific."
    Meta.name = "Other"
    assert policy.instruction(Meta) == BY_TYPE["STS"]


def test_normalize_by_type_reaches_encoder(minilm, tasks_root, monkeypatch):
    calls = []
    original = minilm.encode

    def spy(texts, **kwargs):
        calls.append(kwargs.get("normalize"))
        return original(texts, **kwargs)

    monkeypatch.setattr(minilm, "encode", spy)
    policy = InstructionPolicy(mode="none", normalize_by_type={"Classification": False})
    _seen(minilm, tasks_root / "MyClassification", policy)
    _seen(minilm, tasks_root / "MySTS", policy)
    assert calls[0] is False and calls[-1] is None  # classification forced off; STS keeps the encoder's own


def test_bad_policy_config():
    with pytest.raises(ValueError, match="instructions.mode"):
        InstructionPolicy(mode="sometimes")
    with pytest.raises(ValueError, match="instructions.templat"):
        InstructionPolicy.from_config({"mode": "none", "templat": "x"})


def test_default_table_loads_from_conf():
    policy = InstructionPolicy.default()
    assert policy.by_type["STS"] == "Retrieve semantically similar text."
    assert policy.by_type["BitextMining"] == "Retrieve parallel sentences."
    assert policy.template == TEMPLATE
