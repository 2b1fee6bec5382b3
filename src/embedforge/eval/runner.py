"""Resolve task references (local folders, MTEB names, a benchmark) and run them through mteb.

mteb's own result cache is disabled: results go to a folder keyed by a fingerprint of the
encoder's weights and the evaluation settings, and every run recomputes, so a changed checkpoint
can never be served stale scores.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from embedforge.errors import ConfigError
from embedforge.eval.instructions import InstructionPolicy
from embedforge.eval.local_files import read_task_json
from embedforge.eval.local_tasks import is_local_task, load_local_task
from embedforge.eval.mteb_model import EmbedforgeMTEBModel, encoder_fingerprint, model_slug
from embedforge.eval.results import main_score

log = logging.getLogger(__name__)


class TaskResolutionError(ConfigError):
    """A task reference could not be resolved; the message names it and the config key."""


def _local_index(data_dir: Path | None) -> dict[str, Path]:
    """{task name: folder} for every task folder under data_dir (by folder name and by mteb_task)."""
    if data_dir is None:
        return {}
    if not data_dir.is_dir():
        raise TaskResolutionError(f"eval.data_dir: folder not found: {data_dir}")
    index = {}
    for folder in sorted(p for p in data_dir.iterdir() if (p / "task.json").is_file()):
        index[folder.name] = folder
        name = read_task_json(folder).get("mteb_task")
        if name:
            index.setdefault(name, folder)
    return index


def _mteb_task(name: str, key: str):
    import mteb

    try:
        return mteb.get_task(name)
    except Exception as exc:
        raise TaskResolutionError(f"{key}: unknown task {name!r}: not a folder and not an MTEB task ({exc})") from None


def resolve_tasks(tasks: list[str] | None = None, benchmark: str | None = None,
                  data_dir: str | Path | None = None, subsample: dict[str, int] | None = None,
                  key: str = "eval") -> list:
    """Tasks to run, data loaded where a local folder provides it.

    - `tasks`: folder names under data_dir, folder paths, or MTEB task names.
    - `benchmark`: an MTEB benchmark name (e.g. "MTEB(eng, v1)"); its tasks use the local folder of
      the same name where data_dir has one, else mteb's own loader.
    - neither: every task folder under data_dir.
    - `subsample`: {task reference or MTEB name: items kept} for local folders (a seeded draw); `key`
      names the config group in errors.
    """
    import mteb

    data_dir = Path(data_dir).expanduser() if data_dir else None
    index = _local_index(data_dir)
    refs: list[str] = list(tasks or [])
    subsample = dict(subsample or {})
    resolved = []
    used: set[str] = set()  # subsample keys that named a task run

    def local(ref: str, folder: Path):
        n = next((subsample[k] for k in (ref, folder.name, read_task_json(folder).get("mteb_task")) if k in subsample), None)
        task = load_local_task(folder, subsample=n)
        if n:
            used.update({ref, folder.name, task.metadata.name})
        return task

    if benchmark:
        try:
            bench = mteb.get_benchmark(benchmark)
        except Exception as exc:
            raise TaskResolutionError(f"eval.benchmark: unknown MTEB benchmark {benchmark!r} ({exc})") from None
        for task in bench.tasks:
            folder = index.get(task.metadata.name)
            resolved.append(local(task.metadata.name, folder) if folder else task)
    if not refs and not benchmark:
        if not index:
            raise TaskResolutionError("eval.tasks is empty and eval.data_dir holds no task folders: nothing to run")
        refs = sorted({str(p) for p in index.values()})
    for ref in refs:
        if ref in index:
            resolved.append(local(ref, index[ref]))
        elif is_local_task(ref):
            resolved.append(local(ref, Path(ref).expanduser()))
        else:
            resolved.append(_mteb_task(ref, f"{key}.tasks"))
    unused = sorted(set(subsample) - used)
    if unused:  # a sample of a task that is not run, or that mteb downloads, would silently be the whole task
        raise TaskResolutionError(f"{key}.subsample.{unused[0]}: not a local task folder among the tasks run "
                                  f"(subsampling needs the data read from a folder)")
    return resolved


def _check_downloadable(tasks: list) -> None:
    """Fail before any encoding when a task needs mteb's download but the hub is switched off."""
    offline = any(os.environ.get(k) == "1" for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    missing = [t.metadata.name for t in tasks if not t.data_loaded]
    if offline and missing:
        raise TaskResolutionError(
            f"eval.tasks: {len(missing)} task(s) have no local folder and need mteb's download, but "
            f"HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}. "
            "Put them under eval.data_dir in the local format, or run with the hub reachable.")


def settings_key(policy: InstructionPolicy, max_length: int, truncate_dim: int | None = None,
                 subsample: dict[str, int] | None = None) -> str:
    key = [vars(policy), max_length] + ([truncate_dim] if truncate_dim else [])  # old keys stay valid
    key += [subsample] if subsample else []  # a sampled task's results never overwrite the whole task's
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]


