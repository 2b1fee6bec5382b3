"""Crash-safe JSONL files: the request cache (what was paid for) and the example/reject outputs.

Each record is one line written with a single O_APPEND `os.write`, so a `kill -9` can at worst
leave one torn last line; opening a file detects that, truncates it away and warns. The cache is the
source of truth: a resumed run replays every cached response through the same parsing code, so the
outputs are rebuilt exactly and no request is ever sent twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from embedforge.data.jsonl import iter_json_lines

log = logging.getLogger(__name__)

# Request fields that define "the same request" (anything else, e.g. timeouts, is transport).
KEY_FIELDS = ("model", "messages", "temperature", "top_p", "max_tokens", "seed")


def request_key(payload: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the request's defining fields (model, messages, sampling, seed)."""
    canon = {k: payload.get(k) for k in KEY_FIELDS}
    blob = json.dumps(canon, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def repair_torn_tail(path: Path) -> int:
    """Truncate a partial last line (no trailing newline); return the number of bytes removed."""
    if not path.exists():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with path.open("rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return 0
        # Walk back in blocks to the last newline.
        pos, block = size, 65536
        keep = 0
        while pos > 0:
            start = max(0, pos - block)
            fh.seek(start)
            chunk = fh.read(pos - start)
            idx = chunk.rfind(b"\n")
            if idx >= 0:
                keep = start + idx + 1
                break
            pos = start
        fh.truncate(keep)
    removed = size - keep
    log.warning("%s: torn last line (partial write, %d bytes) detected and truncated", path, removed)
    return removed


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object); undecodable lines are warned about with file:line and skipped."""
    if not path.exists():
        return
    for lineno, obj, reason in iter_json_lines(path):
        if reason:
            log.warning("%s:%d: unreadable line skipped (%s)", path, lineno, reason)
        elif isinstance(obj, dict):
            yield lineno, obj


class JsonlAppender:
    """Append one JSON object per line, one syscall per record."""

    def __init__(self, path: Path, *, truncate: bool = False, fsync: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not truncate:
            repair_torn_tail(self.path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
        self._fd = os.open(self.path, flags, 0o644)
        self._fsync = fsync

    def append(self, obj: dict) -> None:
        data = (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8")
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        if self._fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@dataclass
class CachedResponse:
    text: str | None
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "finish_reason": self.finish_reason,
        }


class RequestCache:
    """key -> completed response, persisted in an append-only JSONL file."""

    def __init__(self, path: Path, *, fsync: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_torn_tail(self.path)
        self._entries: dict[str, CachedResponse] = {}
        for _, obj in read_jsonl(self.path):
            try:
                self._entries[obj["key"]] = CachedResponse(
                    obj.get("text"), int(obj.get("prompt_tokens", 0)),
                    int(obj.get("completion_tokens", 0)), obj.get("finish_reason"),
                )
            except (KeyError, TypeError, ValueError):
                log.warning("%s: malformed cache entry skipped", self.path)
        self._writer = JsonlAppender(self.path, fsync=fsync)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> set[str]:
        return set(self._entries)

    def get(self, key: str) -> CachedResponse | None:
        return self._entries.get(key)

    def put(self, key: str, kind: str, response: CachedResponse) -> None:
        if key in self._entries:
            return
        self._entries[key] = response
        self._writer.append({"key": key, "kind": kind, **response.to_dict()})

    def close(self) -> None:
        self._writer.close()
