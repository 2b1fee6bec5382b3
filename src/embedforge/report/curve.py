"""A learning curve from one training run record, beside the untrained model under each pooling.

The trained run's record holds its in-training scores: `mteb_eval.history` (MTEB / local tasks, x 100, every
`callbacks.mteb_eval.every_n_steps`) and `val_history` (retrieval on the held-out validation records at
every validation, step 0 included). The untrained lines come from evaluation records (MTEB scores) and from
0-step training records (validation before fit), each named by its pooling. Writes a PNG with one panel
per measure and returns a markdown section: the table, and per measure the first step where the trained
run reaches the untrained model's best pooling, or that it never does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from embedforge.errors import ConfigError
from embedforge.run_record import read_run_record

VALIDATION = "held-out validation"  # prefix of the validation measures (the records of data.val_files)
VALIDATION_METRICS = ("acc@1", "ndcg@10")


@dataclass
class Curve:
    run_id: str
    steps: list[int]
    measures: dict[str, dict[int, float]]  # measure -> {step: score}
    untrained: dict[str, dict[str, float]] = field(default_factory=dict)  # measure -> {pooling: score}
    wall_time_s: float | None = None
    pooling: str | None = None
    sampled: dict[str, int] = field(default_factory=dict)  # task -> items of its evaluation split kept

    def label(self, measure: str) -> str:
        n = self.sampled.get(measure)
        return f"{measure} ({n:,}-item sample)" if n else measure


def _pooling(record: dict) -> str:
    return str((record.get("encoder") or {}).get("pooling") or ((record.get("config") or {}).get("pooling") or {}).get("mode"))


def _task(key: str) -> str:
    """'val/STSBenchmark/cosine_spearman' -> 'STSBenchmark'."""
    parts = key.split("/")
    return parts[1] if len(parts) == 3 else key


def _subsample(record: dict) -> dict[str, int]:
    config = record.get("config") or {}
    found = (config.get("eval") or {}).get("subsample") if record.get("kind") == "evaluate" else \
        ((config.get("callbacks") or {}).get("mteb_eval") or {}).get("subsample")
    return dict(found or {})


def read_curve(run: str | Path, untrained: list[str | Path]) -> Curve:
    record = read_run_record(run)
    if record.get("kind") != "train":
        raise ConfigError(f"curve.run: {run} is not a training run record")
    measures: dict[str, dict[int, float]] = {}
    for point in (record.get("mteb_eval") or {}).get("history") or []:
        for key, value in point.items():
            if key != "step":
                measures.setdefault(_task(key), {})[int(point["step"])] = float(value)
    for point in record.get("val_history") or []:
        for metric in VALIDATION_METRICS:
            if metric in point:
                measures.setdefault(f"{VALIDATION} {metric}", {})[int(point["step"])] = float(point[metric]) * 100
    if not measures:
        raise ConfigError(f"curve.run: {run} keeps no in-training scores (run with callbacks=with_mteb_eval "
                          "or trainer.val_check_interval set)")
    curve = Curve(run_id=str(record.get("run_id")), steps=sorted({s for m in measures.values() for s in m}),
                  measures=measures, wall_time_s=record.get("wall_time_s"), pooling=_pooling(record),
                  sampled={t: n for t, n in _subsample(record).items() if t in measures})
    for path in untrained:
        other = read_run_record(path)
        pooling = _pooling(other)
        if other.get("kind") == "evaluate":
            scores = {task: float(v) for task, v in (other.get("results") or {}).items() if task in measures}
            sampled = {t: n for t, n in _subsample(other).items() if t in scores}
            if any(sampled.get(t) != curve.sampled.get(t) for t in scores):
                raise ConfigError(f"curve.untrained: {path} scores {sorted(scores)} on samples {sampled}, the "
                                  f"trained run on {curve.sampled}: the lines would not be comparable")
        elif other.get("global_step"):
            raise ConfigError(f"curve.untrained: {path} trained {other['global_step']} steps; give untrained runs only")
        else:  # a 0-step training run: its validation is the untrained model's
            before = {k.removeprefix("val/"): v for k, v in (other.get("val_before") or {}).items()}
            scores = {f"{VALIDATION} {m}": float(before[m]) * 100 for m in VALIDATION_METRICS if m in before}
        for measure, score in scores.items():
            curve.untrained.setdefault(measure, {})[pooling] = score
    for measure, by_pooling in curve.untrained.items():  # LoRA starts as the identity: step 0 is the untrained model
        if 0 not in curve.measures[measure] and curve.pooling in by_pooling:
            curve.measures[measure][0] = by_pooling[curve.pooling]
    curve.steps = sorted({s for m in curve.measures.values() for s in m})
    return curve


def crossing(curve: Curve, measure: str) -> str:
    """Where the trained run first reaches the untrained model's best pooling on `measure`, in words."""
    lines = curve.untrained.get(measure)
    if not lines:
        return "no untrained score"
    best_pooling = max(lines, key=lines.get)
    best = lines[best_pooling]
    reached = [s for s, v in sorted(curve.measures[measure].items()) if s > 0 and v >= best]
    where = f"step {reached[0]}" if reached else f"never within {max(curve.steps)} steps"
    return f"{where} (untrained best: {best_pooling} pooling, {best:.2f})"


