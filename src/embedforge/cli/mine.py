"""`embedforge-mine`: hard negatives for training records (docs/mining.md).

The config is checked here, once, into typed settings (embedforge.mining.settings); config and input
errors stop the run before the model is loaded, with one line naming the config key or the file:line,
and exit code 2. The job itself is embedforge.mining.job.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import embedforge.paths
from embedforge.cli.errors import one_line_errors


def run(cfg: DictConfig) -> dict | None:
    from embedforge.mining.job import run as run_job
    from embedforge.mining.settings import MineJob

    report = run_job(MineJob.from_config(cfg))
    if report is not None:
        _print_summary(report)
    return report


def _print_summary(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"embedforge-mine: {report['out']}")
    table.add_column("what")
    table.add_column("value", justify="right")
    for key in ("records", "queries", "corpus_docs", "records_with_negatives", "records_without_negatives",
                "negatives_per_record_mean", "negative_rank_mean", "negative_minus_positive_score_mean", "cache_hit"):
        table.add_row(key, str(report[key]))
    for key, value in report["timings"].items():
        table.add_row(key, f"{value}")
    table.add_row("input problems", str(len(report["input_problems"])))
    Console(stderr=False).print(table)
    print(report["report_path"])


@hydra.main(config_path=str(embedforge.paths.CONF_DIR), config_name="mine", version_base="1.3")
@one_line_errors("mine")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