@dataclass
class RunOutput:
    out_dir: Path
    results: list
    tasks: list
    seconds: float
    item_scores: dict = field(default_factory=dict)  # task -> eval/item_scores.py items (save_item_scores)


def run_tasks(encoder, tasks: list, *, policy: InstructionPolicy, out_dir: str | Path | None = None,
              batch_size: int = 32, max_length: int = 512, model: EmbedforgeMTEBModel | None = None,
              truncate_dim: int | None = None, save_item_scores: bool = False) -> RunOutput:
    """Evaluate `encoder` on `tasks` with mteb's evaluators; write one mteb results JSON per task.

    Output: `<out_dir>/<model>/<weights fingerprint>-<settings key>/<Task>.json` (mteb's format).
    `save_item_scores`: also keep each task's per-item scores (eval/item_scores.py), from mteb's
    predictions (written under `<that folder>/predictions/`, or a temporary folder without out_dir).
    """
    import tempfile

    import mteb

    from embedforge.eval.item_scores import item_scores

    _check_downloadable(tasks)
    if model is None:
        sampled = {t.metadata.name: t.subsample for t in tasks if getattr(t, "subsample", None)}
        revision = f"{encoder_fingerprint(encoder)}-{settings_key(policy, max_length, truncate_dim, sampled)}"
        model = EmbedforgeMTEBModel(encoder, policy, max_length=max_length, batch_size=batch_size, revision=revision,
                                    truncate_dim=truncate_dim)
    folder = None
    if out_dir is not None:
        folder = Path(out_dir) / model_slug(encoder) / model.mteb_model_meta.revision
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"encoder": encoder.describe(), "instructions": vars(policy), "max_length": model.max_length,
                "truncate_dim": model.truncate_dim,
                "batch_size": batch_size, "mteb_version": mteb.__version__}
        (folder / "model_meta.json").write_text(json.dumps(meta, indent=2, default=str))
    start, results, items = time.perf_counter(), [], {}
    with tempfile.TemporaryDirectory(prefix="embedforge-predictions-") as tmp:
        predictions = None
        if save_item_scores:
            predictions = folder / "predictions" if folder is not None else Path(tmp)
            predictions.mkdir(parents=True, exist_ok=True)
        for task in tasks:
            t0 = time.perf_counter()
            out = mteb.evaluate(model, task, cache=None, overwrite_strategy="always", co2_tracker=False,
                                encode_kwargs={"batch_size": batch_size}, show_progress_bar=False, raise_error=True,
                                prediction_folder=predictions)
            result = out.task_results[0]
            results.append(result)
            log.info("%s: %.2f (%.0f s)", task.metadata.name, main_score(result), time.perf_counter() - t0)
            if folder is not None:
                result.to_disk(folder / f"{task.metadata.name}.json")
            if predictions is not None:
                # mteb documents this file name for prediction_folder
                found = item_scores(task, predictions / f"{task.metadata.name}_predictions.json")
                if found is not None:
                    items[task.metadata.name] = found
    return RunOutput(out_dir=folder, results=results, tasks=tasks, seconds=time.perf_counter() - start,
                     item_scores=items)
