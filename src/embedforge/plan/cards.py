"""GPUs a plan can be made for: memory per card and peak dense FLOP/s (train/throughput.py's table)."""

from __future__ import annotations

from embedforge.plan.arch import PlanError
from embedforge.train.throughput import PEAK_BF16_FLOPS

GB = 10**9


# name -> (memory in bytes as the card reports it, the throughput table's key for its peak)
CARDS: dict[str, tuple[int, str]] = {
    "H200": (141 * GB, "NVIDIA H200"),
    "H100": (80 * GB, "NVIDIA H100 80GB HBM3"),
    "A100-80GB": (80 * GB, "NVIDIA A100-SXM4-80GB"),
    "A100-40GB": (40 * GB, "NVIDIA A100-SXM4-40GB"),
    "V100-32GB": (32 * GB, "Tesla V100-SXM2-32GB"),
    "V100-16GB": (16 * GB, "Tesla V100-SXM2-16GB"),
}


def card(name: str) -> tuple[str, int, float, bool]:
    """(canonical name, memory bytes, peak FLOP/s, has bf16) for a name such as H100 or a100-80gb."""
    for key, (memory, table_key) in CARDS.items():
        if key.lower() == name.lower():
            return key, memory, PEAK_BF16_FLOPS[table_key], not key.startswith("V100")
    raise PlanError(f"config key 'gpu': unknown card '{name}' (known: {', '.join(CARDS)})")
