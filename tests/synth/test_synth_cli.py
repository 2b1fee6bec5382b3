"""The `embedforge-generate` command as a subprocess: kill -9 and resume, secrets, config errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from embedforge.data.jsonl import load_examples

FAULTS = {"500": 0.1, "429": 0.05, "invalid_json": 0.1}


def _cmd(srv, out_dir, key_env, fast_client, *extra):
    return [
        sys.executable, "-m", "embedforge.cli.generate",
        f"client.base_url={srv.base_url}", f"client.api_key_env={key_env}", f"out_dir={out_dir}",
        "num_examples=200", "client.concurrency=4", *fast_client, *extra,
    ]


def _cache_keys(path):
    keys = set()
    for line in path.read_text().splitlines():
        try:
            keys.add(json.loads(line)["key"])
        except json.JSONDecodeError:  # a torn last line is not a completed request
            pass
    return keys


def _records(out_dir):
    return sorted(json.dumps(e.to_dict(), sort_keys=True) for e in load_examples(out_dir / "examples.jsonl").examples)


def _rejects(out_dir):
    rows = [json.loads(l) for l in (out_dir / "rejects.jsonl").read_text().splitlines()]
    return sorted((r["stage"], r.get("item", -1), r["reason"]) for r in rows)


def test_kill_9_then_rerun_equals_uninterrupted_run(tmp_path, server_factory, fake_key, fake_key_env, cli_env, fast_client):
    srv = server_factory(rates=FAULTS, latency_s=0.03, seed=7)
    out = tmp_path / "killed"
    cmd = _cmd(srv, out, fake_key_env, fast_client)
    proc = subprocess.Popen(cmd, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    cache = out / "cache.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if cache.exists() and cache.read_bytes().count(b"\n") >= 60:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    log1 = proc.communicate(timeout=30)[0].decode()
    completed = _cache_keys(cache)
    assert 60 <= len(completed) < 200  # killed mid-run (200 items + a few brainstorm calls)
    before = srv.stats()["attempts_by_key"]

    done = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    after = srv.stats()["attempts_by_key"]
    resent = [k for k in completed if after[k] != before[k]]
    assert resent == []  # no completed request was paid twice

    ref_srv = server_factory(rates=FAULTS, seed=7)
    ref = tmp_path / "reference"
    ref_run = subprocess.run(_cmd(ref_srv, ref, fake_key_env, fast_client), env=cli_env, capture_output=True, text=True, timeout=120)
    assert ref_run.returncode == 0, ref_run.stderr[-2000:]
    assert _records(out) == _records(ref) and len(_records(ref)) > 150
    assert _rejects(out) == _rejects(ref)
    report = json.loads((out / "report.json").read_text())
    assert report["cache_hits"] >= len(completed) and report["accepted"] == len(_records(ref))

    # The API key appears in no file written (outputs, cache, logs, Hydra folder) nor in the console.
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "config.yaml" for p in written) and any(p.suffix == ".log" for p in written)
    leaked = [str(p) for p in written if fake_key.encode() in p.read_bytes()]
    assert leaked == []
    for text in (log1, done.stdout, done.stderr, ref_run.stdout, ref_run.stderr):
        assert fake_key not in text


def test_bad_config_fails_at_start_naming_the_key(tmp_path, fake_key, fake_key_env, cli_env):
    base = [sys.executable, "-m", "embedforge.cli.generate", f"out_dir={tmp_path / 'x'}", "client.base_url=http://127.0.0.1:9/v1"]
    bad = subprocess.run(base + [f"client.api_key_env={fake_key_env}", "+synth.languages.weights.klingon=0.5"],
                         env=cli_env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert "embedforge-generate: config key 'synth.languages.weights.klingon': unknown language code" in bad.stderr
    env = {k: v for k, v in cli_env.items() if k != "EMBEDFORGE_UNSET_KEY"}
    nokey = subprocess.run(base + ["client.api_key_env=EMBEDFORGE_UNSET_KEY"], env=env, capture_output=True, text=True, timeout=60)
    assert nokey.returncode == 2 and "client.api_key_env: environment variable EMBEDFORGE_UNSET_KEY is not set" in nokey.stderr
    assert not (tmp_path / "x" / "cache.jsonl").exists()
