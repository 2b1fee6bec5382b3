"""Where a training step's time goes: full fine-tuning vs LoRA (ours or peft's forward), one process.

    python benchmarks/lora_step_profile.py --mode full --threads 1 --profile   # op table + weight-grad share
    python benchmarks/lora_step_profile.py --mode lora --threads 1 --profile
    python benchmarks/lora_step_profile.py --mode lora --dropout 0              # timing and peak RSS only

A bare step (mean-pooled all-MiniLM-L6-v2, queries + positive and hard-negative documents, InfoNCE at
temperature 0.05, AdamW, clipping 1.0) without the trainer around it, so the profile shows the model's
own ops. `--profile` profiles one step after the timed ones and prints the op table and the share of
op time spent in the base weights' gradient matmuls (`aten::mm` g^T @ x: inner dimension the batch's
token count, both outer ones wider than the adapters' rank). Frozen-base LoRA skips exactly those, so 1 / (1 - share) bounds how much faster LoRA can be
than full fine-tuning on this workload. The speed comparison itself, side by side with a peer, is
`train_throughput.py --lines lora_vs_full`.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))
RANK = 16


def _is_base_weight_grad(op: str, shapes: list, tokens: set[int]) -> bool:
    """g^T @ x for a base weight: [d_out, T] @ [T, d_in], both d wider than the adapters' rank."""
    if op != "aten::mm" or len(shapes) < 2 or len(shapes[0]) != 2 or len(shapes[1]) != 2:
        return False
    (d_out, inner), (_, d_in) = shapes[0], shapes[1]
    return inner in tokens and min(d_out, d_in) > RANK


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("full", "lora", "peft"), default="lora",
                        help="full fine-tuning, LoRA r16 with our forward, or with peft's own forward")
    parser.add_argument("--dropout", type=float, default=0.1, help="LoRA dropout")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4, help="timed steps (after one warm-up step)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--rows", type=int, default=20, help="rows of the op table")
    args = parser.parse_args(argv)

    import torch
    import torch.nn.functional as F

    from embedforge.model.builder import EncoderSettings, build_encoder
    from embedforge.model.lora import LoraSettings
    from train_throughput import synthetic_triples

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    lora = None if args.mode == "full" else LoraSettings(r=RANK, alpha=2 * RANK, dropout=args.dropout,
                                                          share_dropout=args.mode == "lora")
    encoder = build_encoder(EncoderSettings(pretrained="embedded:all-MiniLM-L6-v2", pooling="mean",
                                            max_length=args.max_length, lora=lora, for_training=True))
    encoder.train()
    params = [p for p in encoder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    batch = args.batch_size
    steps = 1 + args.steps + int(args.profile)
    triples = synthetic_triples(batch * steps)

    def features(i: int):
        rows = triples[i * batch:(i + 1) * batch]
        queries = encoder.tokenize([r["query"] for r in rows])
        documents = encoder.tokenize([r["positive"] for r in rows] + [r["negative"] for r in rows])
        return queries, documents

    def step(queries, documents) -> None:
        q = encoder(queries["input_ids"], queries["attention_mask"])
        d = encoder(documents["input_ids"], documents["attention_mask"])
        loss = F.cross_entropy(q @ d.t() / 0.05, torch.arange(len(q)))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    batches = [features(i) for i in range(steps)]
    step(*batches[0])
    start = time.perf_counter()
    for queries, documents in batches[1:1 + args.steps]:
        step(queries, documents)
    seconds = (time.perf_counter() - start) / max(args.steps, 1)
    print(f"mode={args.mode} dropout={args.dropout if lora else '-'} threads={torch.get_num_threads()}: "
          f"{seconds:.2f} s/step, {batch / seconds:.2f} examples/s, "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB")

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        queries, documents = batches[-1]
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            step(queries, documents)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
        tokens = {int(queries["input_ids"].numel()), int(documents["input_ids"].numel())}
        events = prof.key_averages(group_by_input_shape=True)
        total = sum(e.self_cpu_time_total for e in events)
        weight_grad = sum(e.self_cpu_time_total for e in events if _is_base_weight_grad(e.key, e.input_shapes, tokens))
        share = weight_grad / total
        line = f"base weight-gradient matmuls: {weight_grad / 1e6:.2f} s of {total / 1e6:.2f} s op time = {share:.1%}"
        if args.mode == "full":
            line += f"; a LoRA costing nothing would be at most {1 / (1 - share):.2f}x faster than full fine-tuning"
        print(line)


if __name__ == "__main__":
    main()
