"""End-to-end runs of the pipeline against the fake server (in-process, fast)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import pytest

from embedforge.data.jsonl import load_examples
from embedforge.synth.client import ChatClient, ClientCounters, FatalAPIError, RequestFailed
from embedforge.synth.estimate import dry_run
from embedforge.synth.parsing import parse_example
from embedforge.synth.pipeline import Pipeline
from embedforge.synth.store import request_key

FAULTS = {"500": 0.20, "429": 0.10, "invalid_json": 0.10, "stall": 0.05}


def _run(settings):
    return asyncio.run(Pipeline(settings).run())


def _lines(path):
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]

# One attempt per item, as before retries existed: these tests are about other things.
ONE_ATTEMPT = ["max_attempts=1", "attempts_per_run=1"]


def test_fault_run_accounts_for_every_item(server_factory, make_settings):
    """500 items under 20% 500s, 10% 429s, 10% invalid JSON, 5% stalls: each accepted once or rejected."""
    srv = server_factory(rates=FAULTS, stall_s=1.0, seed=3)
    s = make_settings(srv, "num_examples=500", "client.concurrency=32", "client.timeout_s=0.3", *ONE_ATTEMPT)
    report = _run(s)
    examples = load_examples(s.out_dir / "examples.jsonl")  # on_error=fail: any bad line raises
    rejects = [r for r in _lines(s.out_dir / "rejects.jsonl") if r["stage"] == "generate"]
    assert report["accepted"] == len(examples.examples)
    assert report["rejected"] == len(rejects)
    assert report["accepted"] + report["rejected"] + report["duplicates"] == 500
    assert sorted(r["item"] for r in rejects) == sorted(set(r["item"] for r in rejects))
    assert all(r["reason"] and "raw" in r for r in rejects)
    # Rejects are the injected invalid JSON (plus, on a starved machine, the odd item whose 11
    # attempts all hit transient faults or timeouts: recorded too, and retried by the next run).
    reasons = Counter(r["reason"].split(":")[0] for r in rejects)
    assert set(reasons) <= {"invalid_json", "transport"} and reasons["transport"] <= 3
    assert 20 <= report["rejected"] <= 90
    stats = srv.stats()
    assert stats["faults"]["500"] > 50 and stats["faults"]["429"] > 20 and stats["faults"]["stall"] > 5
    assert report["retries"] >= stats["faults"]["500"]  # every transient fault was retried
    # Every completed request was served (OK) exactly once.
    assert max(stats["ok_by_key"].values()) == 1
    assert all(e.source == "synthetic:gpt-4o-mini" and e.instruction for e in examples.examples)
    assert len({json.dumps(e.to_dict(), sort_keys=True) for e in examples.examples}) == len(examples.examples)
    saved = json.loads((s.out_dir / "report.json").read_text())
    assert saved["accepted"] == report["accepted"] and saved["cost_usd"] > 0
    assert set(saved["by_task_type"]) == {"short_long", "long_short", "short_short", "long_long", "sts", "bitext"}


def test_rerun_reuses_every_response_and_rebuilds_outputs(server_factory, make_settings):
    srv = server_factory(rates={"invalid_json": 0.1, "wrong_keys": 0.05, "truncated": 0.05}, seed=5)
    s = make_settings(srv, "num_examples=120", "client.concurrency=8", *ONE_ATTEMPT)
    first = _run(s)
    out1 = sorted((s.out_dir / "examples.jsonl").read_text().splitlines())
    rej1 = sorted((s.out_dir / "rejects.jsonl").read_text().splitlines())
    served = srv.stats()["requests"]
    second = _run(s)
    assert srv.stats()["requests"] == served  # nothing sent twice
    assert second["cache_hits"] == served and second["cost_usd"] == 0
    assert sorted((s.out_dir / "examples.jsonl").read_text().splitlines()) == out1
    assert sorted((s.out_dir / "rejects.jsonl").read_text().splitlines()) == rej1
    assert (first["accepted"], first["rejected"]) == (second["accepted"], second["rejected"])
    reasons = set(first["reject_reasons"])
    assert {"invalid_json", "missing_key"} <= reasons


def test_resume_after_lost_tail_only_requests_missing_items(server_factory, make_settings):
    srv = server_factory(seed=1)
    s = make_settings(srv, "num_examples=60", "client.concurrency=4")
    _run(s)
    cache = s.cache_path
    lines = cache.read_bytes().splitlines(keepends=True)
    # Simulate a crash: the last 10 entries never made it, and the 11th-last is torn.
    cache.write_bytes(b"".join(lines[:-11]) + lines[-11][:25])
    kept = {json.loads(l)["key"] for l in lines[:-11]}
    before = srv.stats()["attempts_by_key"]
    report = _run(s)
    after = srv.stats()["attempts_by_key"]
    assert all(after[k] == before[k] for k in kept)  # completed requests were not re-sent
    assert sum(after.values()) - sum(before.values()) == 11
    assert report["accepted"] == 60 and len(load_examples(s.out_dir / "examples.jsonl").examples) == 60


def test_exact_duplicates_are_removed(server_factory, make_settings):
    srv = server_factory(rates={"constant": 1.0})
    s = make_settings(srv, "num_examples=40", "synth.tasks={short_long: 0, long_short: 0, bitext: 0, long_long: 0, short_short: 0}",
                      "synth/languages=en")
    report = _run(s)
    # Every STS reply is identical and the instruction is fixed: one record survives.
    assert report["accepted"] == 1 and report["duplicates"] == 39
    assert len(load_examples(s.out_dir / "examples.jsonl").examples) == 1


def test_client_retries_honour_retry_after_and_are_counted(server_factory, fake_key):
    from embedforge.synth.settings import ClientSettings

    srv = server_factory(schedule=["429", "500", None], retry_after_s=0.4)
    counters = ClientCounters()
    payload = {"model": "m", "messages": [{"role": "user", "content": "[kind: generate/sts]\nhi"}],
               "temperature": 1.0, "top_p": 1.0, "max_tokens": 50, "seed": 1}

    async def go():
        client = ChatClient(ClientSettings(base_url=srv.base_url, backoff_base_s=0.01, backoff_max_s=0.02), fake_key, counters)
        t0 = time.monotonic()
        resp = await client.complete(payload, 10)
        await client.close()
        return resp, time.monotonic() - t0

    resp, elapsed = asyncio.run(go())
    assert parse_example(resp.text, "sts")[0].startswith("sts query")
    assert counters.requests == 3 and counters.retries == 2 and counters.failures == {"429": 1, "500": 1}
    assert elapsed >= 0.4  # waited the server's Retry-After, not the 10 ms backoff
    assert srv.stats()["ok_by_key"] == {request_key(payload): 1}


def test_client_gives_up_and_auth_errors_are_fatal(server_factory, fake_key):
    from embedforge.synth.settings import ClientSettings

    payload = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    failing = server_factory(rates={"500": 1.0})
    wrong_key = server_factory(api_key="another-key")

    async def call(srv):
        client = ChatClient(ClientSettings(base_url=srv.base_url, max_retries=2, backoff_base_s=0.001), fake_key)
        try:
            return await client.complete(payload, 10)
        finally:
            await client.close()

    with pytest.raises(RequestFailed, match="gave_up after 3 attempts"):
        asyncio.run(call(failing))
    assert failing.stats()["requests"] == 3
    with pytest.raises(FatalAPIError, match="401"):
        asyncio.run(call(wrong_key))


def test_rate_limit_caps_requests_per_minute(server_factory, make_settings):
    srv = server_factory()
    # 600/min = 10/s with a 5 s burst of 50: 70 requests need >= ~2 s.
    s = make_settings(srv, "num_examples=54", "synth.brainstorm.calls_per_type=4",
                      "client.requests_per_minute=600", "client.concurrency=32")
    t0 = time.monotonic()
    _run(s)
    assert srv.stats()["requests"] == 70
    assert time.monotonic() - t0 >= 1.8


def test_dry_run_estimates_without_sending(server_factory, make_settings, capsys):
    srv = server_factory()
    s = make_settings(srv, "num_examples=1000", "dry_run=true", "dry_run_prompts=2")
    est = dry_run(s)
    assert srv.stats()["requests"] == 0 and not s.out_dir.exists()
    # Brainstorm calls follow num_examples: 1000 / 3.3 = 304 tasks -> 8 + 6 + 1 + 1 calls of 20.
    assert est["requests"] == 1000 + 16 and est["brainstorm_calls_per_type"] == {
        "short_long": 8, "long_short": 6, "long_long": 1, "short_short": 1}
    assert est["est_input_tokens"] > 1000 * 50 and est["est_output_tokens"] > 1000 * 100
    expected = (est["est_input_tokens"] * 0.15 + est["est_output_tokens"] * 0.60) / 1e6
    assert est["est_cost_usd"] == pytest.approx(expected, rel=1e-3)
    assert len(est["prompts"]) == 4 and est["prompts"][0].startswith("[kind: brainstorm/")


def test_auth_failure_stops_the_run_and_keeps_files_consistent(server_factory, make_settings, fake_key):
    srv = server_factory(api_key="not-the-test-key")
    s = make_settings(srv, "num_examples=20")
    with pytest.raises(FatalAPIError, match="HTTP 401") as exc:
        _run(s)
    assert fake_key not in str(exc.value) and "<redacted>" in str(exc.value)
    assert s.cache_path.read_text() == ""  # nothing cached, nothing half-written


@pytest.mark.slow
def test_large_fault_run_with_every_fault_kind(server_factory, make_settings):
    """2000 items with every fault kind at once; then a rerun sends nothing new."""
    rates = {**FAULTS, "truncated": 0.05, "wrong_keys": 0.05}
    srv = server_factory(rates=rates, stall_s=1.0, seed=11)
    s = make_settings(srv, "num_examples=2000", "client.concurrency=64", "client.timeout_s=0.3",
                      "synth.brainstorm.calls_per_type=8")
    report = _run(s)
    assert report["accepted"] + report["rejected"] + report["duplicates"] == 2000
    assert {"invalid_json", "missing_key"} <= set(report["reject_reasons"])
    assert len(load_examples(s.out_dir / "examples.jsonl").examples) == report["accepted"]
    cached = {json.loads(l)["key"] for l in s.cache_path.read_text().splitlines()}
    before = srv.stats()["attempts_by_key"]
    again = _run(s)
    after = srv.stats()["attempts_by_key"]
    assert all(after[k] == before[k] for k in cached)  # only transport failures may be re-sent
    assert again["accepted"] >= report["accepted"]
