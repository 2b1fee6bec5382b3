"""`embedforge-train`: Hydra entry point for contrastive training (conf/train.yaml)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from embedforge.paths import CONF_DIR


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from embedforge.train.run import train

    record = train(cfg)
    # Returned value is the objective for Hydra sweepers (e.g. Optuna): higher nDCG is better.
    return record["val_after"].get("val/ndcg@10")


if __name__ == "__main__":
    main()
