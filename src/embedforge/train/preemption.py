"""Checkpoint and stop cleanly when the job is told it will be pre-empted (SIGTERM, SIGUSR1).

Clusters send a signal some time before they kill a job (SLURM: `--signal=USR1@120`, or SIGTERM
on cancellation; Kubernetes: SIGTERM). The handler only sets a flag; at the end of the current batch
the callback writes `last.ckpt` (weights, optimiser, RNG and the data position, so `ckpt_path=last`
continues at the next unseen batch) and stops the trainer. Under SLURM, Lightning's own
SLURMEnvironment(auto_requeue=True) also requeues the job; this callback covers every launcher.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import pytorch_lightning as pl

log = logging.getLogger(__name__)


class PreemptionCheckpoint(pl.Callback):
    def __init__(self, dirpath: str, signals: tuple[str, ...] = ("SIGTERM", "SIGUSR1"), filename: str = "last.ckpt"):
        self.path = Path(dirpath) / filename
        self.signals = tuple(signals)
        self.requested: str | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        self.requested = signal.Signals(signum).name

    def on_train_start(self, trainer, pl_module) -> None:
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
        self.requested = self.requested or "a signal on another rank"
        trainer.save_checkpoint(str(self.path))
        log.warning("%s received: checkpoint written to %s at step %d; stopping (resume with ckpt_path=last)",
                    self.requested, self.path, trainer.global_step)
        trainer.should_stop = True

    def on_train_end(self, trainer, pl_module) -> None:
        for name, previous in self._previous.items():
            signal.signal(getattr(signal, name), previous)
        self._previous.clear()
