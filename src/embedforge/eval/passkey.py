"""Personalised passkey retrieval (docs/method.md section 5): a long-context probe, fully synthetic.

For each context length L (in tokens of the model's tokenizer): 100 documents of about L tokens,
each our filler text repeated with one person's name and a random passkey hidden at a random
position; 50 queries "what is the pass key for <name>?"; top-1 accuracy. Seeded, so the same
seed gives the same documents. Lengths beyond the model's maximum are reported, not truncated.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedforge.errors import ConfigError

# Our own filler: bland, repetitive, and free of names and numbers, so only the needle is distinctive.
FILLER = ("The grass is green. The sky is blue. The sun is warm. Here we go. There and back again. "
          "The river runs past the old mill and the birds sing in the trees. ")
FIRST = ["Alice", "Bruno", "Chiara", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kofi", "Lena",
         "Mateo", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Sven", "Tamar", "Umar", "Vera", "Wei", "Yara", "Zoltan"]
LAST = ["Abbott", "Berg", "Castillo", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ivanova", "Jensen",
        "Kowalski", "Lindqvist", "Moreau", "Novak", "Okafor", "Petrov", "Quinn", "Rossi", "Sato", "Tanaka"]
QUERY = "what is the pass key for {name}?"
NEEDLE = " {name}'s pass key is {key}. Remember it. {key} is the pass key for {name}. "


@dataclass
class PasskeySet:
    length: int
    documents: list[str]
    queries: list[str]
    answers: list[int]  # index of the right document for each query


def model_max_length(encoder) -> int:
    """The longest input the backbone can position (what 'exceeds max length' refers to)."""
    config = getattr(encoder.backbone, "config", None)
    limit = getattr(config, "max_position_embeddings", None) or encoder.max_length
    return int(limit)


def _n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=True)["input_ids"])


def build_set(tokenizer, length: int, n_docs: int = 100, n_queries: int = 50, seed: int = 0) -> PasskeySet:
    """Documents of at most `length` tokens (special tokens and appended EOS included)."""
    if n_queries > n_docs:
        raise ConfigError(f"passkey: n_queries ({n_queries}) must not exceed n_docs ({n_docs})")
    rng = random.Random(f"{seed}-{length}")
    names = rng.sample([f"{f} {l}" for f in FIRST for l in LAST], n_docs)
    filler_words = FILLER.split()
    budget = length - 1  # room for an EOS the encoder may append
    docs = []
    for name in names:
        needle = NEEDLE.format(name=name, key=rng.randrange(10_000, 100_000))
        n_words = max(0, (budget - _n_tokens(tokenizer, needle)) * 3 // 4)  # first guess: ~1.3 tokens/word
        while True:
            words = (filler_words * (n_words // len(filler_words) + 1))[:n_words]
            at = rng.randrange(len(words) + 1)
            doc = " ".join(words[:at]) + needle + " ".join(words[at:])
            size = _n_tokens(tokenizer, doc)
            if size <= budget or n_words == 0:
                break
            n_words = max(0, n_words - max(1, (size - budget) * 3 // 4))
        docs.append(doc.strip())
    picked = rng.sample(range(n_docs), n_queries)
    return PasskeySet(length, docs, [QUERY.format(name=names[i]) for i in picked], picked)


def evaluate_passkey(encoder, lengths: list[int], *, n_docs: int = 100, n_queries: int = 50, seed: int = 0,
                     batch_size: int = 8, instruction: str = "", template: str | None = None,
                     mode: str = "instruction") -> dict[int, dict]:
    """{length: {"top1": accuracy or None, "note": ...}}; queries carry the instruction, documents don't."""
    from embedforge.data.formatting import DEFAULT_QUERY_TEMPLATE, format_query

    limit = model_max_length(encoder)
    out: dict[int, dict] = {}
    for length in lengths:
        if length > limit:
            out[length] = {"top1": None, "note": f"exceeds max length {limit}"}
            continue
        data = build_set(encoder.tokenizer, length, n_docs, n_queries, seed)
        queries = [format_query(q, instruction, template or DEFAULT_QUERY_TEMPLATE, mode=mode, task_type="passkey")
                   for q in data.queries]
        docs = encoder.encode(data.documents, batch_size=batch_size, max_length=length, normalize=True)
        qs = encoder.encode(queries, batch_size=batch_size, max_length=length, normalize=True)
        top1 = (qs @ docs.T).argmax(axis=1)
        out[length] = {"top1": float(np.mean(top1 == np.asarray(data.answers))), "note": ""}
    return out


def markdown(scores: dict[int, dict]) -> str:
    lines = ["| context length (tokens) | top-1 accuracy |", "|---:|---:|"]
    for length, row in scores.items():
        cell = row["note"] if row["top1"] is None else f"{100 * row['top1']:.1f}%"
        lines.append(f"| {length} | {cell} |")
    return "\n".join(lines) + "\n"


def plot(scores: dict[int, dict], path: Path, title: str = "passkey retrieval") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [(length, row["top1"]) for length, row in scores.items() if row["top1"] is not None]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if done:
        ax.plot([d[0] for d in done], [100 * d[1] for d in done], marker="o")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run_passkey(encoder, cfg, out_dir: Path, template: str | None = None, mode: str = "instruction") -> Path:
    """The CLI's eval=passkey: table + plot + passkey.json under out_dir/<model>/passkey; returns the json.
    `cfg`: the eval group's settings (eval/settings.py PasskeyEval, or anything with its attributes)."""
    from embedforge.eval.mteb_model import encoder_fingerprint, model_slug

    lengths = [int(x) for x in cfg.lengths]
    scores = evaluate_passkey(encoder, lengths, n_docs=int(cfg.n_docs), n_queries=int(cfg.n_queries),
                              seed=int(cfg.seed), batch_size=int(cfg.batch_size), instruction=cfg.instruction or "",
                              template=template, mode=mode)
    folder = Path(out_dir) / model_slug(encoder) / f"passkey-{encoder_fingerprint(encoder)}"
    folder.mkdir(parents=True, exist_ok=True)
    table = markdown(scores)
    (folder / "passkey.md").write_text(table, encoding="utf-8")
    plot(scores, folder / "passkey.png", title=f"passkey retrieval: {model_slug(encoder)}")
    path = folder / "passkey.json"
    path.write_text(json.dumps({str(k): v for k, v in scores.items()}, indent=2), encoding="utf-8")
    print(table)
    return path
