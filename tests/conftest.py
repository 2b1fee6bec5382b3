"""Test-wide environment: never touch the network, never write outside a temp dir."""

from __future__ import annotations

import os
import tempfile

# Set before any test module imports transformers / wandb / mteb.
_TMP = tempfile.mkdtemp(prefix="embedforge-tests-")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ["WANDB_DIR"] = os.path.join(_TMP, "wandb")
os.environ["MTEB_CACHE"] = os.path.join(_TMP, "mteb")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The tiny Mistral and other built artefacts are cached across test runs (safe: content-addressed).
os.environ.setdefault("EMBEDFORGE_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "embedforge"))


import pytest  # noqa: E402


@pytest.fixture
def compose_train(tmp_path):
    """Compose conf/train.yaml with overrides, writing every output under tmp_path."""
    from hydra import compose, initialize_config_dir

    from embedforge.paths import CONF_DIR

    def _compose(*overrides: str):
        # One folder per run_name, standing in for Hydra's timestamped run folder.
        base = [f"paths.output_root={tmp_path}/runs", "paths.output_dir=${paths.output_root}/${run_name}/run",
                "logger=none"]
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name="train", overrides=base + list(overrides))

    return _compose


@pytest.fixture(scope="session")
def tiny_mistral_path():
    from embedforge.model.tiny_mistral import build_tiny_mistral

    return build_tiny_mistral()
