"""Checkpoint and stop cleanly when the job is told it will be pre-empted (SIGTERM, SIGUSR1).

Clusters send a signal some time before they kill a job (SLURM: `--signal=USR1@120`, or SIGTERM
on cancellation; Kubernetes: SIGTERM). The handler only sets a flag; at the end of the current batch
the callback writes `last.ckpt` (weights, optimiser, RNG and the data position, so `ckpt_path=last`
continues at the next unseen batch) and stops the trainer. Any rank's signal stops all ranks: the
decision is reduced across ranks, since saving is a collective call.

Under SLURM (Lightning's SLURMEnvironment with auto_requeue) the requeue signal (SIGUSR1) also
requeues the job: rank 0 runs `scontrol requeue $SLURM_JOB_ID` once the checkpoint is on disk.
This replaces Lightning's own SIGUSR1 handler, which saves inside the signal handler, on the
signalled rank alone: under DDP that is a collective call out of step with the other ranks.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from pathlib import Path

import pytorch_lightning as pl
from lightning_fabric.plugins.environments import SLURMEnvironment

log = logging.getLogger(__name__)


def slurm_requeue_signal(trainer) -> str | None:
    """The signal name on which Lightning's SLURM support would requeue this job; None if it would not."""
    environment = getattr(trainer._accelerator_connector, "cluster_environment", None)
    if isinstance(environment, SLURMEnvironment) and environment.auto_requeue and environment.requeue_signal:
        return signal.Signals(environment.requeue_signal).name
    return None


def requeue_slurm_job(env=os.environ) -> int:
    """`scontrol requeue <job>` (array tasks as <array job>_<task>); returns its exit status."""
    job = (f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}" if env.get("SLURM_ARRAY_JOB_ID")
           else env["SLURM_JOB_ID"])
    try:
        result = subprocess.run(["scontrol", "requeue", job], check=False).returncode
    except FileNotFoundError:
        log.error("scontrol not found: SLURM job %s not requeued", job)
        return 127
    if result == 0:
        log.warning("SLURM job %s requeued", job)
    else:
        log.error("scontrol requeue %s failed with status %d", job, result)
    return result


class PreemptionCheckpoint(pl.Callback):
    def __init__(self, dirpath: str, signals: tuple[str, ...] = ("SIGTERM", "SIGUSR1"), filename: str = "last.ckpt"):
        self.path = Path(dirpath) / filename
        self.signals = tuple(signals)
        self.requested: str | None = None
        self.requeued: bool = False
        self.stopped_at_step: int | None = None
        self._requeue_signal: str | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        self.requested = signal.Signals(signum).name

    def on_train_start(self, trainer, pl_module) -> None:
        self._requeue_signal = slurm_requeue_signal(trainer)
        for name in self.signals:
            if hasattr(signal, name):
                try:
                    self._previous[name] = signal.signal(getattr(signal, name), self._handle)
                except ValueError:  # not the main thread (e.g. some launchers): cannot install handlers
                    log.warning("PreemptionCheckpoint: cannot handle %s outside the main thread", name)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # Collective: if any rank was signalled, all ranks save (save_checkpoint is a collective call).
        if not trainer.strategy.reduce_boolean_decision(self.requested is not None, all=False):
            return
        requeue = self._requeue_signal is not None and trainer.strategy.reduce_boolean_decision(
            self.requested == self._requeue_signal, all=False)
        self.requested = self.requested or "a signal on another rank"
        trainer.save_checkpoint(str(self.path))
        self.stopped_at_step = trainer.global_step
        log.warning("%s received: checkpoint written to %s at step %d; stopping (resume with ckpt_path=last)",
                    self.requested, self.path, trainer.global_step)
        if requeue and trainer.is_global_zero:  # after the save: the requeued job must find the checkpoint
            self.requeued = requeue_slurm_job() == 0
        trainer.should_stop = True

    def on_train_end(self, trainer, pl_module) -> None:
        for name, previous in self._previous.items():
            signal.signal(getattr(signal, name), previous)
        self._previous.clear()
