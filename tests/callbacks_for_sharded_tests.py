"""Callbacks for runs under trainer=fsdp_sim (importable by module name in spawned workers)."""

from pathlib import Path

import pytorch_lightning as pl
import torch

from embedforge.train.module import FSDP_PREFIX


class DumpFullGradsFirstStep(pl.Callback):
    """Saves, per rank, the first batch, the loss its step returned and the full LoRA gradients of that step
    (FSDP keeps only this rank's shard of each: they are gathered here, once the step is over, as FSDP
    cannot gather inside its forward, where a GradCache step runs; nothing clears them before the next
    step, and the caller switches clipping off)."""

    def __init__(self, folder: str):
        self.folder = Path(folder)
        self._batch = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._batch = {k: v.clone() if torch.is_tensor(v) else v for k, v in batch.items()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step != 1:
            return
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        with FSDP.summon_full_params(trainer.model, with_grads=True, writeback=False):
            grads = {n.replace(FSDP_PREFIX, ""): p.grad.detach().clone()
                     for n, p in pl_module.named_parameters() if p.requires_grad}
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        torch.save({"batch": self._batch, "loss": loss.detach().clone(), "grads": grads},
                   self.folder / f"rank{trainer.global_rank}.pt")
