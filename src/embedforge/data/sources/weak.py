"""Weakly supervised pairs for contrastive pre-training (docs/method.md section 4: 'contrastive pre-training
first'): title -> body of every document of a BEIR-layout corpus. Question -> answer pairs come from
any QA dataset through a `hub` source (conf/data/source/weak_qa.yaml)."""

from __future__ import annotations

import csv
from pathlib import Path

from embedforge.data.jsonl import iter_json_lines
from embedforge.data.schema import SchemaError
from embedforge.data.sources.base import Source, SourceError, SourceLoad

CORPUS_FILE = "corpus.jsonl"  # BEIR: one {"_id", "title", "text"} per line


def judged_documents(qrels: Path) -> set[str]:
    """The corpus ids a BEIR qrels TSV (query-id, corpus-id, score; a header line) judges."""
    with qrels.open(encoding="utf-8", newline="") as handle:
        return {row[1] for i, row in enumerate(csv.reader(handle, delimiter="\t")) if i and len(row) >= 2}


class TitleBodySource(Source):
    """type: beir_title_body. `path`: a BEIR task folder (with corpus.jsonl) or the corpus file.
    `judged_in` / `not_judged_in`: qrels splits (<folder>/qrels/<split>.tsv) whose judged documents are
    kept / dropped, e.g. [train] / [test]: pairs from the train side only, none an evaluation retrieves."""

    type_name = "beir_title_body"

    def missing_hint(self, key: str) -> str:
        return f"a BEIR folder holding {CORPUS_FILE}, e.g. {self.key(key)}=$EMBEDFORGE_EVAL_DATA/SciFact"

    def corpus(self):
        return self.file_setting("path", CORPUS_FILE)

    def _documents(self, key: str, folder: Path) -> set[str] | None:
        splits = self.setting(key)
        if not splits:
            return None
        found = set()
        for split in splits:
            qrels = folder / "qrels" / f"{split}.tsv"
            if not qrels.is_file():
                raise SourceError(f"{self.key(key)}: {qrels} not found (a BEIR folder keeps qrels/<split>.tsv)")
            found |= judged_documents(qrels)
        return found

    def read(self, load: SourceLoad) -> None:
        path = self.corpus()
        keep, drop = self._documents("judged_in", path.parent), self._documents("not_judged_in", path.parent) or set()
        for lineno, row, reason in iter_json_lines(path):
            where = f"{path}:{lineno}"
            if reason:
                self.reject(load, where, reason)
                continue
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                self.reject(load, where, "corpus row must be an object with a 'text' string")
                continue
            doc_id = str(row.get("_id"))
            if (keep is not None and doc_id not in keep) or doc_id in drop:
                load.filter("judged split excluded")  # counted: the mixture report shows how many
                continue
            title = row.get("title")
            if not isinstance(title, str) or not title.strip():
                load.filter("no title")  # a document without a title gives no pair; counted, not an error
                continue
            try:
                load.examples.append(self.make_example(title, row["text"], []))
            except SchemaError as exc:
                self.reject(load, where, str(exc))
