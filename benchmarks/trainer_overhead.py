"""The trainer's step against a bare loop on the same batches: what the framework adds around the model.

    python benchmarks/trainer_overhead.py --threads 1                 # LoRA r16: ratio trainer / bare
    python benchmarks/trainer_overhead.py --threads 1 --full          # and full fine-tuning as a second line
    python benchmarks/trainer_overhead.py --threads 1 --profile       # where the trainer's extra time goes

One process, all-MiniLM-L6-v2 (`model=minilm-l6`), synthetic query/positive/negative records (the demo
data's words), the project's own DataModule and collator. Two sides per repeat, run one after the
other (their order alternating between repeats, so changing machine load hits both alike):

  trainer  `embedforge.train.run.train` as a user runs it: default callbacks (checkpoint, throughput,
           pre-emption), CSV logger, progress bar, log_every_n_steps of the trainer config.
  bare     the exact collated batches the trainer's DataLoader yields (collected once, before timing):
           the module's loss (EmbeddingModule.contrastive_step), backward, clip-by-norm, AdamW step,
           scheduler step, zero_grad. Same optimiser, schedule, clip value and precision (fp32).

A step is timed from the previous step's end, so the trainer's data loading, hooks and logging count.
The first `--warmup` steps of every run are left out; each side reports its median step. The ratio is
trainer / bare per repeat, by wall time and by the process's CPU time (on a shared machine the CPU
time leaves out the waits for a core); min and median over repeats are printed with the load average.

`--profile` runs both sides once more under cProfile (CPU time) and splits their steps into components
(CPU ms/step; cProfile slows Python-heavy code more than the C++ kernels, so the framework's parts are
upper bounds there; the unprofiled difference trainer - bare is the real total).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytorch_lightning as pl  # noqa: E402

STEP_TIMES: list[tuple[float, float]] = []  # (wall s, process CPU s) per step, filled by StepTimer
RUNS: list[int] = []  # trainer runs so far: each writes its own run folder
FIRST_BATCH: dict = {}  # the trainer's first batch, to check that the bare loop gets the same ones


class StepTimer(pl.Callback):
    """Wall and CPU time of each training step, from the previous step's end (the trainer side's clock)."""

    def __init__(self) -> None:
        self._last: float | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        STEP_TIMES.clear()
        FIRST_BATCH.clear()
        self._last = clocks()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = clocks()
        STEP_TIMES.append((now[0] - self._last[0], now[1] - self._last[1]))
        if batch_idx == 0:
            FIRST_BATCH.update({k: v.detach().cpu().clone() for k, v in batch.items()})
        self._last = clocks()


def clocks() -> tuple[float, float]:
    """Wall time and this process's CPU time (all its threads): on a machine shared with other jobs the
    CPU time is what the step itself consumed, without the time spent waiting for a core."""
    return time.perf_counter(), time.process_time()


def write_records(n: int, folder: Path) -> Path:
    from train_throughput import synthetic_triples

    path = folder / "records.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for t in synthetic_triples(n):
            handle.write(json.dumps({"instruction": "Retrieve the matching passage.", "query": t["query"],
                                     "positive": t["positive"], "negatives": [t["negative"]],
                                     "task_type": "short_long", "language": "en", "source": "bench"}) + "\n")
    return path


def compose_config(args, data_file: Path, workdir: Path, lora: bool, extra: list[str] = ()):
    from hydra import compose, initialize_config_dir

    from embedforge.paths import CONF_DIR

    overrides = [f"paths.output_root={workdir}/runs", "paths.output_dir=${paths.output_root}/bench", "logger=csv",
                 "model=minilm-l6", "pooling=mean", f"model.max_length={args.max_length}",
                 f"data.train_files=[{data_file}]", "data.val_files=null", f"data.batch_size={args.batch_size}",
                 "data.hard_negatives=1", "data.on_error=fail", f"trainer.max_steps={args.steps}",
                 "trainer.max_epochs=1", "loss.temperature=0.05", "validate_before_fit=false", "save_encoder=false",
                 "optim.warmup_steps=2", "seed=0", f"+callbacks.step_timer._target_={StepTimer.__module__}.StepTimer",
                 "lora=r16" if lora else "lora=none", *args.override, *extra]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def collated_batches(cfg, steps: int) -> list[dict]:
    """The batches the trainer's DataLoader yields, in its order (same seed, sampler and collator)."""
    from itertools import islice

    from embedforge.model.builder import load_tokenizer
    from embedforge.model.settings import EncoderGroups
    from embedforge.train.datamodule import EmbeddingDataModule

    tokenizer = load_tokenizer(EncoderGroups.from_config(cfg).settings())
    datamodule = EmbeddingDataModule(cfg.data, tokenizer, seed=int(cfg.seed))
    datamodule.setup("fit")
    return list(islice(iter(datamodule.train_dataloader()), steps))


