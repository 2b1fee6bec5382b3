"""embedforge-evaluate: MTEB tasks / local folders / a benchmark, or the passkey probe (eval=passkey).
The config is checked here, once, into typed settings (embedforge.eval.settings); the job itself is
embedforge.eval.job."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

import embedforge.paths
from embedforge.cli.errors import one_line_errors


def run(cfg: DictConfig) -> Path:
    from embedforge.eval.job import run as run_job
    from embedforge.eval.settings import EvaluateJob

    return run_job(EvaluateJob.from_config(cfg))


@hydra.main(config_path=str(embedforge.paths.CONF_DIR), config_name="evaluate", version_base="1.3")
@one_line_errors("evaluate")
def main(cfg: DictConfig) -> None:
    print(run(cfg))  # last line: the summary path, for scripts


if __name__ == "__main__":
    main()
