"""False negatives from duplicates: a document slot holding the same text as a query's positive
(the same label text in classification-style records, the same passage in two records) must not
count as that query's negative. The slot is hidden from that query only (masked, not dropped), so
it still serves every other query.

Texts are compared through 63-bit hashes, which the collator computes once per text and which
travel across devices with the embeddings.
"""

from __future__ import annotations

import hashlib

import torch

EMPTY_SLOT = 0  # hash of an empty (masked) document slot; no real text hashes to 0 (see text_hash)


def text_hash(text: str) -> int:
    digest = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")
    return (digest >> 1) or 1  # fits int64, never EMPTY_SLOT


def duplicate_pair_mask(positive_hashes: torch.Tensor, doc_hashes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(Q, D) bool: False where document j repeats query i's positive text but is not its labelled slot.

    positive_hashes (Q,), doc_hashes (D,) int64 (EMPTY_SLOT for empty slots), labels (Q,) slot indices.
    """
    same = positive_hashes.unsqueeze(1) == doc_hashes.unsqueeze(0)
    own = torch.zeros_like(same)
    own[torch.arange(labels.shape[0], device=labels.device), labels] = True
    return ~(same & ~own)
