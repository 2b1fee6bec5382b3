"""The paper's published numbers (paper_results.yaml), read once and checked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from embedforge.errors import DataError

PAPER_FILE = Path(__file__).with_name("paper_results.yaml")


@dataclass
class PaperRow:
    key: str
    label: str
    scores: dict[str, float]  # category -> score, plus "average"
    base: str | None = None  # Table 5: the Table 1 row it is compared with
    note: str | None = None

    @property
    def average(self) -> float:
        return self.scores["average"]


@dataclass
class Paper:
    source: str
    n_tasks: int
    categories: list[str]
    table1: dict[str, PaperRow]
    table5: dict[str, PaperRow]

    def base_average(self, row: PaperRow) -> float:
        return self.table1[row.base].average

    def label(self, key: str) -> str | None:
        row = self.table1.get(key) or self.table5.get(key)
        return row.label if row else None


def load_paper(path: str | Path = PAPER_FILE) -> Paper:
    import yaml

    path = Path(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    table1 = {k: PaperRow(k, v["label"], {c: float(s) for c, s in v["scores"].items()}, note=v.get("note"))
              for k, v in data["table1"].items()}
    table5 = {k: PaperRow(k, v["label"], {"average": float(v["average"])}, base=v["base"], note=v.get("note"))
              for k, v in data["table5"].items()}
    for key, row in table5.items():
        if row.base not in table1:
            raise DataError(f"{path}: table5.{key}.base: {row.base!r} is not a table1 row")
    for key, row in table1.items():
        missing = [c for c in [*data["categories"], "average"] if c not in row.scores]
        if missing:
            raise DataError(f"{path}: table1.{key}.scores lacks {missing}")
    return Paper(source=data["source"], n_tasks=int(data["n_tasks"]), categories=list(data["categories"]),
                 table1=table1, table5=table5)
