"""Weakly supervised pairs for contrastive pre-training (docs/method.md section 4: 'contrastive pre-training
first'): title -> body of every document of a BEIR-layout corpus. Question -> answer pairs come from
any QA dataset through a `hub` source (conf/data/source/weak_qa.yaml)."""

from __future__ import annotations

from embedforge.data.jsonl import iter_json_lines
from embedforge.data.schema import SchemaError
from embedforge.data.sources.base import Source, SourceError, SourceLoad

CORPUS_FILE = "corpus.jsonl"  # BEIR: one {"_id", "title", "text"} per line


class TitleBodySource(Source):
    """type: beir_title_body. `path`: a BEIR task folder (with corpus.jsonl) or the corpus file."""

    type_name = "beir_title_body"

    def missing_hint(self, key: str) -> str:
        return f"a BEIR folder holding {CORPUS_FILE}, e.g. {self.key(key)}=$EMBEDFORGE_EVAL_DATA/SciFact"

    def corpus(self):
        return self.file_setting("path", CORPUS_FILE)

    def read(self, load: SourceLoad) -> None:
        path = self.corpus()
        for lineno, row, reason in iter_json_lines(path):
            where = f"{path}:{lineno}"
            if reason:
                self.reject(load, where, reason)
                continue
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                self.reject(load, where, "corpus row must be an object with a 'text' string")
                continue
            title = row.get("title")
            if not isinstance(title, str) or not title.strip():
                load.filter("no title")  # a document without a title gives no pair; counted, not an error
                continue
            try:
                load.examples.append(self.make_example(title, row["text"], []))
            except SchemaError as exc:
                self.reject(load, where, str(exc))
