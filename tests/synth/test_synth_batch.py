"""Batch API mode against the fake server's /v1/files and /v1/batches: resumable, nothing submitted twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from embedforge.synth.estimate import dry_run
from embedforge.synth.pipeline import Pipeline

BATCH = ["client.mode=batch", "client.batch_poll_s=0.05"]
ONE_ATTEMPT = ["max_attempts=1", "attempts_per_run=1"]


def _run(settings):
    return asyncio.run(Pipeline(settings).run())


def _examples(out_dir):
    return (out_dir / "examples.jsonl").read_text()


def _states(out_dir):
    path = out_dir / "batches.jsonl"
    return [json.loads(l) for l in path.read_text().splitlines() if l.endswith("}")] if path.exists() else []


def test_batch_kill_9_while_polling_resumes_the_same_batches(tmp_path, server_factory, make_settings, fake_key_env, cli_env, fast_client):
    """500 items; kill -9 while the generation batch is polled; the rerun adopts the recorded ids.

    One attempt per item: a rejected reply's new attempt would be a new batch round (tested apart).
    """
    srv = server_factory(rates={"invalid_json": 0.05}, batch_latency_s=1.5, seed=21)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "embedforge.cli.generate", f"client.base_url={srv.base_url}",
           f"client.api_key_env={fake_key_env}", f"out_dir={out}", "num_examples=500", *fast_client, *BATCH,
           *ONE_ATTEMPT]
    proc = subprocess.Popen(cmd, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if any(s["event"] == "submitted" and s["chunk"].startswith("gener") for s in _states(out)):
            break
        time.sleep(0.02)
    time.sleep(0.3)  # now polling the generation batch (it completes 1.5 s after creation)
    assert proc.poll() is None, proc.communicate()[0].decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert not (out / "examples.jsonl").exists()  # nothing published by the killed run
    key = cli_env[fake_key_env].encode()
    pending = list((out / "batches").glob("*.jsonl"))
    assert pending and all(key not in p.read_bytes() for p in pending)  # the batch files hold no key
    created = srv.stats()["batches_created"]
    # brainstorm + generation
    assert created == len({st["chunk"] for st in _states(out) if st["event"] == "submitted"}) == 2

    done = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    stats = srv.stats()
    assert stats["batches_created"] == created  # the rerun polled the recorded batch, submitted none
    assert max(stats["batch_keys"].values()) == 1  # no request was in two batches
    assert stats["requests"] == len(stats["batch_keys"])  # and none went through the chat endpoint
    report = json.loads((out / "report.json").read_text())
    assert report["batches"]["resumed"] == 1 and "submitted" not in report["batches"]
    assert report["accepted"] + report["rejected"] + report["duplicates"] == 500

    # The same run without interruption gives the same examples and rejects.
    ref_srv = server_factory(rates={"invalid_json": 0.05}, batch_latency_s=0.2, seed=21)
    ref = make_settings(ref_srv, "num_examples=500", *BATCH, *ONE_ATTEMPT, out="reference").out_dir
    _run(make_settings(ref_srv, "num_examples=500", *BATCH, *ONE_ATTEMPT, out="reference"))
    assert _examples(out) == _examples(ref) and len(_examples(ref).splitlines()) > 400
    assert (out / "rejects.jsonl").read_text() == (ref / "rejects.jsonl").read_text()
    assert ref_srv.stats()["batches_created"] == created
    # No artifact of batch mode (batch files, state, cache, logs) holds the API key.
    assert [p for p in tmp_path.rglob("*") if p.is_file() and key in p.read_bytes()] == []


def test_batch_created_just_before_a_kill_is_adopted_not_resubmitted(server_factory, make_settings, monkeypatch):
    """Killed between batches.create and recording its id: the rerun finds the batch by its chunk id."""
    from embedforge.synth import batch as batch_mod

    srv = server_factory(batch_latency_s=0.2, seed=5)
    s = make_settings(srv, "num_examples=60", *BATCH)

    class Killed(BaseException):
        pass

    original = batch_mod.BatchRunner._record_submitted

    def die(self, c, batch_id, file_id):
        if c.phase == "generate":
            raise Killed()
        return original(self, c, batch_id, file_id)

    monkeypatch.setattr(batch_mod.BatchRunner, "_record_submitted", die)
    with pytest.raises(Killed):
        _run(s)
    monkeypatch.setattr(batch_mod.BatchRunner, "_record_submitted", original)
    assert srv.stats()["batches_created"] == 2
    report = _run(s)
    stats = srv.stats()
    assert stats["batches_created"] == 2 and max(stats["batch_keys"].values()) == 1
    assert report["batches"]["adopted"] == 1 and report["accepted"] == 60
    # Batch results are paid (at the batch price) in the run that ingests them, not "cached".
    assert report["cost_usd"] > 0 and report["tokens"]["completion"] > 0


def test_failed_batch_requests_are_rejects_and_resubmitted_once(server_factory, make_settings):
    srv = server_factory(rates={"500": 0.1}, batch_latency_s=0.1, seed=8)
    s = make_settings(srv, "num_examples=80", *BATCH, *ONE_ATTEMPT, *["synth.tasks={short_long: 0, long_short: 0, bitext: 0, long_long: 0, short_short: 0}", "synth/languages=en"])
    first = _run(s)
    failed = first["reject_reasons"].get("transport", 0)
    assert failed > 0 and first["accepted"] + failed == 80
    second = _run(s)
    stats = srv.stats()
    assert stats["batches_created"] == 2
    twice = [k for k, n in stats["batch_keys"].items() if n == 2]
    assert len(twice) == failed and max(stats["batch_keys"].values()) == 2  # only the failed ones, once more
    assert second["accepted"] + second["reject_reasons"].get("transport", 0) == 80
    assert second["accepted"] > first["accepted"]


def test_dry_run_prices_both_modes_and_estimates_time(server_factory, make_settings):
    srv = server_factory()
    s = make_settings(srv, "num_examples=10000", "client.requests_per_minute=500", "client.tokens_per_minute=0",
                      "client.concurrency=1000", "dry_run=true")
    est = dry_run(s)
    assert srv.stats()["requests"] == 0
    assert est["planned_unique_tasks"] == 3031 and 3000 <= est["brainstorm_task_capacity"] < 3200
    assert est["est_cost_usd_batch"] == pytest.approx(est["est_cost_usd_online"] * 0.5, rel=1e-3)
    # With a high concurrency, requests/min binds: (154 + 10000) requests / 500 per minute.
    assert est["time_limited_by"] == {"brainstorm": "requests_per_minute", "generate": "requests_per_minute"}
    assert est["est_time_online_s"] == pytest.approx((est["brainstorm_requests"] + 10000) / 500 * 60, abs=0.1)
    assert est["est_time_batch_max_s"] == 2 * 24 * 3600
    slow = dry_run(make_settings(srv, "num_examples=1000", "client.requests_per_minute=0", "client.tokens_per_minute=0",
                                 "client.concurrency=10", "estimate.output_tokens_per_s=50", "estimate.request_overhead_s=1"))
    assert set(slow["time_limited_by"].values()) == {"concurrency"}
    # Each request takes 1 s + its output tokens / 50; ten at a time.
    expected = (slow["brainstorm_requests"] + 1000 + slow["est_output_tokens"] / 50) / 10
    assert slow["est_time_online_s"] == pytest.approx(expected, rel=0.01)


def test_batch_files_hold_one_model_each(server_factory, make_settings):
    """The Batch API takes one model per batch file: a mixture is split by model."""
    srv = server_factory(batch_latency_s=0.1, seed=6)
    s = make_settings(srv, "num_examples=120", "mixture=paper", *BATCH)
    report = _run(s)
    assert report["accepted"] == 120
    models_per_batch = []
    for batch in srv.batches.values():
        lines = srv.files[batch["input_file_id"]].decode().splitlines()
        models_per_batch.append({json.loads(l)["body"]["model"] for l in lines})
    assert all(len(m) == 1 for m in models_per_batch)
    assert set().union(*models_per_batch) == {"gpt-4", "gpt-3.5-turbo"}
    # Cost: each model's tokens at its own price, halved.
    row = report["by_generator"]["gpt-4"]
    assert row["cost_usd"] == pytest.approx((row["prompt_tokens"] * 30 + row["completion_tokens"] * 60) / 1e6 * 0.5, abs=1e-6)


def test_an_expired_batch_is_submitted_again_under_a_new_id(server_factory, make_settings):
    from embedforge.synth.pipeline import BrainstormFailed

    srv = server_factory(batch_latency_s=0.1, batch_expire_first=1, seed=4)
    s = make_settings(srv, "num_examples=30", *BATCH, *ONE_ATTEMPT)
    with pytest.raises(BrainstormFailed, match="expired"):  # step 1 cannot go on without its replies
        _run(s)
    assert not (s.out_dir / "examples.jsonl").exists()
    report = _run(s)
    assert report["accepted"] == 30
    chunks = [st["chunk"] for st in _states(s.out_dir) if st["event"] == "submitted"]
    brainstorm = [c for c in chunks if c.startswith("brain")]
    assert len(brainstorm) == 2 and brainstorm[0][:-2] == brainstorm[1][:-2] and brainstorm[0] != brainstorm[1]
    assert srv.stats()["batches_created"] == 3


def test_batch_mode_sends_a_round_of_batches_per_attempt(server_factory, make_settings):
    """Rejected replies get new attempts in batch mode too: one more round of batches each time."""
    srv = server_factory(rates={"invalid_json": 0.3}, batch_latency_s=0.1, seed=12)
    s = make_settings(srv, "num_examples=60", *BATCH, "max_attempts=3", "attempts_per_run=3",
                      "synth.tasks={short_long: 0, long_short: 0, bitext: 0, long_long: 0, short_short: 0}",
                      "synth/languages=en")
    report = _run(s)
    stats = srv.stats()
    assert 2 <= stats["batches_created"] <= 3 and max(stats["batch_keys"].values()) == 1
    assert report["attempts"]["items_accepted_after_retry"] >= 5 and report["rejected"] <= 5
    assert report["accepted"] + report["rejected"] + report["duplicates"] == 60
    again = _run(s)  # every item accepted or out of attempts: nothing submitted
    assert srv.stats()["batches_created"] == stats["batches_created"] and again["accepted"] == report["accepted"]
