"""embedforge-decontam: normalisation, hashed n-gram containment against a set-based reference,
planted copies of eval items found, bad lines counted, cleaned copy, CLI outputs and errors."""

from __future__ import annotations

import json
import random
import unicodedata
from pathlib import Path

import pytest

from embedforge.decontam.check import CheckSettings, EvalIndex, run_check
from embedforge.decontam.eval_side import EvalItems, EvalSideError, add_loaded_mteb_dataset, add_local_task
from embedforge.decontam.ngrams import NgramIndex
from embedforge.decontam.normalize import normalize
from embedforge.decontam.report import summarise
from embedforge.errors import EmbedforgeError

FIXTURES = Path(__file__).parent / "fixtures_mining" / "decontam"
N = 13


def _ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def _reference_containment(eval_text: str, train_text: str, n: int = N) -> float:
    """Independent reference: plain Python sets of word tuples."""
    e, t = _ngrams(normalize(eval_text).split(), n), _ngrams(normalize(train_text).split(), n)
    return len(e & t) / len(e) if e else 0.0


def _record(query: str, positive: str = "an unrelated positive passage", negatives=None) -> dict:
    return {"instruction": "Retrieve.", "query": query, "positive": positive, "negatives": negatives or [],
            "task_type": "short_long", "language": "en", "source": "test"}


def _write(path: Path, records: list) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for r in records:
            fh.write((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n")
    return path


def _claims() -> list[str]:
    return [json.loads(line)["text"] for line in (FIXTURES / "TinyClaims" / "queries.jsonl").read_text().splitlines()]


def _fixture_items() -> EvalItems:
    items = EvalItems()
    add_local_task(items, FIXTURES / "TinyClaims")
    add_local_task(items, FIXTURES / "TinySTS")
    return items


def test_normalize_folds_case_width_space_and_punctuation():
    assert normalize("  The  CAT's\that -- isn't   here!! ") == "the cat s hat isn t here"
    full_width = unicodedata.normalize("NFKC", "ＡＢＣ")  # NFKC maps full-width letters to ASCII
    assert full_width == "ABC" and normalize("ＡＢＣ　ｄｅｆ") == "abc def"
    assert normalize("Straße") == normalize("STRASSE")  # casefold, not lower
    assert normalize("x+y=z") == "x y z"


def test_hashed_containment_equals_set_reference():
    rng = random.Random(3)
    vocab = ["a", "b", "c"]  # a tiny vocabulary, so many n-grams are shared
    evals = [[rng.choice(vocab) for _ in range(rng.randint(0, 12))] for _ in range(80)]
    trains = [[rng.choice(vocab) for _ in range(rng.randint(0, 20))] for _ in range(80)]
    n = 4
    text_idx, item_idx, share = NgramIndex.build(evals, n).containment(trains)
    got = {(int(t), int(i)): float(s) for t, i, s in zip(text_idx, item_idx, share)}
    expected = {}
    for t, words in enumerate(trains):
        for i, eval_words in enumerate(evals):
            e = _ngrams(eval_words, n)
            if e and (shared := len(e & _ngrams(words, n))):
                expected[(t, i)] = shared / len(e)
    assert len(expected) > 100 and got == expected


def _edit(text: str, positions: list[int]) -> str:
    words = text.split()
    for p in positions:
        words[p] = "zzz" + words[p]
    return " ".join(words)


def _planted(claims: list[str]):
    """20 planted claims: 5 verbatim, 5 re-cased/re-spaced/re-punctuated (one full-width), 10 edited."""
    verbatim = {0: claims[0], 1: claims[1], 12: claims[12], 13: claims[13], 2: claims[2]}
    renorm = {3: "  " + claims[3].upper().replace(" ", "   ") + " !!", 4: claims[4].lower().replace(",", " ,  "),
              14: claims[14].replace(" ", "\t"), 15: '"' + claims[15].title() + '"',
              16: unicodedata.normalize("NFKC", claims[16]).translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)})}
    edited = {5: _edit(claims[5], [21]), 6: _edit(claims[6], [1, 18]), 7: _edit(claims[7], [3, 9, 15]),
              8: _edit(claims[8], [0]), 9: _edit(claims[9], [10]), 10: _edit(claims[10], [5, 6]),
              11: _edit(claims[11], [17]), 17: _edit(claims[17], [2]), 18: _edit(claims[18], [0]),
              19: _edit(claims[19], [4])}
    return verbatim, renorm, edited


