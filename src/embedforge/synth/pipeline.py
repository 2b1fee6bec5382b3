"""The two-step generation run: brainstorm task definitions, then one example per planned item.

Resuming is replay: every request is looked up in the cache first, so a rerun of the same command
re-parses what was already paid for and only sends what is missing. Transport failures are not
cached, so a rerun retries them. Outputs are spooled and published (os.replace) only when the whole
replay completed: a run that stops (401, kill, Ctrl-C, a brainstorm type with no usable reply)
leaves the previous complete outputs and the report that describes them, and writes what it had
beside them (`*.partial.*`, the report marked `"complete": false`). Exact-duplicate examples keep the
lowest item index, so the outputs do not depend on the order in which replies arrived.

Attempts: a rejected reply (item or brainstorm call) is followed by a new attempt, a new request
(derived seed, `attempt` in the cache key), up to `attempts_per_run` sent attempts per run and
`max_attempts` in all. Cached attempts are replayed for free, so a rerun continues after the last
attempt instead of replaying the same rejections; a request that was answered is never sent again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable

from embedforge.data.schema import validate_record
from embedforge.errors import ServiceError
from embedforge.synth import schemas
from embedforge.synth.client import ChatClient, FatalAPIError, RequestFailed, read_api_key
from embedforge.synth.parsing import (
    ParseError, dedup_definitions, example_text_key, parse_brainstorm, parse_example, reply_text, strip_reasoning,
    to_example,
)
from embedforge.synth.prompts import Messages, brainstorm_messages, check_templates, item_messages
from embedforge.synth.report import Progress, RunStats, estimate_tokens, report_bytes
from embedforge.synth.requests import Request
from embedforge.synth.sampling import BrainstormPlan, ItemPlan, Planner, derive_seed
from embedforge.synth.settings import (
    ClientSettings, GenerateSettings, SynthConfigError, brainstorm_types, check_out_dir_writable, planned_unique_tasks,
)
from embedforge.synth.store import CachedResponse, RequestCache, SortedSpool, publish, request_key
from embedforge.synth.taxonomy import EXPECTED_OUTPUT_TOKENS

log = logging.getLogger(__name__)
reject_log = logging.getLogger("embedforge.synth.rejects")  # one line per rejected reply (generate.log)

EXAMPLES_FILE, REJECTS_FILE, REPORT_FILE, TASKS_FILE = (
    "examples.jsonl", "rejects.jsonl", "report.json", "task_definitions.json",
)
# What a stopped run had, written beside the outputs (never over them).
PARTIAL_FILES = ("examples.partial.jsonl", "rejects.partial.jsonl", "report.partial.json")


class BrainstormFailed(ServiceError):
    """Step 1 could not complete; the task pools would differ on resume, so the run stops."""


class _Rejected(Exception):
    """A reply that did not parse; `reason` is the reject reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Tried:
    """One item's (or brainstorm call's) attempts in this run: replayed and sent."""

    value: Any = None  # the parsed reply of the accepted attempt
    status: str = "accepted"  # accepted | max_attempts | run_budget (a rerun tries more) | transport
    rejected: list = None  # (attempt, request, response, reason) per rejected attempt, in order
    error: str | None = None  # transport: why the request failed
    attempt: int = 0  # the accepted attempt


@dataclass
class _Kept:
    index: int
    task_type: str
    language: str
    generator: int


