"""Open models on real servers (issue 19): structured outputs, attempts, stopped-run files, model label, reasoning."""

from __future__ import annotations

import asyncio
import json
import random
import re
import subprocess
import sys

import pytest

from embedforge.synth import schemas
from embedforge.synth.client import FatalAPIError
from embedforge.synth.parsing import ParseError, normalize_definition, parse_brainstorm, parse_example
from embedforge.synth.pipeline import PARTIAL_FILES, BrainstormFailed, Pipeline
from embedforge.synth.prompts import REPLY_LIST, brainstorm_messages
from embedforge.synth.sampling import Planner
from embedforge.synth.settings import SynthConfigError
from embedforge.synth.taxonomy import BRAINSTORM_TYPES, OUTPUT_KEYS, TASK_TYPES

SCHEMA = ["mixture=open_model"]
STS_ONLY = ["synth.tasks={short_long: 0, long_short: 0, bitext: 0, long_long: 0, short_short: 0}", "synth/languages=en"]


def _run(settings, clients=None):
    return asyncio.run(Pipeline(settings, clients).run())


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- schemas ------------------------------------------------------------------------------------
_ALPHABET = "abc XYZ 09 .,;:!?-'\"\\/{}[]\n\t éüß中文😀"


def _instance(schema: dict, rng: random.Random):
    """A random value valid under one of our schemas (objects, arrays, bounded strings)."""
    kind = schema["type"]
    if kind == "object":
        return {k: _instance(v, rng) for k, v in schema["properties"].items()}
    if kind == "array":
        n = rng.randint(schema.get("minItems", 0), min(schema.get("maxItems", 5), 5))
        return [_instance(schema["items"], rng) for _ in range(n)]
    lo, hi = schema.get("minLength", 0), min(schema.get("maxLength", 40), 40)
    if rng.random() < 0.05:
        return " " * lo  # blank (or empty) yet schema-valid: the parser's deliberate extra check
    length = rng.choice([max(lo, 1), hi, rng.randint(max(lo, 1), hi)])
    return "".join(rng.choice(_ALPHABET) for _ in range(length))


