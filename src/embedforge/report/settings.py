"""`embedforge-report`'s typed settings (config_schema.Schema: unknown keys refused by name, strict types).

The CLI binds the composed config here once (`ReportConfig.from_config`) and hands build_report the
library's ReportSettings. Paths are made absolute at binding time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from embedforge.config_schema import Schema, bind
from embedforge.report.build import ReportSettings
from embedforge.report.runs import RunInput


def _expand(patterns: list[str]) -> list[str]:
    """Globs to the files or folders they match, in order; a pattern matching nothing stays (and fails on read)."""
    import glob

    return [found for p in patterns for found in (sorted(glob.glob(p)) or [p])]


class RunEntry(Schema):
    """One `runs` entry: a path or glob, and optionally the paper row it stands for and a label."""

    path: Annotated[str, Field(min_length=1)]
    row: str | None = None
    label: str | None = None


class WandbGroup(Schema):
    project: str | None = None  # entity/project: read runs with the W&B API instead of `runs`
    filters: dict[str, Any] | None = None


class CurveGroup(Schema):
    """`curve:`: a learning curve from one training record, beside untrained records."""

    run: str | None = None  # a training run record (or its folder) with in-training scores
    untrained: list[str] = []  # evaluation records and 0-step training records of the untrained model


class ReportConfig(Schema):
    """conf/report.yaml."""

    runs: list[RunEntry] = []
    baseline: str | None = None
    labels: dict[str, str] = {}
    task_types: dict[str, str] = {}
    data_dirs: list[str] = []
    decontam: list[str] = []
    on_error: Literal["fail", "skip"] = "fail"
    title: str = "Results beside the paper"
    wandb: WandbGroup = WandbGroup()
    curve: CurveGroup = CurveGroup()
    output_dir: Annotated[str, Field(min_length=1)]

    @field_validator("runs", mode="before")
    @classmethod
    def _paths_are_entries(cls, value: Any) -> Any:
        """A bare path or glob is an entry with only a path."""
        if isinstance(value, list):
            return [{"path": entry} if isinstance(entry, str) else entry for entry in value]
        return value

    @classmethod
    def from_config(cls, cfg: Any) -> ReportConfig:
        return bind(cls, cfg, "")

    def settings(self) -> ReportSettings:
        """build_report's settings; relative paths against Hydra's original working directory."""
        import hydra

        absolute = hydra.utils.to_absolute_path
        return ReportSettings(
            runs=[RunInput(absolute(entry.path), entry.row, entry.label) for entry in self.runs],
            wandb_project=self.wandb.project, wandb_filters=self.wandb.filters, baseline=self.baseline,
            labels=dict(self.labels), task_types=dict(self.task_types),
            data_dirs=[Path(absolute(d)) for d in self.data_dirs], on_error=self.on_error, title=self.title,
            decontam=[absolute(p) for p in self.decontam],
            curve_run=absolute(self.curve.run) if self.curve.run else None,
            curve_untrained=_expand([absolute(p) for p in self.curve.untrained]))

    def out_dir(self) -> Path:
        import hydra

        return Path(hydra.utils.to_absolute_path(self.output_dir))
