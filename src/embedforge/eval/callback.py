"""In-training evaluation: a small set of MTEB / local tasks every N steps and at the end of training.

Logs `val/<task>/<main_score>` (x 100). Tasks are resolved and their data loaded once, at fit start.
Only global rank 0 evaluates (the others would repeat the same work); the LightningModule must
expose the model as `pl_module.encoder`. Meanwhile the other ranks wait at a barrier of a CPU (gloo)
process group with a long timeout (`wait_timeout_s`), not at the next NCCL collective, whose
timeout (30 min by default) a 7B model on a long task can exceed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from embedforge.errors import ConfigError
from embedforge.eval.instructions import InstructionPolicy
from embedforge.eval.results import main_score

log = logging.getLogger(__name__)


class MTEBEvalCallback(pl.Callback):
    def __init__(self, tasks: list[str], every_n_steps: int = 500, data_dir: str | None = None,
                 batch_size: int = 32, max_length: int = 512, instructions: dict[str, Any] | None = None,
                 at_train_end: bool = True, out_dir: str | None = None, wait_timeout_s: float = 6 * 3600,
                 subsample: dict[str, int] | None = None):
        if not tasks:
            raise ConfigError("callbacks.mteb_eval.tasks: give at least one task (folder or MTEB name)")
        if every_n_steps is not None and int(every_n_steps) < 0:
            raise ConfigError(f"callbacks.mteb_eval.every_n_steps must be >= 0 (0 = only at the end), got {every_n_steps}")
        self.task_refs = list(tasks)
        self.subsample = dict(subsample or {})
        self.every_n_steps = int(every_n_steps or 0)
        self.data_dir = data_dir
        self.batch_size = batch_size
        self.max_length = max_length
        self.policy = InstructionPolicy.from_config(instructions) if instructions else InstructionPolicy.default()
        self.at_train_end = at_train_end
        self.out_dir = out_dir
        self.wait_timeout_s = float(wait_timeout_s)
        self._wait_group = None
        self._tasks: list | None = None
        self._last_step = -1
        self.history: list[tuple[int, dict[str, float]]] = []

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self._tasks is None and trainer.is_global_zero:
            from embedforge.eval.runner import resolve_tasks

            self._tasks = resolve_tasks(self.task_refs, data_dir=self.data_dir, subsample=self.subsample,
                                        key="callbacks.mteb_eval")
        if trainer.world_size > 1 and self._wait_group is None:
            import datetime

            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():  # every rank creates the group (a collective)
                self._wait_group = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=self.wait_timeout_s))

    def _evaluate_on_rank_zero(self, trainer, pl_module, step: int) -> dict[str, float]:
        metrics = self.evaluate(pl_module, step) if trainer.is_global_zero else {}
        if self._wait_group is not None:
            import torch.distributed as dist

            dist.barrier(group=self._wait_group)  # the other ranks wait here, on the CPU, for rank 0
        return metrics

    def evaluate(self, pl_module, step: int) -> dict[str, float]:
        """{`val/<task>/<main_score>`: score x 100} for the module's encoder as it is now."""
        from embedforge.eval.runner import run_tasks

        out_dir = Path(self.out_dir) / f"step{step}" if self.out_dir else None
        out = run_tasks(pl_module.encoder, self._tasks, policy=self.policy, out_dir=out_dir,
                        batch_size=self.batch_size, max_length=self.max_length)
        metrics = {f"val/{t.metadata.name}/{t.metadata.main_score}": main_score(r)
                   for r, t in zip(out.results, out.tasks)}
        self.history.append((step, metrics))
        self._last_step = step
        log.info("step %d: %s (%.0f s)", step, metrics, out.seconds)
        return metrics

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if not self.every_n_steps or step == 0 or step % self.every_n_steps or step == self._last_step:
            return
        self._last_step = step
        for name, value in self._evaluate_on_rank_zero(trainer, pl_module, step).items():
            pl_module.log(name, value, on_step=True, on_epoch=False, rank_zero_only=True)

    def on_train_end(self, trainer, pl_module) -> None:
        # self.log is not allowed in on_train_end, so the final scores go to the loggers directly.
        step = trainer.global_step
        if not self.at_train_end or step == self._last_step:
            return
        self._last_step = step
        metrics = self._evaluate_on_rank_zero(trainer, pl_module, step)
        for logger in trainer.loggers if trainer.is_global_zero else []:
            logger.log_metrics(metrics, step=step)
