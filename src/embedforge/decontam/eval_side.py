"""The evaluation side: every text an evaluation task scores, as items grouped by (task, part).

Parts: Retrieval -> "queries" (those judged in the eval splits' qrels) and "corpus"; STS,
PairClassification and BitextMining -> "sentences"; Classification -> "texts". Only the eval
splits are read (task.json "splits", or an explicit list). Identical texts within one part count
once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from embedforge.errors import DataError
from embedforge.eval import local_files as lf


class EvalSideError(DataError):
    """An evaluation task could not be read; the message names the task, file or config key."""


@dataclass
class EvalItems:
    texts: list[str] = field(default_factory=list)
    item_ids: list[str] = field(default_factory=list)
    group: list[int] = field(default_factory=list)  # index into groups
    groups: list[tuple[str, str]] = field(default_factory=list)  # (task, part)
    _seen: dict = field(default_factory=dict, repr=False)

    def add(self, task: str, part: str, item_id: str, text: str) -> None:
        if not isinstance(text, str) or not text.strip():
            return
        key = (task, part)
        if key not in self._seen:
            self._seen[key] = (len(self.groups), set())
            self.groups.append(key)
        gid, texts = self._seen[key]
        if text in texts:
            return
        texts.add(text)
        self.texts.append(text)
        self.item_ids.append(item_id)
        self.group.append(gid)

    def group_sizes(self) -> list[int]:
        sizes = [0] * len(self.groups)
        for g in self.group:
            sizes[g] += 1
        return sizes


def add_local_task(items: EvalItems, folder: Path, splits: list[str] | None = None,
                   include_corpus: bool = True) -> str:
    """Add one local task folder (docs/evaluation.md format); return the task name."""
    try:
        spec = lf.read_task_json(folder)
        name = spec.get("mteb_task") or spec.get("name") or folder.name
        kind = spec["type"]
        for split in splits or spec["splits"]:
            if kind == "Retrieval":
                qrels = lf.read_qrels(folder / "qrels" / f"{split}.tsv")
                queries = lf.read_queries(folder / "queries.jsonl")
                for qid, text in zip(queries["id"], queries["text"]):
                    if qid in qrels:
                        items.add(name, "queries", f"{split}:{qid}", text)
            elif kind == "BitextMining":
                split_dir = folder / split
                files = sorted(split_dir.glob("*.jsonl"))
                if not files:
                    raise EvalSideError(f"{split_dir}: no <subset>.jsonl files")
                for path in files:
                    rows = lf.read_bitext(path)
                    for i, (a, b) in enumerate(zip(rows["sentence1"], rows["sentence2"])):
                        items.add(name, "sentences", f"{split}/{path.stem}:{i}:1", a)
                        items.add(name, "sentences", f"{split}/{path.stem}:{i}:2", b)
            elif kind == "Classification":
                rows = lf.read_classification(folder / f"{split}.jsonl")
                for i, text in enumerate(rows["text"]):
                    items.add(name, "texts", f"{split}:{i}", text)
            else:  # STS, PairClassification
                read = lf.read_sts if kind == "STS" else lf.read_pairs
                rows = read(folder / f"{split}.jsonl")
                for i, (a, b) in enumerate(zip(rows["sentence1"], rows["sentence2"])):
                    items.add(name, "sentences", f"{split}:{i}:1", a)
                    items.add(name, "sentences", f"{split}:{i}:2", b)
        if kind == "Retrieval" and include_corpus:
            corpus = lf.read_corpus(folder / "corpus.jsonl")
            for doc_id, title, text in zip(corpus["id"], corpus["title"], corpus["text"]):
                items.add(name, "corpus", doc_id, f"{title} {text}".strip() if title else text)
    except lf.LocalTaskError as exc:
        raise EvalSideError(str(exc)) from None
    return name


def local_task_folders(data_dir: Path | None, tasks: list[str] | None) -> list[Path]:
    """Folders named by `eval.tasks` (names under data_dir, or paths), or all under data_dir."""
    if data_dir is not None and not data_dir.is_dir():
        raise EvalSideError(f"eval.data_dir: folder not found: {data_dir}")
    if not tasks:
        if data_dir is None:
            return []
        folders = sorted(p for p in data_dir.iterdir() if (p / "task.json").is_file())
        if not folders:
            raise EvalSideError(f"eval.data_dir: {data_dir} holds no task folders (folders with a task.json)")
        return folders
    folders = []
    for ref in tasks:
        candidates = [Path(ref)] + ([data_dir / ref] if data_dir is not None else [])
        folder = next((c for c in candidates if (c / "task.json").is_file()), None)
        if folder is None:
            raise EvalSideError(f"eval.tasks: {ref!r} is not a task folder" + (f" under {data_dir}" if data_dir else ""))
        folders.append(folder)
    return folders


def add_mteb_task(items: EvalItems, name: str, include_corpus: bool = True) -> str:
    """Add an MTEB task through mteb's own loader (needs the Hugging Face hub or mteb's cache)."""
    import os

    try:
        import mteb

        task = mteb.get_task(name)
    except Exception as exc:
        raise EvalSideError(f"eval.mteb_tasks: unknown MTEB task {name!r} ({exc})") from None
    try:
        task.load_data()
    except Exception as exc:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
        hint = " (HF_HUB_OFFLINE is set)" if offline else ""
        raise EvalSideError(
            f"eval.mteb_tasks: cannot load MTEB task {name!r} from the Hugging Face hub{hint}: "
            f"{type(exc).__name__}: {str(exc)[:200]}. Offline, put a local copy in the local task format "
            f"(docs/evaluation.md) and pass its folder with eval.data_dir / eval.tasks instead") from None
    add_loaded_mteb_dataset(items, name, task.dataset, task.metadata.eval_splits, include_corpus)
    return name


def add_loaded_mteb_dataset(items: EvalItems, name: str, dataset, eval_splits: list[str], include_corpus: bool) -> None:
    """Walk mteb's loaded data (dicts of subsets and splits down to `datasets.Dataset`s, or retrieval
    splits with "corpus" and "queries") and add every text of the eval splits."""

    def rows(ds):
        return ds if isinstance(ds, list) else (ds.to_list() if hasattr(ds, "to_list") else list(ds))

    def walk(node, where: str, in_split: bool):
        if isinstance(node, dict) and ("corpus" in node or "queries" in node):
            for row in rows(node.get("queries") or []):
                items.add(name, "queries", f"{where}:{row.get('id')}", row.get("text"))
            if include_corpus:
                for row in rows(node.get("corpus") or []):
                    title, text = row.get("title") or "", row.get("text") or ""
                    items.add(name, "corpus", str(row.get("id")), f"{title} {text}".strip())
            return
        if isinstance(node, dict):
            for key, child in node.items():
                if key in eval_splits or in_split or not any(k in eval_splits for k in node):
                    walk(child, f"{where}/{key}" if where else str(key), in_split or key in eval_splits)
            return
        if in_split and hasattr(node, "column_names"):
            columns = [c for c in ("sentence1", "sentence2", "text") if c in node.column_names]
            part = "texts" if columns == ["text"] else "sentences"
            for column in columns:
                for i, text in enumerate(node[column]):
                    items.add(name, part, f"{where}:{i}:{column}", text)

    walk(dataset, "", False)
