"""Rows of a public dataset, from the Hugging Face hub (through `datasets`) or from local files in the
same layout. Every row comes with where it is (`file:line`, `file:row N`, `dataset[split] row N`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from embedforge.data.jsonl import iter_json_lines
from embedforge.errors import ServiceError

Row = tuple[str, Any, str | None]  # (where, row or None, reason it could not be read or None)


def iter_file_rows(files: list[Path]) -> Iterator[Row]:
    """JSON Lines files (.jsonl, .json, .jsonl.gz) line by line, parquet files row by row."""
    for path in files:
        if path.name.endswith(".parquet"):
            import pyarrow.parquet as pq

            index = 0
            for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
                for row in batch.to_pylist():
                    index += 1
                    yield f"{path}:row {index}", row, None
        else:
            for lineno, row, reason in iter_json_lines(path):
                yield f"{path}:{lineno}", row, reason


def file_columns(files: list[Path]) -> list[str] | None:
    """Column names of the first readable row (None when no row can be read)."""
    for _, row, reason in iter_file_rows(files[:1]):
        if reason is None and isinstance(row, dict):
            return list(row)
        return None
    return None


class HubUnavailable(ServiceError):
    pass


def load_hub_dataset(dataset: str, config: str | None, revision: str | None, split: str,
                     data_files: str | None):
    """One split of a hub dataset through `datasets`; HubUnavailable (with the first line of the
    cause) when it cannot be had, e.g. offline (HF_HUB_OFFLINE=1) with no cached copy."""
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets comes with mteb
        raise HubUnavailable(f"the 'datasets' package is not installed ({exc})") from None
    try:
        if data_files:
            # A repository of plain files (no dataset script): read them with the generic builder.
            builder = "parquet" if data_files.endswith(".parquet") else "json"
            url = f"hf://datasets/{dataset}@{revision or 'main'}/{data_files}"
            return datasets.load_dataset(builder, data_files={split: url}, split=split)
        return datasets.load_dataset(dataset, config, revision=revision, split=split)
    except Exception as exc:  # noqa: BLE001 - whatever the cause, the user needs the same advice
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise HubUnavailable(f"{type(exc).__name__}: {first}") from None


def iter_hub_rows(ds, dataset: str, split: str) -> Iterator[Row]:
    for index, row in enumerate(ds, start=1):
        yield f"{dataset}[{split}] row {index}", row, None
