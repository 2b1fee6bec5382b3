"""Summaries of mteb TaskResults: main score per task, per-category averages, markdown/JSON/W&B."""

from __future__ import annotations

import json
from pathlib import Path

# Leaderboard order of MTEB(eng) categories, then everything else alphabetically.
CATEGORY_ORDER = ("Classification", "Clustering", "PairClassification", "Reranking", "Retrieval", "STS",
                  "Summarization", "BitextMining")


def main_score(result) -> float:
    """The task's main score x 100: test split if evaluated (leaderboard convention), mean over subsets."""
    splits = ["test"] if "test" in result.scores else None
    return 100.0 * float(result.get_score(splits=splits))


def summarize(results: list, tasks: list) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """({task: score}, {category: {"mean": .., "n": ..}}) from TaskResults and their tasks."""
    scores, by_type = {}, {}
    for result, task in zip(results, tasks):
        score = main_score(result)
        scores[result.task_name] = round(score, 4)
        by_type.setdefault(task.metadata.type, []).append(score)
    order = [c for c in CATEGORY_ORDER if c in by_type] + sorted(set(by_type) - set(CATEGORY_ORDER))
    categories = {c: {"mean": round(sum(by_type[c]) / len(by_type[c]), 4), "n": len(by_type[c])} for c in order}
    return scores, categories


def markdown_table(scores: dict[str, float], categories: dict[str, dict], task_types: dict[str, str],
                   main_scores: dict[str, str]) -> str:
    lines = ["| task | type | main score | score |", "|---|---|---|---:|"]
    for name, score in scores.items():
        lines.append(f"| {name} | {task_types[name]} | {main_scores[name]} | {score:.2f} |")
    lines += ["", "| category | tasks | average |", "|---|---:|---:|"]
    for cat, agg in categories.items():
        lines.append(f"| {cat} | {agg['n']} | {agg['mean']:.2f} |")
    if scores:
        lines.append(f"| all | {len(scores)} | {sum(scores.values()) / len(scores):.2f} |")
    return "\n".join(lines) + "\n"


def write_summary(out_dir: Path, results: list, tasks: list, extra: dict | None = None) -> Path:
    """Write summary.md and summary.json ({task: main score x 100}); return the summary.json path."""
    scores, categories = summarize(results, tasks)
    types = {t.metadata.name: t.metadata.type for t in tasks}
    mains = {t.metadata.name: t.metadata.main_score for t in tasks}
    (out_dir / "summary.md").write_text(markdown_table(scores, categories, types, mains), encoding="utf-8")
    (out_dir / "categories.json").write_text(json.dumps({"categories": categories, **(extra or {})}, indent=2))
    path = out_dir / "summary.json"
    path.write_text(json.dumps(scores, indent=2), encoding="utf-8")
    log_wandb(scores, categories, types)
    return path


def log_wandb(scores: dict[str, float], categories: dict[str, dict], task_types: dict[str, str]) -> None:
    """Log a W&B table and flat metrics when a run is active; a no-op otherwise."""
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is None:
        return
    table = wandb.Table(columns=["task", "type", "score"], data=[[n, task_types[n], s] for n, s in scores.items()])
    metrics = {f"eval/{n}": s for n, s in scores.items()}
    metrics.update({f"eval/category/{c}": a["mean"] for c, a in categories.items()})
    wandb.log({"eval/summary": table, **metrics})
