"""`embedforge-train`: Hydra entry point for contrastive training (conf/train.yaml)."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from embedforge.cli.errors import one_line_errors
from embedforge.cli.nested_glob import expand_nested_globs
from embedforge.paths import CONF_DIR
from embedforge.train.launch import shared_run_dir


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
@one_line_errors("train")
def hydra_main(cfg: DictConfig) -> float | None:
    from embedforge.run_record import record_metric
    from embedforge.train.run import train
    from embedforge.train.settings import TrainSettings

    settings = TrainSettings.from_config(cfg)  # the one check of the composed config; typed from here on
    record = train(settings)
    # The objective for Hydra sweepers (hparams_search=optuna): `optimized_metric`, higher is better.
    return record_metric(record, settings.optimized_metric)


@one_line_errors("train")
def main() -> None:
    sys.argv[1:] = expand_nested_globs(sys.argv[1:], CONF_DIR)  # experiment=glob(paper/ablation_*)
    sys.argv[1:] = shared_run_dir(sys.argv[1:])  # torchrun / srun ranks: one run folder, not one per process
    hydra_main()


if __name__ == "__main__":
    main()