class Pipeline:
    def __init__(self, settings: GenerateSettings, clients: dict[int, ChatClient] | None = None):
        self.s = settings
        self.planner = Planner(settings)
        self.stats = RunStats(
            prices=[(g.price_input_per_m, g.price_output_per_m) for g in settings.generators],
            models=[g.model for g in settings.generators],
            price_factor=settings.batch_discount if settings.client.mode == "batch" else 1.0,
        )
        self._given_clients = clients  # tests: endpoint index -> client
        self._kept: dict[bytes, _Kept] = {}
        self._paid_now: set[str] = set()  # keys a batch paid for in this run (count as paid, not cached)
        self._batch_errors: dict[str, str] = {}
        self._quiet = False
        endpoints: list[tuple] = []
        for g in settings.generators:
            if g.endpoint not in endpoints:
                endpoints.append(g.endpoint)
        self.endpoints = endpoints
        self.endpoint_of = [endpoints.index(g.endpoint) for g in settings.generators]

    # -- requests -------------------------------------------------------------------------------
    def request(self, kind: str, messages: Messages, seed: int, generator: int, attempt: int = 0) -> Request:
        """The request of one attempt; attempt 0 keeps the key it had before attempts existed."""
        g, spec = self.s.generator, self.s.generators[generator]
        payload: dict[str, Any] = {
            "model": spec.request_model, "messages": messages, "temperature": g.temperature,
            "top_p": g.top_p, "max_tokens": g.max_tokens,
        }
        fmt = schemas.response_format(spec.response_format, kind, self.s.synth.tasks_per_call, g.schema_lengths)
        if fmt:
            payload["response_format"] = fmt
        if attempt:
            seed = derive_seed(seed, "attempt", attempt)
        # The sample seed is always part of the key, even when the API is not sent it. A retry's seed
        # differs; where the seed is not sent, the attempt number keys the retry apart instead.
        # (With the seed sent, the key stays request_key(body), which the test server counts by.)
        extra = {"attempt": attempt} if attempt and not g.send_seed else {}
        key = request_key({**payload, "seed": seed, **extra})
        if g.send_seed:
            payload["seed"] = seed
        est = sum(estimate_tokens(m["content"]) for m in messages) + EXPECTED_OUTPUT_TOKENS.get(kind, 500)
        return Request(kind, payload, key, generator, est)

    def brainstorm_request(self, plan: BrainstormPlan, attempt: int = 0) -> Request:
        fmt = self.s.generators[plan.generator].response_format
        messages = brainstorm_messages(plan.task_type, self.s.synth.tasks_per_call, fmt)
        return self.request("brainstorm", messages, plan.seed, plan.generator, attempt)

    def item_request(self, plan: ItemPlan, attempt: int = 0) -> Request:
        return self.request(plan.task_type, item_messages(plan), plan.seed, plan.generator, attempt)

    def _answer(self, resp: CachedResponse) -> str:
        """The reply's text; a separate reasoning_content and a leading <think> block are counted."""
        if resp.reasoning_chars and not self._quiet:
            self.stats.reasoning["replies_with_reasoning_content"] += 1
            self.stats.reasoning["reasoning_content_chars"] += resp.reasoning_chars
        text = reply_text(resp.text, resp.refusal)
        if "</think>" in text and not self._quiet:
            try:
                if strip_reasoning(text)[1]:
                    self.stats.reasoning["think_blocks_stripped"] += 1
            except ParseError:
                pass
        return text  # parsing strips the <think> block itself

    def _fresh(self, key: str) -> bool:
        """Whether this key's reply is paid in this run (not cached before it started)."""
        return key not in self.cache or key in self._paid_now

    async def _attempts(self, make: Callable[[int], Request], parse: Callable[[CachedResponse], Any]) -> _Tried:
        """Walk attempts 0, 1, ...: replay cached ones, send new ones within this run's budget."""
        rejected: list = []
        sent = 0
        for a in range(self.s.max_attempts):
            req = make(a)
            if self._fresh(req.key):
                if sent >= self.s.attempts_per_run:
                    return _Tried(None, "run_budget", rejected)
                sent += 1
            try:
                resp = await self._fetch(req)
            except RequestFailed as exc:
                return _Tried(None, "transport", rejected, str(exc))
            try:
                return _Tried(parse(resp), "accepted", rejected, attempt=a)
            except _Rejected as r:
                rejected.append((a, req, resp, r.reason))
        return _Tried(None, "max_attempts", rejected)

    def _next_unsent(self, make: Callable[[int], Request], parse: Callable[[CachedResponse], Any]) -> Request | None:
        """Batch mode: the next attempt to submit (None: accepted, or no attempt left in this run)."""
        fresh = 0
        self._quiet = True  # a look-ahead: the replay counts reasoning replies
        try:
            for a in range(self.s.max_attempts):
                req = make(a)
                if req.key not in self.cache:
                    return req if fresh < self.s.attempts_per_run else None
                fresh += req.key in self._paid_now
                try:
                    parse(self.cache.get(req.key))
                    return None
                except _Rejected:
                    continue
            return None
        finally:
            self._quiet = False

    async def _batch_rounds(self, parts: Callable[[], Iterable[tuple]], phase: str) -> None:
        """Batch mode: one round of batches per attempt, each submitting every call's next unsent attempt
        (`parts()`: each call's (make, parse), walked afresh per round)."""
        for _ in range(self.s.attempts_per_run):
            todo = [r for r in (self._next_unsent(*p) for p in parts()) if r is not None]
            if not todo:
                return
            await self.batch.ensure(todo, phase=phase)

    def _parser(self, parse: Callable[[str], Any]) -> Callable[[CachedResponse], Any]:
        def run(resp: CachedResponse) -> Any:
            try:
                return parse(self._answer(resp))
            except (ParseError, ValueError) as exc:
                raise _Rejected(_reason(exc, resp)) from None
            except Exception as exc:  # noqa: BLE001 - no cached reply may crash a replay
                raise _Rejected(f"unexpected_reply: {type(exc).__name__}") from None

        return run

    async def _fetch(self, req: Request) -> CachedResponse:
        hit = self.cache.get(req.key)
        if hit is not None:
            fresh = req.key in self._paid_now
            self._paid_now.discard(req.key)
            self.stats.tokens(hit.prompt_tokens, hit.completion_tokens, cached=not fresh, generator=req.generator)
            return hit
        if self.s.client.mode == "batch":  # every result came in with the batch; a miss failed there
            raise RequestFailed(self._batch_errors.get(req.key, "batch: no result for this request"))
        client = self.clients[self.endpoint_of[req.generator]]
        resp = await client.complete(req.payload, req.est_tokens)
        self.cache.put(req.key, req.kind, resp)
        self.stats.tokens(resp.prompt_tokens, resp.completion_tokens, cached=False, generator=req.generator)
        return resp

    # -- step 1 ---------------------------------------------------------------------------------
    def _brainstorm_parts(self, plan: BrainstormPlan):
        return (lambda a: self.brainstorm_request(plan, a)), self._parser(parse_brainstorm)

    async def _brainstorm_one(self, plan: BrainstormPlan, type_index: int) -> tuple[list[str], str]:
        """(task definitions, status) of one planned call and its attempts."""
        make, parse = self._brainstorm_parts(plan)
        tried = await self._attempts(make, parse)
        for a, req, resp, reason in tried.rejected:
            self._brainstorm_reject(plan, type_index, a, req.key, reason, resp)
        if tried.status == "transport":
            raise BrainstormFailed(
                f"brainstorm call {plan.task_type}#{plan.call} failed ({tried.error}); rerun the same command to resume"
            )
        if tried.status != "accepted":
            return [], tried.status
        self.stats.brainstorm["accepted"] += 1
        if tried.attempt:
            self.stats.attempts["brainstorm_accepted_after_retry"] += 1
        return tried.value, "accepted"

    def _brainstorm_reject(self, plan: BrainstormPlan, type_index: int, attempt: int, key: str, reason: str,
                           resp: CachedResponse) -> None:
        self.stats.brainstorm["rejected"] += 1
        self.stats.attempt_rejected(reason)
        model = self.s.generators[plan.generator].request_model
        self.rejects.add((0, type_index, plan.call, attempt), {
            "stage": "brainstorm", "task_type": plan.task_type, "call": plan.call, "attempt": attempt, "key": key,
            "model": model, "reason": reason, "finish_reason": resp.finish_reason, "raw": resp.text,
        })
        reject_log.info("rejected: brainstorm %s#%d attempt %d (%s): %s", plan.task_type, plan.call, attempt, model, reason)

    def brainstorm_plans(self) -> list[BrainstormPlan]:
        return self.planner.brainstorm_plans(brainstorm_types(self.s))

    async def brainstorm(self) -> dict[str, list[str]]:
        """Step 1: each planned call, with new attempts for rejected replies (see module docstring)."""
        types = brainstorm_types(self.s)
        plans = self.brainstorm_plans()
        if self.s.client.mode == "batch":
            await self._batch_rounds(lambda: (self._brainstorm_parts(p) for p in plans), "brainstorm")
        results = await _gather_or_cancel([self._brainstorm_one(p, types.index(p.task_type)) for p in plans])
        pools: dict[str, list[str]] = {}
        for t in types:
            returned = [r for p, (r, _) in zip(plans, results) if p.task_type == t]
            pools[t] = dedup_definitions(returned)
            if not pools[t]:
                statuses = {st for p, (_, st) in zip(plans, results) if p.task_type == t}
                if statuses == {"max_attempts"}:
                    hint = (f"every call used max_attempts={self.s.max_attempts}; raise max_attempts, "
                            f"or change seed, model or prompt")
                else:
                    hint = (f"a rerun of the same command sends up to attempts_per_run={self.s.attempts_per_run} "
                            f"new attempts per call (max_attempts={self.s.max_attempts} in all)")
                raise BrainstormFailed(f"every brainstorm reply for task type '{t}' was rejected; {hint}")
            raw = sum(len(r) for r in returned)
            self.stats.task_definitions[t] = {
                "calls": len(returned), "returned": raw,
                "unique": len(pools[t]), "duplicates_removed": raw - len(pools[t]),
            }
        return pools

    # -- step 2 ---------------------------------------------------------------------------------
    def _reject(self, plan: ItemPlan, reason: str, key: str | None, raw: Any, finish: str | None = None,
                attempt: int = 0, final: bool = True) -> None:
        """One rejected attempt of item `plan`; the final one also counts as the item's outcome."""
        model = self.s.generators[plan.generator].request_model
        if final:
            self.stats.outcome(plan.task_type, plan.language_label, "rejected", reason, plan.generator)
        if key is not None:
            self.stats.attempt_rejected(reason)
        self.rejects.add((1, plan.index, attempt), {
            "stage": "generate", "item": plan.index, "attempt": attempt, "final": final, "task_type": plan.task_type,
            "language": plan.language_label, "model": model,
            "key": key, "reason": reason, "finish_reason": finish, "raw": raw,
        })
        reject_log.info("rejected: item %d %s attempt %d (%s): %s", plan.index, plan.task_type, attempt, model, reason)

    def _keep(self, plan: ItemPlan, record: dict) -> None:
        """Accept `record` unless its text is already kept; of duplicates the lowest index wins."""
        digest = hashlib.sha256(json.dumps(example_text_key(record), ensure_ascii=False).encode()).digest()
        prev = self._kept.get(digest)
        if prev is not None and prev.index < plan.index:
            self.stats.outcome(plan.task_type, plan.language_label, "duplicate", generator=plan.generator)
            return
        if prev is not None:  # a later-planned copy arrived first: it becomes the duplicate
            self.examples.discard(prev.index)
            self.stats.outcome(prev.task_type, prev.language, "accepted", generator=prev.generator, delta=-1)
            self.stats.outcome(prev.task_type, prev.language, "duplicate", generator=prev.generator)
        self._kept[digest] = _Kept(plan.index, plan.task_type, plan.language_label, plan.generator)
        self.examples.add(plan.index, record)
        self.stats.outcome(plan.task_type, plan.language_label, "accepted", generator=plan.generator)

    def _item_parts(self, plan: ItemPlan):
        source = self.s.generators[plan.generator].source

        def parse(text: str) -> dict:
            fields = parse_example(text, plan.task_type)
            return validate_record(to_example(plan, fields, source).to_dict())

        return (lambda a: self.item_request(plan, a)), self._parser(parse)

    async def _item(self, index: int, pools: dict[str, list[str]]) -> None:
        plan = self.planner.item(index, pools)
        tried = await self._attempts(*self._item_parts(plan))
        last = len(tried.rejected) - 1
        for n, (a, req, resp, reason) in enumerate(tried.rejected):
            final = n == last and tried.status in ("max_attempts", "run_budget")
            self._reject(plan, reason, req.key, resp.text, resp.finish_reason, a, final)
        if tried.status == "transport":
            self._reject(plan, f"transport: {tried.error}", None, None, attempt=len(tried.rejected))
        elif tried.status == "run_budget":
            self.stats.attempts["items_with_attempts_left"] += 1
        elif tried.status == "accepted":
            if tried.attempt:
                self.stats.attempts["items_accepted_after_retry"] += 1
            self._keep(plan, tried.value)

    async def _generate(self, pools: dict[str, list[str]]) -> None:
        if self.s.client.mode == "batch":
            await self._batch_rounds(
                lambda: (self._item_parts(self.planner.item(i, pools)) for i in range(self.s.num_examples)), "generate")
        indices = iter(range(self.s.num_examples))
        with Progress(self.s.num_examples, self.stats, enabled=self.s.progress) as bar:

            async def worker() -> None:
                for i in indices:  # shared iterator: each index is taken exactly once
                    await self._item(i, pools)
                    bar.advance()

            # Cache hits finish without awaiting I/O, so a few extra workers keep the API busy.
            n = self.s.client.concurrency * len(self.endpoints) + 4
            await _gather_or_cancel([worker() for _ in range(min(n, max(self.s.num_examples, 1)))])

    # -- run ------------------------------------------------------------------------------------
    def _make_clients(self) -> dict[int, ChatClient]:
        """One client per endpoint; every API key is read before any file is touched."""
        keys = []
        for i in range(len(self.endpoints)):
            gen = next(g for g, e in enumerate(self.endpoint_of) if e == i)
            name = "client.api_key_env" if len(self.s.generators) == 1 else f"generators[{gen}].api_key_env"
            cs = self._client_settings(i)
            keys.append((cs, read_api_key(cs, name)))
        return {i: ChatClient(cs, key, self.stats.client) for i, (cs, key) in enumerate(keys)}

    def _client_settings(self, endpoint: int) -> ClientSettings:
        base_url, key_env = self.endpoints[endpoint]
        return self.s.client.model_copy(update={"base_url": base_url, "api_key_env": key_env})

    async def run(self) -> dict[str, Any]:
        s = self.s
        check_templates(s)
        if s.language_check.enabled:  # a missing optional library must fail before any request
            try:
                from embedforge.synth.langcheck import _identifier

                _identifier()
            except ImportError as exc:
                raise SynthConfigError(f"language_check.enabled: {exc}") from None
        owns_clients = self._given_clients is None
        clients = self._make_clients() if owns_clients else self._given_clients
        if not owns_clients:
            self.stats.client = next(iter(clients.values())).counters
        self.clients = clients
        if s.check_models:
            try:
                await self._check_models()
            except BaseException:
                if owns_clients:
                    for c in clients.values():
                        await c.close()
                raise
            s = self.s
        check_out_dir_writable(s.out_dir)
        s.out_dir.mkdir(parents=True, exist_ok=True)
        self.cache = RequestCache(s.cache_path, fsync=s.fsync)
        log.info("%s: %d cached responses", s.cache_path, len(self.cache))
        self.stats.cache_lines_skipped = len(self.cache.problems)
        self.examples = SortedSpool(s.out_dir / f".{EXAMPLES_FILE}.spool")
        self.rejects = SortedSpool(s.out_dir / f".{REJECTS_FILE}.spool")
        self.stats.items_total = s.num_examples
        self.stats.planned_unique_tasks = planned_unique_tasks(s)
        if s.client.mode == "batch":
            from embedforge.synth.batch import BatchRunner

            self.batch = BatchRunner(self)
        try:
            pools = await self.brainstorm()
            await self._generate(pools)
            if s.language_check.enabled:
                from embedforge.synth.langcheck import language_agreement

                self.stats.language_check = language_agreement(self.examples.iter_sorted(), s.language_check.max_examples)
            report = {"complete": True, **self.stats.to_dict()}
            tasks_json = (json.dumps(pools, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
            publish([
                (s.out_dir / EXAMPLES_FILE, self.examples), (s.out_dir / REJECTS_FILE, self.rejects),
                (s.out_dir / TASKS_FILE, tasks_json), (s.out_dir / REPORT_FILE, report_bytes(report)),
            ], fsync=s.fsync)
            for name in PARTIAL_FILES:  # an earlier stopped run's files no longer describe anything
                (s.out_dir / name).unlink(missing_ok=True)
        except BaseException as exc:
            written = self._write_partial(exc)
            if written and isinstance(exc, (BrainstormFailed, FatalAPIError)) and exc.args:
                exc.args = (f"{exc.args[0]}; what the run had: {', '.join(str(p) for p in written)}",)
            raise
        finally:
            if s.client.mode == "batch":
                self.batch.close()
            self.cache.close()
            self.examples.close()
            self.rejects.close()
            if owns_clients:
                for c in clients.values():
                    await c.close()
        log.info("done: %s", self.stats.summary_line())
        return report


    def _write_partial(self, exc: BaseException) -> list[Path]:
        """What a stopped run had, beside the outputs: examples, rejects, a report marked incomplete."""
        out = self.s.out_dir
        try:
            report = {"complete": False, "stopped": f"{type(exc).__name__}: {exc}", **self.stats.to_dict()}
            files = [
                (out / PARTIAL_FILES[0], self.examples), (out / PARTIAL_FILES[1], self.rejects),
                (out / PARTIAL_FILES[2], report_bytes(report)),
            ]
            publish(files, fsync=self.s.fsync)
        except Exception as err:  # noqa: BLE001 - the stop itself is what the user must see
            log.warning("could not write the stopped run's partial files in %s: %s", out, err)
            return []
        log.warning("run stopped (%s); what it had: %s", exc, ", ".join(str(p) for p, _ in files))
        return [p for p, _ in files]

    async def _check_models(self) -> None:
        """Refuse a generator model the server does not serve, before any request.

        Servers that list their models (/v1/models) are asked. A name not listed is an error, except
        where the server lists exactly one model (llama.cpp serves one and answers to any name):
        then that model is used and recorded as the source, with a warning.
        """
        gens = list(self.s.generators)
        served_by: dict[int, list[str]] = {}
        for e, client in self.clients.items():
            served = await client.served_models()
            if served:
                served_by[e] = served
        for i, g in enumerate(gens):
            served = served_by.get(self.endpoint_of[i])
            if not served or g.model in served:
                continue
            key = "generator.model" if len(gens) == 1 else f"generators[{i}].model"
            url = self.clients[self.endpoint_of[i]].base_url
            if len(served) == 1:
                log.warning("%s: '%s' is not served by %s; it serves only '%s', which is used and recorded "
                            "as the source (set %s=%s to silence this)", key, g.model, url, served[0], key, served[0])
                gens[i] = replace(g, served_model=served[0])
            else:
                shown = ", ".join(served[:10]) + (", ..." if len(served) > 10 else "")
                raise SynthConfigError(
                    f"{key}: '{g.model}' is not served by {url} (it serves: {shown}); check_models=false skips "
                    f"this check where the API lists other names than it takes (e.g. Azure deployments)"
                )
        self.s = replace(self.s, generators=tuple(gens))
        self.stats.models = [g.request_model for g in gens]
        self.planner = Planner(self.s)


def _reason(exc: Exception, resp: CachedResponse) -> str:
    """The reject reason; a reply cut off at max_tokens says so first (it is why it did not parse)."""
    if resp.finish_reason == "length":
        return f"truncated: finish_reason=length ({exc})"
    return str(exc)


async def _gather_or_cancel(coros: list) -> list:
    """gather, but a failure (e.g. FatalAPIError) cancels the siblings before files are closed."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def run_pipeline(settings: GenerateSettings) -> dict[str, Any]:
    return asyncio.run(Pipeline(settings).run())
