"""`embedforge-mine`: hard negatives for training records (docs/mining.md).

Config and input errors stop the run before the model is loaded, with one line naming the config
key or the file:line, and exit code 2.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

import embedforge.paths
from embedforge.cli.errors import one_line_errors
from embedforge.errors import ConfigError

log = logging.getLogger("embedforge.mine")


def _path(value) -> Path | None:
    return Path(hydra.utils.to_absolute_path(str(value))) if value not in (None, "") else None


def settings_from_cfg(cfg: DictConfig):
    from embedforge.mining.pipeline import MineSettings
    from embedforge.mining.search import IndexSettings
    from embedforge.mining.select import SelectSettings

    for key in ("input", "out"):
        if OmegaConf.is_missing(cfg, key) or cfg.get(key) in (None, ""):
            raise ConfigError(f"{key}: required (e.g. {key}=...)")
    raw = OmegaConf.to_container(cfg, resolve=True)
    trainer = dict(raw.get("trainer") or {})
    if isinstance(trainer.get("strategy"), dict):  # a _target_ strategy object, as in conf/trainer
        trainer["strategy"] = hydra.utils.instantiate(trainer["strategy"])
    try:
        select = SelectSettings(**raw["negatives"])
        index = IndexSettings(**raw["index"])
    except TypeError as exc:
        raise ConfigError(f"negatives/index: {exc}") from None
    return MineSettings(
        input=_path(raw["input"]), out=_path(raw["out"]), split=str(raw["split"]), corpus=_path(raw.get("corpus")),
        on_error=raw["on_error"], instruction=raw["query"]["instruction"], template=raw["query"]["template"],
        query_mode=raw["query"]["mode"], task_type=raw["record"]["task_type"], language=raw["record"]["language"],
        source=raw["record"]["source"], select=select, index=index, batch_size=int(raw["encode"]["batch_size"]),
        max_length=raw["encode"]["max_length"], cache_dir=_path(raw.get("cache_dir")), trainer=trainer)


def configured_encoder(cfg: DictConfig):
    """The configured encoder: `checkpoint` (encoder folder, HF folder, .ckpt) or model/lora/pooling."""
    from embedforge.model.builder import encoder_from_groups
    from embedforge.model.settings import EncoderGroups

    ckpt = cfg.get("checkpoint")
    return encoder_from_groups(EncoderGroups.from_config(cfg), hydra.utils.to_absolute_path(str(ckpt)) if ckpt else None)


def run(cfg: DictConfig) -> dict | None:
    from embedforge.mining.pipeline import mine, read_input

    settings = settings_from_cfg(cfg)
    settings.check()
    data = read_input(settings)  # data errors before the model load too
    for problem in data.errors:
        log.warning("input: %s", problem)
    log.info("%d records to mine for, corpus of %d documents (%s)", len(data.targets), len(data.corpus.texts),
             data.corpus.path)
    for noisy in ("pytorch_lightning.utilities.rank_zero", "faiss.loader"):  # device banners, loader probing
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if cfg.encode.get("torch_threads"):
        import torch

        torch.set_num_threads(int(cfg.encode.torch_threads))
    settings.out.parent.mkdir(parents=True, exist_ok=True)
    encoder = configured_encoder(cfg)
    report = mine(encoder, data, settings)
    if report is not None:
        _print_summary(report)
    return report


def _print_summary(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"embedforge-mine: {report['out']}")
    table.add_column("what")
    table.add_column("value", justify="right")
    for key in ("records", "queries", "corpus_docs", "records_with_negatives", "records_without_negatives",
                "negatives_per_record_mean", "negative_rank_mean", "negative_minus_positive_score_mean", "cache_hit"):
        table.add_row(key, str(report[key]))
    for key, value in report["timings"].items():
        table.add_row(key, f"{value}")
    table.add_row("input problems", str(len(report["input_problems"])))
    Console(stderr=False).print(table)
    print(report["report_path"])


@hydra.main(config_path=str(embedforge.paths.CONF_DIR), config_name="mine", version_base="1.3")
@one_line_errors("mine")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
