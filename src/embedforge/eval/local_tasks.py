"""Turn a local task folder into an mteb task whose data is already loaded.

When `task.json` names a real MTEB task we instantiate mteb's own class (main score, splits,
eval_langs, prompt, evaluator settings such as samples_per_label all come from mteb) and only fill
its `dataset` from the folder, so scores are comparable with the public leaderboard. Otherwise a
task class of the right type gets generic metadata.
"""

from __future__ import annotations

import logging
from pathlib import Path

from embedforge.eval import local_files as lf
from embedforge.eval.local_files import LocalTaskError

log = logging.getLogger(__name__)


def _abstask_class(task_type: str):
    from mteb.abstasks.classification import AbsTaskClassification
    from mteb.abstasks.pair_classification import AbsTaskPairClassification
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.sts import AbsTaskSTS
    from mteb.abstasks.text.bitext_mining import AbsTaskBitextMining

    return {"STS": AbsTaskSTS, "Classification": AbsTaskClassification,
            "PairClassification": AbsTaskPairClassification, "BitextMining": AbsTaskBitextMining,
            "Retrieval": AbsTaskRetrieval}[task_type]


def _subsets(spec: dict, folder: Path) -> list[str]:
    if spec["type"] == "BitextMining":
        split_dir = folder / spec["splits"][0]
        names = sorted(p.stem for p in split_dir.glob("*.jsonl")) if split_dir.is_dir() else []
        if not names:
            raise LocalTaskError(f"{split_dir}: BitextMining needs <split>/<subset>.jsonl files, found none")
        return names
    return [spec.get("subset") or "default"]


def _generic_metadata(spec: dict, folder: Path, subsets: list[str]):
    from mteb.abstasks.task_metadata import TaskMetadata

    name = spec.get("name") or folder.name
    main_score = spec.get("main_score") or {
        "STS": "cosine_spearman", "Classification": "accuracy", "PairClassification": "max_ap",
        "BitextMining": "f1", "Retrieval": "ndcg_at_10"}[spec["type"]]
    langs = spec.get("eval_langs") or ["eng-Latn"]
    eval_langs = langs if subsets == ["default"] else {s: langs for s in subsets}
    return TaskMetadata(
        name=name, type=spec["type"], main_score=main_score, eval_splits=spec["splits"], eval_langs=eval_langs,
        description=spec.get("description", f"Local task from {folder}"), reference=None,
        dataset={"path": str(folder), "revision": "local"}, category="t2c" if spec["type"] == "Classification" else "t2t",
        modalities=["text"], date=None, domains=None, task_subtypes=None, license=None, annotations_creators=None,
        dialect=None, sample_creation=None, bibtex_citation=None, prompt=spec.get("prompt"),
    )


def _real_task(spec: dict, folder: Path, subsets: list[str]):
    import mteb

    name = spec["mteb_task"]
    try:
        task = mteb.get_task(name)
    except Exception as exc:  # mteb raises KeyError/ValueError depending on version
        raise LocalTaskError(f"{folder / 'task.json'}: mteb_task {name!r} is not a known MTEB task ({exc})") from None
    if task.metadata.type != spec["type"]:
        raise LocalTaskError(f"{folder / 'task.json'}: type {spec['type']!r} but MTEB's {name} is {task.metadata.type!r}")
    splits = [s for s in task.metadata.eval_splits if s in spec["splits"]]
    if not splits:
        raise LocalTaskError(f"{folder / 'task.json'}: splits {spec['splits']} share none with MTEB's "
                             f"{name} eval splits {task.metadata.eval_splits}")
    task.filter_eval_splits(splits)
    if task.metadata.is_multilingual:
        unknown = sorted(set(subsets) - set(task.metadata.hf_subsets))
        if unknown:
            raise LocalTaskError(f"{folder}: subsets {unknown[:5]} are not subsets of MTEB's {name}")
        task.hf_subsets = [s for s in task.metadata.hf_subsets if s in subsets]
    elif subsets != ["default"]:
        raise LocalTaskError(f"{folder / 'task.json'}: MTEB's {name} has no subsets, but 'subset' is {subsets[0]!r}")
    return task


def _read_split(task, spec: dict, folder: Path, split: str, subset: str):
    """One split's data in the shape mteb's evaluator for this task type expects."""
    from datasets import Dataset

    kind = spec["type"]
    if kind == "STS":
        return Dataset.from_dict(lf.read_sts(folder / f"{split}.jsonl"))
    if kind == "PairClassification":
        data = lf.read_pairs(folder / f"{split}.jsonl")
        data[task.label_column_name] = data.pop("label")
        return Dataset.from_dict(data)
    if kind == "Classification":
        return Dataset.from_dict(lf.read_classification(folder / f"{split}.jsonl"))
    if kind == "BitextMining":
        return Dataset.from_dict(lf.read_bitext(folder / split / f"{subset}.jsonl"))
    return _read_retrieval(folder, split)


