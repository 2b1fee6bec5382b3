"""embedforge-plan: parameter counts on the meta device, the global-batch refusal, paper configs that
fit, one-line errors. The memory model itself is checked against measurements by
benchmarks/preflight_memory.py (docs/performance.md, "Preflight")."""

from __future__ import annotations

import pytest

from embedforge.model.lora import LoraSettings

# Mistral-7B-v0.1's published size counts its LM head (vocab 32000 x hidden 4096), which AutoModel has not.
MISTRAL_WITH_HEAD = 7_241_732_096
MISTRAL_LORA_R16 = 41_943_040


@pytest.fixture(scope="module")
def mistral():
    from embedforge.plan.arch import describe

    return describe("mistralai/Mistral-7B-v0.1", LoraSettings(r=16))


def test_meta_mistral_has_the_published_size(mistral):
    base = mistral.total_params - mistral.trainable_params
    assert base + mistral.vocab * mistral.hidden == MISTRAL_WITH_HEAD
    assert round((base + mistral.vocab * mistral.hidden) / 1e9, 2) == 7.24
    assert mistral.trainable_params == MISTRAL_LORA_R16  # 41.9M
    assert (mistral.layers, mistral.hidden, mistral.kv_heads) == (32, 4096, 8)


def test_lora_formula_matches_peft_on_a_real_tiny_model(tiny_mistral_path):
    """peft's trainable count on real weights vs the planner's r x (in + out) formula, and the formula
    again on the meta Mistral (the 41.9M above comes from peft on meta tensors)."""
    from transformers import AutoModel

    from embedforge.model.lora import apply_lora, count_trainable
    from embedforge.plan.arch import describe, lora_params_formula

    for r in (4, 16):
        model = AutoModel.from_pretrained(tiny_mistral_path)
        peft_count = count_trainable(apply_lora(model, LoraSettings(r=r)))
        arch = describe(str(tiny_mistral_path), LoraSettings(r=r))
        assert peft_count == arch.trainable_params == lora_params_formula(arch, r)
    assert lora_params_formula(describe("mistralai/Mistral-7B-v0.1", None), 16) == MISTRAL_LORA_R16


def _plan(main, capsys, *args):
    try:
        code = main(list(args))
    except SystemExit as exc:  # the CLI's one-line error contract (cli/errors.py) exits with 2
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_global_batch_refused_in_one_line(capsys):
    from embedforge.cli.plan import main

    code, out, err = _plan(main, capsys, "experiment=paper/full_data", "trainer.devices=4")
    assert code == 2
    assert err.strip().count("\n") == 0
    assert "'data.global_batch_size': declares 2048" in err and "= 1024" in err
    assert "global batch: 1 nodes x 4 devices x 256" in out


def test_paper_config_fits_after_the_fix_and_not_before(compose_train):
    from embedforge.plan.plan import fixes, make_plan

    after = make_plan(compose_train("experiment=paper/full_data"), gpu="H100", num_examples=1_800_000)
    assert after.fits and after.workload.chunk == 8 and after.steps == 879
    before = make_plan(compose_train("experiment=paper/full_data", "loss.grad_cache.chunk_size=32"), gpu="H100")
    assert not before.fits
    suggested = fixes(before)
    assert any(s.startswith("loss.grad_cache.chunk_size=") for s in suggested)
    assert any(s.startswith("model.checkpointing_with_grad_cache=true") for s in suggested)
    # Checkpointing inside the chunks keeps only layer inputs: far less than without.
    ckpt = make_plan(compose_train("experiment=paper/full_data", "loss.grad_cache.chunk_size=32",
                                   "model.checkpointing_with_grad_cache=true"), gpu="H100")
    assert ckpt.fits and ckpt.memory.total < before.memory.total / 3


def test_will_not_fit_exits_1_with_the_fix(capsys):
    from embedforge.cli.plan import main

    code, out, _ = _plan(main, capsys, "experiment=paper/full_data", "loss.grad_cache.chunk_size=32", "gpu=H100")
    assert code == 1
    assert "WILL NOT FIT" in out and "will not fit: try loss.grad_cache.chunk_size=" in out


@pytest.mark.parametrize("args, key", [(["model.no_such_key=3"], "no_such_key"), (["gpu=B300"], "gpu"),
                                       (["plan.mfu=2"], "plan.mfu")])
def test_bad_input_is_one_line(capsys, args, key):
    from embedforge.cli.plan import main

    code, out, err = _plan(main, capsys, *args)
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0 and key in err


def test_activation_model_terms(mistral):
    """Checkpointing keeps e*h per token per layer plus one layer; GradCache scales with the chunk."""
    from dataclasses import replace

    from embedforge.plan.memory import Workload, activation_bytes, layer_bytes_per_token

    w = Workload(sequences=768, length=512, queries=256, world=8, act_bytes=2, weight_bytes=2, chunk=32)
    per_layer = layer_bytes_per_token(mistral, w)
    full = activation_bytes(mistral, w)["activations: all layers"]
    assert full == int(per_layer * 32 * 512 * 32)
    assert activation_bytes(mistral, replace(w, chunk=16))["activations: all layers"] == int(full / 2)
    ckpt = activation_bytes(mistral, replace(w, checkpointing=True))
    assert ckpt["activations: layer inputs kept"] == 2 * 4096 * 32 * 512 * 32
    assert ckpt["activations: one layer recomputed"] == int(per_layer * 32 * 512)


def test_memory_benchmark_smoke_one_tiny_row():
    """benchmarks/preflight_memory.py on one tiny MiniLM row in its own process (seconds): the plan and
    the measurement agree to within 30% even where fixed costs weigh most."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "preflight_memory.py"
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(16 * 1024)}
    out = subprocess.run([sys.executable, str(script), "--one", "model=minilm-l6 data.batch_size=2 model.max_length=32"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    row = json.loads(out.stdout.strip().splitlines()[-1])
    assert row["measured_mb"] > 0 and row["predicted_mb"] > 0
    assert abs(row["error_pct"]) < 30
