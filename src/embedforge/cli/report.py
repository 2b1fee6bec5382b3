"""`embedforge-report`: Table 1 and Table 5 beside the paper's, from run records or W&B (docs/report.md).

The config is checked here, once, into typed settings (embedforge.report.settings); the report itself is
embedforge.report.build. Config and input errors stop the run with one line naming the config key or the
file:line, exit code 2.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import embedforge.paths
from embedforge.cli.errors import one_line_errors


def run(cfg: DictConfig) -> dict:
    from embedforge.report.build import build_report
    from embedforge.report.settings import ReportConfig

    config = ReportConfig.from_config(cfg)
    out = build_report(config.settings(), config.out_dir())
    print(out["markdown"].read_text(encoding="utf-8"))
    print(f"{out['rows']} rows, {out['skipped']} inputs not used; plot: {out['png']}")
    print(out["markdown"])  # last line: the report path, for scripts
    return out


@hydra.main(config_path=str(embedforge.paths.CONF_DIR), config_name="report", version_base="1.3")
@one_line_errors("report")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
