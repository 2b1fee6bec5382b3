"""`embedforge-export`: an encoder folder or training .ckpt -> a sentence-transformers folder (docs/export.md).

Config and input errors stop the run with one line naming the config key or the file, and exit code 2.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

import embedforge.paths
from embedforge.cli.errors import one_line_errors
from embedforge.errors import ConfigError


def _path(value) -> Path | None:
    return Path(hydra.utils.to_absolute_path(str(value))) if value not in (None, "") else None


def default_output_dir(checkpoint: Path) -> Path:
    """<run folder>/sentence-transformers: beside encoder/ (an encoder folder) or checkpoints/ (a .ckpt)."""
    run_folder = checkpoint.parent.parent if checkpoint.suffix == ".ckpt" else checkpoint.parent
    return run_folder / "sentence-transformers"


def run(cfg: DictConfig):
    from embedforge.export.hub import upload_folder
    from embedforge.export.st_export import PromptOptions, export_encoder

    if OmegaConf.is_missing(cfg, "checkpoint") or cfg.get("checkpoint") in (None, ""):
        raise ConfigError("checkpoint: required (an encoder folder or a .ckpt, e.g. checkpoint=runs/demo/<time>/encoder)")
    raw = OmegaConf.to_container(cfg, resolve=True)
    checkpoint = _path(raw["checkpoint"])
    out_dir = _path(raw.get("output_dir")) or default_output_dir(checkpoint)
    try:
        options = PromptOptions(**raw["prompts"])
    except TypeError as exc:
        raise ConfigError(f"prompts: {exc}") from None
    card = raw.get("model_card") or {}
    result = export_encoder(
        checkpoint, out_dir, dtype=str(raw["dtype"]), prompt_options=options, name=raw.get("name"),
        run_record=_path(card.get("run_record")), scores=[_path(p) for p in card.get("scores") or []],
        find_evaluations=bool(card.get("find_evaluations", True)), overwrite=bool(raw["overwrite"]),
        verify=bool(raw["verify"]), verify_atol=float(raw["verify_atol"]))
    print(f"exported {checkpoint} -> {result.folder}")
    print(f"  prompts: {len(result.prompts)}; run record: {result.record or 'none found'}; "
          f"score files: {len(result.score_sources)}")
    if result.max_abs_diff:
        print("  verify (max |ours - SentenceTransformer|): "
              + ", ".join(f"{k} {v:.1e}" for k, v in result.max_abs_diff.items()))
    upload = raw.get("upload") or {}
    if upload.get("repo_id"):
        result.url = upload_folder(result.folder, str(upload["repo_id"]), private=bool(upload.get("private", True)),
                                   token_env=str(upload.get("token_env") or "HF_TOKEN"))
        print(f"  uploaded: {result.url}")
    print(result.folder)  # last line: the folder, for scripts
    return result


@hydra.main(config_path=str(embedforge.paths.CONF_DIR), config_name="export", version_base="1.3")
@one_line_errors("export")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
