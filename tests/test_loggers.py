"""W&B is the default logger: offline without credentials (saying how to sync), never logging secrets."""

import logging

from omegaconf import OmegaConf

from embedforge.run_record import redact
from embedforge.train.loggers import build_logger


def test_wandb_goes_offline_without_credentials_and_says_how_to_sync(monkeypatch, tmp_path, caplog):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    cfg = OmegaConf.create({"_target_": "pytorch_lightning.loggers.WandbLogger", "project": "t",
                            "save_dir": str(tmp_path), "name": "x"})
    with caplog.at_level(logging.WARNING):
        logger = build_logger(cfg)
    import os

    assert os.environ["WANDB_MODE"] == "offline"
    assert "wandb sync" in caplog.text
    assert logger is not None


def test_explicit_wandb_mode_is_respected(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cfg = OmegaConf.create({"_target_": "pytorch_lightning.loggers.WandbLogger", "project": "t", "save_dir": str(tmp_path)})
    build_logger(cfg)
    import os

    assert os.environ["WANDB_MODE"] == "disabled"


def test_none_logger():
    assert build_logger(OmegaConf.create({"_target_": None})) is None


def test_redact_hides_secrets_but_keeps_the_variable_name():
    cfg = {"client": {"api_key": "sk-123", "api_key_env": "OPENAI_API_KEY"}, "hf_token": "hf_x", "lr": 1e-4,
           "list": [{"password": "p"}]}
    out = redact(cfg)
    assert out["client"]["api_key"] == "<redacted>" and out["client"]["api_key_env"] == "OPENAI_API_KEY"
    assert out["hf_token"] == "<redacted>" and out["lr"] == 1e-4 and out["list"][0]["password"] == "<redacted>"
    assert "sk-123" not in str(out)
