"""Batch API mode (`client.mode=batch`): the same requests, sent as batch files at half the price.

Each step (brainstorm, then generation) gathers the requests that are neither cached nor already in
a pending batch, writes them as JSONL batch files (`custom_id` = the request's cache key) under
`out_dir/batches/`, uploads and submits them, polls until they end, and puts every result into the
same request cache. The pipeline then replays the cache exactly as in online mode, so parsing,
rejects, dedup and reports are shared; a request that failed inside a batch is a `transport` reject
that the next run submits again.

Nothing is submitted twice: `batches.jsonl` records each batch file as `submitting` before the
upload and `submitted` (with the batch id) right after it is created. A rerun after a kill polls the
recorded batch ids; a chunk recorded as `submitting` only (killed between the two records) is looked
up among the account's batches by its `metadata.embedforge_chunk` id before anything is sent again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import openai

from embedforge.synth.client import FATAL_STATUS, FatalAPIError, cannot_connect, response_from_completion
from embedforge.synth.store import JsonlAppender, iter_store_records, repair_torn_tail

if TYPE_CHECKING:
    from embedforge.synth.requests import BatchHost, Request

log = logging.getLogger(__name__)

STATE_FILE = "batches.jsonl"
TERMINAL = ("completed", "failed", "expired", "cancelled")
ENDPOINT = "/v1/chat/completions"
ADOPT_SEARCH_LIMIT = 2000  # batches listed when looking for one a killed run created


@dataclass
class Chunk:
    chunk: str
    endpoint: int
    phase: str
    requests: int = 0
    batch_id: str | None = None
    status: str = "new"  # new | submitting | submitted | ingested
    keys: list[str] = field(default_factory=list)

    @property
    def path_name(self) -> str:
        return f"{self.chunk}.jsonl"


class BatchRunner:
    def __init__(self, pipeline: "BatchHost"):
        self.p = pipeline
        self.s = pipeline.s
        self.dir = self.s.out_dir / "batches"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_path = self.s.out_dir / STATE_FILE
        repair_torn_tail(self.state_path)
        self.chunks: dict[str, Chunk] = {}
        for lineno, rec in iter_store_records(self.state_path):
            self._apply(rec, lineno)
        self.state = JsonlAppender(self.state_path, fsync=True)  # few lines; each must survive kill -9
        self.counts = pipeline.stats.batches

    # -- state ----------------------------------------------------------------------------------
    def _apply(self, rec: dict, lineno: int = 0) -> None:
        cid, event = rec.get("chunk"), rec.get("event")
        if not isinstance(cid, str) or event not in ("submitting", "submitted", "ingested"):
            log.warning("%s:%d: unknown batch state record skipped", self.state_path, lineno)
            return
        c = self.chunks.setdefault(cid, Chunk(cid, int(rec.get("endpoint", 0)), str(rec.get("phase", "?"))))
        c.requests = int(rec.get("requests", c.requests) or 0)
        c.batch_id = rec.get("batch_id") or c.batch_id
        c.status = event

    def _record(self, rec: dict) -> None:
        self.state.append(rec)
        self._apply(rec)

    def _sdk(self, endpoint: int) -> Any:
        return self.p.clients[endpoint].sdk

    # -- one step ---------------------------------------------------------------------------------
    async def ensure(self, requests: Iterable["Request"], phase: str) -> None:
        """Make every request of this step either cached or recorded as failed in its batch."""
        pending = [c for c in self.chunks.values() if c.status != "ingested"]
        in_flight: set[str] = set()
        for c in pending:
            c.keys = self._chunk_keys(c)
            in_flight.update(c.keys)
        self.kinds: dict[str, str] = {}
        new = self._write_chunks(requests, in_flight, phase)
        for c in pending:
            if c.status == "submitting":
                await self._adopt_or_submit(c)
            else:
                self.counts["resumed"] = self.counts.get("resumed", 0) + 1
        for c in new:
            await self._submit(c)
        await asyncio.gather(*(self._finish(c) for c in pending + new))

    def _write_chunks(self, requests: Iterable["Request"], skip: set[str], phase: str) -> list[Chunk]:
        """Batch files of up to batch_max_requests lines, one model each (as the Batch API requires),
        named by a hash of their request keys."""
        limit = self.s.client.batch_max_requests
        open_files: dict[int, tuple[Any, Path, Any, list[str]]] = {}
        chunks: list[Chunk] = []

        def close(generator: int) -> None:
            fh, tmp, digest, keys = open_files.pop(generator)
            fh.close()
            base = f"{phase[:5]}-{digest.hexdigest()[:24]}"
            # The same keys again (their earlier batch failed or expired): a new id, so a search
            # by id after a kill can never adopt the old batch.
            cid = f"{base}-{sum(1 for k in self.chunks if k.startswith(base))}"
            os.replace(tmp, self.dir / f"{cid}.jsonl")
            chunks.append(Chunk(cid, self.p.endpoint_of[generator], phase, len(keys), keys=keys))

        seen: set[str] = set()
        for req in requests:
            if req.key in seen or req.key in skip or req.key in self.p.cache:
                continue
            seen.add(req.key)
            self.kinds[req.key] = req.kind
            g = req.generator
            if g not in open_files:
                tmp = self.dir / f".writing-{g}.jsonl"
                seed = f"{self.p.endpoint_of[g]}:{self.s.generators[g].model}:{phase}"
                open_files[g] = (tmp.open("w", encoding="utf-8"), tmp, hashlib.sha256(seed.encode()), [])
            fh, _, digest, keys = open_files[g]
            line = {"custom_id": req.key, "method": "POST", "url": ENDPOINT, "body": req.payload}
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")
            digest.update(req.key.encode())
            keys.append(req.key)
            if len(keys) >= limit:
                close(g)
        for g in list(open_files):
            close(g)
        return chunks

    def _chunk_keys(self, c: Chunk) -> list[str]:
        path = self.dir / c.path_name
        if not path.exists():
            log.warning("%s: batch input file of pending chunk %s is missing", path, c.chunk)
            return []
        return [r["custom_id"] for _, r in iter_store_records(path) if isinstance(r.get("custom_id"), str)]

    # -- submit / adopt -------------------------------------------------------------------------
    async def _submit(self, c: Chunk) -> None:
        self.chunks[c.chunk] = c
        self._record({"event": "submitting", "chunk": c.chunk, "endpoint": c.endpoint, "phase": c.phase, "requests": c.requests})
        sdk = self._sdk(c.endpoint)
        data = (self.dir / c.path_name).read_bytes()
        uploaded = await self._call(lambda: sdk.files.create(file=(c.path_name, data), purpose="batch"), "upload")
        batch = await self._call(lambda: sdk.batches.create(
            input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window=self.s.client.batch_window,
            metadata={"embedforge_chunk": c.chunk},
        ), "create batch")
        self._record_submitted(c, batch.id, uploaded.id)
        self.counts["submitted"] = self.counts.get("submitted", 0) + 1
        log.info("batch %s submitted: %d requests (%s)", batch.id, c.requests, c.phase)

    def _record_submitted(self, c: Chunk, batch_id: str, file_id: str | None) -> None:
        self._record({"event": "submitted", "chunk": c.chunk, "batch_id": batch_id, "file_id": file_id})

    async def _adopt_or_submit(self, c: Chunk) -> None:
        """A run was killed between `submitting` and `submitted`: find its batch before resending."""
        sdk = self._sdk(c.endpoint)
        seen = 0
        async for b in sdk.batches.list(limit=100):
            meta = b.metadata or {}
            if meta.get("embedforge_chunk") == c.chunk:
                self._record_submitted(c, b.id, b.input_file_id)
                self.counts["adopted"] = self.counts.get("adopted", 0) + 1
                log.info("batch %s of chunk %s adopted (created by a run that stopped)", b.id, c.chunk)
                return
            seen += 1
            if seen >= ADOPT_SEARCH_LIMIT:
                break
        await self._submit(c)

    # -- poll / ingest --------------------------------------------------------------------------
    async def _finish(self, c: Chunk) -> None:
        sdk = self._sdk(c.endpoint)
        while True:
            try:
                batch = await sdk.batches.retrieve(c.batch_id)
            except openai.APIStatusError as exc:
                if exc.status_code in FATAL_STATUS:
                    raise FatalAPIError(f"HTTP {exc.status_code} while polling batch {c.batch_id}") from None
                log.warning("polling batch %s: HTTP %s; trying again", c.batch_id, exc.status_code)
                batch = None
            except openai.APIConnectionError as exc:
                log.warning("polling batch %s: %s; trying again", c.batch_id, type(exc).__name__)
                batch = None
            if batch is not None and batch.status in TERMINAL:
                break
            await asyncio.sleep(self.s.client.batch_poll_s)
        ok, failed = 0, {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                content = await self._call(lambda f=file_id: sdk.files.content(f), "download results")
                o, f = self._ingest(content.text, file_id)
                ok += o
                failed.update(f)
        keys = c.keys or self._chunk_keys(c)
        for key in keys:
            if key not in self.p.cache and key not in failed:
                failed[key] = f"batch {c.batch_id} {batch.status}: no result for this request"
        self.p._batch_errors.update(failed)
        self._record({"event": "ingested", "chunk": c.chunk, "batch_id": c.batch_id, "status": batch.status,
                      "ok": ok, "errors": len(failed)})
        self.counts[f"batch_{batch.status}"] = self.counts.get(f"batch_{batch.status}", 0) + 1
        self.counts["results_ok"] = self.counts.get("results_ok", 0) + ok
        self.counts["results_failed"] = self.counts.get("results_failed", 0) + len(failed)
        (self.dir / c.path_name).unlink(missing_ok=True)

    def _ingest(self, text: str, file_id: str) -> tuple[int, dict[str, str]]:
        ok, failed = 0, {}
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                key = rec["custom_id"]
            except (ValueError, KeyError, TypeError):
                log.warning("batch result file %s:%d: malformed line skipped", file_id, lineno)
                self.counts["malformed_result_lines"] = self.counts.get("malformed_result_lines", 0) + 1
                continue
            response = rec.get("response") if isinstance(rec.get("response"), dict) else {}
            body = response.get("body")
            if response.get("status_code") == 200 and isinstance(body, dict):
                usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
                resp = response_from_completion(body, _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens")))
                if key not in self.p.cache:
                    self.p.cache.put(key, self.kinds.get(key, "batch"), resp)
                    self.p._paid_now.add(key)
                ok += 1
            else:
                err = rec.get("error") or (body or {}).get("error") or {}
                msg = err.get("message") if isinstance(err, dict) else str(err)
                failed[key] = f"batch: HTTP {response.get('status_code')}: {str(msg)[:200]}"
        return ok, failed

    async def _call(self, make, what: str):
        """One Batch/Files API call with the client's retries (401/403/404 stop the run)."""
        cs = self.s.client
        for attempt in range(cs.max_retries + 1):
            try:
                return await make()
            except openai.APIStatusError as exc:
                if exc.status_code in FATAL_STATUS or (exc.status_code < 500 and exc.status_code not in (408, 409, 429)):
                    raise FatalAPIError(f"HTTP {exc.status_code} from the Batch API ({what})") from None
                last = f"HTTP {exc.status_code}"
            except openai.APIConnectionError as exc:
                refused = cannot_connect(exc)
                if refused and not cs.retry_connect:
                    raise FatalAPIError(
                        f"cannot connect to {self.p.clients[0].base_url} ({refused}); is the server running? "
                        f"(client.retry_connect=true retries instead)"
                    ) from None
                last = type(exc).__name__
            if attempt < cs.max_retries:
                await asyncio.sleep(min(cs.backoff_max_s, cs.backoff_base_s * 2**attempt) * (0.5 + random.random() / 2))
        raise FatalAPIError(f"Batch API ({what}) failed after {cs.max_retries + 1} attempts: {last}")

    def close(self) -> None:
        self.state.close()


def _count(value: Any) -> int:
    try:
        return max(int(value or 0), 0)
    except (TypeError, ValueError):
        return 0
