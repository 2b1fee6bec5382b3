"""Every line's problem, bytes that are not UTF-8 included, is a `file:line: reason` counted like the others."""

import gzip
import json

import pytest

from embedforge.data.jsonl import DataFileError, iter_json_lines, load_examples

GOOD = {"instruction": "Given a question, retrieve passages that answer it", "query": "what is rope scaling",
        "positive": "RoPE scaling stretches rotary position embeddings.", "negatives": ["Rope is made of fibres."],
        "task_type": "short_long", "language": "en", "source": "test"}


def issue_file(tmp_path):
    """Line 2: `negatives` not a list; line 3: Latin-1 bytes (not UTF-8); lines 1 and 4 good."""
    path = tmp_path / "data.jsonl"
    lines = [json.dumps(GOOD).encode(), json.dumps({**GOOD, "negatives": "x"}).encode(),
             json.dumps({**GOOD, "query": "caf\u00e9"}, ensure_ascii=False).encode("latin-1"),
             json.dumps({**GOOD, "query": "q4"}, ensure_ascii=False).encode()]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_fail_mode_reports_the_first_bad_line_not_an_encoding_traceback(tmp_path):
    path = issue_file(tmp_path)
    with pytest.raises(DataFileError) as err:
        load_examples(path, on_error="fail")
    assert str(err.value).startswith(f"{path}:2: ") and "'negatives' must be a list" in str(err.value)


def test_skip_mode_counts_the_encoding_error_like_any_other(tmp_path):
    path = issue_file(tmp_path)
    report = load_examples(path, on_error="skip")
    assert [e.query for e in report.examples] == [GOOD["query"], "q4"]
    assert len(report.errors) == 2
    assert report.errors[0].startswith(f"{path}:2: ")
    assert report.errors[1] == f"{path}:3: not valid UTF-8 (byte 0xe9 at column {json.dumps({**GOOD, 'query': 'caf'}).index('caf') + 4})"
    assert "2 records loaded, 2 rejected" in report.summary()


def test_a_bad_first_line_alone_fails_naming_line_1(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"query": "\xff"}\n')
    with pytest.raises(DataFileError, match=r"latin.jsonl:1: not valid UTF-8 \(byte 0xff"):
        load_examples(path)


def test_reader_keeps_line_numbers_across_blank_and_crlf_lines_and_reads_gzip(tmp_path):
    raw = b'{"a": 1}\r\n\r\n   \n{"a": 2}\n{broken\n'
    plain, packed = tmp_path / "x.jsonl", tmp_path / "x.jsonl.gz"
    plain.write_bytes(raw)
    packed.write_bytes(gzip.compress(raw))
    for path in (plain, packed):
        got = list(iter_json_lines(path))
        assert [(n, v) for n, v, r in got if r is None] == [(1, {"a": 1}), (4, {"a": 2})]
        assert got[-1][0] == 5 and got[-1][2].startswith("malformed JSON")


def test_non_ascii_utf8_is_read_unchanged(tmp_path):
    path = tmp_path / "utf8.jsonl"
    path.write_text(json.dumps({**GOOD, "query": "Qu'est-ce que l'\u00e9t\u00e9 ? \u590f\u5929"}, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    assert load_examples(path).examples[0].query == "Qu'est-ce que l'\u00e9t\u00e9 ? \u590f\u5929"
