"""Hashed word n-grams, and the evaluation side's index of them.

Each word is hashed once (Python's string hash: 64 bits, stable within one process, which is all a
check needs since the index lives in memory); an n-gram's hash is a polynomial over its word
hashes, computed for a whole chunk of texts with n numpy passes. The index keeps the distinct
n-gram hashes of every eval item sorted, with the items holding each one (CSR), so a training text
is looked up with one searchsorted call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain

import numpy as np

_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier; arithmetic wraps modulo 2**64
_FILTER_BITS = 24  # a 16 MiB presence table on the top bits of each key: most misses cost one gather


def window_hashes(token_lists: list[list[str]], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, owners) of every n-word window that lies inside one text (duplicates kept)."""
    lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
    total = int(lengths.sum())
    if total < n:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    flat = np.fromiter(map(hash, chain.from_iterable(token_lists)), dtype=np.int64, count=total).view(np.uint64)
    owner = np.repeat(np.arange(len(token_lists), dtype=np.int64), lengths)
    windows = total - n + 1
    with np.errstate(over="ignore"):
        acc = flat[:windows].copy()
        for j in range(1, n):
            acc *= _BASE
            acc += flat[j:j + windows]
    valid = owner[:windows] == owner[n - 1:]  # windows that do not cross into the next text
    return acc[valid], owner[:windows][valid]


def _distinct_pairs(hashes: np.ndarray, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((hashes, owners))
    hashes, owners = hashes[order], owners[order]
    keep = np.ones(len(hashes), dtype=bool)
    keep[1:] = (hashes[1:] != hashes[:-1]) | (owners[1:] != owners[:-1])
    return hashes[keep], owners[keep]


def chunk_ngrams(token_lists: list[list[str]], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, owners): the distinct n-gram hashes of each text and the index of the text owning
    each, for texts of at least n words. Sorted by owner."""
    hashes, owners = window_hashes(token_lists, n)
    return _distinct_pairs(hashes, owners) if len(hashes) else (hashes, owners)


@dataclass
class NgramIndex:
    keys: np.ndarray  # sorted distinct n-gram hashes (uint64)
    indptr: np.ndarray  # items of keys[k]: postings[indptr[k]:indptr[k+1]]
    postings: np.ndarray  # item ids
    item_ngrams: np.ndarray  # distinct n-grams per item (0: shorter than n words)
    n: int
    present: np.ndarray = field(default=None, repr=False)

    def __post_init__(self):
        if self.present is None:
            self.present = np.zeros(1 << _FILTER_BITS, dtype=bool)
            self.present[self.keys >> np.uint64(64 - _FILTER_BITS)] = True

    @classmethod
    def build(cls, token_lists: list[list[str]], n: int) -> "NgramIndex":
        hashes, owners = chunk_ngrams(token_lists, n)
        item_ngrams = np.bincount(owners, minlength=len(token_lists)).astype(np.int64)
        order = np.lexsort((owners, hashes))
        hashes, owners = hashes[order], owners[order]
        keys, starts = np.unique(hashes, return_index=True)
        indptr = np.append(starts, len(hashes)).astype(np.int64)
        return cls(keys=keys, indptr=indptr, postings=owners, item_ngrams=item_ngrams, n=n)

    def containment(self, token_lists: list[list[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For every (text, eval item) pair sharing an n-gram: (text index, item id, share of the
        item's distinct n-grams that occur in the text)."""
        empty = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))
        if not len(self.keys):
            return empty
        hashes, owners = window_hashes(token_lists, self.n)
        maybe = self.present[hashes >> np.uint64(64 - _FILTER_BITS)]
        hashes, owners = hashes[maybe], owners[maybe]
        pos = np.searchsorted(self.keys, hashes)
        pos[pos == len(self.keys)] = 0
        hit = self.keys[pos] == hashes
        if not hit.any():
            return empty
        hashes, owners = _distinct_pairs(hashes[hit], owners[hit])  # a repeated n-gram counts once
        pos = np.searchsorted(self.keys, hashes)
        counts = self.indptr[pos + 1] - self.indptr[pos]
        # Gather postings[indptr[p]:indptr[p+1]] for every hit p, vectorised.
        offsets = np.repeat(self.indptr[pos] - np.cumsum(counts) + counts, counts)
        items = self.postings[offsets + np.arange(int(counts.sum()))]
        texts = np.repeat(owners, counts)
        n_items = len(self.item_ngrams)
        pairs, shared = np.unique(texts * n_items + items, return_counts=True)
        text_idx, item_idx = pairs // n_items, pairs % n_items
        return text_idx, item_idx, shared / self.item_ngrams[item_idx]