def run_trainer(cfg, batches: list[dict] | None = None) -> list[tuple[float, float]]:
    import torch
    from omegaconf import OmegaConf

    from embedforge.train.run import train

    fresh = OmegaConf.create(OmegaConf.to_container(cfg))  # train() edits its config: a fresh copy each run
    RUNS.append(len(RUNS))
    fresh.paths.output_dir = f"{fresh.paths.output_root}/bench{len(RUNS)}"  # a run folder is written once
    train(fresh)
    if batches is not None and not all(torch.equal(FIRST_BATCH[k], v) for k, v in batches[0].items()):
        raise SystemExit("the trainer's first batch differs from the bare loop's: the comparison is void")
    return list(STEP_TIMES)


def run_bare(cfg, batches: list[dict]) -> list[tuple[float, float]]:
    import torch
    from hydra.utils import instantiate

    from embedforge.train.module import EmbeddingModule

    pl.seed_everything(int(cfg.seed), verbose=False)
    module = EmbeddingModule(cfg)
    module.configure_model()
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = instantiate(cfg.optim.optimizer)(module.parameters())
    scheduler = instantiate(cfg.optim.scheduler)(optimizer, total_steps=len(batches))
    clip = float(cfg.trainer.gradient_clip_val)
    times, last = [], clocks()
    for batch in batches:
        loss, _ = module.contrastive_step(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        now = clocks()
        times.append((now[0] - last[0], now[1] - last[1]))
        last = now
    return times


# ----------------------------------------------------------------------------------------- profile
# (component, functions whose cumulative time it is, callers to count it under or None for all).
# Matched on "file:function" suffixes of cProfile's keys; nested matches of one component count once.
COMPONENTS: list[tuple[str, tuple[str, ...], tuple[str, ...] | None]] = [
    ("collation (tokenise, pad, hash)", ("collate.py:__call__",), None),
    ("forward + loss", ("module.py:contrastive_step",), None),
    ("backward", ("torch/_tensor.py:backward",), None),
    ("gradient clipping", ("clip_grad.py:clip_grad_norm_",), None),
    ("AdamW update", ("optim/adam.py:adam",), None),
    ("scheduler step", ("lr_scheduler.py:step",), None),
    ("zero_grad", ("optimizer.py:zero_grad",), None),
    ("self.log in the module's step hooks", ("core/module.py:log",), ("train/module.py:training_step",
                                                                    "train/module.py:on_train_batch_end")),
    ("throughput callback", ("train/callbacks.py:on_train_batch_end", "train/callbacks.py:on_train_batch_start"),
     None),
    ("pre-emption callback", ("preemption.py:on_train_batch_end",), None),
    ("checkpoint callback (per step)", ("model_checkpoint.py:on_train_batch_end",), None),
    ("logger: metrics to scalars, CSV", ("logger_connector.py:log_metrics",), None),
    ("progress bar", ("progress.py:on_train_batch_end", "progress.py:on_train_batch_start"), None),
]


def _key(frame: tuple) -> str:
    file, _, func = frame
    return f"{file}:{func}".replace(os.sep, "/")


def component_seconds(stats: dict, targets: tuple[str, ...], callers: tuple[str, ...] | None) -> float:
    total = 0.0
    for frame, (_, _, _, ct, by_caller) in stats.items():
        if not _key(frame).endswith(targets):
            continue
        for caller, caller_stats in by_caller.items():
            if _key(caller).endswith(targets):
                continue  # nested in another match: already inside its time
            if callers is None or _key(caller).endswith(callers):
                total += caller_stats[3]
        if not by_caller and callers is None:
            total += ct
    return total


def profiled(run) -> tuple[dict, list[float]]:
    profiler = cProfile.Profile(time.process_time)  # CPU time: waits for a core on a shared machine left out
    profiler.enable()
    times = run()
    profiler.disable()
    return pstats.Stats(profiler).stats, times


def profile_sides(cfg, batches: list[dict]) -> None:
    """ms/step of each component on both sides (all steps of one profiled run, warm-up included)."""
    sides = {"trainer": profiled(lambda: run_trainer(cfg)), "bare": profiled(lambda: run_bare(cfg, batches))}
    print(f"\ncomponents under cProfile, CPU ms/step over all {len(batches)} steps (share of that side's step)")
    print(f"{'component':<38} {'trainer':>16} {'bare':>16}")
    named = {side: 0.0 for side in sides}
    totals = {side: sum(t[1] for t in times) for side, (_, times) in sides.items()}

    def cell(side, seconds):
        return f"{1000 * seconds / len(batches):8.1f} ({seconds / totals[side]:5.1%})"

    for name, targets, callers in COMPONENTS:
        row = {side: component_seconds(stats, targets, callers) for side, (stats, _) in sides.items()}
        for side in sides:
            named[side] += row[side]
        print(f"{name:<38} {cell('trainer', row['trainer']):>16} {cell('bare', row['bare']):>16}")
    print(f"{'rest (Lightning loop, hooks, fetch)':<38} {cell('trainer', totals['trainer'] - named['trainer']):>16} "
          f"{cell('bare', totals['bare'] - named['bare']):>16}")
    print(f"{'step':<38} {cell('trainer', totals['trainer']):>16} {cell('bare', totals['bare']):>16}")


# -------------------------------------------------------------------------------------------- main
def median_after(times: list[tuple[float, float]], warmup: int) -> tuple[float, float]:
    """Median wall and CPU seconds per step, the first `warmup` steps left out."""
    kept = times[warmup:] if len(times) > warmup else times
    return statistics.median(t[0] for t in kept), statistics.median(t[1] for t in kept)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=12, help="steps per run, warm-up included")
    parser.add_argument("--warmup", type=int, default=2, help="first steps of each run left out")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--full", action="store_true", help="full fine-tuning as a second line")
    parser.add_argument("--profile", action="store_true", help="split the trainer's step (cProfile)")
    parser.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides for both sides")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    lines = [("lora r16", True)] + ([("full FT", False)] if args.full else [])
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        data_file = write_records(args.batch_size * args.steps, workdir)
        load_start = os.getloadavg()[0]
        for name, lora in lines:
            cfg = compose_config(args, data_file, workdir, lora)
            batches = collated_batches(cfg, args.steps)
            runs = []  # per repeat: {side: (wall, cpu)}
            for repeat in range(args.repeats):
                order = ("trainer", "bare") if repeat % 2 == 0 else ("bare", "trainer")
                measured = {}
                for side in order:
                    times = run_trainer(cfg, batches) if side == "trainer" else run_bare(cfg, batches)
                    measured[side] = median_after(times, args.warmup)
                runs.append(measured)
                (tw, tc), (bw, bc) = measured["trainer"], measured["bare"]
                print(f"{name} repeat {repeat}: wall trainer {1000 * tw:.1f} / bare {1000 * bw:.1f} ms/step = "
                      f"{tw / bw:.3f}; CPU trainer {1000 * tc:.1f} / bare {1000 * bc:.1f} ms/step = {tc / bc:.3f}",
                      flush=True)
            row = {"line": name}
            for clock, i in (("wall", 0), ("cpu", 1)):
                ratios = [r["trainer"][i] / r["bare"][i] for r in runs]
                row.update({f"{clock}_trainer_ms": 1000 * statistics.median(r["trainer"][i] for r in runs),
                            f"{clock}_bare_ms": 1000 * statistics.median(r["bare"][i] for r in runs),
                            f"{clock}_ratio_min": min(ratios), f"{clock}_ratio_median": statistics.median(ratios)})
            results.append(row)
            if args.profile:
                profile_sides(cfg, batches)
        load_end = os.getloadavg()[0]

    print(f"\nbatch {args.batch_size}, max_length {args.max_length}, {args.steps} steps per run "
          f"({args.warmup} warm-up), {args.repeats} repeats, threads {torch.get_num_threads()}, "
          f"load average {load_start:.2f} -> {load_end:.2f} on {os.cpu_count()} cores")
    print(f"{'line':<10} {'clock':<5} {'trainer ms':>10} {'bare ms':>8} {'ratio min':>9} {'ratio median':>12}")
    for r in results:
        for clock in ("wall", "cpu"):
            print(f"{r['line']:<10} {clock:<5} {r[clock + '_trainer_ms']:10.1f} {r[clock + '_bare_ms']:8.1f} "
                  f"{r[clock + '_ratio_min']:9.3f} {r[clock + '_ratio_median']:12.3f}")
    return results


if __name__ == "__main__":
    main()
