"""Predicted (embedforge.plan) vs measured peak memory of one training step on this CPU.

    python benchmarks/preflight_memory.py                      # every row, each in a fresh process
    python benchmarks/preflight_memory.py --one "model=minilm-l6 data.batch_size=4 model.max_length=64"

Each row is a set of embedforge-train overrides (fp32 on CPU, LoRA r16 on all linear layers, one hard
negative: 3 sequences per example). The step is the training step's work: queries and documents
embedded (or GradCache: chunked, loss on cached embeddings, chunk-by-chunk backward), InfoNCE, AdamW
step. Every sequence is max_length tokens, one padded token in the first row (so a padding mask reaches
attention, as in training).

Measured: the process's peak RSS over the step (VmHWM, reset through /proc/self/clear_refs just before
it) minus its RSS right before it, after the model is built, the optimizer made and the inputs
tokenised, every weight page read and one tiny training step run; so weights, the adapter's weights,
AdamW's moments and the Python/torch runtime are not in it. glibc is told
to serve allocations above 16 KiB with mmap (every LoRA tensor is larger) (MALLOC_MMAP_THRESHOLD_), so freed tensors leave RSS at
once and RSS follows live tensors. Predicted: the plan's terms for the same config, less the frozen
weights and the adapter's weights and moments (in the baseline); the framework constant is a GPU
term and is not added.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROWS = [
    "model=minilm-l6 data.batch_size=4 model.max_length=128",
    "model=minilm-l6 data.batch_size=8 model.max_length=128",
    "model=minilm-l6 data.batch_size=8 model.max_length=64",
    "model=minilm-l6 data.batch_size=8 model.max_length=128 model.gradient_checkpointing=true",
    "model=minilm-l6 data.batch_size=8 model.max_length=128 loss.grad_cache.chunk_size=4",
    "model=smollm2-135m pooling=last_token data.batch_size=2 model.max_length=128",
    "model=smollm2-135m pooling=last_token data.batch_size=4 model.max_length=128",
    "model=smollm2-135m pooling=last_token data.batch_size=4 model.max_length=64",
    "model=smollm2-135m pooling=last_token data.batch_size=4 model.max_length=128 model.gradient_checkpointing=true",
    "model=smollm2-135m pooling=last_token data.batch_size=4 model.max_length=128 loss.grad_cache.chunk_size=2",
    "model=smollm2-135m pooling=last_token data.batch_size=4 model.max_length=128 loss.grad_cache.chunk_size=2 "
    "model.gradient_checkpointing=true model.checkpointing_with_grad_cache=true",
]
MIB = 2**20


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(field)


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current RSS


def one(overrides: str) -> dict:
    import torch

    from embedforge.cli.plan import compose
    from embedforge.losses import build_loss
    from embedforge.losses.gradcache import GradCache
    from embedforge.model.builder import build_encoder
    from embedforge.model.settings import EncoderGroups
    from embedforge.plan.plan import make_plan
    from embedforge.train.settings import activation_checkpointing, bind_loss

    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = compose(overrides.split() + ["trainer=cpu", "logger=none"])
    plan = make_plan(cfg, gpu="H100")
    settings = EncoderGroups.from_config(cfg).settings(for_training=True)
    settings.gradient_checkpointing = activation_checkpointing(EncoderGroups.from_config(cfg).model, bind_loss(cfg.loss))
    settings.dtype = "float32"
    encoder = build_encoder(settings)
    encoder.train()
    params = [p for p in encoder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    loss_fn = build_loss(cfg.loss)
    batch, length = int(cfg.data.batch_size), int(cfg.model.max_length)
    chunk = (cfg.loss.get("grad_cache") or {}).get("chunk_size")

    def inputs(rows):
        ids = torch.randint(5, 1000, (rows, length))
        mask = torch.ones_like(ids)
        mask[0, -1] = 0
        return {"input_ids": ids, "attention_mask": mask}

    groups = [inputs(batch), inputs(batch * 2)]  # queries; positive + one hard negative each
    labels = torch.arange(batch) * 2

    def loss_from(embeddings):
        return loss_fn(embeddings[0], embeddings[1], labels=labels), None

    def embed(chunk_inputs):
        return encoder(chunk_inputs["input_ids"], chunk_inputs["attention_mask"])

    # Weights may be memory-mapped (safetensors): read every page. One tiny step first, as in training
    # from step 2 on: AdamW's moments exist, gradients are freed (Lightning's zero_grad sets them to None).
    with torch.no_grad():
        for param in encoder.parameters():
            param.sum()
    embed(inputs(1)).sum().backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    before = _status_mb("VmRSS")
    _reset_peak()
    if chunk:
        GradCache(int(chunk)).step(embed, groups, loss_from)
    else:
        loss_from([embed(g) for g in groups])[0].backward()
    optimizer.step()
    measured = _status_mb("VmHWM") - before
    terms = plan.memory.terms
    frozen = terms["weights (frozen)"]
    predicted = (plan.memory.total - frozen - terms["adapter: fp32 weights + AdamW moments"]) / MIB
    return {"row": overrides, "predicted_mb": round(predicted), "measured_mb": round(measured),
            "error_pct": round(100 * (predicted - measured) / measured, 1)}


def gpu_step_predictions(gpu: str, mfu: float = 0.4, seq_len: int = 512, pairs: int = 64, pairs_no_ckpt: int = 8,
                         chunks=(8, 16, 32)) -> list[dict]:
    """The plan's figures for benchmarks/gpu_step.py's default rows (Mistral-7B shape, LoRA r16, bf16, one
    GPU, no padding, no hard negative), to print beside what that script measures (scripts/gpu_check.sh).
    Memory excludes the framework constant: gpu_step reports torch.cuda.max_memory_allocated."""
    from embedforge.model.lora import LoraSettings
    from embedforge.plan.arch import describe
    from embedforge.plan.cards import card
    from embedforge.plan.memory import Workload, estimate
    from embedforge.train.throughput import training_flops_per_token

    arch = describe("mistralai/Mistral-7B-v0.1", LoraSettings(r=16))
    _, _, peak, _ = card(gpu)
    rows = [("LoRA, no checkpointing", False, pairs_no_ckpt, None), ("LoRA, checkpointing", True, pairs, None)]
    rows += [(f"LoRA, GradCache chunk {c}", False, pairs, c) for c in chunks]
    out = []
    for name, ckpt, n, chunk in rows:
        work = Workload(sequences=2 * n, length=seq_len, queries=n, world=1, act_bytes=2, weight_bytes=2,
                        chunk=chunk, checkpointing=ckpt, padded=False, embedding_dim=arch.hidden)
        flops = training_flops_per_token(arch.matmul, checkpointing=ckpt, grad_cache=chunk is not None)
        out.append({"name": name, "pairs": n, "predicted_gib": estimate(arch, work).total / 2**30,
                    "predicted_tokens_per_s": peak * mfu / flops})
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--one", help="run one row (embedforge-train overrides) in this process")
    parser.add_argument("--rows", type=int, nargs="*", help="row numbers to run (default: all)")
    parser.add_argument("--gpu-step", metavar="CARD", help="print the plan for benchmarks/gpu_step.py's rows on CARD")
    parser.add_argument("--mfu", type=float, default=0.4)
    args = parser.parse_args(argv)
    if args.gpu_step:
        print(f"plan ({args.gpu_step}, tokens/s at MFU {args.mfu}; memory without the framework constant):")
        for row in gpu_step_predictions(args.gpu_step, args.mfu):
            print(f"{row['name']:<28} {row['pairs']:>6} {row['predicted_tokens_per_s']:>10.0f} {'':>7} {'':>8} "
                  f"{row['predicted_gib']:>8.1f}")
        return
    if args.one:
        print(json.dumps(one(args.one)))
        return
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(16 * 1024), "HF_HUB_OFFLINE": "1",
           "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
    worst = 0.0
    print("| config (embedforge-train overrides) | predicted MiB | measured MiB | error |")
    print("|---|---:|---:|---:|")
    for i, row in enumerate(ROWS):
        if args.rows and i not in args.rows:
            continue
        out = subprocess.run([sys.executable, __file__, "--one", row], capture_output=True, text=True, env=env)
        if out.returncode != 0:
            print(f"| `{row}` | failed | | |\n{out.stderr[-2000:]}")
            continue
        result = json.loads(out.stdout.strip().splitlines()[-1])
        worst = max(worst, abs(result["error_pct"]))
        print(f"| `{row}` | {result['predicted_mb']} | {result['measured_mb']} | {result['error_pct']:+.1f}% |",
              flush=True)
    print(f"worst error: {worst:.1f}%")


if __name__ == "__main__":
    main()
