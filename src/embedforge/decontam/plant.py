"""Plant copies of eval items in a training file, to see what the check catches (a canary run).

    python -m embedforge.decontam.plant --task $EMBEDFORGE_EVAL_DATA/SciFact --n 20 --background 10000 \
        --out /tmp/planted.jsonl
    embedforge-decontam train=[/tmp/planted.jsonl] eval.tasks=[$EMBEDFORGE_EVAL_DATA/SciFact] output=/tmp/r.json
    python -m embedforge.decontam.plant --score /tmp/planted.jsonl --report /tmp/r.json

Planted items are drawn (seeded) from the task's eval-split queries (Retrieval) or first texts, and
cycle through three variants: verbatim; re-cased, re-spaced and re-punctuated; and edited (a few
words replaced). Background records are random words from a fixed made-up vocabulary, so they match
nothing. `<out>.planted.json` lists each planted item with its variant; --score counts, per
variant, how many the report found.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from embedforge.decontam.eval_side import EvalItems, add_local_task

VARIANTS = ("verbatim", "renormalised", "edited")
_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "pe", "su", "da", "fe", "go", "hu", "ji", "wa"]


def _vocabulary(rng: random.Random, size: int = 5000) -> list[str]:
    return ["".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))) for _ in range(size)]


def renormalise(text: str, rng: random.Random) -> str:
    """Same normalised text: other case, doubled spaces and tabs, extra punctuation."""
    words = [w.upper() if rng.random() < 0.5 else w.lower() for w in text.split()]
    return "  " + "".join(w + rng.choice(["  ", "\t", " ,  ", " ;"]) for w in words) + "?!"


def edit(text: str, rng: random.Random, vocabulary: list[str], n_words: int) -> str:
    words = text.split()
    for pos in rng.sample(range(len(words)), min(n_words, len(words))):
        words[pos] = rng.choice(vocabulary)
    return " ".join(words)


def _record(query: str, positive: str) -> dict:
    return {"instruction": "Retrieve.", "query": query, "positive": positive, "negatives": [],
            "task_type": "short_long", "language": "en", "source": "planted"}


def plant(task: Path, out: Path, n: int, background: int, seed: int, edit_words: int) -> Path:
    rng = random.Random(seed)
    items = EvalItems()
    add_local_task(items, task, include_corpus=False)
    pool = [i for i in range(len(items.texts))]
    chosen = rng.sample(pool, min(n, len(pool)))
    vocabulary = _vocabulary(random.Random(seed + 1))
    planted, records = [], []
    for k, item in enumerate(chosen):
        variant = VARIANTS[k % len(VARIANTS)]
        text = items.texts[item]
        if variant == "renormalised":
            text = renormalise(text, rng)
        elif variant == "edited":
            text = edit(text, rng, vocabulary, edit_words)
        planted.append({"eval_item": items.item_ids[item], "task": items.groups[items.group[item]][0],
                        "variant": variant, "planted_text": text, "words": len(items.texts[item].split())})
        records.append(_record(text, " ".join(rng.choices(vocabulary, k=40))))
    out.parent.mkdir(parents=True, exist_ok=True)
    slots = set(rng.sample(range(background + len(records)), len(records)))
    planted_iter = iter(records)
    with out.open("w", encoding="utf-8") as fh:
        for i in range(background + len(records)):
            if i in slots:
                rec = next(planted_iter)
            else:
                rec = _record(" ".join(rng.choices(vocabulary, k=rng.randint(6, 20))),
                              " ".join(rng.choices(vocabulary, k=rng.randint(30, 120))))
            fh.write(json.dumps(rec) + "\n")
    sidecar = out.with_name(out.name + ".planted.json")
    sidecar.write_text(json.dumps(planted, indent=2), encoding="utf-8")
    return sidecar


def score(out: Path, report_path: Path) -> dict:
    planted = json.loads(out.with_name(out.name + ".planted.json").read_text(encoding="utf-8"))
    report = json.loads(report_path.read_text(encoding="utf-8"))
    if report.get("matches_truncated"):
        raise SystemExit(f"{report_path}: matches were truncated; rerun with a larger max_listed_matches")
    found = {(m["task"], m["eval_item"]): m["kind"] for m in report["matches"]}
    result = {v: {"planted": 0, "found": 0, "found_exact": 0, "found_ngram": 0} for v in VARIANTS}
    for p in planted:
        row = result[p["variant"]]
        row["planted"] += 1
        kind = found.get((p["task"], p["eval_item"]))
        row["found"] += kind is not None
        row["found_exact"] += kind == "exact"
        row["found_ngram"] += kind == "ngram"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="Plant eval items in a training file, or score a check of it.")
    parser.add_argument("--task", type=Path, help="a local task folder (docs/evaluation.md format)")
    parser.add_argument("--out", type=Path, help="the training JSONL to write")
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--background", type=int, default=1000)
    parser.add_argument("--edit-words", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--score", type=Path, help="a planted training file, scored against --report")
    parser.add_argument("--report", type=Path)
    args = parser.parse_args()
    if args.score:
        if not args.report:
            parser.error("--score needs --report (the JSON of embedforge-decontam)")
        print(json.dumps(score(args.score, args.report), indent=2))
        return
    if not args.task or not args.out:
        parser.error("--task and --out are required to plant")
    print(plant(args.task, args.out, args.n, args.background, args.seed, args.edit_words))


if __name__ == "__main__":
    main()
