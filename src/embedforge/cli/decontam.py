"""`embedforge-decontam`: how much of the evaluation sets the training records contain (docs/decontam.md).

Config errors and unreadable eval tasks stop the run with one line naming the key or file, and exit
code 2. Bad training lines never stop it: each is a `file:line: reason`, counted in the report.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

import embedforge.paths
from embedforge.cli.errors import one_line_errors

log = logging.getLogger("embedforge.decontam")


def _abs(value) -> Path:
    return Path(hydra.utils.to_absolute_path(str(value)))


def build_eval_items(cfg: DictConfig):
    from embedforge.decontam.eval_side import EvalItems, EvalSideError, add_local_task, add_mteb_task, local_task_folders

    ev = cfg.eval
    data_dir = _abs(ev.data_dir) if ev.get("data_dir") else None
    tasks = [str(t) for t in ev.tasks] if ev.get("tasks") else None
    mteb_tasks = [str(t) for t in (ev.get("mteb_tasks") or [])]
    if data_dir is None and not tasks and not mteb_tasks:
        raise EvalSideError("eval: nothing to compare with (set eval.data_dir, eval.tasks or eval.mteb_tasks)")
    splits = [str(s) for s in ev.splits] if ev.get("splits") else None
    items = EvalItems()
    folders = local_task_folders(data_dir, tasks) if (data_dir or tasks) else []
    for folder in folders:
        add_local_task(items, folder if folder.is_absolute() else _abs(folder), splits, bool(ev.include_corpus))
    for name in mteb_tasks:
        add_mteb_task(items, name, bool(ev.include_corpus))
    if not items.texts:
        raise EvalSideError("eval: the selected tasks hold no texts")
    return items


def run(cfg: DictConfig) -> dict:
    from embedforge.decontam.check import CheckSettings, EvalIndex, run_check
    from embedforge.decontam.report import print_table, summarise, write_json
    from embedforge.decontam.train_side import TrainSideError, check_fields, expand_paths

    if OmegaConf.is_missing(cfg, "train"):
        raise TrainSideError("train: required (e.g. 'train=[data/demo/train/*.jsonl]')")
    patterns = [cfg.train] if isinstance(cfg.train, str) else list(cfg.train)
    paths = expand_paths([hydra.utils.to_absolute_path(str(p)) for p in patterns])
    fields = [str(f) for f in cfg.fields]
    check_fields(fields)
    settings = CheckSettings(n=int(cfg.ngram.n), threshold=float(cfg.ngram.threshold),
                             chunk_size=int(cfg.chunk_size), max_listed_matches=int(cfg.max_listed_matches))
    settings.check()
    start = time.perf_counter()
    items = build_eval_items(cfg)
    index = EvalIndex(items, settings.n)
    log.info("eval index: %d items in %d (task, part) groups, %d distinct %d-grams, %.1f s", len(items.texts),
             len(items.groups), len(index.ngrams.keys), settings.n, time.perf_counter() - start)
    clean_dir = _abs(cfg.clean_dir) if cfg.get("clean_dir") else None
    result = run_check(index, paths, fields, settings, clean_dir)
    for problem in result.errors[:20]:
        log.warning("bad training line: %s", problem)
    summary = summarise(items, result, settings, paths, fields)
    out = write_json(summary, _abs(cfg.output))
    print_table(summary)
    print(out)
    return summary


@hydra.main(config_path=str(embedforge.paths.CONF_DIR), config_name="decontam", version_base="1.3")
@one_line_errors("decontam")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