def _read_retrieval(folder: Path, split: str) -> dict:
    from datasets import Dataset
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData

    corpus = lf.read_corpus(folder / "corpus.jsonl")
    queries = lf.read_queries(folder / "queries.jsonl")
    qrels = lf.read_qrels(folder / "qrels" / f"{split}.tsv")
    known_queries, known_docs = set(queries["id"]), set(corpus["id"])
    missing_q = sorted(set(qrels) - known_queries)
    if len(missing_q) == len(qrels):
        raise LocalTaskError(f"{folder / 'qrels' / (split + '.tsv')}: none of its query ids are in queries.jsonl")
    if missing_q:
        log.warning("%s: %d judged queries are missing from queries.jsonl (e.g. %s)", folder, len(missing_q), missing_q[0])
    missing_d = {d for judged in qrels.values() for d in judged} - known_docs
    if missing_d:
        log.warning("%s: %d judged documents are missing from corpus.jsonl", folder, len(missing_d))
    keep = [i for i, qid in enumerate(queries["id"]) if qid in qrels]
    queries = {k: [v[i] for i in keep] for k, v in queries.items()}
    return RetrievalSplitData(corpus=Dataset.from_dict(corpus), queries=Dataset.from_dict(queries),
                              relevant_docs={q: d for q, d in qrels.items() if q in known_queries}, top_ranked=None)


def _labels_to_ids(parts: dict) -> dict:
    """String labels -> ids shared by all splits (mteb's binary metrics assume labels 0/1)."""
    labels = sorted({str(label) for data in parts.values() for label in data["label"]})
    if all(isinstance(label, int) for data in parts.values() for label in data["label"]):
        return parts
    ids = {label: i for i, label in enumerate(labels)}
    return {split: data.remove_columns("label").add_column("label", [ids[str(x)] for x in data["label"]])
            for split, data in parts.items()}


def _sample_split(data, n: int, seed: int):
    """`n` of a split's items, drawn once with `seed` (the same items for every model), in file order.
    Retrieval samples its queries; the corpus stays whole."""
    import numpy as np

    items = data["queries"] if isinstance(data, dict) else data
    if n >= len(items):
        return data
    chosen = items.select(sorted(np.random.default_rng(seed).choice(len(items), n, replace=False).tolist()))
    if not isinstance(data, dict):
        return chosen
    return {**data, "queries": chosen,
            "relevant_docs": {q: data["relevant_docs"][q] for q in chosen["id"] if q in data["relevant_docs"]}}


def load_local_task(folder: str | Path, subsample: int | None = None, seed: int = 0):
    """An mteb task (real class where `mteb_task` names one) with its data read from `folder`.

    `subsample`: keep that many items of each evaluation split (STS/pair/classification rows, retrieval
    queries), a seeded draw; the task then carries `subsample` so its results are kept apart."""
    from datasets import DatasetDict

    folder = Path(folder)
    spec = lf.read_task_json(folder)
    subsets = _subsets(spec, folder)
    if spec.get("mteb_task"):
        task = _real_task(spec, folder, subsets)
    else:
        cls = type(f"Local{spec['type']}Task", (_abstask_class(spec["type"]),), {
            "metadata": _generic_metadata(spec, folder, subsets)})
        task = cls()
    splits = list(task.eval_splits)
    if spec["type"] == "Classification":
        splits = [task.train_split] + [s for s in splits if s != task.train_split]
    dataset = {}
    for subset in subsets:
        parts = {split: _read_split(task, spec, folder, split, subset) for split in splits}
        if subsample:  # evaluation splits only: a classifier still trains on the whole train split
            parts = {split: data if spec["type"] == "Classification" and split == task.train_split
                     else _sample_split(data, subsample, seed) for split, data in parts.items()}
        if spec["type"] == "Classification":
            parts = _labels_to_ids(parts)
        dataset[subset] = parts if spec["type"] == "Retrieval" else DatasetDict(parts)
    task.dataset = dataset
    task.data_loaded = True  # mteb must not try to download it
    task.local_folder = folder
    task.subsample = subsample
    return task


def is_local_task(ref: str) -> bool:
    """A task reference that is a folder (or looks like a path) rather than an MTEB name."""
    return Path(ref).is_dir() or "/" in ref or ref.startswith(".")
