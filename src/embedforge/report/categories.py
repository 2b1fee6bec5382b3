"""Task -> MTEB category (task type): mteb's task metadata first, then local fallbacks.

Local task folders (eval.data_dir) may carry names mteb does not know; their task.json says the type.
A task found in neither is reported as uncategorised, never guessed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


class TaskTypes:
    def __init__(self, overrides: dict[str, str] | None = None, data_dirs: list[Path] | None = None):
        self.overrides = dict(overrides or {})
        self.data_dirs = [Path(d) for d in data_dirs or []]
        self._cache: dict[str, str | None] = {}

    def __call__(self, task: str) -> str | None:
        if task not in self._cache:
            self._cache[task] = self._lookup(task)
        return self._cache[task]

    def _lookup(self, task: str) -> str | None:
        if task in self.overrides:
            return self.overrides[task]
        try:
            import mteb

            return str(mteb.get_task(task).metadata.type)
        except Exception:  # unknown to mteb: a local folder's own name
            pass
        for root in self.data_dirs:
            spec = root / task / "task.json"
            if spec.is_file():
                data = json.loads(spec.read_text(encoding="utf-8"))
                if data.get("mteb_task"):
                    return self(str(data["mteb_task"]))
                if data.get("type"):
                    return str(data["type"])
        return None
