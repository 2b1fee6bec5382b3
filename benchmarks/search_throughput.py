"""Top-k inner-product search: faiss (flat, exact) vs brute-force torch (matmul + topk), side by side.

    python benchmarks/search_throughput.py                   # 100k x 384-d docs, 1k queries, top-100
    python benchmarks/search_throughput.py --docs 1000000 --threads 8

Both get the same random unit vectors and the same thread count; the script checks that both return
the same neighbours (ids equal, or equal scores where two hits tie within float rounding) and prints
queries per second of each and their ratio (best of --repeats runs).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def torch_topk(docs: torch.Tensor, queries: torch.Tensor, k: int, chunk: int = 256):
    scores, ids = [], []
    for start in range(0, len(queries), chunk):
        s, i = torch.topk(queries[start:start + chunk] @ docs.T, k, dim=1)
        scores.append(s)
        ids.append(i)
    return torch.cat(scores).numpy(), torch.cat(ids).numpy()


def faiss_topk(index, queries: np.ndarray, k: int):
    return index.search(queries, k)


def best_of(fn, repeats: int) -> tuple[float, tuple]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def same_results(ids_a, scores_a, ids_b, scores_b, atol: float = 1e-5) -> tuple[bool, int]:
    """Same neighbours: where ids differ at a position, the two scores must tie (rounding order)."""
    differ = ids_a != ids_b
    ties_ok = np.abs(scores_a - scores_b) <= atol
    sets_equal = all(set(a) == set(b) or np.allclose(sa, sb, atol=atol)
                     for a, b, sa, sb in zip(ids_a, ids_b, scores_a, scores_b))
    return bool(sets_equal and ties_ok.all()), int(differ.sum())


def main() -> None:
    import faiss

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    docs = rng.standard_normal((args.docs, args.dim), dtype=np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    queries = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)

    index = faiss.IndexFlatIP(args.dim)
    index.add(docs)
    t_faiss, (f_scores, f_ids) = best_of(lambda: faiss_topk(index, queries, args.k), args.repeats)
    docs_t, queries_t = torch.from_numpy(docs), torch.from_numpy(queries)
    t_torch, (t_scores, t_ids) = best_of(lambda: torch_topk(docs_t, queries_t, args.k), args.repeats)

    same, n_diff = same_results(f_ids, f_scores, t_ids, t_scores)
    print(f"{args.docs:,} docs x {args.dim}-d, {args.queries:,} queries, top-{args.k}, {args.threads} thread(s), "
          f"best of {args.repeats}")
    print(f"faiss IndexFlatIP : {t_faiss:7.3f} s  ({args.queries / t_faiss:9.1f} queries/s)")
    print(f"torch matmul+topk : {t_torch:7.3f} s  ({args.queries / t_torch:9.1f} queries/s)")
    print(f"same results      : {same} ({n_diff} of {f_ids.size} positions differ only between tied scores)")
    print(f"ratio faiss/torch : {t_torch / t_faiss:.2f}x")
    if not same:
        raise SystemExit("faiss and torch disagree on the top-k neighbours")


if __name__ == "__main__":
    main()
