"""Spread a benchmark's tasks over several devices: one process per GPU (or per CPU share), each
loading the encoder once and evaluating its share of the tasks into the same results folder.

The paper's 56-task evaluation took about 3 days on 8 V100s; tasks are independent, so the wall
time falls with the number of devices. `eval.workers`: 1 (default), N, or `auto` (every visible GPU).
Results are the same as a single process's: every worker writes mteb's own per-task JSON to the one
folder keyed by the encoder's fingerprint, and the parent writes the summary from those files.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from embedforge.eval.settings import EvaluateJob


def resolve_workers(value: int | str, device: str | None) -> int:
    """`eval.workers` (a positive integer or auto, checked by eval/settings.py) as a number of processes."""
    if value == "auto":
        on_gpu = device in (None, "auto") or str(device).startswith("cuda")
        return max(1, torch.cuda.device_count()) if on_gpu else 1
    return int(value)


def split_round_robin(names: list[str], workers: int) -> list[list[str]]:
    return [names[i::workers] for i in range(workers) if names[i::workers]]


def _worker(rank: int, dumped: dict, groups: list[list[str]], data_dir: str | None, report: str) -> None:
    from embedforge.eval.inputs import encoder_for_evaluation, instruction_policy
    from embedforge.eval.runner import resolve_tasks, run_tasks

    job = EvaluateJob.from_dump(dumped)  # typed settings cross the process boundary as plain data
    settings, ev = job.settings, job.settings.eval
    device = None
    if torch.cuda.is_available() and settings.device in ("auto", "cuda"):
        device = f"cuda:{rank % torch.cuda.device_count()}"
    else:  # CPU workers share the cores instead of each taking all of them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // len(groups)))
    if settings.seed is not None:
        torch.manual_seed(settings.seed)
    encoder = encoder_for_evaluation(job, device)
    policy = instruction_policy(job, encoder.trained_with)
    tasks = resolve_tasks(groups[rank], data_dir=data_dir, subsample=ev.subsample)
    out = run_tasks(encoder, tasks, policy=policy, out_dir=settings.output_dir, batch_size=ev.batch_size,
                    max_length=ev.max_length, truncate_dim=ev.truncate_dim, save_item_scores=ev.save_item_scores)
    Path(f"{report}.{rank}").write_text(json.dumps({
        "out_dir": str(out.out_dir), "seconds": out.seconds, "tasks": groups[rank], "encoder": encoder.describe(),
        "trained_with": encoder.trained_with, "policy": vars(policy), "item_scores": out.item_scores}, default=str))


def evaluate_in_workers(job: EvaluateJob, tasks: list, workers: int, data_dir: str | None) -> dict:
    """Run `tasks` over `workers` processes; returns {out_dir, results, seconds, item_scores, encoder, trained_with, policy}."""
    import mteb
    import torch.multiprocessing as mp

    names = [t.metadata.name for t in tasks]
    groups = split_round_robin(names, workers)
    dumped = job.dump()
    with tempfile.TemporaryDirectory(prefix="embedforge-eval-") as tmp:
        report = str(Path(tmp) / "worker")
        mp.spawn(_worker, args=(dumped, groups, data_dir, report), nprocs=len(groups), join=True)
        outputs = [json.loads(Path(f"{report}.{rank}").read_text()) for rank in range(len(groups))]
    folders = {o["out_dir"] for o in outputs}
    if len(folders) != 1:
        raise RuntimeError(f"eval workers wrote to different result folders {sorted(folders)}: the encoder differed")
    out_dir = Path(folders.pop())
    results = [mteb.TaskResult.from_disk(out_dir / f"{name}.json") for name in names]
    items = {task: found for o in outputs for task, found in o["item_scores"].items()}
    return {"out_dir": out_dir, "results": results, "seconds": max(o["seconds"] for o in outputs), "item_scores": items,
            "encoder": outputs[0]["encoder"], "trained_with": outputs[0]["trained_with"], "policy": outputs[0]["policy"]}
