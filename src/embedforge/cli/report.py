"""`embedforge-report`: Table 1 and Table 5 beside the paper's, from run records or W&B (docs/report.md).

Config and input errors stop the run with one line naming the config key or the file:line, exit code 2.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

import embedforge.paths
from embedforge.cli.errors import one_line_errors
from embedforge.errors import ConfigError


def settings_from_cfg(cfg: DictConfig):
    from embedforge.report.build import ReportSettings
    from embedforge.report.runs import RunInput

    raw = OmegaConf.to_container(cfg, resolve=True)
    runs = []
    for index, entry in enumerate(raw.get("runs") or []):
        if isinstance(entry, str):
            runs.append(RunInput(hydra.utils.to_absolute_path(entry)))
        elif isinstance(entry, dict) and entry.get("path"):
            unknown = set(entry) - {"path", "row", "label"}
            if unknown:
                raise ConfigError(f"runs[{index}]: unknown keys {sorted(unknown)} (expected path, row, label)")
            runs.append(RunInput(hydra.utils.to_absolute_path(str(entry["path"])), entry.get("row"), entry.get("label")))
        else:
            raise ConfigError(f"runs[{index}]: expected a path/glob or {{path: ..., row: ..., label: ...}}, got {entry!r}")
    wandb = raw.get("wandb") or {}
    return ReportSettings(
        runs=runs, wandb_project=wandb.get("project"), wandb_filters=wandb.get("filters"), baseline=raw.get("baseline"),
        labels=dict(raw.get("labels") or {}), task_types=dict(raw.get("task_types") or {}),
        data_dirs=[Path(hydra.utils.to_absolute_path(str(d))) for d in raw.get("data_dirs") or []],
        on_error=str(raw.get("on_error", "fail")), title=str(raw.get("title") or "Results beside the paper"),
        decontam=[hydra.utils.to_absolute_path(str(p)) for p in raw.get("decontam") or []])


def run(cfg: DictConfig) -> dict:
    from embedforge.report.build import build_report

    settings = settings_from_cfg(cfg)
    out = build_report(settings, Path(hydra.utils.to_absolute_path(str(cfg.output_dir))))
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
