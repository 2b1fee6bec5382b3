"""SmolLM2-135M-Instruct on this CPU, as the decoder grid uses it: load time (GGUF -> Hugging Face folder
conversion on first use, then the cached load) and encode throughput in non-pad tokens/s.

    python benchmarks/smollm2_cpu.py --data ../shared/data/eval/STSBenchmark --threads 1

Training examples/s and tokens/s of the grid's runs are in their run records
(experiments/decoder_grid/records/*/train/run_record.json, `throughput`).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def sts_sentences(folder: Path, limit: int) -> list[str]:
    texts = []
    with (folder / "test.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            texts += [row["sentence1"], row["sentence2"]]
    return texts[:limit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="an STS task folder (test.jsonl with sentence1/2)")
    parser.add_argument("--limit", type=int, default=1024)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cold", action="store_true", help="also time the GGUF conversion, into a fresh cache")
    args = parser.parse_args()

    import torch

    from embedforge.model import loading
    from embedforge.model.builder import encoder_from_pretrained
    from embedforge.model.tokenize import token_ids

    if args.threads:
        torch.set_num_threads(args.threads)
    figures: dict = {"threads": torch.get_num_threads(), "max_length": args.max_length, "batch_size": args.batch_size}
    if args.cold:
        with tempfile.TemporaryDirectory() as cache:
            start = time.perf_counter()
            loading.converted_folder("smollm2-135m", cache_dir=cache)
            figures["convert_gguf_s"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    encoder = encoder_from_pretrained("embedded:smollm2-135m", pooling="last_token", dtype="float32",
                                      max_length=args.max_length)
    figures["load_s"] = round(time.perf_counter() - start, 2)
    figures["parameters"] = sum(p.numel() for p in encoder.parameters())

    texts = sts_sentences(args.data, args.limit)
    tokens = sum(len(ids) for ids in token_ids(encoder.tokenizer, texts, args.max_length))
    encoder.encode(texts[: args.batch_size], batch_size=args.batch_size)  # warm-up
    start = time.perf_counter()
    encoder.encode(texts, batch_size=args.batch_size)
    seconds = time.perf_counter() - start
    figures.update(texts=len(texts), non_pad_tokens=tokens, encode_s=round(seconds, 1),
                   encode_tokens_per_s=round(tokens / seconds), encode_texts_per_s=round(len(texts) / seconds, 1))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
