"""Training callbacks of our own: throughput and MFU logging.

Why not Lightning's `ThroughputMonitor`: it needs FLOPs per batch from us anyway (it cannot tell
LoRA from full fine-tuning, nor see checkpointing or GradCache), it reports only once a window of
batches has filled (100 by default: nothing for short runs), its peak-FLOP/s table lists sparse
figures for some cards (H200, H100 NVL: half the true MFU) and its metric names are its own. What it
would add over the few lines below is small; its FLOP counter (`measure_flops`) is what our tests
check the formula against.
"""

from __future__ import annotations

import time

import pytorch_lightning as pl
import torch

from embedforge.train.throughput import (device_peak_flops, matmul_params, mfu, training_flops_per_token)


class ThroughputLogger(pl.Callback):
    """Logs per step `train/examples_per_s`, `train/tokens_per_s` (non-pad tokens, queries +
    documents) and, on a GPU with a known peak, `train/mfu` (formula: embedforge.train.throughput).
    Each step is timed from the previous step's end (so data loading counts) on this rank; examples
    and tokens are this rank's times the world size, MFU is per device.

    `run_averages()` gives the whole run's figures (first step left out as warm-up when there are
    more), for the run record.
    """

    def __init__(self, peak_flops: float | None = None) -> None:
        self.peak_flops_override = peak_flops
        self.peak_flops: float | None = None
        self.flops_per_token: float | None = None
        self._last: float | None = None
        self.world_size = 1
        self._steps: list[tuple[float, int, int]] = []  # (seconds, examples, tokens) on this rank

    # ------------------------------------------------------------------ setup
    def on_train_start(self, trainer, pl_module) -> None:
        encoder = pl_module.encoder
        backbone = encoder.backbone
        # transformers 5 renamed the flag (the old name warns); older releases have only the old one.
        checkpointing = bool(getattr(backbone, "is_activation_checkpointing", None)
                             if hasattr(backbone, "is_activation_checkpointing")
                             else getattr(backbone, "is_gradient_checkpointing", False))
        grad_cache = getattr(pl_module, "grad_cache", None) is not None
        self.flops_per_token = training_flops_per_token(matmul_params(encoder), checkpointing=checkpointing,
                                                        grad_cache=grad_cache)
        self.peak_flops = self.peak_flops_override or device_peak_flops(pl_module.device)
        self.world_size = int(trainer.world_size)
        self._steps.clear()
        self._last = None

    def on_validation_start(self, trainer, pl_module) -> None:
        self._last = None  # in-training validation is not training time: restart at the next batch

    # ------------------------------------------------------------------ per step
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._last is None:
            self._last = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._last is None:
            return
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        now = time.perf_counter()
        elapsed, self._last = max(now - self._last, 1e-9), now
        examples = int(batch["query_input_ids"].shape[0])
        tokens = int(batch["query_attention_mask"].sum()) + int(batch["doc_attention_mask"].sum())
        self._steps.append((elapsed, examples, tokens))
        world = trainer.world_size
        size = examples * world
        pl_module.log("train/examples_per_s", size / elapsed, batch_size=size)
        pl_module.log("train/tokens_per_s", tokens * world / elapsed, batch_size=size)
        value = mfu(tokens / elapsed, self.flops_per_token or 0.0, self.peak_flops)
        if value is not None:
            pl_module.log("train/mfu", value, batch_size=size)

    # ------------------------------------------------------------------ run summary
    def run_averages(self) -> dict:
        """Whole-run figures: examples/s and tokens/s (all ranks, as world size x this rank), MFU
        (per device; None on CPU or an unknown GPU), FLOPs per token, steps timed."""
        steps = self._steps[1:] if len(self._steps) > 1 else self._steps
        seconds = sum(s for s, _, _ in steps)
        if not steps or seconds <= 0:
            return {"examples_per_s": None, "tokens_per_s": None, "mfu": None, "flops_per_token": self.flops_per_token,
                    "peak_flops": self.peak_flops, "steps_timed": 0}
        world_size = self.world_size
        examples = sum(e for _, e, _ in steps)
        tokens = sum(t for _, _, t in steps)
        return {"examples_per_s": examples * world_size / seconds, "tokens_per_s": tokens * world_size / seconds,
                "mfu": mfu(tokens / seconds, self.flops_per_token or 0.0, self.peak_flops),
                "flops_per_token": self.flops_per_token, "peak_flops": self.peak_flops, "steps_timed": len(steps)}