@pytest.mark.parametrize("kind", ["brainstorm", *TASK_TYPES])
@pytest.mark.parametrize("lengths", [True, False])
def test_every_schema_valid_reply_parses(kind, lengths):
    """Property: each random schema-valid object parses, except the rules a schema cannot state
    (a blank string; query or negative equal to the positive), which are rejected by name."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = schemas.brainstorm_schema(5, lengths) if kind == "brainstorm" else schemas.example_schema(kind, lengths)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    rng = random.Random(f"{kind}:{lengths}")
    parsed = 0
    for _ in range(300):
        value = _instance(schema, rng)
        validator.validate(value)
        text = json.dumps(value, ensure_ascii=rng.random() < 0.5)
        if kind == "brainstorm":
            kept = [t.strip() for t in value["tasks"] if normalize_definition(t)]  # words, not just punctuation
            if not kept:
                with pytest.raises(ParseError, match="^empty_list"):
                    parse_brainstorm(text)
                continue
            assert parse_brainstorm(text) == kept
        else:
            keys = [k for k in OUTPUT_KEYS[kind] if k]
            stripped = [value[k].strip() for k in keys]
            if not all(stripped) or stripped[0] == stripped[1] or (len(keys) == 3 and stripped[2] == stripped[1]):
                with pytest.raises(ParseError, match="^(empty_value|query_equals_positive|negative_equals_positive)"):
                    parse_example(text, kind)
                continue
            q, p, n = parse_example(text, kind)
            assert (q, p, n) == (stripped[0], stripped[1], stripped[2] if len(keys) == 3 else None)
        parsed += 1
    assert parsed > 180  # most draws are ordinary replies


def test_schemas_hold_exactly_the_parsers_keys():
    for task in TASK_TYPES:
        s = schemas.example_schema(task)
        keys = [k for k in OUTPUT_KEYS[task] if k]
        assert s["type"] == "object" and s["additionalProperties"] is False
        assert list(s["properties"]) == keys and s["required"] == keys
        assert all(p["type"] == "string" and p["minLength"] == 1 for p in s["properties"].values())
    assert schemas.example_schema("long_short")["properties"]["label"]["maxLength"] == schemas.MAX_LABEL_CHARS
    b = schemas.brainstorm_schema(20)
    assert b["required"] == ["tasks"] and b["additionalProperties"] is False
    assert b["properties"]["tasks"]["maxItems"] == 20 and b["properties"]["tasks"]["items"]["maxLength"] > 0
    assert "minLength" not in json.dumps(schemas.brainstorm_schema(20, lengths=False))


def test_json_schema_requests_have_the_structured_outputs_shape(server_factory, make_settings):
    s = make_settings(server_factory(), "num_examples=300", *SCHEMA)
    p = Pipeline(s)
    plans = Planner(s)
    seen = set()
    for i in range(300):
        plan = plans.item(i, {t: ["Find things."] for t in BRAINSTORM_TYPES})
        fmt = p.item_request(plan).payload["response_format"]
        assert fmt == {"type": "json_schema", "json_schema": {
            "name": f"embedforge_{plan.task_type}", "schema": schemas.example_schema(plan.task_type), "strict": True}}
        assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", fmt["json_schema"]["name"])
        seen.add(plan.task_type)
    assert seen == set(TASK_TYPES)
    b = p.brainstorm_request(p.brainstorm_plans()[0])
    assert b.payload["response_format"]["json_schema"]["schema"] == schemas.brainstorm_schema(s.synth.tasks_per_call)
    assert 'a single field, "tasks"' in b.payload["messages"][0]["content"]
    # Plain mode keeps its prompt (and so its cache keys): the bare list, as before.
    plain = brainstorm_messages("short_long", 20)[0]["content"]
    assert plain.rstrip("\n").endswith(REPLY_LIST) and '"tasks"' not in plain


def test_json_schema_run_sends_a_schema_per_step_and_accepts_every_reply(server_factory, make_settings):
    srv = server_factory(seed=3)
    s = make_settings(srv, "num_examples=60", *SCHEMA)
    report = _run(s)
    stats = srv.stats()
    planned = {Planner(s).item(i).task_type for i in range(60)}
    assert stats["response_formats"] == {"json_schema": stats["requests"]} and len(planned) >= 4
    assert set(stats["schemas"]) == {"embedforge_brainstorm", *(f"embedforge_{t}" for t in planned)}
    assert all(v["strict"] is True for v in stats["schemas"].values())
    assert report["accepted"] + report["duplicates"] == 60 and report["rejected"] == 0
    assert report["complete"] is True


def test_dry_run_prints_each_generators_response_format(server_factory, make_settings):
    from embedforge.synth.estimate import dry_run, format_estimate

    srv = server_factory()
    est = dry_run(make_settings(srv, "dry_run=true", "num_examples=5", *SCHEMA, "generator.model=some-open-model"))
    assert "response_format: some-open-model: json_schema (structured outputs" in format_estimate(est)
    plain = dry_run(make_settings(srv, "dry_run=true", "num_examples=5", out="plain"))
    assert "response_format: gpt-4o-mini: none (plain text" in format_estimate(plain)
    assert srv.stats()["requests"] == 0


# -- attempts -----------------------------------------------------------------------------------
def test_a_rejected_reply_gets_a_new_attempt_that_is_a_new_request(server_factory, make_settings):
    srv = server_factory(rates={"invalid_json": 0.3}, seed=11)
    one = _run(make_settings(srv, "num_examples=80", *STS_ONLY, "max_attempts=1", "attempts_per_run=1", out="one"))
    srv2 = server_factory(rates={"invalid_json": 0.3}, seed=11)
    s = make_settings(srv2, "num_examples=80", *STS_ONLY, "max_attempts=4", "attempts_per_run=4", out="four")
    four = _run(s)
    assert one["rejected"] >= 10 and four["rejected"] < one["rejected"] / 4
    assert four["attempts"]["items_accepted_after_retry"] >= 10
    stats = srv2.stats()
    assert max(stats["ok_by_key"].values()) == 1  # every attempt a distinct request, paid once
    rejects = _lines(s.out_dir / "rejects.jsonl")
    retried = [r for r in rejects if r["attempt"] > 0]
    assert retried and all(not r["final"] for r in rejects if r["attempt"] < 3)
    assert sum(r["final"] for r in rejects) == four["rejected"]
    sent = stats["requests"]
    again = _run(s)  # every item accepted or out of attempts: nothing to send
    assert srv2.stats()["requests"] == sent and again["accepted"] == four["accepted"]


def test_a_stopped_run_writes_what_it_had_and_reruns_progress(server_factory, make_settings):
    """Every reply is bad: step 1 stops; the stop names partial files that exist; a rerun sends the
    next attempts (not the same rejections again); a good server then lets the rerun complete."""
    bad = server_factory(rates={"wrong_keys": 1.0}, seed=1)
    over = ["num_examples=12", "synth.brainstorm.calls_per_type=1", "attempts_per_run=2", "max_attempts=5"]
    s = make_settings(bad, *over)
    with pytest.raises(BrainstormFailed) as err:
        _run(s)
    msg = str(err.value)
    assert "a rerun of the same command sends up to attempts_per_run=2" in msg
    named = [s.out_dir / n for n in PARTIAL_FILES]
    assert all(str(p) in msg and p.exists() for p in named)
    assert not (s.out_dir / "report.json").exists()  # no complete outputs were written
    partial = json.loads((s.out_dir / "report.partial.json").read_text())
    assert partial["complete"] is False and "BrainstormFailed" in partial["stopped"]
    rejects = _lines(s.out_dir / "rejects.partial.jsonl")
    assert rejects and all(r["stage"] == "brainstorm" for r in rejects)
    assert {r["attempt"] for r in rejects} == {0, 1}
    assert all(r["reason"].startswith("wrong_type: expected a JSON list, got object") for r in rejects)
    first = bad.stats()["requests"]
    assert first == 2 * 4  # four brainstorm types, two attempts each

    with pytest.raises(BrainstormFailed):
        _run(s)  # rerun: attempts 2 and 3 of each call, nothing replayed is sent again
    assert bad.stats()["requests"] == 2 * first and max(bad.stats()["ok_by_key"].values()) == 1
    assert {r["attempt"] for r in _lines(s.out_dir / "rejects.partial.jsonl")} == {0, 1, 2, 3}

    good = server_factory(seed=1)
    done = _run(make_settings(good, *over))  # the last attempt (4) is the first the good server sees
    assert good.stats()["requests"] == 4 + 12 and done["complete"] is True and done["accepted"] > 0
    assert done["attempts"]["brainstorm_accepted_after_retry"] == 4
    assert not any((s.out_dir / n).exists() for n in PARTIAL_FILES)  # stale partial files removed


def test_a_call_out_of_attempts_says_so_and_sends_nothing(server_factory, make_settings):
    bad = server_factory(rates={"invalid_json": 1.0}, seed=2)
    s = make_settings(bad, "num_examples=5", "synth.brainstorm.calls_per_type=1", "attempts_per_run=2", "max_attempts=2")
    with pytest.raises(BrainstormFailed):
        _run(s)
    sent = bad.stats()["requests"]
    with pytest.raises(BrainstormFailed, match="every call used max_attempts=2"):
        _run(s)
    assert bad.stats()["requests"] == sent


def test_a_stop_after_complete_outputs_leaves_them_and_writes_partial_files_beside(server_factory, make_settings, fake_key):
    srv = server_factory(seed=9)
    s = make_settings(srv, "num_examples=30")
    _run(s)
    before = {n: (s.out_dir / n).read_bytes() for n in ("examples.jsonl", "rejects.jsonl", "report.json")}
    rotated = server_factory(api_key="the-new-key", seed=9)
    with pytest.raises(FatalAPIError, match="401") as err:
        _run(make_settings(rotated, "num_examples=40"))
    assert {n: (s.out_dir / n).read_bytes() for n in before} == before
    assert json.loads(before["report.json"])["complete"] is True
    partial = json.loads((s.out_dir / "report.partial.json").read_text())
    assert partial["complete"] is False and str(s.out_dir / "report.partial.json") in str(err.value)


def test_cli_stop_names_existing_files_and_generate_log_holds_reasons(tmp_path, server_factory, cli_env, fake_key_env, fast_client):
    srv = server_factory(rates={"wrong_keys": 1.0}, seed=4)
    out = tmp_path / "stopped"
    done = subprocess.run(
        [sys.executable, "-m", "embedforge.cli.generate", f"client.base_url={srv.base_url}",
         f"client.api_key_env={fake_key_env}", f"out_dir={out}", "num_examples=8",
         "synth.brainstorm.calls_per_type=1", "attempts_per_run=1", *fast_client],
        env=cli_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    line = [l for l in done.stderr.splitlines() if l.startswith("embedforge-generate: stopped:")]
    assert len(line) == 1
    named = re.findall(r"(/\S+?\.(?:jsonl|json|log))\b", line[0])
    assert len(named) >= 4 and all(__import__("os").path.exists(p) for p in named)
    log = next(p for p in named if p.endswith("generate.log"))
    text = open(log, encoding="utf-8").read()
    assert "rejected: brainstorm short_long#0 attempt 0" in text and "wrong_type: expected a JSON list, got object" in text
    assert "rejected: brainstorm" not in done.stdout + done.stderr.replace(line[0], "")  # the console is spared


# -- model label --------------------------------------------------------------------------------
def test_one_served_model_is_used_and_recorded_as_the_source(server_factory, make_settings, caplog):
    srv = server_factory(served_models=["SmolLM2-135M-Instruct"], seed=5)
    s = make_settings(srv, "num_examples=10", "mixture=vllm_json")  # names Qwen/Qwen2.5-7B-Instruct
    with caplog.at_level("WARNING"):
        report = _run(s)
    assert "is not served by" in caplog.text and "SmolLM2-135M-Instruct" in caplog.text
    assert srv.stats()["models"] == {"SmolLM2-135M-Instruct": srv.stats()["requests"]}
    records = _lines(s.out_dir / "examples.jsonl")
    assert records and {r["source"] for r in records} == {"synthetic:SmolLM2-135M-Instruct"}
    assert list(report["by_generator"]) == ["SmolLM2-135M-Instruct"]


def test_a_model_the_server_does_not_list_is_refused_before_any_request(server_factory, make_settings):
    srv = server_factory(served_models=["model-a", "model-b"])
    s = make_settings(srv, "num_examples=10", "generator.model=model-c")
    with pytest.raises(SynthConfigError, match=r"^generator\.model: 'model-c' is not served by .*model-a, model-b"):
        _run(s)
    assert srv.stats()["requests"] == 0 and not s.cache_path.exists()
    ok = make_settings(srv, "num_examples=10", "generator.model=model-b", out="ok")
    _run(ok)
    assert srv.stats()["models"] == {"model-b": srv.stats()["requests"]}
    unchecked = make_settings(srv, "num_examples=5", "generator.model=model-c", "check_models=false", out="unchecked")
    _run(unchecked)
    assert srv.stats()["models"]["model-c"] > 0


# -- reasoning replies --------------------------------------------------------------------------
@pytest.mark.parametrize("shape", ["reasoning_content", "think"])
def test_reasoning_replies_give_the_same_examples_and_are_counted(server_factory, make_settings, shape):
    plain_srv = server_factory(seed=6)
    plain = make_settings(plain_srv, "num_examples=25", out="plain")
    _run(plain)
    srv = server_factory(seed=6, content_shape=shape)
    s = make_settings(srv, "num_examples=25", out=shape)
    report = _run(s)
    assert (s.out_dir / "examples.jsonl").read_bytes() == (plain.out_dir / "examples.jsonl").read_bytes()
    key = "replies_with_reasoning_content" if shape == "reasoning_content" else "think_blocks_stripped"
    assert report["reasoning"][key] == srv.stats()["requests"]
    cache = s.cache_path.read_text()
    assert "The user wants JSON" not in cache  # thoughts beside the answer are counted, not kept


def test_an_unclosed_think_block_is_an_unfinished_answer():
    with pytest.raises(ParseError, match="^unfinished_reasoning"):
        parse_example('<think>the user wants {"S1": "a"', "sts")
    assert parse_example('<think>x</think>\n{"S1": "a", "S2": "b", "S3": "c"}', "sts") == ("a", "b", "c")
    assert parse_brainstorm('thoughts</think>["Find x."]') == ["Find x."]  # block opened by the template


def test_placeholder_strings_are_no_task_definitions():
    with pytest.raises(ParseError, match=r"^empty_list: .*the list holds string; strings without words"):
        parse_brainstorm('{"tasks": ["...", "..."]}')  # what SmolLM2 copied from an earlier prompt
    with pytest.raises(ParseError, match=r"^empty_list: .*the list holds object\)"):
        parse_brainstorm('{"tasks": [{"title": "Find x"}]}')
    assert parse_brainstorm('{"tasks": ["...", "Find x."]}') == ["Find x."]


def test_reject_reasons_say_what_was_found():
    cases = {
        '{"title": "A title"}': "wrong_type: expected a JSON list, got object whose only key 'title' holds string, not a list",
        '{"tasks": {"a": ["x"]}}': "wrong_type: expected a JSON list, got object whose only key 'tasks' holds object, not a list",
        '"just text"': "wrong_type: expected a JSON list, got string",
    }
    for text, reason in cases.items():
        with pytest.raises(ParseError) as err:
            parse_brainstorm(text)
        assert str(err.value) == reason
    with pytest.raises(ParseError, match=r"^wrong_type: expected a JSON list, got object \(keys: 'a', 'b'"):
        parse_brainstorm('{"a": [], "b": []}')
    with pytest.raises(ParseError, match=r"^wrong_type: expected a JSON object, got list$"):
        parse_example('["S1"]', "sts")
    with pytest.raises(ParseError, match=r"^missing_key:S1 \(found keys: 'text'\)$"):
        parse_example('{"text": "a"}', "sts")
    with pytest.raises(ParseError, match=r"^not_a_string:S1 \(got number\)$"):
        parse_example('{"S1": 3, "S2": "b", "S3": "c"}', "sts")
