"""The benchmark scripts run: gpu_step.py --tiny on CPU in seconds; train_throughput.py's data and
rate helpers (the full side-by-side run is a benchmark, not a test: minutes per side); a tiny
lora_step_profile.py profile."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_step_tiny_runs_every_row(capsys):
    gpu_step = _load("gpu_step")
    rows = gpu_step.main(["--tiny"])
    assert [r["name"] for r in rows] == ["LoRA, no checkpointing", "LoRA, checkpointing", "LoRA, GradCache chunk 2"]
    for row in rows:
        assert row["tokens_per_s"] > 0 and row["peak_gb"] > 0
        assert row["mfu"] is None  # CPU: no peak, no MFU
    assert "LoRA, GradCache chunk 2" in capsys.readouterr().out


def test_gpu_step_model_matches_a_regular_init():
    """The meta-device build keeps the real rotary frequencies and adapts every linear layer."""
    from transformers import AutoModel, MistralConfig

    gpu_step = _load("gpu_step")
    model = gpu_step.build_model(gpu_step.TINY, torch.device("cpu"), torch.float32, rank=4)
    reference = AutoModel.from_config(MistralConfig(**gpu_step.TINY))
    assert torch.equal(model.base_model.model.rotary_emb.inv_freq, reference.rotary_emb.inv_freq)
    lora_a = [n for n, p in model.named_parameters() if "lora_A" in n and p.requires_grad]
    assert len(lora_a) == 7 * gpu_step.TINY["num_hidden_layers"]
    assert all(torch.isfinite(p).all() for p in model.parameters())


def _weight_grad_share(out: str) -> float:
    line = next(line for line in out.splitlines() if line.startswith("base weight-gradient matmuls:"))
    return float(line.split("= ")[1].split("%")[0]) / 100


def test_lora_step_profile_finds_the_weight_gradients_lora_skips(capsys):
    """Full fine-tuning spends a real share of its step in the base weights' gradient matmuls (g^T x);
    frozen-base LoRA has none (its adapters' rank-16 products are not counted)."""
    profile = _load("lora_step_profile")
    tiny = ["--batch-size", "4", "--max-length", "32", "--steps", "1", "--profile", "--rows", "3"]
    profile.main(["--mode", "full", *tiny])
    full = capsys.readouterr().out
    profile.main(["--mode", "lora", *tiny])
    lora = capsys.readouterr().out
    assert "mode=full" in full and "examples/s" in full and "at most" in full
    assert 0.05 < _weight_grad_share(full) < 0.6
    assert _weight_grad_share(lora) == 0.0


def test_train_throughput_data(tmp_path):
    bench = _load("train_throughput")
    triples = bench.synthetic_triples(5, seed=1)
    assert triples == bench.synthetic_triples(5, seed=1) and len({t["query"] for t in triples}) == 5
    path = bench.write_data(triples, tmp_path)
    from embedforge.data.schema import Example

    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [Example.from_dict(r).negatives for r in rows] == [[t["negative"]] for t in triples]

    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text("\n".join(json.dumps({"_id": str(i), "title": f"t{i}", "text": f"doc {i}"})
                                                 for i in range(4)))
    (beir / "queries.jsonl").write_text("\n".join(json.dumps({"_id": q, "text": f"query {q}"}) for q in "ab"))
    (beir / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\na\t1\t1\nb\t2\t1\nb\t9\t1\n")
    got = bench.scifact_triples(beir, 2)
    assert sorted((t["query"], t["positive"]) for t in got) == [("query a", "t1 doc 1"), ("query b", "t2 doc 2")]
    with pytest.raises(SystemExit, match="only 2 train triples"):
        bench.scifact_triples(beir, 3)


def test_rate_leaves_the_first_step_out():
    bench = _load("train_throughput")
    assert bench.rate([10.0, 12.0, 16.0], start=0.0, batch=8) == pytest.approx(16 / 6)
    assert bench.rate([5.0], start=3.0, batch=8) == pytest.approx(4.0)


@pytest.mark.slow
def test_train_throughput_runs_both_sides_tiny():
    """End to end, tiny: both trainers train and the script prints ratios (about a minute)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(BENCHMARKS / "train_throughput.py"), "--lines", "full", "--steps", "2",
                          "--batch-size", "4", "--max-length", "32", "--threads", "1"],
                         capture_output=True, text=True, timeout=900, check=True).stdout
    line = next(row for row in out.splitlines() if row.startswith("full FT"))
    ours, theirs, ratio = (float(v) for v in line.split()[2:5])
    assert ours > 0 and theirs > 0 and ratio == pytest.approx(ours / theirs, rel=0.02)


def test_lora_dropout_checkpoint_memory_runs_a_tiny_row():
    bench = _load("lora_dropout_checkpoint_memory")
    row = bench.one("ckpt=1,p=0.1,forward=ours", layers=1, batch=1, length=16)
    assert row["cache_mb_after_backward"] == 0 and row["peak_growth_mb"] >= 0
