"""One training step of a Mistral-7B-shaped embedding model on a GPU: tokens/s, MFU, peak memory.

    python benchmarks/gpu_step.py                 # H100/H200: under 5 minutes, prints a table
    python benchmarks/gpu_step.py --tiny          # CPU, seconds: a tiny Mistral, proves the script runs

Random init from the Mistral-7B v0.1 architecture (no download), LoRA r16 alpha 32 dropout 0.1 on
all linear layers (our lean LoRA forward), bf16 weights with bf16 autocast, last-token pooling,
InfoNCE over in-batch negatives; every sequence `--seq-len` tokens (no padding). Rows:
activation checkpointing off and on (plain backward), and GradCache at each `--chunks` size
(checkpointing off, as training does by default). MFU counts 4N FLOPs per token for frozen-base
LoRA, 6N with checkpointing or GradCache (embedforge.train.throughput), against the card's peak
dense bf16 FLOP/s; the target for LoRA with checkpointing at length 512 is >= 45%.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

# mistralai/Mistral-7B-v0.1 config.json (architecture fields).
MISTRAL_7B = dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=32768,
                  rope_theta=10000.0, sliding_window=4096)
TINY = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256)


def build_model(shape: dict, device: torch.device, dtype: torch.dtype, rank: int):
    from transformers import AutoModel, MistralConfig

    from embedforge.model.lora import LoraSettings, apply_lora

    config = MistralConfig(**shape)
    with torch.device("meta"):
        model = AutoModel.from_config(config, attn_implementation="sdpa", dtype=dtype)
    model = model.to_empty(device=device)  # allocate without running 7B parameters through init code
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.fill_(1.0) if "norm" in name else param.normal_(0.0, 0.02)
    # Buffers (rotary inverse frequencies) are computed at construction: rebuild that module for real.
    with torch.device(device):
        model.rotary_emb = type(model.rotary_emb)(config=config)
    model.config.use_cache = False
    return apply_lora(model, LoraSettings(r=rank, alpha=2 * rank, dropout=0.1))


def set_checkpointing(model, on: bool) -> None:
    from embedforge.model.encoder import enable_activation_checkpointing

    if on:
        enable_activation_checkpointing(model)
    elif hasattr(model, "activation_checkpointing_disable"):
        model.activation_checkpointing_disable()
    else:
        model.gradient_checkpointing_disable()


def embed_fn(model, device):
    import torch.nn.functional as F

    from embedforge.model.pooling import Pooling

    pooling = Pooling("last_token")

    def embed(chunk):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            hidden = model(input_ids=chunk["input_ids"], attention_mask=chunk["attention_mask"]).last_hidden_state
            return F.normalize(pooling(hidden, chunk["attention_mask"]).float(), dim=-1)
    return embed


def one_step(model, optimizer, batch, embed, chunk: int | None, device) -> None:
    from embedforge.losses.gradcache import GradCache
    from embedforge.losses.infonce import info_nce

    optimizer.zero_grad(set_to_none=True)
    queries, docs = batch
    if chunk:
        GradCache(chunk).step(embed, [queries, docs], lambda e: (info_nce(e[0], e[1], temperature=0.02), None),
                              device=device)
    else:
        info_nce(embed(queries), embed(docs), temperature=0.02).backward()
    optimizer.step()


def measure(model, config: dict, args, device, peak: float | None, params) -> dict:
    from embedforge.train.throughput import mfu, training_flops_per_token

    set_checkpointing(model, config["checkpointing"])
    pairs = config["pairs"]
    generator = torch.Generator(device="cpu").manual_seed(0)
    make = lambda: {"input_ids": torch.randint(3, model.config.vocab_size, (pairs, args.seq_len), generator=generator).to(device),
                    "attention_mask": torch.ones(pairs, args.seq_len, dtype=torch.long, device=device)}
    batch = (make(), make())
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    embed = embed_fn(model, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    row = {"name": config["name"], "pairs": pairs}
    try:
        for _ in range(args.warmup):
            one_step(model, optimizer, batch, embed, config.get("chunk"), device)
        sync()
        start = time.perf_counter()
        for _ in range(args.steps):
            one_step(model, optimizer, batch, embed, config.get("chunk"), device)
        sync()
    except torch.OutOfMemoryError:
        row.update(tokens_per_s=None, mfu=None, seconds_per_step=None, peak_gb=None, note="out of memory")
        optimizer.zero_grad(set_to_none=True)
        return row
    seconds = (time.perf_counter() - start) / args.steps
    tokens_per_s = 2 * pairs * args.seq_len / seconds
    flops = training_flops_per_token(params, checkpointing=config["checkpointing"], grad_cache=bool(config.get("chunk")))
    peak_gb = (torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda"
               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    row.update(tokens_per_s=tokens_per_s, mfu=mfu(tokens_per_s, flops, peak), seconds_per_step=seconds,
               peak_gb=peak_gb, note="")
    return row


def configs(args) -> list[dict]:
    rows = [{"name": "LoRA, no checkpointing", "checkpointing": False, "pairs": args.pairs_no_ckpt},
            {"name": "LoRA, checkpointing", "checkpointing": True, "pairs": args.pairs}]
    rows += [{"name": f"LoRA, GradCache chunk {c}", "checkpointing": False, "pairs": args.pairs, "chunk": c}
             for c in args.chunks]
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny Mistral on CPU (seconds): a smoke test")
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--pairs", type=int, default=64, help="query/document pairs a step (checkpointing, GradCache)")
    parser.add_argument("--pairs-no-ckpt", type=int, default=8, help="pairs a step without checkpointing (memory)")
    parser.add_argument("--chunks", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args(argv)

    from embedforge.train.throughput import device_peak_flops, matmul_params

    if args.tiny:
        device, dtype, shape = torch.device("cpu"), torch.float32, TINY
        if argv is None or "--seq-len" not in argv:
            args.seq_len = 32
        args.pairs, args.pairs_no_ckpt, args.chunks, args.steps, args.warmup = 4, 4, [2], 1, 1
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no GPU: run with --tiny for the CPU smoke test")
        device, dtype, shape = torch.device("cuda"), torch.bfloat16, MISTRAL_7B
    torch.manual_seed(0)
    started = time.perf_counter()
    model = build_model(shape, device, dtype, args.rank)
    model.train()
    params = matmul_params(model)
    peak = device_peak_flops(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{name}: Mistral-7B-shaped{' (tiny)' if args.tiny else ''}, {params.total / 1e6:,.1f}M matmul parameters "
          f"({params.trainable / 1e6:.2f}M LoRA r{args.rank}), seq len {args.seq_len}, peak "
          f"{'-' if peak is None else f'{peak / 1e12:.0f} TFLOP/s'}; built in {time.perf_counter() - started:.0f} s")
    rows = [measure(model, config, args, device, peak, params) for config in configs(args)]
    print(f"{'config':<28} {'pairs':>6} {'tokens/s':>10} {'MFU':>7} {'s/step':>8} {'peak GB':>8}")
    for row in rows:
        cell = lambda v, f: "-" if v is None else format(v, f)
        print(f"{row['name']:<28} {row['pairs']:>6} {cell(row['tokens_per_s'], '.0f'):>10} "
              f"{'-' if row['mfu'] is None else format(100 * row['mfu'], '.1f') + '%':>7} "
              f"{cell(row['seconds_per_step'], '.2f'):>8} {cell(row['peak_gb'], '.1f'):>8} {row['note']}")
    print(f"total {time.perf_counter() - started:.0f} s")
    return rows


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
