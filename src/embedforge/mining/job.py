"""One `embedforge-mine` run from its typed settings (mining/settings.py): check the files, read the
input (data errors before the model load), build the encoder, mine. The CLI binds, calls, prints."""

from __future__ import annotations

import logging

from embedforge.mining.settings import MineJob

log = logging.getLogger("embedforge.mine")


def configured_encoder(job: MineJob):
    """The configured encoder: `checkpoint` (encoder folder, HF folder, .ckpt) or model/lora/pooling."""
    from embedforge.model.builder import encoder_from_groups

    return encoder_from_groups(job.encoder, job.checkpoint)


def trainer_arguments(trainer: dict) -> dict:
    """The predict loop's Trainer keywords; a `_target_` strategy (as in conf/trainer) becomes its object."""
    trainer = dict(trainer)
    if isinstance(trainer.get("strategy"), dict):
        import hydra

        trainer["strategy"] = hydra.utils.instantiate(trainer["strategy"])
    return trainer


def run(job: MineJob) -> dict | None:
    """Mine and write the records; the report (None on ranks > 0 of a multi-process run)."""
    from dataclasses import replace

    from embedforge.mining.pipeline import mine, read_input

    settings = job.settings
    settings.check()
    data = read_input(settings)  # data errors before the model load too
    for problem in data.errors:
        log.warning("input: %s", problem)
    log.info("%d records to mine for, corpus of %d documents (%s)", len(data.targets), len(data.corpus.texts),
             data.corpus.path)
    for noisy in ("pytorch_lightning.utilities.rank_zero", "faiss.loader"):  # device banners, loader probing
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if job.torch_threads:
        import torch

        torch.set_num_threads(job.torch_threads)
    settings.out.parent.mkdir(parents=True, exist_ok=True)
    encoder = configured_encoder(job)
    return mine(encoder, data, replace(settings, trainer=trainer_arguments(settings.trainer)))
