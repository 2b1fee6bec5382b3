"""One evaluation job from its composed config: the tasks (in this process or spread over workers,
eval/parallel.py), the summary and the run record; the encoder and instruction policy come from
eval/inputs.py. `embedforge-evaluate` parses and calls `run`."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from embedforge.errors import ConfigError
from embedforge.eval.inputs import encoder_for_evaluation, instruction_policy

log = logging.getLogger("embedforge.evaluate")


def run(cfg: DictConfig) -> Path:
    """Run the configured evaluation; return the path of its machine-readable summary."""
    mode = cfg.eval.get("mode", "mteb")
    if mode not in ("mteb", "passkey"):
        raise ConfigError(f"eval.mode: unknown mode {mode!r} (expected mteb or passkey)")
    instruction_policy(cfg)  # config errors before the (slow) model load
    truncate_dim = cfg.eval.get("truncate_dim")
    if truncate_dim is not None and (not isinstance(truncate_dim, int) or truncate_dim <= 0):
        raise ConfigError(f"eval.truncate_dim: must be a positive integer or null, got {truncate_dim!r}")
    if cfg.get("torch_threads"):
        import torch

        torch.set_num_threads(int(cfg.torch_threads))
    from embedforge.eval.parallel import resolve_workers

    workers = resolve_workers(cfg.eval.get("workers"), cfg.get("device"))
    if workers > 1 and mode == "mteb":
        return run_in_workers(cfg, workers)
    encoder = encoder_for_evaluation(cfg)
    policy = instruction_policy(cfg, encoder.trained_with)
    if encoder.trained_with.get("instruction_mode"):
        log.info("instructions: mode=%s (encoder trained with %s)", policy.mode, encoder.trained_with["instruction_mode"])
    if cfg.get("seed") is not None:
        import torch

        torch.manual_seed(int(cfg.seed))
    if mode == "passkey":
        from embedforge.eval.passkey import run_passkey

        return run_passkey(encoder, cfg.eval, out_dir=Path(hydra.utils.to_absolute_path(cfg.output_dir)),
                           template=policy.template, mode=policy.mode)
    from embedforge.eval.results import write_summary
    from embedforge.eval.runner import resolve_tasks, run_tasks

    data_dir = cfg.eval.get("data_dir")
    tasks = resolve_tasks(list(cfg.eval.tasks) if cfg.eval.get("tasks") else None, benchmark=cfg.eval.get("benchmark"),
                          data_dir=hydra.utils.to_absolute_path(data_dir) if data_dir else None)
    out = run_tasks(encoder, tasks, policy=policy, out_dir=hydra.utils.to_absolute_path(cfg.output_dir),
                    batch_size=int(cfg.eval.batch_size), max_length=int(cfg.eval.max_length), truncate_dim=truncate_dim,
                    save_item_scores=bool(cfg.eval.get("save_item_scores", False)))
    summary = write_summary(out.out_dir, out.results, out.tasks, extra={"seconds": round(out.seconds, 1)})
    print((out.out_dir / "summary.md").read_text(encoding="utf-8"))
    log.info("evaluated %d tasks in %.0f s", len(tasks), out.seconds)
    record_evaluation(cfg, encoder.describe(), encoder.trained_with, vars(policy), summary, out.seconds,
                      out.item_scores)
    return summary


def run_in_workers(cfg: DictConfig, workers: int) -> Path:
    """The tasks spread over `workers` processes (eval.workers; one per GPU with `auto`)."""
    from embedforge.eval.parallel import evaluate_in_workers
    from embedforge.eval.results import write_summary
    from embedforge.eval.runner import resolve_tasks

    cfg = cfg.copy()
    cfg.output_dir = hydra.utils.to_absolute_path(cfg.output_dir)
    if cfg.get("checkpoint"):
        cfg.checkpoint = hydra.utils.to_absolute_path(str(cfg.checkpoint))
    data_dir = cfg.eval.get("data_dir")
    data_dir = hydra.utils.to_absolute_path(data_dir) if data_dir else None
    tasks = resolve_tasks(list(cfg.eval.tasks) if cfg.eval.get("tasks") else None, benchmark=cfg.eval.get("benchmark"),
                          data_dir=data_dir)
    out = evaluate_in_workers(cfg, tasks, workers, data_dir)
    summary = write_summary(out["out_dir"], out["results"], tasks, extra={"seconds": round(out["seconds"], 1),
                                                                          "workers": workers})
    print((out["out_dir"] / "summary.md").read_text(encoding="utf-8"))
    log.info("evaluated %d tasks on %d workers in %.0f s", len(tasks), workers, out["seconds"])
    record_evaluation(cfg, out["encoder"], out["trained_with"], out["policy"], summary, out["seconds"],
                      out["item_scores"])
    return summary


def record_evaluation(cfg: DictConfig, described: dict, trained_with: dict, policy: dict, summary: Path,
                      seconds: float, item_scores: dict | None = None) -> Path | None:
    """The evaluation's run record, in the run's own folder (`record_dir`, by default Hydra's run folder).
    `item_scores` (eval.save_item_scores): per task, what report/bootstrap.py resamples."""
    import json

    from embedforge.run_record import build_run_record, redact, write_run_record

    folder = cfg.get("record_dir")
    if not folder:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return None  # called as a library function: the results folder is the record
        folder = HydraConfig.get().runtime.output_dir
    record = build_run_record(
        "evaluate", run_id=f"evaluate/{Path(folder).name}", evaluated=trained_with.get("run_id"),
        encoder=described, instructions=policy, results=json.loads(summary.read_text()),
        results_dir=str(summary.parent), wall_time_s=round(seconds, 1), item_scores=item_scores or None,
        config=redact(OmegaConf.to_container(cfg, resolve=True)))
    return write_run_record(folder, record)
