"""Crash-safe JSONL files: the request cache (what was paid for) and the example/reject outputs.

Each record is one line written with a single O_APPEND `os.write`, so a `kill -9` can at worst
leave one torn last line; opening a file detects that, truncates it away and warns. The cache is the
source of truth: a resumed run replays every cached response through the same parsing code, so the
outputs are rebuilt exactly and no request is ever sent twice.

Outputs (examples, rejects, report) are never edited in place: a run spools them into scratch files
and `publish` swaps the finished files in with os.replace only when the replay completed, so a run
that stops early leaves the previous complete outputs untouched.
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


# Defining fields added later: part of the key only when set, so existing caches keep their keys.
# `attempt` is ours, never sent: the n-th try of an item after rejected replies (0 = first, not keyed).
OPTIONAL_KEY_FIELDS = ("response_format", "attempt")


def request_key(payload: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the request's defining fields (model, messages, sampling, seed)."""
    canon = {k: payload.get(k) for k in KEY_FIELDS}
    canon.update({k: payload[k] for k in OPTIONAL_KEY_FIELDS if payload.get(k) is not None})
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


def iter_store_records(path: Path, problems: list[str] | None = None) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) of a cache/state file; each bad line is logged as file:line.

    Used for files this module wrote itself, where the only expected damage is a torn last line
    (repaired on open). Bad lines are also appended to `problems`, so callers can count them.
    """
    if not path.exists():
        return
    for lineno, obj, reason in iter_json_lines(path):
        if reason is None and not isinstance(obj, dict):
            reason = "not a JSON object"
        if reason:
            message = f"{path}:{lineno}: unreadable line skipped ({reason})"
            log.warning(message)
            if problems is not None:
                problems.append(message)
        else:
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
    """A completed reply as the server sent it.

    `text` is the message content in whatever JSON shape it came (a string, a list of content parts,
    an object, or null); parsing.reply_text turns it into text or a reject reason, so a cached reply
    of an unexpected shape can never crash a replay.
    """

    text: Any
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None
    refusal: str | None = None
    reasoning_chars: int = 0  # length of a separate `reasoning_content` (not kept: it is never parsed)

    def to_dict(self) -> dict:
        out = {
            "text": self.text,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "finish_reason": self.finish_reason,
        }
        if self.refusal is not None:
            out["refusal"] = self.refusal
        if self.reasoning_chars:
            out["reasoning_chars"] = self.reasoning_chars
        return out

    @classmethod
    def from_dict(cls, obj: dict) -> "CachedResponse":
        refusal = obj.get("refusal")
        finish = obj.get("finish_reason")
        return cls(
            obj.get("text"), _int(obj.get("prompt_tokens")), _int(obj.get("completion_tokens")),
            finish if isinstance(finish, str) else None, refusal if isinstance(refusal, str) else None,
            _int(obj.get("reasoning_chars")),
        )


def _int(value: Any) -> int:
    """Token counts from a cache line; anything odd counts as 0 rather than failing a replay."""
    try:
        return max(int(value or 0), 0)
    except (TypeError, ValueError):
        return 0


class RequestCache:
    """key -> completed response, persisted in an append-only JSONL file."""

    def __init__(self, path: Path, *, fsync: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_torn_tail(self.path)
        self._entries: dict[str, CachedResponse] = {}
        self.problems: list[str] = []  # unreadable lines: logged, counted in the report
        for lineno, obj in iter_store_records(self.path, self.problems):
            key = obj.get("key")
            if not isinstance(key, str):
                self.problems.append(f"{self.path}:{lineno}: cache entry without a key skipped")
                log.warning(self.problems[-1])
                continue
            self._entries[key] = CachedResponse.from_dict(obj)
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


class SortedSpool:
    """Output lines that arrive in any order, written out sorted by a key when the run completes.

    Lines go to a scratch file as they come (one write each); only (key -> offset, length) stays in
    memory, so 500k examples cost a few tens of MB. `discard` drops a line (a duplicate superseded
    by a lower item index), which keeps the outputs independent of completion order.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        self._size = 0
        self._index: dict[Any, tuple[int, int]] = {}

    def add(self, key: Any, obj: dict) -> None:
        data = (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8")
        offset, done = self._size, 0
        while done < len(data):
            done += os.pwrite(self._fd, data[done:], offset + done)
        self._size += len(data)
        self._index[key] = (offset, len(data))

    def discard(self, key: Any) -> None:
        self._index.pop(key, None)

    def __len__(self) -> int:
        return len(self._index)

    def iter_sorted(self) -> Iterator[dict]:
        for key in sorted(self._index):
            offset, length = self._index[key]
            yield json.loads(os.pread(self._fd, length, offset))

    def write_sorted(self, dest: Path, *, fsync: bool = False) -> None:
        """Write the kept lines in key order to `dest` (a temporary name; see `publish`)."""
        with open(dest, "wb") as out:
            for key in sorted(self._index):
                offset, length = self._index[key]
                out.write(os.pread(self._fd, length, offset))
            out.flush()
            if fsync:
                os.fsync(out.fileno())

    def close(self, *, remove: bool = True) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if remove:
            self.path.unlink(missing_ok=True)


def temp_name(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.partial")


def publish(files: list[tuple[Path, bytes | SortedSpool]], *, fsync: bool = False) -> None:
    """Write every output under a temporary name first, then os.replace them all into place.

    The last file in `files` should be the report, so a report never describes outputs that are
    not there yet. Nothing is replaced if writing any of the temporary files fails.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for dest, content in files:
            tmp = temp_name(dest)
            if isinstance(content, SortedSpool):
                content.write_sorted(tmp, fsync=fsync)
            else:
                with open(tmp, "wb") as fh:
                    fh.write(content)
                    fh.flush()
                    if fsync:
                        os.fsync(fh.fileno())
            staged.append((tmp, dest))
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, dest in staged:
        os.replace(tmp, dest)
