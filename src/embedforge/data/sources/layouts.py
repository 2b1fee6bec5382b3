"""How the community lays out retrieval training rows, turned into (query, positives, negatives).

- `columns`: named columns, each a string, a list of strings, a passage {"title", "text"} or a list
  of passages (sentence-transformers' anchor/positive/negative and question/answer sets, Tevatron's
  and MIRACL's query/positive_passages/negative_passages, FlagEmbedding's query/pos/neg).
- `ms_marco`: microsoft/ms_marco's `passages` = {"is_selected": [...], "passage_text": [...]}; the
  selected passages are positives and the others negatives.
"""

from __future__ import annotations

from typing import Any

from embedforge.errors import DataError

LAYOUTS = ("columns", "ms_marco")


class RowError(DataError):
    """A row that does not fit its layout; the message says which column and why."""


def passage_text(value: dict) -> str:
    title = value.get("title") or ""
    text = value.get("text")
    if not isinstance(text, str):
        raise RowError(f"passage without a 'text' string: {sorted(value)}")
    return f"{title} {text}".strip() if title else text


def texts(value: Any, column: str) -> list[str]:
    """Every text a column value holds, in order."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        # `datasets` returns a sequence of passages either as a list of dicts or as a dict of lists.
        if isinstance(value.get("text"), list):
            titles = value.get("title") or [""] * len(value["text"])
            return [passage_text({"title": t, "text": x}) for t, x in zip(titles, value["text"])]
        return [passage_text(value)]
    if isinstance(value, (list, tuple)):
        return [text for item in value for text in texts(item, column)]
    raise RowError(f"column '{column}' must hold text, a list of texts or passages, got {type(value).__name__}")


def column_value(row: dict, column: str) -> Any:
    if column not in row:
        raise RowError(f"missing column '{column}' (row has: {', '.join(sorted(row))})")
    return row[column]


def extract(row: Any, layout: str, columns: dict) -> tuple[Any, list[str], list[str]]:
    """(query, positives, negatives) of one row; RowError if the row does not fit."""
    if not isinstance(row, dict):
        raise RowError(f"row must be an object, got {type(row).__name__}")
    query = column_value(row, columns["query"])
    if layout == "ms_marco":
        passages = column_value(row, columns.get("passages", "passages"))
        if not isinstance(passages, dict) or not {"is_selected", "passage_text"} <= set(passages):
            raise RowError("column 'passages' must hold 'is_selected' and 'passage_text' lists")
        pairs = list(zip(passages["is_selected"], passages["passage_text"]))
        return query, [t for s, t in pairs if s], [t for s, t in pairs if not s]
    positives = texts(column_value(row, columns["positive"]), columns["positive"])
    negatives = [t for c in (columns.get("negatives") or []) for t in texts(column_value(row, c), c)]
    return query, positives, negatives


def required_columns(layout: str, columns: dict) -> dict[str, str]:
    """{config key under `columns`: column name} that every row must have."""
    if layout == "ms_marco":
        return {"query": columns["query"], "passages": columns.get("passages", "passages")}
    needed = {"query": columns["query"], "positive": columns["positive"]}
    for i, name in enumerate(columns.get("negatives") or []):
        needed[f"negatives[{i}]"] = name
    return needed
