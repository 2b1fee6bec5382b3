"""type: hub. A public dataset in the layout the community hosts on the Hugging Face hub, read through
`datasets` (dataset, config, revision, split, optional data_files) or, with `path`, from local files
of the same layout (a download of the hub repository, or files written in the same columns)."""

from __future__ import annotations

from embedforge.data.jsonl import DataFileError
from embedforge.data.schema import SchemaError
from embedforge.data.sources.base import Source, SourceError, SourceLoad
from embedforge.data.sources.files import row_files
from embedforge.data.sources.layouts import LAYOUTS, RowError, extract, required_columns
from embedforge.data.sources.rows import HubUnavailable, file_columns, iter_file_rows, iter_hub_rows, load_hub_dataset


class PublicDatasetSource(Source):
    type_name = "hub"

    def layout(self) -> tuple[str, dict]:
        layout = str(self.setting("layout", "columns"))
        if layout not in LAYOUTS:
            raise SourceError(f"{self.key('layout')}: unknown layout '{layout}' (expected one of: {', '.join(LAYOUTS)})")
        columns = dict(self.setting("columns") or {})
        needed = ("query",) if layout == "ms_marco" else ("query", "positive")
        for key in needed:
            if not columns.get(key):
                raise SourceError(f"{self.key('columns.' + key)}: required for layout '{layout}'")
        if isinstance(columns.get("negatives"), str):
            columns["negatives"] = [columns["negatives"]]
        return layout, columns

    def check_columns(self, present: list[str] | None, layout: str, columns: dict, origin: str) -> None:
        """Fail at once, naming the key, when a configured column is not in the data at all."""
        if present is None:
            return
        for key, name in required_columns(layout, columns).items():
            if name not in present:
                raise SourceError(f"{self.key('columns.' + key)}: column '{name}' is not in {origin} "
                                  f"(it has: {', '.join(present)})")

    def rows(self, layout: str, columns: dict):
        split = str(self.setting("split", "train"))
        config = self.setting("config")
        path = self.setting("path")
        if path:
            try:
                files = row_files(str(path), self.key("path"), split=split, config=config)
            except DataFileError as exc:
                raise SourceError(str(exc)) from None
            self.check_columns(file_columns(files), layout, columns, str(files[0]))
            return iter_file_rows(files)
        dataset = self.setting("dataset")
        if not dataset:
            raise SourceError(f"{self.key()}: needs 'dataset' (a hub id) or 'path' (local files)")
        revision = self.setting("revision")
        try:
            ds = load_hub_dataset(str(dataset), config, revision, split, self.setting("data_files"))
        except HubUnavailable as exc:
            raise SourceError(
                f"{self.key('dataset')}: cannot load hub dataset '{dataset}' (config={config}, revision={revision}, "
                f"split={split}): {exc}. Offline? Download it where the hub is reachable, e.g. "
                f"`hf download {dataset} --repo-type dataset --revision {revision or 'main'} --local-dir DIR`, "
                f"then set {self.key('path')}=DIR") from None
        self.check_columns(list(ds.column_names), layout, columns, f"hub dataset '{dataset}'")
        return iter_hub_rows(ds, str(dataset), split)

    def read(self, load: SourceLoad) -> None:
        layout, columns = self.layout()
        for where, row, reason in self.rows(layout, columns):
            if reason:
                self.reject(load, where, reason)
                continue
            try:
                query, positives, negatives = extract(row, layout, columns)
            except RowError as exc:
                self.reject(load, where, str(exc))
                continue
            if not positives:
                load.filter("no positive")  # e.g. MS MARCO queries without a selected passage
                continue
            try:
                load.examples.append(self.make_example(query, positives[0], negatives))
            except SchemaError as exc:
                self.reject(load, where, str(exc))
