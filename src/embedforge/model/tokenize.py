"""Tokenisation that guarantees an end token on every sequence, for last-token pooling.

Decoder tokenizers (Mistral, Llama) add only a BOS, so we truncate to max_length - 1 and append
EOS. Encoder tokenizers (BERT) already close every sequence with [SEP]: we keep their own
truncation to max_length so scores match sentence-transformers exactly.
"""

from __future__ import annotations

import torch


def end_token_id(tokenizer) -> int:
    token_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if token_id is None:
        raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has neither an EOS nor a SEP token")
    return token_id


def _appends_end_token(tokenizer) -> bool:
    cached = getattr(tokenizer, "_embedforge_appends_end", None)
    if cached is None:
        ids = tokenizer("probe", add_special_tokens=True)["input_ids"]
        cached = bool(ids) and ids[-1] == end_token_id(tokenizer)
        tokenizer._embedforge_appends_end = cached
    return cached


def ensure_pad_token(tokenizer) -> None:
    """Decoder tokenizers often ship without a pad token; padding is masked, so EOS serves."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token


def token_ids(tokenizer, texts: list[str], max_length: int) -> list[list[int]]:
    """Token ids of each text, truncated so that the end token always fits, ending with it."""
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")
    if _appends_end_token(tokenizer):
        return tokenizer(list(texts), add_special_tokens=True, truncation=True, max_length=max_length,
                         return_attention_mask=False, return_token_type_ids=False)["input_ids"]
    end_id = end_token_id(tokenizer)
    encoded = tokenizer(list(texts), add_special_tokens=True, truncation=True, max_length=max_length - 1,
                        return_attention_mask=False, return_token_type_ids=False)["input_ids"]
    return [ids + [end_id] for ids in encoded]


def pad(tokenizer, ids: list[list[int]]) -> dict[str, torch.Tensor]:
    """Pad on the tokenizer's side; the attention mask marks real tokens."""
    features = [{"input_ids": row, "attention_mask": [1] * len(row)} for row in ids]
    return tokenizer.pad(features, padding=True, return_tensors="pt")


def tokenize(tokenizer, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    """Tokenise, make sure every sequence ends with the end token, pad on the tokenizer's side."""
    return pad(tokenizer, token_ids(tokenizer, texts, max_length))
