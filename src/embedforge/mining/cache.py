"""Corpus embeddings on disk, keyed by the encoder's fingerprint and the corpus file's bytes.

A changed checkpoint (other weights or settings), another corpus file, or other document settings
give another key, so a stale matrix is never reused. Files are written to a temporary name and
renamed, so an interrupted run leaves no half-written cache entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def cache_key(encoder_fingerprint: str, corpus_sha256: str, settings: dict) -> str:
    extra = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return f"{encoder_fingerprint}-{corpus_sha256[:16]}-{extra}"


class EmbeddingCache:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.npy"

    def load(self, key: str, n_rows: int) -> np.ndarray | None:
        """The cached matrix, or None when absent or not of the expected row count (then recomputed)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            matrix = np.load(path, mmap_mode=None)
        except (OSError, ValueError) as exc:
            log.warning("embedding cache %s unreadable (%s): recomputing", path, exc)
            return None
        if matrix.ndim != 2 or matrix.shape[0] != n_rows:
            log.warning("embedding cache %s has shape %s, expected %d rows: recomputing", path, matrix.shape, n_rows)
            return None
        return matrix

    def save(self, key: str, matrix: np.ndarray, meta: dict) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
        np.save(tmp, np.ascontiguousarray(matrix, dtype=np.float32))
        os.replace(tmp, path)
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        return path
