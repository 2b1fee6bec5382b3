"""Passkey probe: reproducible sets, token budgets respected, over-long lengths reported not truncated."""

from __future__ import annotations

from omegaconf import OmegaConf

from embedforge.eval.passkey import build_set, evaluate_passkey, markdown, run_passkey


def test_build_set_is_seeded_and_fits(minilm):
    a = build_set(minilm.tokenizer, 128, n_docs=20, n_queries=10, seed=3)
    b = build_set(minilm.tokenizer, 128, n_docs=20, n_queries=10, seed=3)
    c = build_set(minilm.tokenizer, 128, n_docs=20, n_queries=10, seed=4)
    assert a == b and a.documents != c.documents
    assert len(a.documents) == 20 and len(a.queries) == 10
    for doc in a.documents:
        n = len(minilm.tokenizer(doc)["input_ids"])
        assert 100 <= n <= 127  # close to the target length, never over it
    for query, answer in zip(a.queries, a.answers):
        name = query.removeprefix("what is the pass key for ").removesuffix("?")
        holders = [i for i, d in enumerate(a.documents) if name in d]
        assert holders == [answer]  # each name hidden in exactly its own document


def test_lengths_beyond_max_are_reported(minilm):
    scores = evaluate_passkey(minilm, [64, 1024], n_docs=8, n_queries=4, mode="none")
    assert scores[1024] == {"top1": None, "note": "exceeds max length 512"}
    assert 0.0 <= scores[64]["top1"] <= 1.0
    assert "exceeds max length 512" in markdown(scores)


def test_run_passkey_writes_table_plot_json(minilm, tmp_path):
    cfg = OmegaConf.create({"lengths": [64, 4096], "n_docs": 6, "n_queries": 3, "seed": 0, "batch_size": 8,
                            "instruction": "Given a question, retrieve the document that contains the pass key"})
    path = run_passkey(minilm, cfg, out_dir=tmp_path)
    assert path.name == "passkey.json" and (path.parent / "passkey.png").stat().st_size > 0
    assert "4096" in (path.parent / "passkey.md").read_text()
