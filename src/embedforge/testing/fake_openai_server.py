"""A local OpenAI-compatible chat server for tests and benchmarks, with fault injection.

POST /v1/chat/completions answers with deterministic JSON for whichever prompt kind the
`[kind: step/task_type]` marker names; GET /stats reports what was served, per request key
(embedforge.synth.store.request_key of the body, i.e. the client's cache key).

The Batch API is there too: POST /v1/files (multipart upload), GET /v1/files/{id}/content,
POST /v1/batches, GET /v1/batches/{id}, GET /v1/batches (list), POST /v1/batches/{id}/cancel.
A batch runs `batch_latency_s` after creation, answering each line as the chat endpoint would
(transient faults become error lines); /stats counts batches created and, per request key, how many
batches it was submitted in.

`content_shape` sends valid replies in another shape (a list of content parts, a parsed JSON object,
null with a refusal, a reasoning model's `reasoning_content` beside the answer or a `<think>` block
before it) to test clients against servers that do so.

`response_format` json_object and json_schema get a bare JSON object (the brainstorm list inside
{"tasks": ...}), as a constrained server sends; the schemas received are kept by name (/stats).
`served_models` makes GET /v1/models list those ids (None: 404, as a server without the route).

Faults: `schedule[n]` forces the fault of the n-th request received (None = normal). Otherwise
transient faults (429, 500, stall) are drawn per (key, attempt), so retries can succeed, and
content faults (invalid_json, truncated, wrong_keys, constant) per key only, so the same prompt
always gets the same bad reply (as a cached reply would be): runs stay comparable across restarts.

    python -m embedforge.testing.fake_openai_server --port 8011 --latency 0.2 --fault 500=0.2 --fault 429=0.1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

from embedforge.synth.prompts import prompt_kind
from embedforge.synth.store import request_key
from embedforge.synth.taxonomy import OUTPUT_KEYS

TRANSIENT = ("429", "500", "stall")
CONTENT = ("invalid_json", "truncated", "wrong_keys", "constant")


@dataclass
class FaultConfig:
    rates: dict[str, float] = field(default_factory=dict)  # fault name -> probability
    schedule: list[str | None] = field(default_factory=list)
    latency_s: float = 0.0
    stall_s: float = 5.0
    retry_after_s: float = 0.05
    seed: int = 0
    api_key: str | None = None  # if set, other keys get 401
    brainstorm_vocab: int = 100000  # distinct task subjects: smaller = more duplicate definitions
    batch_latency_s: float = 0.5  # Batch API: seconds from creation to completion
    batch_expire_first: int = 0  # the first N batches end `expired` with no results
    content_shape: str = "string"  # string | parts | object | refusal | reasoning_content | think
    served_models: list[str] | None = None  # ids GET /v1/models lists; None = no such route (404)

    def __post_init__(self) -> None:
        for name in self.rates:
            if name not in TRANSIENT + CONTENT:
                raise ValueError(f"unknown fault '{name}' (known: {', '.join(TRANSIENT + CONTENT)})")


def _pick(rng: random.Random, names: tuple[str, ...], rates: dict[str, float]) -> str | None:
    u, acc = rng.random(), 0.0
    for name in names:
        acc += rates.get(name, 0.0)
        if u < acc:
            return name
    return None


def fake_content(kind: tuple[str, str] | None, key: str, prompt: str, vocab: int = 100000) -> str:
    """A valid reply for the prompt kind, unique per request key."""
    h = key[:12]
    if kind is None:
        return "I am a fake server and did not recognise this prompt."
    step, task = kind
    if step == "brainstorm":
        # Subjects come from a finite vocabulary, so calls repeat each other now and then (as an LLM
        # does), sometimes with other case, list numbers or no final period: dedup has work to do.
        m = re.search(r"Write (\d+) different task definitions", prompt)
        n = int(m.group(1)) if m else 20
        rng = random.Random(key)
        out = []
        for k in range(n):
            text = f"Given a {task} input about subject {rng.randrange(vocab)}, find the matching text."
            style = rng.random()
            if style < 0.1:
                text = text.upper()
            elif style < 0.2:
                text = f"{k + 1}. {text.rstrip('.')}"
            out.append(text)
        return json.dumps(out)
    q, p, neg = OUTPUT_KEYS[task]
    obj = {q: f"{task} query {h}", p: f"The {task} positive text for {h}, long enough to read."}
    if neg:
        obj[neg] = f"An unrelated {task} negative text for {h}."
    return "```json\n" + json.dumps(obj, indent=1) + "\n```" if int(h, 16) % 5 == 0 else json.dumps(obj)


def bad_content(fault: str, good: str, kind: tuple[str, str] | None) -> str:
    if fault == "invalid_json":
        return "Sure! Here is your example: {'user_query': unquoted, }"
    if fault == "truncated":
        return good[: max(1, len(good) // 2)]
    if fault == "wrong_keys":
        return json.dumps({"question": "wrong", "answer": "keys"})
    if kind and kind[0] == "generate":  # constant: the same reply for every prompt of this kind
        q, p, neg = OUTPUT_KEYS[kind[1]]
        return json.dumps({q: "constant query", p: "constant positive", **({neg: "constant negative"} if neg else {})})
    return good


def json_mode(content: str) -> str:
    """What a server in JSON mode sends: a bare JSON object (lists go inside {"tasks": ...})."""
    fenced = re.match(r"^```(?:json)?\n(.*)\n```$", content, re.DOTALL)
    body = fenced.group(1) if fenced else content
    try:
        value = json.loads(body)
    except json.JSONDecodeError:
        return content
    return json.dumps(value if isinstance(value, dict) else {"tasks": value})


def shaped_message(content: str, shape: str) -> dict:
    """The assistant message carrying `content` in the given shape (see FaultConfig.content_shape)."""
    if shape == "parts":
        half = len(content) // 2
        return {"role": "assistant", "content": [{"type": "text", "text": content[:half]},
                                                  {"type": "text", "text": content[half:]}]}
    if shape == "object":  # JSON-mode servers that hand back the object itself, not its text
        try:
            value = json.loads(content)
        except json.JSONDecodeError:
            value = None
        return {"role": "assistant", "content": value if isinstance(value, dict) else content}
    if shape == "refusal":
        return {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    if shape == "reasoning_content":  # vLLM / llama.cpp with a reasoning parser: thoughts apart
        return {"role": "assistant", "content": content,
                "reasoning_content": "The user wants JSON. I will write the object with the keys asked for."}
    if shape == "think":  # no reasoning parser: the thoughts open the content
        return {"role": "assistant", "content": "<think>\nThey want JSON only; {\"a\": 1} is not it.\n</think>\n\n" + content}
    return {"role": "assistant", "content": content}


class FakeServer:
    def __init__(self, faults: FaultConfig | None = None, host: str = "127.0.0.1", port: int = 0):
        self.faults = faults or FaultConfig()
        self.host, self.port = host, port
        self._lock = threading.Lock()
        self._n = 0
        self.attempts_by_key: Counter = Counter()
        self.ok_by_key: Counter = Counter()
        self.fault_counts: Counter = Counter()
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.batches_created = 0
        self.batch_polls = 0
        self.batch_keys: Counter = Counter()  # request key -> batches it was submitted in
        self._ids = 0
        self._expired = 0
        self.response_formats: Counter = Counter()  # response_format type ("None" = not sent) -> requests
        self.models: Counter = Counter()
        self.schemas: dict[str, dict] = {}  # json_schema.name -> the last schema received under it
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None

    # -- HTTP -----------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/files", self._upload)
        app.router.add_get("/v1/files/{fid}/content", self._file_content)
        app.router.add_post("/v1/batches", self._create_batch)
        app.router.add_get("/v1/batches", self._list_batches)
        app.router.add_get("/v1/batches/{bid}", self._get_batch)
        app.router.add_post("/v1/batches/{bid}/cancel", self._cancel_batch)
        app.router.add_get("/stats", self._stats)
        app.router.add_get("/v1/models", self._models)
        return app

    async def _models(self, request: web.Request) -> web.Response:
        served = self.faults.served_models
        if served is None:
            return web.json_response({"error": {"message": "not found", "type": "not_found"}}, status=404)
        return web.json_response({"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in served]})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    def _decide(self, key: str) -> tuple[int, str | None]:
        with self._lock:
            n = self._n
            self._n += 1
            attempt = self.attempts_by_key[key]
            self.attempts_by_key[key] += 1
        f = self.faults
        if n < len(f.schedule):
            return n, f.schedule[n]
        fault = _pick(random.Random(f"{f.seed}:{key}:{attempt}"), TRANSIENT, f.rates)
        return n, fault or _pick(random.Random(f"{f.seed}:{key}:content"), CONTENT, f.rates)

    def _authorized(self, request: web.Request) -> web.Response | None:
        f = self.faults
        if f.api_key is not None and request.headers.get("Authorization") != f"Bearer {f.api_key}":
            # Echo what was sent, as careless servers do, so tests can prove the client redacts it.
            presented = request.headers.get("Authorization", "")
            return web.json_response({"error": {"message": f"invalid api key {presented}", "type": "auth"}}, status=401)
        return None

    async def _chat(self, request: web.Request) -> web.Response:
        denied = self._authorized(request)
        if denied is not None:
            return denied
        body = await request.json()
        if self.faults.latency_s:
            await asyncio.sleep(self.faults.latency_s)
        status, payload, headers = await self._answer(body, stall=True)
        return web.json_response(payload, status=status, headers=headers)

    async def _answer(self, body: dict, stall: bool) -> tuple[int, dict, dict]:
        """(HTTP status, JSON body, headers) for one chat request, faults included."""
        f = self.faults
        key = request_key(body)
        fmt = body.get("response_format")
        with self._lock:
            self.response_formats[fmt.get("type") if isinstance(fmt, dict) else str(fmt)] += 1
            self.models[str(body.get("model"))] += 1
            if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
                spec = fmt.get("json_schema") or {}
                self.schemas[str(spec.get("name"))] = spec
        _, fault = self._decide(key)
        if fault:
            with self._lock:
                self.fault_counts[fault] += 1
        if fault == "429":
            headers = {"retry-after-ms": str(int(f.retry_after_s * 1000)), "Retry-After": str(max(0, round(f.retry_after_s)))}
            return 429, {"error": {"message": "slow down", "type": "rate_limit"}}, headers
        if fault == "500":
            return 500, {"error": {"message": "boom", "type": "server_error"}}, {}
        if fault == "stall":
            if stall:
                await asyncio.sleep(f.stall_s)
            return 504, {"error": {"message": "stalled", "type": "timeout"}}, {}
        prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        kind = prompt_kind(body.get("messages", []))
        content = fake_content(kind, key, prompt, f.brainstorm_vocab)
        if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
            content = json_mode(content)
        finish = "stop"
        if fault in CONTENT:
            content = bad_content(fault, content, kind)
            finish = "length" if fault == "truncated" else "stop"
        message = shaped_message(content, f.content_shape)
        with self._lock:
            self.ok_by_key[key] += 1
        return 200, {
            "id": f"chatcmpl-{key[:16]}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": len(prompt) // 4 + 1, "completion_tokens": len(content) // 4 + 1,
                      "total_tokens": len(prompt) // 4 + len(content) // 4 + 2},
        }, {}

    # -- files and batches ----------------------------------------------------------------------
    def _new_id(self, prefix: str) -> str:
        with self._lock:
            self._ids += 1
            return f"{prefix}-{self._ids:06d}"

    async def _upload(self, request: web.Request) -> web.Response:
        denied = self._authorized(request)
        if denied is not None:
            return denied
        form = await request.post()
        upload = form.get("file")
        if upload is None or not hasattr(upload, "file"):
            return web.json_response({"error": {"message": "missing file", "type": "invalid_request"}}, status=400)
        data = upload.file.read()
        fid = self._new_id("file")
        self.files[fid] = data
        return web.json_response({"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                                  "filename": upload.filename, "purpose": form.get("purpose", "batch"), "status": "processed"})

    async def _file_content(self, request: web.Request) -> web.Response:
        denied = self._authorized(request)
        if denied is not None:
            return denied
        fid = request.match_info["fid"]
        if fid not in self.files:
            return web.json_response({"error": {"message": f"no file {fid}", "type": "not_found"}}, status=404)
        return web.Response(body=self.files[fid], content_type="application/octet-stream")

    async def _create_batch(self, request: web.Request) -> web.Response:
        denied = self._authorized(request)
        if denied is not None:
            return denied
        body = await request.json()
        fid = body.get("input_file_id")
        if fid not in self.files:
            return web.json_response({"error": {"message": f"no file {fid}", "type": "invalid_request"}}, status=400)
        lines = [json.loads(l) for l in self.files[fid].decode().splitlines() if l.strip()]
        bid = self._new_id("batch")
        now = int(time.time())
        batch = {
            "id": bid, "object": "batch", "endpoint": body.get("endpoint"), "errors": None,
            "input_file_id": fid, "completion_window": body.get("completion_window", "24h"),
            "status": "validating", "output_file_id": None, "error_file_id": None, "created_at": now,
            "in_progress_at": None, "expires_at": now + 86400, "completed_at": None, "failed_at": None,
            "expired_at": None, "cancelled_at": None,
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": body.get("metadata") or {},
        }
        with self._lock:
            self.batches[bid] = batch
            self.batches_created += 1
            for line in lines:
                self.batch_keys[request_key(line.get("body", {}))] += 1
        asyncio.get_running_loop().create_task(self._run_batch(bid, lines))
        return web.json_response(batch)

    async def _run_batch(self, bid: str, lines: list[dict]) -> None:
        batch = self.batches[bid]
        await asyncio.sleep(self.faults.batch_latency_s / 2)
        batch["status"], batch["in_progress_at"] = "in_progress", int(time.time())
        await asyncio.sleep(self.faults.batch_latency_s / 2)
        if batch["status"] != "in_progress":  # cancelled meanwhile
            return
        if self._expired < self.faults.batch_expire_first:
            with self._lock:
                self._expired += 1
            batch["status"], batch["expired_at"] = "expired", int(time.time())
            return
        out, err = [], []
        for line in lines:
            status, payload, _ = await self._answer(line.get("body", {}), stall=False)
            row = {"id": f"batch_req_{len(out) + len(err)}", "custom_id": line.get("custom_id"),
                   "response": {"status_code": status, "request_id": "req", "body": payload}, "error": None}
            if status == 200:
                out.append(row)
            else:
                row["error"] = {"code": str(status), "message": payload.get("error", {}).get("message", "")}
                err.append(row)
        if out:
            batch["output_file_id"] = self._new_id("file")
            self.files[batch["output_file_id"]] = "".join(json.dumps(r) + "\n" for r in out).encode()
        if err:
            batch["error_file_id"] = self._new_id("file")
            self.files[batch["error_file_id"]] = "".join(json.dumps(r) + "\n" for r in err).encode()
        batch["request_counts"] = {"total": len(lines), "completed": len(out), "failed": len(err)}
        batch["status"], batch["completed_at"] = "completed", int(time.time())

    def _find_batch(self, request: web.Request) -> tuple[dict | None, web.Response | None]:
        """(the batch the URL names, None), or (None, the 401/404 response to send)."""
        denied = self._authorized(request)
        if denied is not None:
            return None, denied
        batch = self.batches.get(request.match_info["bid"])
        if batch is None:
            return None, web.json_response({"error": {"message": "no such batch", "type": "not_found"}}, status=404)
        return batch, None

    async def _get_batch(self, request: web.Request) -> web.Response:
        batch, error = self._find_batch(request)
        if error is not None:
            return error
        with self._lock:
            self.batch_polls += 1
        return web.json_response(batch)

    async def _list_batches(self, request: web.Request) -> web.Response:
        denied = self._authorized(request)
        if denied is not None:
            return denied
        ordered = sorted(self.batches.values(), key=lambda b: b["id"], reverse=True)  # newest first
        after = request.query.get("after")
        if after:
            ordered = [b for b in ordered if b["id"] < after]
        limit = int(request.query.get("limit", 20))
        page = ordered[:limit]
        return web.json_response({"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                                  "last_id": page[-1]["id"] if page else None, "has_more": len(ordered) > limit})

    async def _cancel_batch(self, request: web.Request) -> web.Response:
        batch, error = self._find_batch(request)
        if error is not None:
            return error
        if batch["status"] not in ("completed", "failed", "expired", "cancelled"):
            batch["status"], batch["cancelled_at"] = "cancelled", int(time.time())
        return web.json_response(batch)

    def stats(self) -> dict:
        with self._lock:
            return {
                "requests": self._n,
                "attempts_by_key": dict(self.attempts_by_key),
                "ok_by_key": dict(self.ok_by_key),
                "faults": dict(self.fault_counts),
                "batches_created": self.batches_created,
                "batch_polls": self.batch_polls,
                "batch_keys": dict(self.batch_keys),
                "response_formats": dict(self.response_formats),
                "models": dict(self.models),
                "schemas": dict(self.schemas),
            }

    # -- lifecycle (background thread) ----------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> "FakeServer":
        ready = threading.Event()

        async def serve() -> None:
            self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=0.5)
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.host, self.port)
            await site.start()
            self.port = self._runner.addresses[0][1]  # resolves port=0 (public API; no private site attribute)
            ready.set()

        def loop_main() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(serve())
            self._loop.run_forever()

        self._thread = threading.Thread(target=loop_main, name="fake-openai", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake server did not start within 10 s")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        async def shutdown() -> None:
            await self._runner.cleanup()
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in pending:  # e.g. stalled handlers still sleeping
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        fut = asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        try:
            fut.result(timeout=5)
        except Exception:  # noqa: BLE001 - shutting down a test server; nothing to recover
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop = None

    def __enter__(self) -> "FakeServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8011)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--stall", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-latency", type=float, default=0.5, help="Batch API: seconds until a batch completes")
    ap.add_argument("--fault", action="append", default=[], help="NAME=RATE, e.g. 500=0.2")
    args = ap.parse_args(argv)
    rates = {k: float(v) for k, v in (x.split("=", 1) for x in args.fault)}
    server = FakeServer(FaultConfig(rates=rates, latency_s=args.latency, stall_s=args.stall, seed=args.seed,
                                     batch_latency_s=args.batch_latency))
    print(f"fake OpenAI server on http://{args.host}:{args.port}/v1", flush=True)
    web.run_app(server.app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