def test_planted_eval_queries_are_found(tmp_path):
    claims = _claims()
    verbatim, renorm, edited = _planted(claims)
    background = [_record(f"background question number {i} about cooking pasta and baking bread at home") for i in range(30)]
    planted = [_record(q) for q in verbatim.values()] + [_record(q) for q in renorm.values()]
    planted.append(_record("Which claim?", positive=verbatim[2]))  # a copy in the positive field is found too
    planted += [_record(q) for q in edited.values()]
    path = _write(tmp_path / "train.jsonl", background + planted)
    items = _fixture_items()
    index = EvalIndex(items, N)
    settings = CheckSettings(n=N, threshold=0.5, chunk_size=7)  # small chunks: records span chunk borders
    result = run_check(index, [path], ["query", "positive", "negatives"], settings)
    found = {items.item_ids[i] for i in range(len(items.texts)) if result.found_exact[i] or result.found_ngram[i]}
    exact = {items.item_ids[i] for i in range(len(items.texts)) if result.found_exact[i]}
    # every verbatim and every normalised copy is an exact match
    assert {f"test:c{i}" for i in list(verbatim) + list(renorm)} <= exact
    # edited copies: found exactly when the set reference says >= half of the claim's 13-grams survive
    expected_edited = {f"test:c{i}" for i, text in edited.items() if _reference_containment(claims[i], text) >= 0.5}
    assert 0 < len(expected_edited) < len(edited)  # the fixture exercises both outcomes
    assert found - exact == expected_edited
    assert found == exact | expected_edited  # nothing else (no background record, no STS sentence)
    summary = summarise(items, result, settings, [path], ["query", "positive", "negatives"])
    queries_row = next(r for r in summary["tasks"] if r["task"] == "TinyClaims" and r["part"] == "queries")
    assert queries_row["items"] == 20 and queries_row["found"] == len(found)
    assert queries_row["share_found"] == pytest.approx(len(found) / 20)
    assert summary["flagged_records"] == len(verbatim) + len(renorm) + 1 + len(expected_edited)
    assert all(m["line"] > len(background) for m in summary["matches"])


def test_containment_finds_an_item_inside_a_longer_text(tmp_path):
    claims = _claims()
    text = "Some preamble words first. " + claims[7] + " And a long tail of other words after it."
    path = _write(tmp_path / "train.jsonl", [_record("short query", negatives=["a negative", text])])
    items = _fixture_items()
    result = run_check(EvalIndex(items, N), [path], ["query", "positive", "negatives"], CheckSettings())
    assert result.matches == [{"file": str(path), "line": 1, "field": "negatives[1]", "task": "TinyClaims",
                               "part": "queries", "eval_item": "test:c7", "kind": "ngram", "containment": 1.0}]
    # the negatives are not compared when the field list leaves them out
    assert run_check(EvalIndex(items, N), [path], ["query", "positive"], CheckSettings()).matches == []


def _compose(*overrides: str):
    from hydra import compose, initialize_config_dir

    from embedforge.paths import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="decontam", overrides=list(overrides))


def test_cli_counts_bad_lines_and_writes_a_clean_copy(tmp_path, capsys):
    from embedforge.cli.decontam import run

    claims = _claims()
    good = json.dumps(_record("a harmless question"))
    bad_negatives = json.dumps({**_record("q"), "negatives": "not a list"})
    data = tmp_path / "in" / "a.jsonl"
    data.parent.mkdir()
    lines = [good.encode(), bad_negatives.encode(), b'{"query": "caf\xe9"}', json.dumps(_record(claims[13])).encode(),
             json.dumps(_record("another harmless question")).encode()]
    data.write_bytes(b"\n".join(lines) + b"\n")
    (tmp_path / "in" / "sub").mkdir()
    other = _write(tmp_path / "in" / "sub" / "b.jsonl", [_record("third harmless one")])
    out = tmp_path / "report.json"
    cfg = _compose(f"train=[{data},{tmp_path}/in/sub/*.jsonl]", f"eval.data_dir={FIXTURES}", f"output={out}",
                   f"clean_dir={tmp_path / 'clean'}")
    summary = run(cfg)
    assert json.loads(out.read_text()) == json.loads(json.dumps(summary))
    assert summary["training_records"] == 6 and summary["bad_records"] == 2 and summary["flagged_records"] == 1
    assert summary["errors"][0].startswith(f"{data}:2: field 'negatives' must be a list")
    assert summary["errors"][1] == f"{data}:3: not UTF-8 (byte 0xe9 at byte 15)"
    assert (tmp_path / "clean" / "a.jsonl").read_bytes() == lines[0] + b"\n" + lines[4] + b"\n"
    assert (tmp_path / "clean" / "sub" / "b.jsonl").read_bytes() == other.read_bytes()
    printed = capsys.readouterr().out
    assert "TinyClaims" in printed and "TinySTS" in printed and "flagged training records: 1" in printed


