"""Where the project's own files live (configs, demo data), independent of the working directory."""

from __future__ import annotations

import os
from pathlib import Path

# src/embedforge/paths.py -> repository root is three levels up (editable / source checkouts).
REPO_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = Path(os.environ.get("EMBEDFORGE_CONF_DIR", REPO_ROOT / "conf"))
CACHE_DIR = Path(os.environ.get("EMBEDFORGE_CACHE", Path.home() / ".cache" / "embedforge"))
