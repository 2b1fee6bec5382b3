"""Small local-task fixtures written to tmp dirs for the eval tests (reached through the `fx` fixture)."""

from __future__ import annotations

import json
from pathlib import Path


# Real MTEB data vendored for the tests (tests/fixtures/mteb/README.md: source and licence).
VENDORED_EVAL = Path(__file__).resolve().parents[1] / "fixtures" / "mteb"

STS_ROWS = [
    ("A man is playing a guitar.", "A man plays the guitar.", 4.8),
    ("A woman is slicing an onion.", "Someone is cutting an onion.", 4.2),
    ("A dog runs in the park.", "A cat sleeps on the sofa.", 0.4),
    ("The stock market fell sharply today.", "Share prices dropped a lot today.", 4.0),
    ("Kids are swimming in a lake.", "Children swim in the water.", 3.9),
    ("He is cooking pasta.", "The train is late again.", 0.1),
    ("A plane is taking off.", "An airplane departs from the runway.", 4.5),
    ("She reads a book.", "She is writing a letter.", 1.8),
    ("Two men are fighting.", "Two men are talking calmly.", 1.2),
    ("The sun is shining.", "It is a bright sunny day.", 4.1),
]

DOCS = {
    "d1": ("Photosynthesis", "Plants convert sunlight, water and carbon dioxide into glucose and oxygen."),
    "d2": ("Volcanoes", "Magma rises through the crust and erupts as lava and ash."),
    "d3": ("Football", "A team of eleven players tries to kick the ball into the opposing goal."),
    "d4": ("Banking", "A savings account pays interest on the money deposited by the customer."),
    "d5": ("Coffee", "Roasted coffee beans are ground and brewed with hot water."),
}
QUERIES = {
    "q1": "how do plants make glucose from sunlight",
    "q2": "what comes out of an erupting volcano",
    "q3": "how many players in a football team",
    "q4": "does a savings account pay interest",
}
QRELS = {"q1": "d1", "q2": "d2", "q3": "d3", "q4": "d4"}

CLASS_TRAIN = [(f"I love this, it is wonderful number {i}", "pos") for i in range(10)] + \
              [(f"I hate this, it is terrible number {i}", "neg") for i in range(10)]
CLASS_TEST = [("This is wonderful, I love it", "pos"), ("Terrible, I hate it", "neg"),
              ("Absolutely wonderful and lovely", "pos"), ("Awful, hateful and terrible", "neg")]

PAIRS = [("How do I reset my password?", "How can I change my password?", 1),
         ("What is the capital of France?", "Which city is France's capital?", 1),
         ("How do I bake bread?", "What is the speed of light?", 0),
         ("Where can I buy shoes?", "Best places to purchase shoes?", 1),
         ("Is coffee healthy?", "How tall is Mount Everest?", 0),
         ("Why is the sky blue?", "How to learn the guitar fast?", 0)]

BITEXT = {"deu-eng": [("Ich liebe dich.", "I love you."), ("Der Hund schläft.", "The dog is sleeping."),
                      ("Wo ist der Bahnhof?", "Where is the train station?")],
          "fra-eng": [("Je t'aime.", "I love you."), ("Le chat mange.", "The cat is eating."),
                      ("Il pleut aujourd'hui.", "It is raining today.")]}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_task(folder: Path, kind: str, mteb_task: str | None = None, **extra) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    splits = extra.pop("splits", ["test"])
    (folder / "task.json").write_text(json.dumps({"mteb_task": mteb_task, "type": kind, "splits": splits, **extra}))
    return folder


def make_sts(root: Path, name: str = "MySTS", mteb_task: str | None = None) -> Path:
    folder = write_task(root / name, "STS", mteb_task)
    write_jsonl(folder / "test.jsonl", [{"sentence1": a, "sentence2": b, "score": s} for a, b, s in STS_ROWS])
    return folder


def make_retrieval(root: Path, name: str = "MyRetrieval", mteb_task: str | None = None) -> Path:
    folder = write_task(root / name, "Retrieval", mteb_task)
    write_jsonl(folder / "corpus.jsonl", [{"_id": k, "title": t, "text": x} for k, (t, x) in DOCS.items()])
    write_jsonl(folder / "queries.jsonl", [{"_id": k, "text": v} for k, v in QUERIES.items()])
    (folder / "qrels").mkdir(exist_ok=True)
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" +
                                               "".join(f"{q}\t{d}\t1\n" for q, d in QRELS.items()))
    return folder


def make_classification(root: Path, name: str = "MyClassification") -> Path:
    folder = write_task(root / name, "Classification")
    write_jsonl(folder / "train.jsonl", [{"text": t, "label": l} for t, l in CLASS_TRAIN])
    write_jsonl(folder / "test.jsonl", [{"text": t, "label": l} for t, l in CLASS_TEST])
    return folder


def make_pairs(root: Path, name: str = "MyPairs") -> Path:
    folder = write_task(root / name, "PairClassification")
    write_jsonl(folder / "test.jsonl", [{"sentence1": a, "sentence2": b, "label": l} for a, b, l in PAIRS])
    return folder


def make_bitext(root: Path, name: str = "MyBitext") -> Path:
    folder = write_task(root / name, "BitextMining")
    for subset, rows in BITEXT.items():
        write_jsonl(folder / "test" / f"{subset}.jsonl", [{"sentence1": a, "sentence2": b} for a, b in rows])
    return folder
