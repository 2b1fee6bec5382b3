"""Sources turn rows into Example records: schema files, embedforge-generate output, public datasets
(hub layouts, read from local files), BEIR title -> body pairs; bad input names the source and key."""

import json
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from embedforge.data.sources import SOURCE_TYPES, SourceError, build_source
from embedforge.data.settings import DataSettings
from embedforge.errors import ConfigError


def check_source(name, spec):
    DataSettings.from_config(OmegaConf.create({"sources": {name: spec}}), check_files=False)
from embedforge.paths import CONF_DIR

FIXTURES = Path(__file__).parent / "fixtures"
PRESETS = CONF_DIR / "data" / "source"
PUBLIC = ["eli5", "hotpotqa", "fever", "miracl", "msmarco_passage", "msmarco_document", "nq", "nli", "squad",
          "triviaqa", "quora", "mrtydi", "dureader", "t2ranking"]  # 13 datasets; MS MARCO has two parts
RECORD = {"instruction": "Retrieve parallel sentences.", "query": "hello", "positive": "bonjour", "negatives": [],
          "task_type": "bitext", "language": "en-fr", "source": "synth"}


def preset(name: str, **overrides):
    cfg = OmegaConf.load(PRESETS / f"{name}.yaml")
    return OmegaConf.merge(cfg, overrides)


def load(name, cfg, on_error="fail"):
    return build_source(name, cfg, on_error).load()


def test_every_public_dataset_has_a_preset_with_id_revision_columns_and_the_papers_instruction():
    instructions = set()
    for name in PUBLIC:
        cfg = preset(name)
        check_source(name, cfg)
        assert cfg.type == "hub" and "/" in cfg.dataset and cfg.revision and cfg.columns.query, name
        assert cfg.instruction and cfg.ratio > 0, name
        instructions.add(cfg.instruction)
    ratios = {n: preset(n).ratio for n in PUBLIC}
    assert ratios == {**{n: 1.0 for n in PUBLIC}, "eli5": 0.1, "msmarco_passage": 0.5, "msmarco_document": 0.2,
                      "quora": 0.1, "t2ranking": 0.5}
    assert "Given a web search query, retrieve relevant passages that answer the query" in instructions


def test_synthetic_source_reads_the_generate_output_folder_and_instruction_override(tmp_path):
    (tmp_path / "examples.jsonl").write_text(json.dumps(RECORD) + "\n", encoding="utf-8")
    got = load("synthetic", preset("synthetic", path=str(tmp_path)))
    assert [e.to_dict() for e in got.examples] == [RECORD]
    override = load("synthetic", preset("synthetic", path=str(tmp_path), instruction="Find the translation."))
    assert override.examples[0].instruction == "Find the translation."
    assert override.examples[0].query == RECORD["query"]


def test_schema_jsonl_glob_source(tmp_path):
    for i in range(3):
        (tmp_path / f"part{i}.jsonl").write_text(json.dumps({**RECORD, "query": f"q{i}"}) + "\n", encoding="utf-8")
    got = load("mine", OmegaConf.create({"type": "jsonl", "files": [str(tmp_path / "part*.jsonl")]}))
    assert [e.query for e in got.examples] == ["q0", "q1", "q2"]


def test_msmarco_preset_reads_local_files_in_the_hub_layout():
    got = load("msmarco_passage", preset("msmarco_passage", path=str(FIXTURES / "msmarco_v2")))
    rows = [json.loads(line) for line in (FIXTURES / "msmarco_v2" / "train.jsonl").read_text().splitlines()]
    with_positive = [r for r in rows if any(r["passages"]["is_selected"])]
    assert len(got.examples) == len(with_positive) == 180 and got.filtered == {"no positive": 20}
    first, row = got.examples[0], with_positive[0]
    texts, flags = row["passages"]["passage_text"], row["passages"]["is_selected"]
    assert first.query == row["query"]
    assert first.positive == texts[flags.index(1)]
    assert first.negatives == [t for t, s in zip(texts, flags) if not s]
    assert first.instruction == "Given a web search query, retrieve relevant passages that answer the query"
    assert (first.task_type, first.language, first.source) == ("short_long", "en", "msmarco_passage")


def test_hotpotqa_preset_reads_a_parquet_snapshot_folder_picking_config_and_split():
    got = load("hotpotqa", preset("hotpotqa", path=str(FIXTURES / "hotpotqa_snapshot")))
    assert len(got.examples) == 150  # the decoy 'triplet-all' folder is not read
    assert all(e.query.startswith("hotpot question") for e in got.examples)
    assert got.examples[7].negatives == ["hotpot unrelated passage 7 about rivers."]


