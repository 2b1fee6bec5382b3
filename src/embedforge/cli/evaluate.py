"""embedforge-evaluate: MTEB tasks / local folders / a benchmark, or the passkey probe (eval=passkey).
The job itself is embedforge.eval.job."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import embedforge.paths
from embedforge.cli.errors import one_line_errors


@hydra.main(config_path=str(embedforge.paths.CONF_DIR), config_name="evaluate", version_base="1.3")
@one_line_errors("evaluate")
def main(cfg: DictConfig) -> None:
    from embedforge.eval.job import run

    summary = run(cfg)
    print(summary)  # last line: the summary path, for scripts


if __name__ == "__main__":
    main()
