"""Training callbacks of our own: throughput logging."""

from __future__ import annotations

import time

import pytorch_lightning as pl


class ThroughputLogger(pl.Callback):
    """Logs `train/examples_per_s` and `train/tokens_per_s` (non-padding tokens, queries + documents),
    measured per optimisation step on this rank and scaled by the world size."""

    def __init__(self) -> None:
        self._start: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._start is None:
            return
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        examples = batch["query_input_ids"].shape[0] * trainer.world_size
        tokens = int(batch["query_attention_mask"].sum() + batch["doc_attention_mask"].sum()) * trainer.world_size
        pl_module.log("train/examples_per_s", examples / elapsed, batch_size=examples)
        pl_module.log("train/tokens_per_s", tokens / elapsed, batch_size=examples)
