"""The exported tokenizer must produce exactly the token ids our encoder sees.

Our tokenisation (model/tokenize.py) appends EOS to every decoder input, after truncating to
max_length - 1, because last-token pooling reads the EOS state. sentence-transformers calls the
tokenizer directly, so the exported tokenizer has to append EOS itself. The sound way is the
tokenizer's own `add_eos_token` switch: it rewrites the post-processor (BOS/EOS template), is saved
in tokenizer_config.json and is re-applied on every load, so the behaviour survives a round trip
through disk (a hand-edited tokenizer.json would be overwritten on load when the config sets the
flag). Fast-tokenizer truncation counts the added special tokens, so truncating to max_length
keeps max_length - 2 text tokens between BOS and EOS, as ours does. Every export checks the result
against our own tokenisation and refuses to write a tokenizer that differs.
"""

from __future__ import annotations

import copy

from embedforge.errors import ServiceError
from embedforge.model.tokenize import ensure_pad_token, token_ids

CACHE_ATTRIBUTE = "_embedforge_appends_end"  # tokenize.py caches its probe here

# Probe texts: short, multilingual, a prompt-shaped one, and one far longer than any max length.
PROBE_TEXTS = [
    "probe", "A man is playing a guitar.", "Instruct: Retrieve semantically similar text.\nQuery: hello",
    "Der schnelle braune Fuchs springt über den faulen Hund.", " ".join(["embedding"] * 600),
]


class TokenizerExportError(ServiceError):
    """The tokenizer cannot be made to reproduce our token ids."""


def _added_prefix(tokenizer) -> list[int]:
    with_special = tokenizer("probe", add_special_tokens=True)["input_ids"]
    plain = tokenizer("probe", add_special_tokens=False)["input_ids"]
    if with_special[len(with_special) - len(plain):] != plain:
        raise TokenizerExportError(f"tokenizer {tokenizer.name_or_path!r} adds special tokens after the text; "
                                   "cannot derive its template")
    return with_special[:len(with_special) - len(plain)]


def exported_tokenizer(tokenizer, max_length: int):
    """A copy of `tokenizer` whose plain call (truncation to max_length) gives our token ids."""
    tok = copy.deepcopy(tokenizer)
    if hasattr(tok, CACHE_ATTRIBUTE):
        delattr(tok, CACHE_ATTRIBUTE)
    ensure_pad_token(tok)
    tok.model_max_length = max_length  # sentence-transformers truncates to the tokenizer's model_max_length
    expected = token_ids(tokenizer, PROBE_TEXTS, max_length)
    if not all(row[-1] == ids[-1] for row, ids in zip(expected, _plain_ids(tok, max_length))):
        # Decoder tokenizers: turn on the tokenizer's own EOS switch, keeping whatever BOS it adds.
        if not hasattr(type(tok), "add_eos_token"):
            raise TokenizerExportError(f"tokenizer {type(tok).__name__} has no add_eos_token switch; the exported "
                                       "model could not append EOS for last-token pooling")
        prefix = _added_prefix(tokenizer)
        if prefix not in ([], [tok.bos_token_id]):
            raise TokenizerExportError(f"tokenizer adds {prefix} before the text, not just BOS; cannot rebuild it")
        tok.add_bos_token = bool(prefix)
        tok.add_eos_token = True
    check_token_ids(tokenizer, tok, max_length, where="the exported tokenizer")
    return tok


def _plain_ids(tok, max_length: int) -> list[list[int]]:
    """What sentence-transformers does: one call, the tokenizer's own special tokens, truncation."""
    return tok(PROBE_TEXTS, truncation=True, max_length=max_length)["input_ids"]


def check_token_ids(reference, candidate, max_length: int, where: str) -> None:
    """Fail unless `candidate`'s plain call gives our token ids (from `reference`) on the probe texts."""
    expected = token_ids(reference, PROBE_TEXTS, max_length)
    got = _plain_ids(candidate, max_length)
    for text, want, have in zip(PROBE_TEXTS, expected, got):
        if want != have:
            raise TokenizerExportError(f"{where}: token ids differ from the encoder's for {text[:40]!r}: "
                                       f"expected ...{want[-5:]} ({len(want)} ids), got ...{have[-5:]} ({len(have)} ids)")
