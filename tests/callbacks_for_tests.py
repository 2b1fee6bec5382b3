"""Callbacks used by tests inside Lightning runs and spawned workers (importable by module name)."""

from pathlib import Path

import pytorch_lightning as pl
import torch


class DumpFirstStep(pl.Callback):
    """Saves, per rank, the first batch, its local loss and the (already all-reduced) gradients."""

    def __init__(self, folder: str):
        self.folder = Path(folder)
        self._batch = None
        self._loss = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._batch = {k: v.clone() if torch.is_tensor(v) else v for k, v in batch.items()}

    def on_before_backward(self, trainer, pl_module, loss):
        self._loss = loss.detach().clone()

    def on_after_backward(self, trainer, pl_module):
        if trainer.global_step != 0:
            return
        grads = {n: p.grad.detach().clone() for n, p in pl_module.named_parameters() if p.requires_grad}
        torch.save({"batch": self._batch, "loss": self._loss, "grads": grads},
                   self.folder / f"rank{trainer.global_rank}.pt")


class RecordSteps(pl.Callback):
    """Writes the global step at which training started and how many batches this run trained."""

    def __init__(self, path: str):
        self.path = path
        self.first_step = None
        self.batches = 0

    def on_train_start(self, trainer, pl_module):
        self.first_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.batches += 1

    def on_train_end(self, trainer, pl_module):
        import json

        Path(self.path).write_text(json.dumps({"first_step": self.first_step, "batches": self.batches}))


class StopAfterSteps(pl.Callback):
    """Interrupts a run after `steps` optimiser steps, as a pre-empted job would be."""

    def __init__(self, steps: int):
        self.steps = steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.steps:
            trainer.should_stop = True


class RecordQueries(pl.Callback):
    """Appends, per trained batch, the token ids of its queries (one JSON line per batch, per rank)."""

    def __init__(self, path: str):
        self.path = path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        import json

        rows = [row[mask.bool()].tolist() for row, mask in zip(batch["query_input_ids"], batch["query_attention_mask"])]
        with open(f"{self.path}.rank{trainer.global_rank}", "a") as fh:
            fh.write(json.dumps({"step": trainer.global_step, "queries": rows}) + "\n")


class KillAtStep(pl.Callback):
    """SIGKILLs its own process at the start of the batch after `step` optimiser steps, as an OOM
    killer or a lost node would: no hook, no clean-up, only what is on disk survives."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        import os
        import signal

        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class SignalAtStep(pl.Callback):
    """Sends its own process a signal (default SIGUSR1) once, at the start of the batch after `step`
    optimiser steps, as a cluster does some time before it pre-empts a job."""

    def __init__(self, step: int, signal_name: str = "SIGUSR1"):
        self.step = step
        self.signal_name = signal_name
        self.sent = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        import os
        import signal

        if not self.sent and trainer.global_step >= self.step:
            self.sent = True
            os.kill(os.getpid(), getattr(signal, self.signal_name))