def curve_section(curve: Curve, png: Path) -> list[str]:
    measures = list(curve.measures)
    lines = [f"## Learning curve: `{curve.run_id}`", "",
             f"Scores x 100 of the {curve.pooling}-pooled run at each evaluation"
             + (f"; {max(curve.steps)} steps in {curve.wall_time_s:.0f} s of wall time, evaluations included"
                if curve.wall_time_s else "") + ". Step 0 is the untrained model.", "",
             "| step | " + " | ".join(curve.label(m) for m in measures) + " |", "|---:|" + "---:|" * len(measures)]
    for step in curve.steps:
        cells = [f"{curve.measures[m][step]:.2f}" if step in curve.measures[m] else "–" for m in measures]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    poolings = sorted({p for by in curve.untrained.values() for p in by})
    if poolings:
        lines += ["", "The untrained model under each pooling (the horizontal lines of the plot):", "",
                  "| pooling | " + " | ".join(curve.label(m) for m in measures) + " |", "|---|" + "---:|" * len(measures)]
        for pooling in poolings:
            cells = [f"{curve.untrained.get(m, {})[pooling]:.2f}" if pooling in curve.untrained.get(m, {}) else "–"
                     for m in measures]
            lines.append(f"| {pooling} | " + " | ".join(cells) + " |")
    lines += ["", "Where the trained run first reaches the untrained model's best pooling:", "",
              *[f"- {curve.label(m)}: {crossing(curve, m)}" for m in measures], "", f"![learning curve]({png.name})", ""]
    return lines


def plot_curve(curve: Curve, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measures = list(curve.measures)
    fig, axes = plt.subplots(1, len(measures), figsize=(4.2 * len(measures), 3.8), squeeze=False)
    styles = ["--", ":", "-.", (0, (5, 1))]
    poolings = sorted({p for by in curve.untrained.values() for p in by})  # one colour per pooling in every panel
    for ax, measure in zip(axes[0], measures):
        points = sorted(curve.measures[measure].items())
        ax.plot([s for s, _ in points], [v for _, v in points], "o-", color="black", label=f"trained ({curve.pooling})")
        for pooling, score in sorted(curve.untrained.get(measure, {}).items()):
            i = poolings.index(pooling)
            ax.axhline(score, linestyle=styles[i % len(styles)], color=f"C{i}", label=f"untrained, {pooling}")
        ax.set_title(curve.label(measure), fontsize=10)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("score x 100")
    labelled = {}
    for ax in axes[0]:  # one legend naming every line of every panel
        for handle, label in zip(*ax.get_legend_handles_labels()):
            labelled.setdefault(label, handle)
    axes[0][-1].legend(list(labelled.values()), list(labelled), fontsize=8, loc="best")
    fig.suptitle(f"Learning curve of {curve.run_id}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
