"""Text normalisation for matching: Unicode NFKC, case folding, punctuation to spaces, one space.

"The  Cat's  hat!" and "the cat s hat" normalise alike; so do full-width and ASCII letters (NFKC).
"""

from __future__ import annotations

import sys
import unicodedata
from functools import lru_cache


@lru_cache(maxsize=1)
def _punctuation_table() -> dict[int, str]:
    # Every Unicode punctuation (P*) and symbol (S*) code point maps to a space: "well-known" and
    # "well known" match, and "x+y" splits like "x + y". Built once (~0.5 s).
    return {cp: " " for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp))[0] in "PS"}


def words(text: str) -> list[str]:
    return unicodedata.normalize("NFKC", text).casefold().translate(_punctuation_table()).split()


def normalize(text: str) -> str:
    return " ".join(words(text))
