"""One `embedforge-decontam` run from its typed settings (decontam/settings.py): index the evaluation
side, stream the training side, write the JSON report (and the cleaned copy). The CLI binds, calls, prints."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra

from embedforge.decontam.check import EvalIndex, run_check
from embedforge.decontam.eval_side import EvalItems, EvalSideError, add_local_task, add_mteb_task, local_task_folders
from embedforge.decontam.report import summarise, write_json
from embedforge.decontam.settings import DecontamSettings, EvalGroup
from embedforge.decontam.train_side import expand_paths

log = logging.getLogger("embedforge.decontam")


def build_eval_items(ev: EvalGroup) -> EvalItems:
    """Every text of the selected evaluation tasks (local folders, then mteb tasks)."""
    data_dir = Path(ev.data_dir) if ev.data_dir else None
    if data_dir is None and not ev.tasks and not ev.mteb_tasks:  # after the training files are found, as before
        raise EvalSideError("eval: nothing to compare with (set eval.data_dir, eval.tasks or eval.mteb_tasks)")
    items = EvalItems()
    folders = local_task_folders(data_dir, ev.tasks or None) if (data_dir or ev.tasks) else []
    for folder in folders:
        add_local_task(items, folder if folder.is_absolute() else Path(hydra.utils.to_absolute_path(str(folder))),
                       ev.splits or None, ev.include_corpus)
    for name in ev.mteb_tasks:
        add_mteb_task(items, name, ev.include_corpus)
    if not items.texts:
        raise EvalSideError("eval: the selected tasks hold no texts")
    return items


def run(settings: DecontamSettings) -> tuple[dict, Path]:
    """The check; returns the summary and the path of the JSON report written."""
    paths = expand_paths(settings.train)
    check = settings.check_settings()
    start = time.perf_counter()
    items = build_eval_items(settings.eval)
    index = EvalIndex(items, check.n)
    log.info("eval index: %d items in %d (task, part) groups, %d distinct %d-grams, %.1f s", len(items.texts),
             len(items.groups), len(index.ngrams.keys), check.n, time.perf_counter() - start)
    clean_dir = Path(settings.clean_dir) if settings.clean_dir else None
    result = run_check(index, paths, list(settings.fields), check, clean_dir)
    for problem in result.errors[:20]:
        log.warning("bad training line: %s", problem)
    summary = summarise(items, result, check, paths, list(settings.fields))
    return summary, write_json(summary, Path(settings.output))