@pytest.mark.parametrize("override,message", [
    ("ngram.threshold=0", "ngram.threshold"),
    ("fields=[query,title]", "fields"),
    ("eval.tasks=[NoSuchTask]", "eval.tasks: 'NoSuchTask'"),
])
def test_cli_config_errors_name_the_key(tmp_path, override, message):
    from embedforge.cli.decontam import run

    data = _write(tmp_path / "a.jsonl", [_record("q")])
    cfg = _compose(f"train=[{data}]", f"eval.data_dir={FIXTURES}", f"output={tmp_path}/r.json", override)
    with pytest.raises(EmbedforgeError) as exc:  # the CLI's task function prints it as one line, exit 2
        run(cfg)
    assert message in str(exc.value)


def test_cli_unmatched_glob_names_the_key(tmp_path):
    from embedforge.cli.decontam import run

    cfg = _compose(f"train=[{tmp_path}/nothing*.jsonl]", f"eval.data_dir={FIXTURES}", f"output={tmp_path}/r.json")
    with pytest.raises(EmbedforgeError, match="^train: "):
        run(cfg)


def test_mteb_dataset_walker_reads_eval_splits_only():
    from datasets import Dataset

    items = EvalItems()
    sts = {"test": Dataset.from_dict({"sentence1": ["a b"], "sentence2": ["c d"], "score": [1.0]}),
           "train": Dataset.from_dict({"sentence1": ["train only"], "sentence2": ["x"], "score": [1.0]})}
    add_loaded_mteb_dataset(items, "SomeSTS", sts, ["test"], include_corpus=True)
    retrieval = {"default": {"test": {"corpus": Dataset.from_dict({"id": ["d1"], "title": ["T"], "text": ["body"]}),
                                      "queries": Dataset.from_dict({"id": ["q1"], "text": ["question"]}),
                                      "relevant_docs": {"q1": {"d1": 1}}}}}
    add_loaded_mteb_dataset(items, "SomeRetrieval", retrieval, ["test"], include_corpus=True)
    assert sorted(zip(items.texts, [items.groups[g] for g in items.group])) == [
        ("T body", ("SomeRetrieval", "corpus")), ("a b", ("SomeSTS", "sentences")),
        ("c d", ("SomeSTS", "sentences")), ("question", ("SomeRetrieval", "queries"))]


def test_mteb_task_offline_is_a_clear_error():
    from embedforge.decontam.eval_side import add_mteb_task

    with pytest.raises(EvalSideError, match=r"eval.mteb_tasks: cannot load MTEB task 'SciFact'.*local"):
        add_mteb_task(EvalItems(), "SciFact")


def test_canary_plant_and_score(tmp_path):
    from embedforge.decontam.plant import plant, renormalise, score
    from embedforge.decontam.report import write_json

    rng = random.Random(0)
    text = "Bilingual children switch tasks faster, than monolingual children."
    assert normalize(renormalise(text, rng)) == normalize(text) and renormalise(text, rng) != text
    out = tmp_path / "planted.jsonl"
    plant(FIXTURES / "TinyClaims", out, n=12, background=300, seed=1, edit_words=2)
    assert len(out.read_text().splitlines()) == 312
    items = EvalItems()
    add_local_task(items, FIXTURES / "TinyClaims")
    settings = CheckSettings()
    result = run_check(EvalIndex(items, N), [out], ["query", "positive", "negatives"], settings)
    report = write_json(summarise(items, result, settings, [out], ["query"]), tmp_path / "r.json")
    scored = score(out, report)
    assert scored["verbatim"] == {"planted": 4, "found": 4, "found_exact": 4, "found_ngram": 0}
    assert scored["renormalised"] == {"planted": 4, "found": 4, "found_exact": 4, "found_ngram": 0}
    planted = json.loads((tmp_path / "planted.jsonl.planted.json").read_text())
    claims = dict(zip([f"test:c{i}" for i in range(20)], _claims()))
    expected = sum(_reference_containment(claims[p["eval_item"]], p["planted_text"]) >= 0.5
                   for p in planted if p["variant"] == "edited")
    assert scored["edited"]["planted"] == 4 and scored["edited"]["found"] == expected
    assert result.records_flagged == 8 + expected  # no background record matches
