"""What to mine for: a corpus of documents and the queries with their known positives.

Two inputs:
- a BEIR-layout folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv): documents are
  "title text" (mteb's convention), positives are the judged documents (score > 0);
- a schema JSONL file of Example records (query + positive): the corpus is a BEIR corpus.jsonl when
  given, else the distinct positives of the records; every record sharing a query text knows all
  of that query's positives, so none of them is taken as its negative.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from embedforge.data.jsonl import load_examples
from embedforge.data.schema import Example
from embedforge.errors import DataError
from embedforge.eval import local_files as lf
from embedforge.eval.local_files import LocalTaskError

log = logging.getLogger(__name__)


class MiningInputError(DataError):
    """The mining input is missing or malformed; the message names the file (and line)."""


@dataclass
class Corpus:
    ids: list[str]
    texts: list[str]
    path: Path  # the file whose bytes key the embedding cache
    kind: str  # "beir" (corpus.jsonl) or "positives" (distinct positives of a records file)

    def __post_init__(self):
        self.index = {doc_id: i for i, doc_id in enumerate(self.ids)}


@dataclass
class Target:
    """One output record to mine negatives for: its query, its positive (a corpus row) and every
    corpus row known to be relevant to its query."""

    example: Example  # the record without mined negatives (instruction, query, positive, ...)
    positive_row: int
    known_positive_rows: frozenset[int]


@dataclass
class MiningInput:
    corpus: Corpus
    targets: list[Target]
    errors: list[str] = field(default_factory=list)  # file:line reasons of skipped rows


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def doc_text(title: str, text: str) -> str:
    return f"{title} {text}".strip() if title else text


def read_beir_corpus(path: Path) -> Corpus:
    try:
        rows = lf.read_corpus(path)
    except LocalTaskError as exc:
        raise MiningInputError(str(exc)) from None
    return Corpus(ids=rows["id"], texts=[doc_text(t, x) for t, x in zip(rows["title"], rows["text"])],
                  path=path, kind="beir")


def read_beir(folder: Path, split: str, *, instruction: str, task_type: str, language: str,
              source: str | None) -> MiningInput:
    """One target per judged (query, document) pair with score > 0 of qrels/<split>.tsv."""
    if not folder.is_dir():
        raise MiningInputError(f"input: folder not found: {folder}")
    corpus = read_beir_corpus(folder / "corpus.jsonl")
    try:
        queries = lf.read_queries(folder / "queries.jsonl")
        qrels = lf.read_qrels(folder / "qrels" / f"{split}.tsv")
    except LocalTaskError as exc:
        raise MiningInputError(str(exc)) from None
    query_text = dict(zip(queries["id"], queries["text"]))
    source = source or f"beir:{folder.name}"
    targets, errors = [], []
    qrels_path = folder / "qrels" / f"{split}.tsv"
    # Two query ids with the same text are one query: each knows the other's positives.
    rows_of_text: dict[str, set[int]] = {}
    for qid, judged in qrels.items():
        if qid in query_text:
            rows_of_text.setdefault(query_text[qid], set()).update(
                corpus.index[doc] for doc, score in judged.items() if score > 0 and doc in corpus.index)
    for qid, judged in qrels.items():
        relevant = [doc for doc, score in judged.items() if score > 0]
        if qid not in query_text:
            errors.append(f"{qrels_path}: query id {qid!r} is not in queries.jsonl (skipped)")
            continue
        missing = [doc for doc in relevant if doc not in corpus.index]
        if missing:
            errors.append(f"{qrels_path}: query {qid!r} judges document(s) {missing[:3]} missing from corpus.jsonl")
        rows = frozenset(rows_of_text[query_text[qid]])
        for doc in relevant:
            if doc not in corpus.index:
                continue
            row = corpus.index[doc]
            example = Example(instruction=instruction, query=query_text[qid], positive=corpus.texts[row],
                              negatives=[], task_type=task_type, language=language, source=source)
            targets.append(Target(example, row, rows))
    if not targets:
        raise MiningInputError(f"{qrels_path}: no judged (query, document) pair with score > 0 found in "
                               f"queries.jsonl and corpus.jsonl")
    return MiningInput(corpus, targets, errors)


def read_records(path: Path, *, corpus_path: Path | None, on_error: str, instruction: str | None) -> MiningInput:
    """Targets from Example records; `instruction` (if not None) replaces each record's own."""
    if not path.is_file():
        raise MiningInputError(f"input: file not found: {path}")
    report = load_examples(path, on_error=on_error)  # fail: DataFileError names file:line
    if not report.examples:
        raise MiningInputError(f"{path}: no valid records")
    if corpus_path is not None:
        corpus = read_beir_corpus(corpus_path)
    else:
        texts = list(dict.fromkeys(ex.positive for ex in report.examples))
        corpus = Corpus(ids=[str(i) for i in range(len(texts))], texts=texts, path=path, kind="positives")
    by_text: dict[str, int] = {}
    for row, text in enumerate(corpus.texts):
        by_text.setdefault(text, row)
    # A corpus may hold the same text under two ids: all of its rows count as known positives.
    rows_of_text: dict[str, set[int]] = {}
    for row, text in enumerate(corpus.texts):
        rows_of_text.setdefault(text, set()).add(row)
    positives_of_query: dict[str, set[int]] = {}
    errors = list(report.errors)
    kept = []
    for number, ex in enumerate(report.examples, start=1):
        if ex.positive not in by_text:
            errors.append(f"{path}: valid record #{number}: its positive is not in the corpus {corpus.path} (skipped)")
            continue
        positives_of_query.setdefault(ex.query, set()).update(rows_of_text[ex.positive])
        kept.append(ex)
    if not kept:
        raise MiningInputError(f"{path}: none of the records' positives is in the corpus {corpus.path}")
    targets = []
    for ex in kept:
        if instruction is not None:
            ex = Example(**{**ex.to_dict(), "instruction": instruction})
        targets.append(Target(Example(**{**ex.to_dict(), "negatives": []}), by_text[ex.positive],
                              frozenset(positives_of_query[ex.query])))
    return MiningInput(corpus, targets, errors)
