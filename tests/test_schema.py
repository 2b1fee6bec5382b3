"""Every bad record gives a clear `file:line: reason`; in skip mode nothing is lost silently."""

import json

import pytest

from embedforge.data.jsonl import DataFileError, load_examples
from embedforge.data.schema import Example, SchemaError, validate_record

GOOD = {"instruction": "Given a question, retrieve passages that answer it", "query": "what is rope scaling",
        "positive": "RoPE scaling stretches rotary position embeddings.", "negatives": ["Rope is made of fibres."],
        "task_type": "short_long", "language": "en", "source": "test"}


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def bad_variants():
    missing = {k: v for k, v in GOOD.items() if k != "positive"}
    return {
        "malformed JSON": ('{"query": "unterminated', "malformed JSON"),
        "missing field": (json.dumps(missing), "missing field(s): positive"),
        "empty query": (json.dumps({**GOOD, "query": "   "}), "field 'query' is empty"),
        "unknown task_type": (json.dumps({**GOOD, "task_type": "qa"}), "unknown task_type 'qa'"),
        "negatives not a list": (json.dumps({**GOOD, "negatives": "x"}), "'negatives' must be a list"),
        "not an object": ("[1, 2]", "must be a JSON object"),
    }


@pytest.mark.parametrize("name", list(bad_variants()))
def test_bad_record_fails_with_file_and_line(tmp_path, name):
    line, reason = bad_variants()[name]
    path = write_lines(tmp_path / "data.jsonl", [json.dumps(GOOD), line, json.dumps(GOOD)])
    with pytest.raises(DataFileError) as err:
        load_examples(path, on_error="fail")
    assert f"{path}:2:" in str(err.value)
    assert reason in str(err.value)


def test_skip_mode_reports_and_counts_every_bad_record(tmp_path):
    variants = bad_variants()
    lines = [json.dumps(GOOD)] + [line for line, _ in variants.values()] + ["", json.dumps({**GOOD, "query": "q2"})]
    path = write_lines(tmp_path / "data.jsonl", lines)
    report = load_examples(path, on_error="skip")
    assert len(report.examples) == 2
    assert len(report.errors) == len(variants)
    # every bad line is accounted for by its own line number (blank lines are not records)
    assert [int(e.split(":")[1]) for e in report.errors] == list(range(2, 2 + len(variants)))
    assert report.n_lines == 2 + len(variants)
    assert "2 records loaded, 6 rejected" in report.summary()


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataFileError, match="nope.jsonl: data file not found"):
        load_examples(tmp_path / "nope.jsonl")


def test_round_trip_and_unknown_field():
    example = Example.from_dict(GOOD)
    assert example.to_dict() == GOOD
    with pytest.raises(SchemaError, match="unknown field"):
        validate_record({**GOOD, "extra": 1})


def test_demo_data_is_valid_and_covers_six_types_and_five_languages():
    from embedforge.data.schema import TASK_TYPES
    from embedforge.train.datamodule import load_all

    train = load_all(["data/demo/train/*.jsonl"], "train", "fail")
    val = load_all(["data/demo/val/*.jsonl"], "val", "fail")
    assert len(train) >= 200 and len(val) >= 40
    assert {e.task_type for e in train} == set(TASK_TYPES) == {e.task_type for e in val}
    languages = {lang for e in train for lang in e.language.split("-")}
    assert len(languages) >= 5
    assert not {e.query for e in train} & {e.query for e in val}, "validation queries leak into training"
