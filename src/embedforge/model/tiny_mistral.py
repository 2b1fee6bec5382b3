"""A tiny random-init Mistral with a locally trained tokenizer, built once and cached.

It exercises every decoder code path (BOS-only tokenizer, EOS appended, last-token pooling, LoRA
on q/k/v/o/gate/up/down, gradient checkpointing) without downloading anything.
"""

from __future__ import annotations

import os
from pathlib import Path

from embedforge.paths import CACHE_DIR, building_folder

BUILD_VERSION = "v1"  # bump when the recipe below changes, so caches rebuild

TINY_CONFIG = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=1024,
    sliding_window=None,
)

# A small multilingual corpus for the BPE: enough to give real subwords, not a real language model.
_CORPUS = """
The quick brown fox jumps over the lazy dog. A query asks; a passage answers.
Retrieve semantically similar text. Retrieve parallel sentences. Given a question, retrieve
Wikipedia passages that answer the question. Instruct: Query: what is the pass key for Alice?
Der schnelle braune Fuchs springt über den faulen Hund. Le renard brun saute par-dessus le chien.
El zorro marrón salta sobre el perro perezoso. 敏捷的棕色狐狸跳过了懒狗。 素早い茶色の狐が怠け者の犬を飛び越える。
Embeddings map text to vectors; similar meanings land close together under cosine similarity.
""".strip()


def _corpus_lines() -> list[str]:
    lines = _CORPUS.splitlines()
    # Numbers and letters so any text maps to known pieces rather than <unk>.
    lines += [" ".join(str(i) for i in range(100)), "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
    return lines * 4


def _train_tokenizer(out_dir: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus_lines(), trainer=trainer)
    # Like Mistral's tokenizer: BOS in front, no EOS (the collator appends it).
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", model_max_length=1024
    )
    fast.save_pretrained(out_dir)


def build_tiny_mistral(cache_dir: str | os.PathLike | None = None, seed: int = 0) -> Path:
    """Return the folder of the tiny Mistral, building it on first use (atomic, safe across processes)."""
    import torch
    from transformers import MistralConfig, MistralModel

    root = Path(cache_dir) if cache_dir else CACHE_DIR
    target = root / f"tiny-mistral-{BUILD_VERSION}-seed{seed}"
    if (target / "config.json").is_file() and (target / "tokenizer.json").is_file():
        return target
    with building_folder(target) as staging:
        _train_tokenizer(staging)
        from transformers import AutoTokenizer

        vocab_size = len(AutoTokenizer.from_pretrained(staging))
        config = MistralConfig(vocab_size=vocab_size, bos_token_id=1, eos_token_id=2, **TINY_CONFIG)
        torch.manual_seed(seed)
        MistralModel(config).save_pretrained(staging)
    return target
