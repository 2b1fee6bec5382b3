"""One mining run: read the input, encode (or reuse) the corpus, search, pick negatives, write records."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embedforge.data.formatting import format_query
from embedforge.data.schema import Example
from embedforge.errors import ConfigError, MissingFileError
from embedforge.mining.cache import EmbeddingCache, cache_key
from embedforge.mining.inputs import MiningInput, file_sha256, read_beir, read_records
from embedforge.mining.search import IndexSettings, build_index, search
from embedforge.mining.select import SelectSettings, select_negatives, window_candidates

log = logging.getLogger(__name__)

GENERIC_INSTRUCTION = "Given a query, retrieve relevant documents that answer the query"


@dataclass
class MineSettings:
    input: Path
    out: Path
    split: str = "train"
    corpus: Path | None = None
    on_error: str = "fail"
    instruction: str | None = None
    template: str = "Instruct: {instruction}\nQuery: {query}"
    query_mode: str = "instruction"
    task_type: str = "short_long"
    language: str = "en"
    source: str | None = None
    select: SelectSettings = field(default_factory=SelectSettings)
    index: IndexSettings = field(default_factory=IndexSettings)
    batch_size: int = 32
    max_length: int | None = None
    cache_dir: Path | None = None
    trainer: dict = field(default_factory=dict)

    def check(self) -> None:
        """What the types cannot say (mining/settings.py checks the values): the files, before any is read."""
        if not self.input.exists():
            raise MissingFileError(f"input: {self.input} does not exist (a BEIR folder or a schema JSONL file)")
        if self.input.is_dir() and self.corpus is not None:
            raise ConfigError("corpus: only for a JSONL input (a BEIR folder brings its own corpus.jsonl)")
        if self.corpus is not None and not self.corpus.is_file():
            raise MissingFileError(f"corpus: {self.corpus} is not a file")
        if self.out.resolve() == self.input.resolve():
            raise ConfigError(f"out: {self.out} would overwrite the input")


def read_input(settings: MineSettings) -> MiningInput:
    if settings.input.is_dir():
        return read_beir(settings.input, settings.split, instruction=settings.instruction or GENERIC_INSTRUCTION,
                         task_type=settings.task_type, language=settings.language, source=settings.source)
    return read_records(settings.input, corpus_path=settings.corpus, on_error=settings.on_error,
                        instruction=settings.instruction)


def corpus_embeddings(encoder, data: MiningInput, settings: MineSettings, fingerprint: str, timings: dict):
    """(matrix or None on ranks > 0, cache path, whether it came from the cache)."""
    from embedforge.mining.encode import encode_texts
    from embedforge.paths import CACHE_DIR

    cache = EmbeddingCache(settings.cache_dir or CACHE_DIR / "mining")
    doc_settings = {"max_length": settings.max_length or encoder.max_length, "corpus_kind": data.corpus.kind,
                    "n_docs": len(data.corpus.texts)}
    key = cache_key(fingerprint, file_sha256(data.corpus.path), doc_settings)
    start = time.perf_counter()
    cached = cache.load(key, len(data.corpus.texts))
    if cached is not None:
        timings["corpus_load_s"] = round(time.perf_counter() - start, 2)
        log.info("corpus embeddings from cache %s", cache.path(key))
        return cached, cache.path(key), True
    matrix = encode_texts(encoder, data.corpus.texts, work_dir=cache.folder / f"{key}.shards",
                          batch_size=settings.batch_size, max_length=settings.max_length, trainer_kwargs=settings.trainer)
    timings["corpus_encode_s"] = round(time.perf_counter() - start, 2)
    if matrix is not None:
        cache.save(key, matrix, {"encoder_fingerprint": fingerprint, "corpus": str(data.corpus.path), **doc_settings})
    return matrix, cache.path(key), False


def query_text(example: Example, settings: MineSettings) -> str:
    return format_query(example.query, example.instruction, settings.template, settings.query_mode, example.task_type)


def mine(encoder, data: MiningInput, settings: MineSettings) -> dict | None:
    """Mine and write `settings.out`; return the report (None on ranks > 0 of a multi-process run)."""
    from embedforge.eval.mteb_model import encoder_fingerprint
    from embedforge.mining.encode import encode_texts

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    fingerprint = encoder_fingerprint(encoder)
    docs, cache_path, cache_hit = corpus_embeddings(encoder, data, settings, fingerprint, timings)
    texts = list(dict.fromkeys(query_text(t.example, settings) for t in data.targets))
    start = time.perf_counter()
    queries = encode_texts(encoder, texts, work_dir=cache_path.with_suffix(".query-shards"),
                           batch_size=settings.batch_size, max_length=settings.max_length, trainer_kwargs=settings.trainer)
    timings["query_encode_s"] = round(time.perf_counter() - start, 2)
    if docs is None or queries is None:
        return None  # not global rank 0: rank 0 searches and writes
    start = time.perf_counter()
    index = build_index(docs, settings.index)
    scores, rows = search(index, queries, int(settings.select.rank_end))
    timings["search_s"] = round(time.perf_counter() - start, 2)
    query_row = {text: i for i, text in enumerate(texts)}
    rows_of_text: dict[str, list[int]] = {}
    for row, text in enumerate(data.corpus.texts):
        rows_of_text.setdefault(text, []).append(row)
    records, chosen_ranks, chosen_scores, empty = [], [], [], []
    for i, target in enumerate(data.targets):
        q = query_row[query_text(target.example, settings)]
        # A positive's text under another document id is that positive too.
        known = {r for p in target.known_positive_rows for r in rows_of_text[data.corpus.texts[p]]}
        positive_score = float(docs[target.positive_row] @ queries[q])
        candidates = window_candidates(rows[q], scores[q], positive_score, known, settings.select)
        seen: set[str] = set()  # one copy of a text that the corpus holds under several ids
        candidates = [c for c in candidates if not (data.corpus.texts[c.row] in seen or seen.add(data.corpus.texts[c.row]))]
        chosen = select_negatives(candidates, settings.select, i)
        leaked = [c.row for c in chosen if c.row in known]
        if leaked:  # cannot happen by construction; a guard so a refactor can never write a positive as negative
            raise AssertionError(f"target {i}: known positive rows {leaked} selected as negatives")
        if not chosen:
            empty.append(target.example.query)
        chosen_ranks += [c.rank for c in chosen]
        chosen_scores += [c.score - positive_score for c in chosen]
        records.append(Example(**{**target.example.to_dict(), "negatives": [data.corpus.texts[c.row] for c in chosen]}))
    write_records(settings.out, records)
    timings["total_s"] = round(time.perf_counter() - t0, 2)
    report = {
        "input": str(settings.input), "out": str(settings.out), "records": len(records), "queries": len(texts),
        "corpus_docs": len(data.corpus.texts), "records_with_negatives": len(records) - len(empty),
        "records_without_negatives": len(empty), "examples_without_negatives": empty[:10],
        "negatives_per_record_mean": round(float(np.mean([len(r.negatives) for r in records])), 3),
        "negative_rank_mean": round(float(np.mean(chosen_ranks)), 2) if chosen_ranks else None,
        "negative_minus_positive_score_mean": round(float(np.mean(chosen_scores)), 4) if chosen_scores else None,
        "input_problems": data.errors, "encoder_fingerprint": fingerprint, "cache": str(cache_path),
        "cache_hit": cache_hit, "timings": timings,
        "settings": {"split": settings.split, "query_mode": settings.query_mode, "instruction": settings.instruction,
                     "negatives": settings.select.model_dump(), "index": settings.index.model_dump()},
    }
    report_path = settings.out.with_name(settings.out.stem + ".report.json")
    report_path.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    report["report_path"] = str(report_path)
    return report


def write_records(path: Path, records: list[Example]) -> None:
    from embedforge.data.jsonl import write_examples

    tmp = path.with_name(path.name + ".tmp")
    write_examples(tmp, records)
    tmp.replace(path)
