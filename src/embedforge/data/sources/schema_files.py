"""Sources whose files already hold Example records: any schema JSONL glob, and the output folder
of `embedforge-generate` (its examples.jsonl)."""

from __future__ import annotations

from embedforge.data.jsonl import DataFileError, load_examples
from embedforge.data.sources.base import Source, SourceError, SourceLoad
from embedforge.data.sources.files import expand_files

SYNTH_EXAMPLES_FILE = "examples.jsonl"  # what embedforge-generate writes (synth/pipeline.py)


class SchemaFilesSource(Source):
    """type: jsonl. `files`: names or globs of schema JSONL files, read in sorted order."""

    type_name = "jsonl"
    files_key = "files"

    def files(self):
        try:
            return expand_files(self.setting(self.files_key), self.key(self.files_key))
        except DataFileError as exc:
            raise SourceError(str(exc)) from None

    def read(self, load: SourceLoad) -> None:
        for path in self.files():
            try:
                report = load_examples(path, on_error=self.on_error)
            except DataFileError as exc:
                raise SourceError(f"{self.key()}: {exc}") from None
            load.examples += [self.with_override(e) for e in report.examples]
            load.errors += report.errors


class SyntheticSource(SchemaFilesSource):
    """type: synthetic. `path`: an `embedforge-generate` output folder (or its examples.jsonl)."""

    type_name = "synthetic"
    files_key = "path"

    def missing_hint(self, key: str) -> str:
        return f"the out_dir of embedforge-generate, e.g. {self.key(key)}=runs/synth/default"

    def files(self):
        return [self.file_setting("path", SYNTH_EXAMPLES_FILE, f"run embedforge-generate first or point it at a "
                                                            f"folder holding {SYNTH_EXAMPLES_FILE}")]
