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


def logs_this_step(trainer) -> bool:
    """Whether the logger writes this training step's metrics (every `trainer.log_every_n_steps`, and
    when the run stops): the steps where turning device tensors into numbers is paid anyway."""
    connector = getattr(trainer, "_logger_connector", None)
    return True if connector is None else bool(connector.should_update_logs)


class ThroughputLogger(pl.Callback):
    """Logs `train/examples_per_s`, `train/tokens_per_s` (non-pad tokens, queries + documents) and, on
    a GPU with a known peak, `train/mfu` (formula: embedforge.train.throughput), on the steps the logger
    writes: each value covers the steps since the previous one, timed from that step's end (so data
    loading counts) on this rank; examples and tokens are this rank's times the world size, MFU is per
    device. Between those steps nothing waits for the GPU: token counts add up on the device and the
    clock is read after one synchronisation per logged step (a per-step sync would stall the queue of
    GPU work the host builds ahead).

    `run_averages()` gives the whole run's figures (the first step left out as warm-up when there are
    more), for the run record.
    """

    def __init__(self, peak_flops: float | None = None) -> None:
        self.peak_flops_override = peak_flops
        self.peak_flops: float | None = None
        self.flops_per_token: float | None = None
        self._last: float | None = None
        self.world_size = 1
        self._steps: list[tuple[float, int, int, int]] = []  # (seconds, examples, tokens, steps) on this rank
        self._examples = 0
        self._tokens: torch.Tensor | int = 0
        self._pending = 0  # steps since the last window closed

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
        self._reset_window()

    def _reset_window(self) -> None:
        self._examples, self._tokens, self._pending = 0, 0, 0

    def on_validation_start(self, trainer, pl_module) -> None:
        # In-training validation is not training time: close the open window, restart at the next batch.
        if self._last is not None and self._pending:
            self._close_window(pl_module)
        self._last = None

    def on_train_end(self, trainer, pl_module) -> None:
        if self._last is not None and self._pending:
            self._close_window(pl_module)  # steps after the last logged one still count in the run averages

    # ------------------------------------------------------------------ per step
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._last is None:
            self._last = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._last is None:
            return
        self._examples += int(batch["query_input_ids"].shape[0])  # a shape: no device sync
        self._tokens = self._tokens + batch["query_attention_mask"].sum() + batch["doc_attention_mask"].sum()
        self._pending += 1
        # The first step closes a window of its own: run_averages() leaves it out as warm-up.
        if not self._steps or logs_this_step(trainer):
            seconds, examples, tokens = self._close_window(pl_module)
            world = trainer.world_size
            size = examples * world
            # CPU tensors: a Python number would be copied to the GPU by self.log, a sync each.
            pl_module.log("train/examples_per_s", torch.tensor(size / seconds), batch_size=size)
            pl_module.log("train/tokens_per_s", torch.tensor(tokens * world / seconds), batch_size=size)
            value = mfu(tokens / seconds, self.flops_per_token or 0.0, self.peak_flops)
            if value is not None:
                pl_module.log("train/mfu", torch.tensor(value), batch_size=size)

    def _close_window(self, pl_module) -> tuple[float, int, int]:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        now = time.perf_counter()
        seconds, self._last = max(now - self._last, 1e-9), now
        window = (seconds, self._examples, int(self._tokens), self._pending)
        self._steps.append(window)
        self._reset_window()
        return window[:3]

    # ------------------------------------------------------------------ run summary
    def run_averages(self) -> dict:
        """Whole-run figures: examples/s and tokens/s (all ranks, as world size x this rank), MFU
        (per device; None on CPU or an unknown GPU), FLOPs per token, steps timed."""
        windows = self._steps[1:] if len(self._steps) > 1 else self._steps
        seconds = sum(w[0] for w in windows)
        if not windows or seconds <= 0:
            return {"examples_per_s": None, "tokens_per_s": None, "mfu": None, "flops_per_token": self.flops_per_token,
                    "peak_flops": self.peak_flops, "steps_timed": 0}
        world_size = self.world_size
        examples = sum(w[1] for w in windows)
        tokens = sum(w[2] for w in windows)
        return {"examples_per_s": examples * world_size / seconds, "tokens_per_s": tokens * world_size / seconds,
                "mfu": mfu(tokens / seconds, self.flops_per_token or 0.0, self.peak_flops),
                "flops_per_token": self.flops_per_token, "peak_flops": self.peak_flops,
                "steps_timed": sum(w[3] for w in windows)}
