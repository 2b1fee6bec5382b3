"""One evaluation job from its typed settings (eval/settings.py): the tasks (in this process or spread
over workers, eval/parallel.py), the summary and the run record; the encoder and instruction policy come
from eval/inputs.py. `embedforge-evaluate` binds the config and calls `run`."""

from __future__ import annotations

import logging
from pathlib import Path

from embedforge.eval.inputs import encoder_for_evaluation, instruction_policy
from embedforge.eval.settings import EvaluateJob, PasskeyEval

log = logging.getLogger("embedforge.evaluate")


def run(job: EvaluateJob) -> Path:
    """Run the evaluation; return the path of its machine-readable summary."""
    settings, ev = job.settings, job.settings.eval
    instruction_policy(job)  # config errors before the (slow) model load
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    from embedforge.eval.parallel import resolve_workers

    workers = 1 if isinstance(ev, PasskeyEval) else resolve_workers(ev.workers, settings.device)
    if workers > 1:
        return run_in_workers(job, workers)
    encoder = encoder_for_evaluation(job)
    policy = instruction_policy(job, encoder.trained_with)
    if encoder.trained_with.get("instruction_mode"):
        log.info("instructions: mode=%s (encoder trained with %s)", policy.mode, encoder.trained_with["instruction_mode"])
    if settings.seed is not None:
        import torch

        torch.manual_seed(settings.seed)
    if isinstance(ev, PasskeyEval):
        from embedforge.eval.passkey import run_passkey

        return run_passkey(encoder, ev, out_dir=Path(settings.output_dir), template=policy.template, mode=policy.mode)
    from embedforge.eval.results import write_summary
    from embedforge.eval.runner import resolve_tasks, run_tasks

    tasks = resolve_tasks(ev.tasks, benchmark=ev.benchmark, data_dir=ev.data_dir, subsample=ev.subsample)
    out = run_tasks(encoder, tasks, policy=policy, out_dir=settings.output_dir, batch_size=ev.batch_size,
                    max_length=ev.max_length, truncate_dim=ev.truncate_dim, save_item_scores=ev.save_item_scores)
    summary = write_summary(out.out_dir, out.results, out.tasks, extra={"seconds": round(out.seconds, 1)})
    print((out.out_dir / "summary.md").read_text(encoding="utf-8"))
    log.info("evaluated %d tasks in %.0f s", len(tasks), out.seconds)
    record_evaluation(job, encoder.describe(), encoder.trained_with, vars(policy), summary, out.seconds,
                      out.item_scores)
    return summary


def run_in_workers(job: EvaluateJob, workers: int) -> Path:
    """The tasks spread over `workers` processes (eval.workers; one per GPU with `auto`)."""
    from embedforge.eval.parallel import evaluate_in_workers
    from embedforge.eval.results import write_summary
    from embedforge.eval.runner import resolve_tasks

    ev = job.settings.eval
    tasks = resolve_tasks(ev.tasks, benchmark=ev.benchmark, data_dir=ev.data_dir, subsample=ev.subsample)
    out = evaluate_in_workers(job, tasks, workers, ev.data_dir)
    summary = write_summary(out["out_dir"], out["results"], tasks, extra={"seconds": round(out["seconds"], 1),
                                                                          "workers": workers})
    print((out["out_dir"] / "summary.md").read_text(encoding="utf-8"))
    log.info("evaluated %d tasks on %d workers in %.0f s", len(tasks), workers, out["seconds"])
    record_evaluation(job, out["encoder"], out["trained_with"], out["policy"], summary, out["seconds"],
                      out["item_scores"])
    return summary


def record_evaluation(job: EvaluateJob, described: dict, trained_with: dict, policy: dict, summary: Path,
                      seconds: float, item_scores: dict | None = None) -> Path | None:
    """The evaluation's run record, in the run's own folder (`record_dir`, by default Hydra's run folder;
    none when called outside Hydra without one). `item_scores` (eval.save_item_scores): per task, what
    report/bootstrap.py resamples."""
    import json

    from embedforge.run_record import build_run_record, redact, write_run_record

    folder = job.settings.record_dir
    if not folder:
        return None  # called as a library function: the results folder is the record
    record = build_run_record(
        "evaluate", run_id=f"evaluate/{Path(folder).name}", evaluated=trained_with.get("run_id"),
        encoder=described, instructions=policy, results=json.loads(summary.read_text()),
        results_dir=str(summary.parent), wall_time_s=round(seconds, 1), item_scores=item_scores or None,
        config=redact(job.record_config()))
    return write_run_record(folder, record)
