"""`embedforge-export`'s typed settings (config_schema.Schema: unknown keys refused by name, strict types).

The CLI binds the composed config here once (`ExportSettings.from_config`); the job (export/job.py)
reads only these objects. Paths are made absolute at binding time.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from embedforge.config_schema import Schema, bind
from embedforge.export.st_export import DTYPES, PromptOptions


class ModelCardGroup(Schema):
    run_record: str | None = None  # null: the run_record.json beside the encoder / checkpoints folder
    scores: list[str] = []
    find_evaluations: bool = True


class UploadGroup(Schema):
    repo_id: str | None = None  # owner/name on the hub; null: no upload
    private: bool = True
    token_env: Annotated[str, Field(min_length=1)] = "HF_TOKEN"


class ExportSettings(Schema):
    """conf/export.yaml."""

    checkpoint: Annotated[str, Field(min_length=1)]  # an encoder folder or a .ckpt
    output_dir: str | None = None
    name: str | None = None
    dtype: Literal[tuple(DTYPES)] = "float32"
    overwrite: bool = False
    verify: bool = True
    verify_atol: Annotated[float, Field(gt=0)] = 1e-4
    prompts: PromptOptions = PromptOptions()
    model_card: ModelCardGroup = ModelCardGroup()
    upload: UploadGroup = UploadGroup()

    @classmethod
    def from_config(cls, cfg: Any) -> ExportSettings:
        """From the composed config; relative paths against Hydra's original working directory."""
        import hydra

        settings = bind(cls, cfg, "")
        absolute = hydra.utils.to_absolute_path
        card = settings.model_card
        return settings.model_copy(update={
            "checkpoint": absolute(settings.checkpoint),
            "output_dir": absolute(settings.output_dir) if settings.output_dir else None,
            "model_card": card.model_copy(update={
                "run_record": absolute(card.run_record) if card.run_record else None,
                "scores": [absolute(p) for p in card.scores]})})
