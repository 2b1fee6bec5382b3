"""`embedforge-export`: an encoder folder or training .ckpt -> a sentence-transformers folder (docs/export.md).

The config is checked here, once, into typed settings (embedforge.export.settings); the job itself is
embedforge.export.job. Config and input errors stop the run with one line naming the config key or the
file, and exit code 2.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import embedforge.paths
from embedforge.cli.errors import one_line_errors


def run(cfg: DictConfig):
    from embedforge.export.job import export, upload
    from embedforge.export.settings import ExportSettings

    settings = ExportSettings.from_config(cfg)
    result = export(settings)
    print(f"exported {settings.checkpoint} -> {result.folder}")
    print(f"  prompts: {len(result.prompts)}; run record: {result.record or 'none found'}; "
          f"score files: {len(result.score_sources)}")
    if result.max_abs_diff:
        print("  verify (max |ours - SentenceTransformer|): "
              + ", ".join(f"{k} {v:.1e}" for k, v in result.max_abs_diff.items()))
    if upload(settings, result):
        print(f"  uploaded: {result.url}")
    print(result.folder)  # last line: the folder, for scripts
    return result


@hydra.main(config_path=str(embedforge.paths.CONF_DIR), config_name="export", version_base="1.3")
@one_line_errors("export")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
