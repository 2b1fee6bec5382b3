"""Top-k inner-product search with faiss: exact (flat) by default, IVF or HNSW for large corpora.

Embeddings are L2-normalised by the encoder, so inner product is cosine similarity.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import PositiveInt

from embedforge.config_schema import Schema

INDEX_TYPES = ("flat", "ivf", "hnsw")


class IndexSettings(Schema):
    """`index:` of conf/mine.yaml."""

    type: Literal[INDEX_TYPES] = "flat"
    ivf_nlist: PositiveInt | None = None  # None: about 4*sqrt(N) lists
    ivf_nprobe: PositiveInt = 32
    hnsw_m: PositiveInt = 32
    hnsw_ef_construction: PositiveInt = 200
    hnsw_ef_search: PositiveInt = 256


def build_index(vectors: np.ndarray, settings: IndexSettings | None = None):
    import faiss

    settings = settings or IndexSettings()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    if settings.type == "flat":
        index = faiss.IndexFlatIP(dim)
    elif settings.type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, int(settings.hnsw_m), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(settings.hnsw_ef_construction)
        index.hnsw.efSearch = int(settings.hnsw_ef_search)
    else:
        nlist = int(settings.ivf_nlist or max(1, min(n // 39, int(4 * np.sqrt(n)))))  # faiss wants >= 39 points/list
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = min(int(settings.ivf_nprobe), nlist)
    index.add(vectors)
    return index


def search(index, queries: np.ndarray, k: int, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """(scores, row ids), each (n_queries, k), best first; id -1 where the index has fewer hits."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    k = min(k, index.ntotal)
    scores, ids = [], []
    for start in range(0, len(queries), batch_size):
        s, i = index.search(queries[start:start + batch_size], k)
        scores.append(s)
        ids.append(i)
    return np.concatenate(scores), np.concatenate(ids)