def test_beir_title_body_pairs_count_documents_without_title():
    got = load("weak", preset("weak_title_body", path=str(FIXTURES / "beir_mini")))
    assert len(got.examples) == 11 and got.filtered == {"no title": 1}
    assert (got.examples[0].query, got.examples[0].positive) == ("On rivers (0)", "Body of document 0 on rivers.")
    assert got.examples[0].instruction == "" and got.examples[0].negatives == []


def test_beir_title_body_pairs_from_one_side_of_the_qrels_only(tmp_path):
    import shutil

    folder = tmp_path / "beir"
    shutil.copytree(FIXTURES / "beir_mini", folder)
    (folder / "qrels").mkdir(exist_ok=True)  # the fixture's own qrels are replaced
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\t0\t1\nq2\t1\t1\nq3\t2\t1\nq4\t5\t1\n")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nt1\t1\t1\nt2\t9\t1\n")
    got = load("weak", preset("weak_title_body", path=str(folder), judged_in=["train"], not_judged_in=["test"]))
    # 0, 1, 2 and 5 are judged for train claims; 1 is judged for a test claim too; 5 has no title
    assert [e.query for e in got.examples] == ["On rivers (0)", "On bread (2)"]
    assert got.filtered == {"judged split excluded": 9, "no title": 1}
    only_test_dropped = load("weak", preset("weak_title_body", path=str(folder), not_judged_in=["test"]))
    assert len(only_test_dropped.examples) == 11 - 2
    with pytest.raises(SourceError, match=r"^data.sources.weak.judged_in: .*qrels/dev.tsv not found"):
        load("weak", preset("weak_title_body", path=str(folder), judged_in=["dev"]))


def test_qa_pairs_from_local_files(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(json.dumps({"question": f"q{i}?", "answer": f"a{i}."}) for i in range(4)) + "\n")
    got = load("qa", preset("weak_qa", path=str(path)))
    assert [(e.query, e.positive) for e in got.examples] == [(f"q{i}?", f"a{i}.") for i in range(4)]


def test_offline_hub_source_fails_at_once_naming_the_dataset_and_the_local_path_key():
    started = time.perf_counter()
    with pytest.raises(SourceError) as err:
        load("quora", preset("quora"))
    message = str(err.value)
    assert "sentence-transformers/quora-duplicates" in message and "data.sources.quora.path=" in message
    assert message.startswith("data.sources.quora.dataset:")
    assert time.perf_counter() - started < 30


def test_missing_column_names_the_source_and_key(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"query": "q", "text": "t"}) + "\n")
    with pytest.raises(SourceError, match=r"data\.sources\.nq\.columns\.positive: column 'answer' is not in .*it has: query, text"):
        load("nq", preset("nq", path=str(path)))


def test_bad_rows_fail_or_are_counted_with_file_and_line(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b'{"query": "q1", "answer": "a1"}\n{"query": "", "answer": "a2"}\n{"query": "q3", "answer": "\xff"}\n'
                     b'{"query": "q4"}\n{"query": "q5", "answer": "a5"}\n')
    with pytest.raises(SourceError, match=rf"data\.sources\.nq: {path}:2: field 'query' is empty"):
        load("nq", preset("nq", path=str(path)))
    got = load("nq", preset("nq", path=str(path)), on_error="skip")
    assert [e.query for e in got.examples] == ["q1", "q5"]
    assert [e.split(": ")[0] for e in got.errors] == [f"{path}:2", f"{path}:3", f"{path}:4"]
    assert "not valid UTF-8" in got.errors[1] and "missing column 'answer'" in got.errors[2]


def test_empty_source_is_an_error_naming_it(tmp_path):
    (tmp_path / "examples.jsonl").write_text("\n")
    with pytest.raises(SourceError, match=r"data\.sources\.synthetic: no usable records"):
        load("synthetic", preset("synthetic", path=str(tmp_path)))
    with pytest.raises(SourceError, match=r"data\.sources\.synthetic\.path: .* not found; run embedforge-generate"):
        load("synthetic", preset("synthetic", path=str(tmp_path / "nothing")))


def test_unset_mandatory_path_and_unknown_type_or_setting_are_named():
    with pytest.raises(SourceError, match=r"data\.sources\.weak\.path: required.*SciFact"):
        load("weak", preset("weak_title_body"))
    with pytest.raises(SourceError, match=r"data\.sources\.x\.type: unknown source type 'parquet'"):
        build_source("x", OmegaConf.create({"type": "parquet"}))
    with pytest.raises(ConfigError, match=r"'data\.sources\.quora\.colums' is unknown"):
        check_source("quora", preset("quora", colums={"query": "q"}))
    assert set(SOURCE_TYPES) == {"jsonl", "synthetic", "hub", "beir_title_body"}
