"""One `embedforge-export` run from its typed settings (export/settings.py): the sentence-transformers
folder, then the optional upload. The CLI binds, calls, prints."""

from __future__ import annotations

from pathlib import Path

from embedforge.export.settings import ExportSettings
from embedforge.export.st_export import ExportResult, export_encoder


def default_output_dir(checkpoint: Path) -> Path:
    """<run folder>/sentence-transformers: beside encoder/ (an encoder folder) or checkpoints/ (a .ckpt)."""
    run_folder = checkpoint.parent.parent if checkpoint.suffix == ".ckpt" else checkpoint.parent
    return run_folder / "sentence-transformers"


def export(settings: ExportSettings) -> ExportResult:
    """Write the export (not uploaded; see `upload`)."""
    checkpoint = Path(settings.checkpoint)
    card = settings.model_card
    return export_encoder(
        checkpoint, Path(settings.output_dir) if settings.output_dir else default_output_dir(checkpoint),
        dtype=settings.dtype, prompt_options=settings.prompts, name=settings.name,
        run_record=Path(card.run_record) if card.run_record else None, scores=[Path(p) for p in card.scores],
        find_evaluations=card.find_evaluations, overwrite=settings.overwrite, verify=settings.verify,
        verify_atol=settings.verify_atol)


def upload(settings: ExportSettings, result: ExportResult) -> str | None:
    """The hub URL when `upload.repo_id` is set (result.url too), else None."""
    from embedforge.export.hub import upload_folder

    if not settings.upload.repo_id:
        return None
    result.url = upload_folder(result.folder, settings.upload.repo_id, private=settings.upload.private,
                               token_env=settings.upload.token_env)
    return result.url
