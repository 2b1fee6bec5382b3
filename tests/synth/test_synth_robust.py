"""Nothing the server sends, nor a stopped run, can damage a run: reply shapes, atomic outputs, fail-fast."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from embedforge.synth.client import FatalAPIError
from embedforge.synth.parsing import extract_json
from embedforge.synth.pipeline import BrainstormFailed, Pipeline

STS_ONLY = ["synth.tasks={short_long: 0, long_short: 0, bitext: 0, long_long: 0, short_short: 0}", "synth/languages=en"]
# One attempt per item, as before retries existed: these tests are about other things.
ONE_ATTEMPT = ["max_attempts=1", "attempts_per_run=1"]
OUTPUTS = ("examples.jsonl", "rejects.jsonl", "report.json", "task_definitions.json")


def _run(settings):
    return asyncio.run(Pipeline(settings).run())


def _snapshot(out_dir: Path) -> dict[str, bytes]:
    return {name: (out_dir / name).read_bytes() for name in OUTPUTS}


@pytest.mark.parametrize("shape", ["parts", "object"])
def test_servers_sending_other_content_shapes_give_the_same_examples(server_factory, make_settings, shape):
    plain = server_factory(seed=4)
    other = server_factory(seed=4, content_shape=shape)
    a = _run(make_settings(plain, "num_examples=40", out="plain"))
    s = make_settings(other, "num_examples=40", out=shape)
    b = _run(s)
    assert a["accepted"] == b["accepted"] == 40 and b["rejected"] == 0
    first = [json.loads(l) for l in (s.out_dir.parent / "plain" / "examples.jsonl").read_text().splitlines()]
    second = [json.loads(l) for l in (s.out_dir / "examples.jsonl").read_text().splitlines()]
    assert first == second


def test_refusals_are_counted_rejects(server_factory, make_settings):
    srv = server_factory(content_shape="refusal")
    s = make_settings(srv, "num_examples=12", *STS_ONLY)
    report = _run(s)
    assert report["rejected"] == 12 and report["reject_reasons"] == {"refusal": 12}
    rejects = [json.loads(l) for l in (s.out_dir / "rejects.jsonl").read_text().splitlines()]
    assert {r["raw"] for r in rejects} == {None} and all("can't help" in r["reason"] for r in rejects)
    # Every brainstorm reply refused: the run stops with a clear message and leaves no outputs.
    s2 = make_settings(srv, "num_examples=12", out="brainstorm")
    with pytest.raises(BrainstormFailed, match="rejected"):
        _run(s2)
    assert not (s2.out_dir / "examples.jsonl").exists()


# Replies as they could sit in a cache: each must become a parse or a counted reject on replay.
CACHED_SHAPES = {
    "parts": ([{"type": "text", "text": "<good>"}], "stop", None, "accepted"),
    "object": ("<good-object>", "stop", None, "accepted"),
    "string_in_parts": (["<good>"], "stop", None, "accepted"),
    "refusal": (None, "stop", "Not able to do that.", "refusal"),
    "null": (None, "stop", None, "empty_reply"),
    "number": (7, "stop", None, "wrong_content_type"),
    "empty_list": ([], "stop", None, "no_text_parts"),
    "truncated": ('{"S1": "a sentence", "S2": "the', "length", None, "truncated"),
    "nested": ("[" * 50000, "stop", None, "invalid_json"),
    "bool": (False, "stop", None, "wrong_content_type"),
}


def test_every_cached_reply_shape_replays_without_crashing(server_factory, make_settings):
    srv = server_factory(seed=2)
    s = make_settings(srv, "num_examples=30", *STS_ONLY, *ONE_ATTEMPT)
    _run(s)
    served = srv.stats()["requests"]
    lines = [json.loads(l) for l in s.cache_path.read_text().splitlines()]
    assert len(lines) == 30
    expected: dict[str, int] = {}
    for entry, (content, finish, refusal, outcome) in zip(lines, CACHED_SHAPES.values()):
        good = extract_json(entry["text"])
        if content == "<good-object>":
            content = good
        elif isinstance(content, list) and content and content[0] in ("<good>", {"type": "text", "text": "<good>"}):
            content = [json.dumps(good)] if content[0] == "<good>" else [{"type": "text", "text": json.dumps(good)}]
        entry.update(text=content, finish_reason=finish)
        if refusal:
            entry["refusal"] = refusal
        expected[outcome] = expected.get(outcome, 0) + 1
    s.cache_path.write_text("".join(json.dumps(e) + "\n" for e in lines))

    for _ in range(2):  # the rerun of the rerun completes too, with the same result
        report = _run(s)
        assert srv.stats()["requests"] == served  # nothing requested again
        assert report["accepted"] == 30 - sum(v for k, v in expected.items() if k != "accepted")
        assert report["reject_reasons"] == {k: v for k, v in expected.items() if k != "accepted"}
        rejects = [json.loads(l) for l in (s.out_dir / "rejects.jsonl").read_text().splitlines()]
        assert len(rejects) == report["rejected"] and all(r["reason"] and "raw" in r for r in rejects)


def test_a_rerun_stopped_by_401_leaves_outputs_byte_identical(server_factory, make_settings, fake_key):
    srv = server_factory(rates={"invalid_json": 0.1}, seed=9)
    s = make_settings(srv, "num_examples=220", *ONE_ATTEMPT)
    first = _run(s)
    assert first["accepted"] > 150 and first["rejected"] > 3
    before = _snapshot(s.out_dir)
    # The key was rotated: the rerun (asking for more items) replays the cache, then hits 401.
    rotated = server_factory(api_key="the-new-key", seed=9)
    s2 = make_settings(rotated, "num_examples=260", *ONE_ATTEMPT)
    with pytest.raises(FatalAPIError, match="401"):
        _run(s2)
    assert _snapshot(s.out_dir) == before
    assert not [p for p in s.out_dir.iterdir() if p.name.startswith(".")]  # no scratch files left
    report = json.loads(before["report.json"])
    assert report["accepted"] == len(before["examples.jsonl"].splitlines())
    assert report["rejected"] == len(before["rejects.jsonl"].splitlines())


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends


def test_connection_refused_fails_in_seconds_naming_the_url(make_settings, server_factory, fake_key):
    port = _closed_port()

    class Closed:
        base_url = f"http://127.0.0.1:{port}/v1"

    s = make_settings(Closed, "client.max_retries=8", "client.backoff_base_s=1", "client.backoff_max_s=60")
    t0 = time.monotonic()
    with pytest.raises(FatalAPIError) as exc:
        _run(s)
    assert time.monotonic() - t0 < 5
    assert f"127.0.0.1:{port}" in str(exc.value) and "retry_connect" in str(exc.value)
    # With client.retry_connect=true it is retried like any transient error.
    s2 = make_settings(Closed, "client.retry_connect=true", "client.max_retries=2", out="retry")
    pipeline = Pipeline(s2)
    with pytest.raises(BrainstormFailed, match="gave_up after 3 attempts"):
        asyncio.run(pipeline.run())
    assert pipeline.stats.client.failures["connection"] >= 3


def _cli(args, env, timeout=90):
    return subprocess.run([sys.executable, "-m", "embedforge.cli.generate", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_bad_out_dir_is_named_before_hydra_writes_anything(tmp_path, cli_env, fake_key_env):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    root_hydra = Path("/hydra")
    existed = root_hydra.exists()
    base = [f"client.api_key_env={fake_key_env}", "client.base_url=http://127.0.0.1:9/v1"]
    # an empty out_dir is refused by the config schema, one that cannot be written by the folder check
    for out_dir, prefix, expected in ((a_file, "out_dir: ", "is a file"), ("/dev/null/x", "out_dir: ", "cannot be created"),
                                      ("", "config key 'out_dir': ", "must be set")):
        done = _cli([*base, f"out_dir={out_dir}"], cli_env)
        assert done.returncode == 2, done.stderr[-2000:]
        assert f"embedforge-generate: {prefix}" in done.stderr and expected in done.stderr
        assert "Traceback" not in done.stderr
    assert a_file.read_text() == "x"
    assert root_hydra.exists() == existed  # an empty out_dir made no Hydra folder at the root


def test_verbose_logging_writes_no_http_headers_or_key(tmp_path, server_factory, cli_env, fake_key, fake_key_env, fast_client):
    srv = server_factory()
    out = tmp_path / "out"
    done = _cli([f"client.base_url={srv.base_url}", f"client.api_key_env={fake_key_env}", f"out_dir={out}",
                 "num_examples=5", *fast_client, "hydra.verbose=true"], cli_env)
    assert done.returncode == 0, done.stderr[-2000:]
    logs = list(out.rglob("*.log"))
    assert logs
    text = "".join(p.read_text() for p in logs) + done.stdout + done.stderr
    assert "DEBUG" in text  # verbose logging was on
    for leak in ("send_request_headers", "receive_response_headers", "Authorization", "authorization", fake_key):
        assert leak not in text
    assert not [line for line in text.splitlines() if "][httpcore" in line or "][httpx" in line]


def test_a_day_long_retry_after_is_capped(server_factory, fake_key):
    from embedforge.synth.client import ChatClient
    from embedforge.synth.settings import ClientSettings

    srv = server_factory(schedule=["429", None], retry_after_s=86400)
    payload = {"model": "m", "messages": [{"role": "user", "content": "[kind: generate/sts]\nhi"}]}

    async def go():
        client = ChatClient(ClientSettings(base_url=srv.base_url, max_retry_after_s=0.3), fake_key)
        t0 = time.monotonic()
        try:
            await client.complete(payload, 10)
        finally:
            await client.close()
        return time.monotonic() - t0, client.counters

    elapsed, counters = asyncio.run(go())
    assert 0.3 <= elapsed < 5 and counters.retry_after_capped == 1 and counters.requests == 2


def test_unreadable_cache_lines_are_reported_and_counted(server_factory, make_settings, caplog):
    srv = server_factory(seed=6)
    s = make_settings(srv, "num_examples=10", *STS_ONLY)
    _run(s)
    lines = s.cache_path.read_text().splitlines()
    damaged = [lines[0], "not json at all", "[1, 2]", '{"no_key": true}', *lines[1:]]
    s.cache_path.write_text("\n".join(damaged) + "\n")
    with caplog.at_level("WARNING"):
        report = _run(s)
    assert report["cache_lines_skipped"] == 3 and report["accepted"] == 10
    assert f"{s.cache_path}:2:" in caplog.text and f"{s.cache_path}:4:" in caplog.text
    assert srv.stats()["requests"] == 10  # the good lines still count as cached
