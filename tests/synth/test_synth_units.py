"""Unit tests: parsing, per-item sampling, prompts, store repair, config validation."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from embedforge.synth.client import retry_after_seconds
from embedforge.synth.parsing import ParseError, dedup_definitions, parse_brainstorm, parse_example
from embedforge.synth.prompts import brainstorm_messages, item_messages, prompt_kind
from embedforge.errors import ConfigError
from embedforge.synth.sampling import Planner
from embedforge.synth.settings import SynthConfigError, settings_from_config
from embedforge.synth.store import JsonlAppender, RequestCache, CachedResponse, repair_torn_tail, request_key
from embedforge.synth.taxonomy import BRAINSTORM_TYPES, TASK_TYPES


def config_key(exc: ConfigError) -> str:
    """The key a config error names: `config key '<key>' ...`."""
    match = re.match(r"config key '([^']+)'", str(exc))
    assert match, str(exc)
    return match.group(1)


@pytest.fixture
def settings(compose_raw):
    def make(*overrides: str):
        return settings_from_config(compose_raw(["out_dir=/tmp/unused", *overrides]))

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
    with pytest.raises(ConfigError) as exc:
        settings(*overrides)
    assert config_key(exc.value) == key and "\n" not in str(exc.value)


def test_en_preset_is_english_only_without_bitext(settings):
    s = settings("synth=en")
    assert s.synth.languages.values == ("en",)
    assert "bitext" not in s.synth.tasks.values


# -- reply shapes (issue: a cached reply of an unexpected shape must never crash a replay) --------
GOOD = {"S1": "a sentence", "S2": "a similar sentence", "S3": "an unrelated one"}


@pytest.mark.parametrize(
    "content, refusal, expected",
    [
        (json.dumps(GOOD), None, ("a sentence", "a similar sentence", "an unrelated one")),
        ([{"type": "text", "text": json.dumps(GOOD)[:10]}, {"type": "text", "text": json.dumps(GOOD)[10:]}], None,
         ("a sentence", "a similar sentence", "an unrelated one")),
        ([json.dumps(GOOD)], None, ("a sentence", "a similar sentence", "an unrelated one")),
        (GOOD, None, ("a sentence", "a similar sentence", "an unrelated one")),
        ({"type": "text", "text": json.dumps(GOOD)}, None, ("a sentence", "a similar sentence", "an unrelated one")),
        (None, "I cannot help with that.", "refusal"),
        ([{"type": "refusal", "refusal": "no"}], None, "refusal"),
        (None, None, "empty_reply"),
        ([], None, "no_text_parts"),
        ([{"type": "image_url", "image_url": {"url": "x"}}], None, "no_text_parts"),
        (42, None, "wrong_content_type"),
        (True, None, "wrong_content_type"),
        ({"unexpected": "object"}, None, "missing_key:S1"),
        ("[" * 100000, None, "invalid_json"),
        ("1" * 5000, None, "invalid_json"),  # past Python's int-digits limit
        ("12", None, "wrong_type"),
    ],
)
def test_every_content_shape_parses_or_names_a_reason(content, refusal, expected):
    from embedforge.synth.parsing import reply_text

    def parse():
        return parse_example(reply_text(content, refusal), "sts")

    if isinstance(expected, tuple):
        assert parse() == expected
    else:
        with pytest.raises(ParseError) as exc:
            parse()
        assert str(exc.value).startswith(expected)


def test_random_json_content_never_raises_anything_but_parse_error():
    """Property: any JSON value as content (or inside a string) ends as a parse or a ParseError."""
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import given, settings as hsettings, strategies as st

    from embedforge.synth.parsing import reply_text

    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["type", "text", "refusal", "S1", "S2", "S3", "x"]) | st.text(max_size=5), inner, max_size=4),
        max_leaves=20,
    )

    @hsettings(max_examples=300, deadline=None, database=None)
    @given(value=json_values, as_string=st.booleans(), task=st.sampled_from(list(TASK_TYPES)))
    def check(value, as_string, task):
        content = json.dumps(value) if as_string else value
        for parse in (lambda: parse_example(reply_text(content), task), lambda: parse_brainstorm(content)):
            try:
                parse()
            except ParseError:
                pass

    check()
    assert hypothesis.__version__


# -- diversity at scale ---------------------------------------------------------------------------
def test_brainstorm_calls_follow_num_examples(settings):
    from embedforge.synth.settings import brainstorm_calls_per_type, planned_unique_tasks

    s = settings("num_examples=10000")
    assert planned_unique_tasks(s) == 3031  # 10000 / 3.3, rounded up
    calls = brainstorm_calls_per_type(s)
    # Shared among the brainstormed types by their task weights (167:122:17:13), 20 tasks per call.
    weights = {"short_long": 167, "long_short": 122, "long_long": 17, "short_short": 13}
    import math

    assert calls == {t: math.ceil(3031 * w / 319 / 20) for t, w in weights.items()}
    assert calls == {"short_long": 80, "long_short": 58, "long_long": 9, "short_short": 7}
    assert 3031 <= sum(calls.values()) * 20 < 3031 + 20 * len(calls)  # capacity: about 3,000 tasks
    fixed = brainstorm_calls_per_type(settings("num_examples=10000", "synth.brainstorm.calls_per_type=4"))
    assert set(fixed.values()) == {4}
    assert brainstorm_calls_per_type(settings("num_examples=10")) == {t: 1 for t in weights}


def test_definition_normalisation_catches_trivial_variants():
    from embedforge.synth.parsing import normalize_definition

    same = ["Find X.", "find  x", "1. Find X", "- FIND X!", "\u201cFind X.\u201d", "Ｆｉｎｄ X"]
    assert {normalize_definition(t) for t in same} == {"find x"}
    assert normalize_definition("Find X in Y") != normalize_definition("Find X")


def test_duplicate_examples_keep_the_lowest_item_index():
    """Which copy of a duplicate survives must not depend on which reply arrived first."""
    from embedforge.synth.pipeline import Pipeline

    class Spool(dict):
        def add(self, key, obj):
            self[key] = obj

        def discard(self, key):
            self.pop(key, None)

    from embedforge.synth.sampling import ItemPlan

    record = {"instruction": "i", "query": "q", "positive": "p", "negatives": ["n"], "task_type": "sts",
              "language": "en", "source": "s"}
    for order in ([5, 2, 9], [9, 5, 2], [2, 9, 5]):
        p = Pipeline.__new__(Pipeline)
        from embedforge.synth.report import RunStats

        p.stats, p._kept, p.examples = RunStats(), {}, Spool()
        for i in order:
            p._keep(ItemPlan(i, "sts", "en" if i != 9 else "de"), {**record, "language": "en" if i != 9 else "de"})
        assert list(p.examples) == [2]
        assert p.stats.total("accepted") == 1 and p.stats.total("duplicate") == 2
        assert (p.stats.by_language["de"]["accepted"], p.stats.by_language["de"]["duplicate"]) == (0, 1)


# -- settings -------------------------------------------------------------------------------------
def test_generator_mixture_settings(settings):
    s = settings("mixture=paper")
    assert [(g.model, g.weight) for g in s.generators] == [("gpt-4", 0.75), ("gpt-3.5-turbo", 0.25)]
    assert s.generators[0].price_input_per_m == 30.0 and s.generators[0].api_key_env == "OPENAI_API_KEY"
    plans = [Planner(s).item(i) for i in range(4000)]
    share = sum(p.generator == 0 for p in plans) / 4000
    assert 0.72 < share < 0.78
    # A mixture does not move any other draw: task types, languages and seeds stay those of one model.
    one = Planner(settings())
    single = [one.item(i) for i in range(200)]
    assert [(p.task_type, p.language, p.seed) for p in plans[:200]] == [(p.task_type, p.language, p.seed) for p in single]
    assert settings().generators[0].model == "gpt-4o-mini"


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["generators=[{weight: 1}]"], "generators.0.model"),
        (["generators=[{model: m, weight: -1}]"], "generators.0.weight"),
        (["generators=[{model: m, colour: red}]"], "generators.0.colour"),
        (["generators=[{model: m, api_key_env: sk-1}]"], "generators.0.api_key_env"),
        (["generators=[{model: m, weight: 0}]"], "generators"),
        (["generator.response_format=xml"], "generator.response_format"),
        (["client.mode=later"], "client.mode"),
        (["client.batch_window=tomorrow"], "client.batch_window"),
        (["client.retry_connect=maybe"], "client.retry_connect"),
        (["synth.examples_per_task=0"], "synth.examples_per_task"),
        (["out_dir="], "out_dir"),
    ],
)
def test_new_config_keys_are_validated(settings, overrides, key):
    with pytest.raises(ConfigError) as exc:
        settings(*overrides)
    assert config_key(exc.value) == key


def test_vllm_preset_sends_json_mode_and_keys_it(settings):
    s = settings("client=vllm", "mixture=vllm_json")
    assert s.client.base_url == "http://127.0.0.1:8000/v1" and s.client.api_key_env == "VLLM_API_KEY"
    assert s.client.requests_per_minute == 0 and s.client.concurrency == 64
    assert s.generators[0].response_format == "json_object"
    base = {"model": "m", "messages": [], "temperature": 1.0, "top_p": 1.0, "max_tokens": 10, "seed": 1}
    assert request_key({**base, "response_format": {"type": "json_object"}}) != request_key(base)
    assert request_key({**base, "response_format": None}) == request_key(base)  # old caches keep their keys


def test_out_dir_checks(tmp_path):
    from embedforge.synth.settings import check_out_dir_writable

    a_file = tmp_path / "f"
    a_file.write_text("x")
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o500)
    bad = [a_file, a_file / "sub", "/dev/null/x", ""]
    import os

    if os.geteuid() != 0:  # root may write anywhere
        bad.append(read_only / "out")
    for path in bad:
        with pytest.raises(SynthConfigError, match=r"^out_dir: "):
            check_out_dir_writable(path)
    check_out_dir_writable(tmp_path / "new" / "deeper")  # creatable: fine
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_retry_after_is_capped_and_logged(caplog):
    from embedforge.synth.client import ChatClient
    from embedforge.synth.settings import ClientSettings

    client = ChatClient(ClientSettings(max_retry_after_s=30), "k")
    with caplog.at_level("WARNING"):
        assert client.capped(86400.0, 1.0) == 30
    assert "86400" in caplog.text and "max_retry_after_s" in caplog.text
    assert client.capped(5.0, 1.0) == 5.0 and client.capped(None, 1.5) == 1.5
    assert client.counters.retry_after_capped == 1


# -- store: outputs are published whole --------------------------------------------------------
def test_sorted_spool_and_publish(tmp_path):
    from embedforge.synth.store import SortedSpool, publish

    spool = SortedSpool(tmp_path / ".spool")
    for k in (3, 1, 2):
        spool.add(k, {"k": k})
    spool.add(4, {"k": 4})
    spool.discard(4)
    dest = tmp_path / "out.jsonl"
    dest.write_text("old\n")
    publish([(dest, spool), (tmp_path / "report.json", b"{}\n")])
    assert [json.loads(l)["k"] for l in dest.read_text().splitlines()] == [1, 2, 3]
    spool.close()
    assert not (tmp_path / ".spool").exists()

    class Broken(SortedSpool):
        def write_sorted(self, dest, *, fsync=False):
            raise OSError("disk full")

    broken = Broken(tmp_path / ".b")
    with pytest.raises(OSError):
        publish([(tmp_path / "report.json", b"new\n"), (dest, broken)])
    assert dest.read_text().count("\n") == 3 and (tmp_path / "report.json").read_text() == "{}\n"
    assert sorted(p.name for p in tmp_path.iterdir() if "partial" in p.name) == []
    broken.close()
