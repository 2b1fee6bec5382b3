"""embedforge-mine: the rank window and margins against a plain reference, faiss against brute force,
the Lightning predict loop against Encoder.encode, and whole runs on a tiny BEIR fixture (no judged
positive ever mined as a negative, ranks checked by an independent ranking, cache reuse)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from embedforge.errors import EmbedforgeError
from embedforge.mining.search import IndexSettings, build_index, search
from embedforge.mining.select import SelectSettings, select_negatives, window_candidates

FIXTURE = Path(__file__).parent / "fixtures_mining" / "tiny_beir"


# ------------------------------------------------------------------ pure parts
@pytest.mark.parametrize("margin,ratio", [(None, None), (0.1, None), (None, 0.9), (0.05, 0.95)])
def test_window_candidates_match_reference(margin, ratio):
    rng = np.random.default_rng(0)
    scores = np.sort(rng.uniform(0.2, 0.9, 60))[::-1]
    rows = rng.permutation(200)[:60]
    rows[-3:] = -1  # faiss pads short result lists with -1
    known = {int(rows[4]), int(rows[12]), int(rows[40])}
    settings = SelectSettings(rank_start=5, rank_end=50, margin=margin, max_score_ratio=ratio)
    positive = 0.8
    got = window_candidates(rows, scores, positive, known, settings)
    expected = [(int(rows[r - 1]), r) for r in range(5, 51)
                if rows[r - 1] >= 0 and int(rows[r - 1]) not in known
                and (margin is None or scores[r - 1] <= positive - margin)
                and (ratio is None or scores[r - 1] <= positive * ratio)]
    assert [(c.row, c.rank) for c in got] == expected and expected
    assert int(rows[12]) not in [c.row for c in got]  # a known positive inside the window is skipped


def test_select_negatives_top_and_seeded_random():
    from embedforge.mining.select import Candidate

    cands = [Candidate(row=100 + i, rank=30 + i, score=0.5 - i / 100) for i in range(20)]
    top = select_negatives(cands, SelectSettings(num_negatives=4, sample="top"), 0)
    assert [c.row for c in top] == [100, 101, 102, 103]
    a = select_negatives(cands, SelectSettings(num_negatives=4, seed=1), 7)
    b = select_negatives(cands, SelectSettings(num_negatives=4, seed=1), 7)
    c = select_negatives(cands, SelectSettings(num_negatives=4, seed=1), 8)
    assert a == b and len({x.row for x in a}) == 4 and set(x.row for x in a) <= {x.row for x in cands}
    assert a != c  # another target draws another sample
    assert len(select_negatives(cands[:2], SelectSettings(num_negatives=4), 0)) == 2


def test_faiss_indexes_against_brute_force():
    rng = np.random.default_rng(0)
    docs = rng.normal(size=(2000, 32)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    queries = docs[:50] + 0.3 * rng.normal(size=(50, 32)).astype(np.float32)
    reference = np.argsort(-(queries @ docs.T), axis=1, kind="stable")[:, :20]
    _, flat = search(build_index(docs), queries, 20)
    assert (flat == reference).all()
    # IVF probing every list is exact; HNSW with a wide beam finds nearly all
    _, ivf = search(build_index(docs, IndexSettings(type="ivf", ivf_nlist=16, ivf_nprobe=16)), queries, 20)
    assert (ivf == reference).all()
    _, hnsw = search(build_index(docs, IndexSettings(type="hnsw", hnsw_ef_search=128)), queries, 20)
    recall = np.mean([len(set(h) & set(r)) / 20 for h, r in zip(hnsw, reference)])
    assert recall >= 0.95


# ------------------------------------------------------------------ with the embedded MiniLM
@pytest.fixture(scope="module")
def minilm():
    from embedforge.model.builder import encoder_from_groups
    from embedforge.model.settings import EncoderGroups
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"model": {"pretrained": "embedded:all-MiniLM-L6-v2", "max_length": 256},
                            "pooling": {"mode": "mean", "normalize": True}, "lora": {"enabled": False}})
    return encoder_from_groups(EncoderGroups.from_config(cfg))


def _corpus_texts(folder: Path) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in (folder / "corpus.jsonl").read_text().splitlines()]
    return [r["_id"] for r in rows], [f"{r['title']} {r['text']}" for r in rows]


def test_predict_loop_equals_encoder_encode(minilm, tmp_path):
    from embedforge.mining.encode import encode_texts

    _, texts = _corpus_texts(FIXTURE)
    ours = encode_texts(minilm, texts, work_dir=tmp_path / "shards", batch_size=4,
                        trainer_kwargs={"accelerator": "cpu", "devices": 1})
    np.testing.assert_allclose(ours, minilm.encode(texts, batch_size=32), atol=1e-5)
    assert not (tmp_path / "shards").exists()


def _compose(*overrides: str):
    from hydra import compose, initialize_config_dir

    from embedforge.paths import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="mine", overrides=list(overrides))


def _qrels(folder: Path, split: str = "train") -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for line in (folder / "qrels" / f"{split}.tsv").read_text().splitlines()[1:]:
        q, d, s = line.split("\t")
        if int(s) > 0:
            out.setdefault(q, set()).add(d)
    return out


WINDOW = ("negatives.rank_start=3", "negatives.rank_end=12", "negatives.num_negatives=4", "query.mode=none",
          "trainer.accelerator=cpu", "trainer.devices=1")


def test_mine_beir_fixture(minilm, tmp_path, monkeypatch):
    import embedforge.cli.mine as cli
    import embedforge.mining.job as mining_job

    monkeypatch.setattr(mining_job, "configured_encoder", lambda job: minilm)
    folder = tmp_path / "beir"
    shutil.copytree(FIXTURE, folder)
    out = tmp_path / "mined.jsonl"
    cfg = _compose(f"input={folder}", f"out={out}", f"cache_dir={tmp_path}/cache", *WINDOW)
    report = cli.run(cfg)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    qrels = _qrels(folder)
    ids, texts = _corpus_texts(folder)
    ids_of_text: dict[str, set[str]] = {}
    for i, t in zip(ids, texts):
        ids_of_text.setdefault(t, set()).add(i)
    query_ids = {json.loads(l)["text"]: json.loads(l)["_id"] for l in (folder / "queries.jsonl").read_text().splitlines()}
    assert len(records) == sum(len(v) for v in qrels.values()) == report["records"] == 7
    # an independent ranking: Encoder.encode + numpy, no faiss, no Lightning
    doc_emb = minilm.encode(texts)
    for rec in records:
        qid = query_ids[rec["query"]]
        assert rec["negatives"], f"query {qid} got no negatives"
        assert len(rec["negatives"]) == 4 and len(set(rec["negatives"])) == 4
        assert ids_of_text[rec["positive"]] & qrels[qid]
        order = np.argsort(-(doc_emb @ minilm.encode([rec["query"]])[0]), kind="stable")
        rank_of = {texts[row]: r + 1 for r, row in enumerate(order)}
        for neg in rec["negatives"]:
            assert not (ids_of_text[neg] & qrels[qid]), f"query {qid}: judged positive mined as negative"
            assert neg not in {texts[ids.index(d)] for d in qrels[qid]}  # b1copy duplicates q2's positive b1
            assert 3 <= rank_of[neg] <= 12 + 1  # +1: a positive's duplicate may tie with it
    assert report["cache_hit"] is False and report["records_without_negatives"] == 0
    first = out.read_bytes()
    again = cli.run(cfg)  # same encoder, same corpus: the cached embeddings are reused, same output
    assert again["cache_hit"] is True and out.read_bytes() == first
    # another corpus file (one document edited) is another cache entry
    corpus = folder / "corpus.jsonl"
    corpus.write_text(corpus.read_text().replace("Binary search finds", "Binary search locates"))
    assert cli.run(cfg)["cache_hit"] is False
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2


def test_mine_records_input_never_takes_a_known_positive(minilm, tmp_path, monkeypatch):
    import embedforge.cli.mine as cli
    import embedforge.mining.job as mining_job

    monkeypatch.setattr(mining_job, "configured_encoder", lambda job: minilm)
    _, texts = _corpus_texts(FIXTURE)
    recs = [{"instruction": "Find the passage.", "query": f"question about {t.split()[0]}", "positive": t,
             "negatives": [], "task_type": "short_long", "language": "en", "source": "test"} for t in texts[:20]]
    # one query with two positives, as two records: neither may become the other's negative
    recs.append({**recs[0], "positive": texts[1]})
    src = tmp_path / "records.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in recs))
    out = tmp_path / "records_mined.jsonl"
    cfg = _compose(f"input={src}", f"out={out}", f"cache_dir={tmp_path}/cache", "negatives.rank_start=1",
                   "negatives.rank_end=21", "negatives.num_negatives=19", *WINDOW[3:])
    report = cli.run(cfg)
    mined = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(mined) == 21 and report["corpus_docs"] == 20
    for rec in mined:
        known = {r["positive"] for r in recs if r["query"] == rec["query"]}
        assert rec["negatives"] and not known & set(rec["negatives"])
        assert set(rec["negatives"]) <= set(texts[:20]) and rec["instruction"] == "Find the passage."
    assert len(mined[0]["negatives"]) == 18 and len(mined[5]["negatives"]) == 19


def test_beir_query_ids_sharing_a_text_share_their_positives(tmp_path):
    from embedforge.mining.inputs import read_beir

    folder = tmp_path / "beir"
    shutil.copytree(FIXTURE, folder)
    with (folder / "queries.jsonl").open("a") as fh:  # q9: the text of q1, judged with another document
        fh.write(json.dumps({"_id": "q9", "text": "how long should a steak rest after cooking"}) + "\n")
    with (folder / "qrels" / "train.tsv").open("a") as fh:
        fh.write("q9\tc4\t1\n")
    data = read_beir(folder, "train", instruction="i", task_type="short_long", language="en", source=None)
    steak = [t for t in data.targets if t.example.query.startswith("how long should a steak")]
    rows = {data.corpus.index["c1"], data.corpus.index["c4"]}
    assert len(steak) == 2 and all(t.known_positive_rows == rows for t in steak)


@pytest.mark.parametrize("override,message", [
    ("negatives.rank_end=10", "config key 'negatives.rank_end': must be >= rank_start"),
    ("index.type=annoy", "config key 'index.type'"),
    ("split=dev", "qrels/dev.tsv: file not found"),
    ("query.mode=loud", "config key 'query.mode'"),
    ("input=/nonexistent/folder", "input: /nonexistent/folder does not exist"),
])
def test_errors_before_model_load(tmp_path, monkeypatch, override, message):
    import embedforge.cli.mine as cli
    import embedforge.mining.job as mining_job

    def no_model(cfg):
        raise AssertionError("the model must not be loaded before the config and data are checked")

    monkeypatch.setattr(mining_job, "configured_encoder", no_model)
    cfg = _compose(f"input={FIXTURE}", f"out={tmp_path}/o.jsonl", "negatives.rank_start=30", override)
    with pytest.raises(EmbedforgeError) as exc:  # the CLI's task function prints it as one line, exit 2
        cli.run(cfg)
    assert message in str(exc.value)


@pytest.mark.slow
def test_two_process_predict_loop_equals_one(minilm, tmp_path):
    """Two CPU processes (DDP spawn, gloo) produce the single-process embeddings, each row once."""
    from embedforge.mining.encode import encode_texts

    _, texts = _corpus_texts(FIXTURE)
    two = encode_texts(minilm, texts, work_dir=tmp_path / "shards", batch_size=3,
                       trainer_kwargs={"accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn"})
    np.testing.assert_allclose(two, minilm.encode(texts), atol=1e-5)
