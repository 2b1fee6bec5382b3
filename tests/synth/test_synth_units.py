"""Unit tests: parsing, per-item sampling, prompts, store repair, config validation."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from embedforge.synth.client import retry_after_seconds
from embedforge.synth.parsing import ParseError, dedup_definitions, parse_brainstorm, parse_example
from embedforge.synth.prompts import brainstorm_messages, item_messages, prompt_kind
from embedforge.synth.sampling import Planner
from embedforge.synth.settings import SynthConfigError, settings_from_dict
from embedforge.synth.store import JsonlAppender, RequestCache, CachedResponse, repair_torn_tail, request_key
from embedforge.synth.taxonomy import BRAINSTORM_TYPES, TASK_TYPES

@pytest.fixture
def settings(compose_raw):
    def make(*overrides: str):
        return settings_from_dict(compose_raw(["out_dir=/tmp/unused", *overrides]))

    return make


# -- parsing -----------------------------------------------------------------------------------
def test_parse_example_accepts_plain_and_fenced_json():
    obj = {"user_query": "q", "positive_document": "p", "hard_negative_document": "n"}
    assert parse_example(json.dumps(obj), "short_long") == ("q", "p", "n")
    assert parse_example("```json\n" + json.dumps(obj) + "\n```", "short_long") == ("q", "p", "n")


@pytest.mark.parametrize(
    "text, reason",
    [
        ("{'user_query': 'q'}", "invalid_json"),
        ('{"user_query": "q", "positive_document": "p"', "invalid_json"),
        ('{"user_query": "q", "positive_document": "p"}', "missing_key:hard_negative_document"),
        ('{"user_query": "q", "positive_document": " ", "hard_negative_document": "n"}', "empty_value:positive_document"),
        ('{"user_query": "q", "positive_document": 3, "hard_negative_document": "n"}', "not_a_string:positive_document"),
        ('{"user_query": "q", "positive_document": "p", "hard_negative_document": "p"}', "negative_equals_positive"),
        ('["a"]', "wrong_type"),
        ("", "empty_reply"),
        ("__import__('os').system('true')", "invalid_json"),
    ],
)
def test_parse_example_rejects_with_reason(text, reason):
    with pytest.raises(ParseError) as exc:
        parse_example(text, "short_long")
    assert str(exc.value).startswith(reason)


def test_parse_example_long_short_label_must_differ_from_misleading():
    ok = parse_example('{"input_text": "t", "label": "a", "misleading_label": "b"}', "long_short")
    assert ok == ("t", "a", "b")
    with pytest.raises(ParseError, match="negative_equals_positive"):
        parse_example('{"input_text": "t", "label": "a", "misleading_label": "a"}', "long_short")
    assert parse_example('{"input": "x", "positive_document": "y"}', "short_short") == ("x", "y", None)


def test_brainstorm_parsing_and_dedup():
    assert parse_brainstorm('["A task.", " ", "B task"]') == ["A task.", "B task"]
    assert parse_brainstorm('{"tasks": ["x"]}') == ["x"]
    with pytest.raises(ParseError):
        parse_brainstorm('"just a string"')
    assert dedup_definitions([["Find X.", "find  x"], ["Find Y", "FIND X"]]) == ["Find X.", "Find Y"]


# -- sampling and prompts ----------------------------------------------------------------------
def test_item_plans_are_deterministic_per_index_and_seed(settings):
    s = settings("num_examples=50")
    pools = {t: [f"{t} def {k}" for k in range(7)] for t in BRAINSTORM_TYPES}
    a, b = Planner(s), Planner(s)
    # Order of evaluation must not matter (a resumed run plans only the missing items).
    forward = [a.item(i, pools) for i in range(50)]
    backward = [b.item(i, pools) for i in reversed(range(50))][::-1]
    assert forward == backward
    other = Planner(settings("num_examples=50", "seed=1"))
    assert [other.item(i, pools) for i in range(50)] != forward


def test_sampling_follows_weights_and_bitext_languages_differ(settings):
    s = settings("num_examples=3000")
    planner = Planner(s)
    plans = [planner.item(i) for i in range(3000)]
    langs = Counter(p.language for p in plans)
    assert 0.38 < langs["en"] / 3000 < 0.48  # paper preset: ~43% English
    assert 0.015 < langs["zh"] / 3000 < 0.05
    assert len(langs) > 60  # the long tail of XLM-R languages shows up
    tasks = Counter(p.task_type for p in plans)
    assert tasks["short_long"] > tasks["bitext"] > tasks["short_short"]
    bitext = [p for p in plans if p.task_type == "bitext"]
    assert bitext and all(p.target_language and p.target_language != p.language for p in bitext)
    assert all(p.task_definition == "Retrieve semantically similar text." for p in plans if p.task_type == "sts")
    lengths = Counter(p.placeholders["query_length"] for p in plans if p.task_type == "short_long")
    assert set(lengths) == {"less than 5 words", "5 to 15 words", "at least 10 words"}


def test_placeholder_weights_and_query_length_are_configurable(settings):
    s = settings("synth.placeholders.short_long.query_length=[5-10 words]",
                  "+synth.placeholder_weights.short_long.clarity={ambiguous: 0, understandable with some effort: 0}",
                  "synth.tasks={long_short: 0, sts: 0, bitext: 0, long_long: 0, short_short: 0}")
    assert s.synth.tasks.values == ("short_long",)
    plans = [Planner(s).item(i) for i in range(100)]
    assert {p.placeholders["query_length"] for p in plans} == {"5-10 words"}
    assert {p.placeholders["clarity"] for p in plans} == {"clear"}


def test_templates_carry_kind_markers_and_fill_placeholders(settings):
    s = settings("num_examples=400")
    planner = Planner(s)
    seen = set()
    for i in range(400):
        plan = planner.item(i)
        text = item_messages(plan)[0]["content"]
        assert "$" not in text
        assert plan.task_type not in BRAINSTORM_TYPES or plan.task_definition in text
        assert prompt_kind(item_messages(plan)) == ("generate", plan.task_type)
        seen.add(plan.task_type)
    assert seen == set(TASK_TYPES)
    for t in BRAINSTORM_TYPES:
        msgs = brainstorm_messages(t, 20)
        assert prompt_kind(msgs) == ("brainstorm", t) and "20" in msgs[0]["content"]


# -- store -------------------------------------------------------------------------------------
def test_request_key_depends_on_model_messages_sampling_and_seed():
    base = {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 1.0,
            "top_p": 1.0, "max_tokens": 10, "seed": 1}
    k = request_key(base)
    assert k == request_key(dict(base))
    for change in ({"model": "n"}, {"seed": 2}, {"temperature": 0.5}, {"messages": []}):
        assert request_key({**base, **change}) != k
    assert request_key({**base, "timeout": 3}) == k  # transport options are not part of identity


def test_torn_last_line_is_truncated_with_warning(tmp_path, caplog):
    path = tmp_path / "cache.jsonl"
    cache = RequestCache(path)
    cache.put("k1", "sts", CachedResponse("a", 1, 2, "stop"))
    cache.put("k2", "sts", CachedResponse("b", 1, 2, "stop"))
    cache.close()
    with path.open("ab") as fh:
        fh.write(b'{"key": "k3", "kind": "sts", "te')  # a write cut off by kill -9
    with caplog.at_level("WARNING"):
        reopened = RequestCache(path)
    assert "torn last line" in caplog.text
    assert reopened.keys() == {"k1", "k2"}
    reopened.put("k3", "sts", CachedResponse("c", 1, 2, "stop"))
    reopened.close()
    lines = path.read_text().splitlines()
    assert [json.loads(l)["key"] for l in lines] == ["k1", "k2", "k3"]


def test_repair_on_file_without_any_newline(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"partial')
    assert repair_torn_tail(path) == 9
    assert path.read_bytes() == b""
    w = JsonlAppender(path)
    w.append({"a": 1})
    w.close()
    assert path.read_text() == '{"a": 1}\n'


def test_retry_after_headers():
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({}) is None
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0


# -- config validation -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, key",
    [
        (["+synth.tasks.retrieval=3"], "synth.tasks.retrieval"),
        (["synth.tasks={short_long: 0, long_short: 0, sts: 0, bitext: 0, long_long: 0, short_short: 0}"], "synth.tasks"),
        (["synth.tasks.sts=-1"], "synth.tasks.sts"),
        (["+synth.languages.weights.xx=0.1"], "synth.languages.weights.xx"),
        (["synth/languages=en", "synth.languages.weights.en=0"], "synth.languages"),
        (["synth/languages=en", "synth.tasks.bitext=5"], "synth.tasks.bitext"),
        (["synth.placeholders.sts.unit=[]"], "synth.placeholders.sts.unit"),
        (["+synth.placeholder_weights.sts.unit={word: 1}"], "synth.placeholder_weights.sts.unit.word"),
        (["+synth.placeholder_weights.sts.colour={red: 1}"], "synth.placeholder_weights.sts.colour"),
        (["client.concurrency=0"], "client.concurrency"),
        (["client.api_key_env=sk-123"], "client.api_key_env"),
        (["+client.api_key=oops"], "client.api_key"),
    ],
)
def test_bad_config_names_the_key(settings, overrides, key):
    with pytest.raises(SynthConfigError) as exc:
        settings(*overrides)
    assert str(exc.value).split(":")[0] == key


def test_en_preset_is_english_only_without_bitext(settings):
    s = settings("synth=en")
    assert s.synth.languages.values == ("en",)
    assert "bitext" not in s.synth.tasks.values
