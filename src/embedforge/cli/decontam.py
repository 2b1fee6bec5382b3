"""`embedforge-decontam`: how much of the evaluation sets the training records contain (docs/decontam.md).

The config is checked here, once, into typed settings (embedforge.decontam.settings); the job itself is
embedforge.decontam.job. Config errors and unreadable eval tasks stop the run with one line naming the
key or file, and exit code 2. Bad training lines never stop it: each is a `file:line: reason`, counted
in the report.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import embedforge.paths
from embedforge.cli.errors import one_line_errors


def run(cfg: DictConfig) -> dict:
    from embedforge.decontam.job import run as run_job
    from embedforge.decontam.report import print_table
    from embedforge.decontam.settings import DecontamSettings

    summary, out = run_job(DecontamSettings.from_config(cfg))
    print_table(summary)
    print(out)
    return summary


@hydra.main(config_path=str(embedforge.paths.CONF_DIR), config_name="decontam", version_base="1.3")
@one_line_errors("decontam")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
