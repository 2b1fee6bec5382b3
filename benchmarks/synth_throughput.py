"""Throughput of the synthetic-data client against the local fake server (no network, no cost).

    python benchmarks/synth_throughput.py                      # 200 ms latency, concurrency 64
    python benchmarks/synth_throughput.py --items 2000 --latency 0.5 --concurrency 128

The server runs in its own process (as a real API would), so the figure is the client side's
ceiling: accepted examples per second end to end (brainstorm + generation, parsing, cache and
output writes included). Target on a 2-core machine: >= 150 accepted/s at 200 ms, concurrency 64.
The machine is shared, so compare versions side by side (alternating runs), as ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from embedforge.synth.pipeline import Pipeline
from embedforge.synth.settings import settings_from_dict


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"fake server did not open port {port}")


def settings(out_dir: Path, port: int, items: int, concurrency: int):
    return settings_from_dict({
        "out_dir": str(out_dir),
        "num_examples": items,
        "progress": False,
        "synth": {
            "tasks": {"short_long": 167, "long_short": 122, "sts": 99, "bitext": 89, "long_long": 17, "short_short": 13},
            "languages": {"weights": {"en": 0.5}, "rest": 0.5},
            "placeholders": {
                "short_long": {k: ["x"] for k in ("query_type", "query_length", "clarity", "num_words", "difficulty")},
                "long_short": {k: ["x"] for k in ("num_words", "clarity", "difficulty")},
                "sts": {k: ["x"] for k in ("unit", "high_score", "low_score", "difficulty")},
                "bitext": {k: ["x"] for k in ("unit", "high_score", "low_score", "difficulty")},
            },
            "brainstorm": {"calls_per_type": 2, "tasks_per_call": 20},
        },
        "client": {"base_url": f"http://127.0.0.1:{port}/v1", "api_key_env": "EMBEDFORGE_BENCH_KEY",
                   "concurrency": concurrency, "requests_per_minute": 0, "tokens_per_minute": 0,
                   "timeout_s": 30, "max_retries": 3},
    })


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args()
    os.environ.setdefault("EMBEDFORGE_BENCH_KEY", "bench-not-a-secret")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "embedforge.testing.fake_openai_server", "--port", str(port), "--latency", str(args.latency)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        with tempfile.TemporaryDirectory() as tmp:
            s = settings(Path(tmp), port, args.items, args.concurrency)
            t0 = time.perf_counter()
            report = asyncio.run(Pipeline(s).run())
            wall = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait(timeout=10)
    ideal = args.concurrency / args.latency
    print(f"items {args.items}, latency {args.latency * 1000:.0f} ms, concurrency {args.concurrency}")
    print(f"accepted {report['accepted']} in {wall:.2f} s, requests {report['requests_sent']}")
    print(f"throughput: {report['accepted'] / wall:.1f} accepted/s "
          f"({report['requests_sent'] / wall:.1f} requests/s; latency-bound ideal {ideal:.0f}/s)")


if __name__ == "__main__":
    main()
