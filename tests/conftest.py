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
