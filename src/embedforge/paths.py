"""Where the project's own files live (configs, demo data), independent of the working directory."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

# src/embedforge/paths.py -> repository root is three levels up (editable / source checkouts).
REPO_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = Path(os.environ.get("EMBEDFORGE_CONF_DIR", REPO_ROOT / "conf"))
CACHE_DIR = Path(os.environ.get("EMBEDFORGE_CACHE", Path.home() / ".cache" / "embedforge"))


@contextlib.contextmanager
def building_folder(target: Path):
    """Build a cached folder atomically: yields a staging folder next to `target`, renamed to it when the
    block succeeds. If another process finished first, its identical copy stays; staging is always removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        yield staging
        try:
            staging.rename(target)
        except OSError:  # another process won the race; its copy is identical
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
