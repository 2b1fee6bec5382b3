"""Peak memory of one LoRA forward + backward with activation checkpointing and LoRA dropout.

    python benchmarks/lora_dropout_checkpoint_memory.py                 # the four rows, each in a fresh process
    python benchmarks/lora_dropout_checkpoint_memory.py --one ckpt=1,p=0.1,forward=ours

A random-init Llama decoder with SmolLM2-135M's layer shapes (hidden 576, MLP 1536, 9 heads / 3 KV
heads; fewer layers, `--layers`), LoRA r16 on all linear layers, a batch of `--batch` x `--length`
tokens, last-token pooled, sum of squares as the loss, fp32 on CPU. Each row runs in its own process
(Linux): the figure is peak RSS (ru_maxrss) over the step minus the RSS before it; glibc returns large
freed blocks to the OS, so large tensors count while alive. `cache_mb` is what the
shared-input dropout caches still hold after backward (0 once they are emptied as they should be).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

ROWS = ["ckpt=0,p=0.1,forward=ours", "ckpt=1,p=0.1,forward=ours", "ckpt=1,p=0.1,forward=peft",
        "ckpt=1,p=0,forward=ours"]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def one(spec: str, layers: int, batch: int, length: int) -> dict:
    import torch
    from transformers import AutoModel, LlamaConfig

    from embedforge.model.encoder import enable_activation_checkpointing
    from embedforge.model.lora import LoraSettings, apply_lora

    opts = dict(kv.split("=") for kv in spec.split(","))
    torch.manual_seed(0)
    torch.set_num_threads(1)
    config = LlamaConfig(vocab_size=1000, hidden_size=576, intermediate_size=1536, num_hidden_layers=layers,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048)
    model = AutoModel.from_config(config, attn_implementation="sdpa").float()
    if opts["ckpt"] == "1":
        enable_activation_checkpointing(model)
    model = apply_lora(model, LoraSettings(r=16, alpha=32, dropout=float(opts["p"]),
                                           share_dropout=opts["forward"] == "ours"))
    model.train()
    ids = torch.randint(3, 1000, (batch, length))

    def step():
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[:, -1]
        out.pow(2).sum().backward()
        model.zero_grad(set_to_none=True)

    before = _rss_mb()
    step()
    peak = _peak_rss_mb() - before
    caches = {id(m._mask_cache): m._mask_cache for m in model.modules() if getattr(m, "_mask_cache", None)}
    held = 0
    for cache in caches.values():
        if cache.entry is not None:
            x, _, _, (keep, dropped, _) = cache.entry
            held += sum(t.numel() * t.element_size() for t in (x, keep, dropped))
    return {"row": spec, "peak_growth_mb": round(peak), "cache_mb_after_backward": round(held / 2**20)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--one", help="run one row in this process")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=256)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one, args.layers, args.batch, args.length)))
        return
    for row in ROWS:
        out = subprocess.run([sys.executable, __file__, "--one", row, "--layers", str(args.layers),
                              "--batch", str(args.batch), "--length", str(args.length)],
                             capture_output=True, text=True, env=os.environ)
        print(out.stdout.strip().splitlines()[-1] if out.returncode == 0 else f"{row}: failed\n{out.stderr[-2000:]}")


if __name__ == "__main__":
    main()
