"""Top-k inner-product search with faiss: exact (flat) by default, IVF or HNSW for large corpora.

Embeddings are L2-normalised by the encoder, so inner product is cosine similarity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embedforge.errors import ConfigError

INDEX_TYPES = ("flat", "ivf", "hnsw")


@dataclass
class IndexSettings:
    type: str = "flat"
    ivf_nlist: int | None = None  # None: about 4*sqrt(N) lists
    ivf_nprobe: int = 32
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 256

    def check(self, key: str = "index") -> None:
        if self.type not in INDEX_TYPES:
            raise ConfigError(f"{key}.type: unknown index {self.type!r} (expected one of: {', '.join(INDEX_TYPES)})")
        for name in ("ivf_nprobe", "hnsw_m", "hnsw_ef_construction", "hnsw_ef_search"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{key}.{name}: must be >= 1, got {getattr(self, name)}")
        if self.ivf_nlist is not None and int(self.ivf_nlist) < 1:
            raise ConfigError(f"{key}.ivf_nlist: must be >= 1 or null, got {self.ivf_nlist}")


def build_index(vectors: np.ndarray, settings: IndexSettings | None = None):
    import faiss

    settings = settings or IndexSettings()
    settings.check()
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
