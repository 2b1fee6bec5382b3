"""Losses: pure functions of embeddings, and the classes `conf/loss/*.yaml` name as `_target_`."""

from __future__ import annotations

# Keys of the `loss` group that configure the training module, not the loss callable.
MODULE_KEYS = ("share_negatives_across_devices", "mask_duplicate_positives", "grad_cache", "name")


def build_loss(loss_cfg):
    """Instantiate `loss._target_` with the group's other keys (module settings left out)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(loss_cfg, resolve=True) if not isinstance(loss_cfg, dict) else dict(loss_cfg)
    if "_target_" not in cfg:
        raise ValueError("loss._target_: the loss group must name the loss callable (see conf/loss/infonce.yaml)")
    try:
        return instantiate({k: v for k, v in cfg.items() if k not in MODULE_KEYS})
    except Exception as exc:  # hydra wraps the callable's own ValueError; keep its message first
        cause = exc.__cause__ or exc
        raise ValueError(f"{cause}" if "loss." in str(cause) else f"loss: cannot build {cfg['_target_']}: {cause}") from exc
