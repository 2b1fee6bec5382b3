"""The two-step generation run: brainstorm task definitions, then one example per planned item.

Resuming is replay: every request is looked up in the cache first, so a rerun of the same command
re-parses what was already paid for and only sends what is missing. Transport failures are not
cached, so a rerun retries them. Outputs are spooled and published (os.replace) only when the whole
replay completed: a run that stops (401, kill, Ctrl-C) leaves the previous complete outputs and the
report that describes them. Exact-duplicate examples keep the lowest item index, so the outputs do
not depend on the order in which replies arrived.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass, replace
from typing import Any

from embedforge.data.schema import validate_record
from embedforge.synth.client import ChatClient, RequestFailed, read_api_key
from embedforge.synth.parsing import (
    ParseError, dedup_definitions, example_text_key, parse_brainstorm, parse_example, reply_text, to_example,
)
from embedforge.synth.prompts import Messages, brainstorm_messages, check_templates, item_messages
from embedforge.synth.report import Progress, RunStats, estimate_tokens, report_bytes
from embedforge.synth.sampling import BrainstormPlan, ItemPlan, Planner
from embedforge.synth.settings import (
    ClientSettings, GenerateSettings, SynthConfigError, brainstorm_types, check_out_dir_writable, planned_unique_tasks,
)
from embedforge.synth.store import CachedResponse, RequestCache, SortedSpool, publish, request_key
from embedforge.synth.taxonomy import EXPECTED_OUTPUT_TOKENS

log = logging.getLogger(__name__)

EXAMPLES_FILE, REJECTS_FILE, REPORT_FILE, TASKS_FILE = (
    "examples.jsonl", "rejects.jsonl", "report.json", "task_definitions.json",
)


REPLACEMENT_ROUNDS = 3  # step 1: rounds of new calls that replace rejected brainstorm replies


class BrainstormFailed(RuntimeError):
    """Step 1 could not complete; the task pools would differ on resume, so the run stops."""


@dataclass(frozen=True)
class Request:
    kind: str  # brainstorm | <task type>
    payload: dict[str, Any]
    key: str
    generator: int
    est_tokens: int


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
        endpoints: list[tuple] = []
        for g in settings.generators:
            if g.endpoint not in endpoints:
                endpoints.append(g.endpoint)
        self.endpoints = endpoints
        self.endpoint_of = [endpoints.index(g.endpoint) for g in settings.generators]

    # -- requests -------------------------------------------------------------------------------
    def request(self, kind: str, messages: Messages, seed: int, generator: int) -> Request:
        g, spec = self.s.generator, self.s.generators[generator]
        payload: dict[str, Any] = {
            "model": spec.model, "messages": messages, "temperature": g.temperature,
            "top_p": g.top_p, "max_tokens": g.max_tokens,
        }
        if spec.response_format:
            payload["response_format"] = {"type": spec.response_format}
        # The sample seed is always part of the key, even when the API is not sent it.
        key = request_key({**payload, "seed": seed})
        if g.send_seed:
            payload["seed"] = seed
        est = sum(estimate_tokens(m["content"]) for m in messages) + EXPECTED_OUTPUT_TOKENS.get(kind, 500)
        return Request(kind, payload, key, generator, est)

    def brainstorm_request(self, plan: BrainstormPlan) -> Request:
        messages = brainstorm_messages(plan.task_type, self.s.synth.tasks_per_call)
        return self.request("brainstorm", messages, plan.seed, plan.generator)

    def item_request(self, plan: ItemPlan) -> Request:
        return self.request(plan.task_type, item_messages(plan), plan.seed, plan.generator)

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
    async def _brainstorm_one(self, plan: BrainstormPlan, type_index: int) -> list[str]:
        req = self.brainstorm_request(plan)
        try:
            resp = await self._fetch(req)
        except RequestFailed as exc:
            raise BrainstormFailed(
                f"brainstorm call {plan.task_type}#{plan.call} failed ({exc}); rerun the same command to resume"
            ) from None
        try:
            tasks = parse_brainstorm(reply_text(resp.text, resp.refusal))
        except ParseError as exc:
            self._brainstorm_reject(plan, type_index, req.key, _reason(exc, resp), resp)
            return []
        except Exception as exc:  # noqa: BLE001 - no cached reply may crash a replay
            self._brainstorm_reject(plan, type_index, req.key, f"unexpected_reply: {type(exc).__name__}", resp)
            return []
        self.stats.brainstorm["accepted"] += 1
        return tasks

    def _brainstorm_reject(self, plan: BrainstormPlan, type_index: int, key: str, reason: str, resp: CachedResponse) -> None:
        self.stats.brainstorm["rejected"] += 1
        self.rejects.add((0, type_index, plan.call), {
            "stage": "brainstorm", "task_type": plan.task_type, "call": plan.call, "key": key,
            "model": self.s.generators[plan.generator].model, "reason": reason,
            "finish_reason": resp.finish_reason, "raw": resp.text,
        })

    def brainstorm_plans(self) -> list[BrainstormPlan]:
        return self.planner.brainstorm_plans(brainstorm_types(self.s))

    async def brainstorm(self) -> dict[str, list[str]]:
        """Step 1, plus up to REPLACEMENT_ROUNDS rounds that replace each rejected call with a new one.

        Rejected replies are cached like any other, so a rerun makes the same replacements.
        """
        types = brainstorm_types(self.s)
        plans = self.brainstorm_plans()
        next_call = {t: sum(1 for p in plans if p.task_type == t) for t in types}
        done: list[tuple[BrainstormPlan, list[str]]] = []
        todo = plans
        for _ in range(REPLACEMENT_ROUNDS + 1):
            if self.s.client.mode == "batch":
                await self.batch.ensure([self.brainstorm_request(p) for p in todo], phase="brainstorm")
            results = await _gather_or_cancel([self._brainstorm_one(p, types.index(p.task_type)) for p in todo])
            done += list(zip(todo, results))
            todo = []
            for p, r in done[-len(results):]:
                if not r:  # rejected: ask once more with the next call index (a new seed)
                    j = next_call[p.task_type]
                    next_call[p.task_type] += 1
                    todo.append(self.planner.brainstorm_plan(p.task_type, j))
            if not todo:
                break
        pools: dict[str, list[str]] = {}
        for t in types:
            returned = [r for p, r in done if p.task_type == t]
            pools[t] = dedup_definitions(returned)
            if not pools[t]:
                raise BrainstormFailed(f"every brainstorm reply for task type '{t}' was rejected; see {REJECTS_FILE}")
            raw = sum(len(r) for r in returned)
            self.stats.task_definitions[t] = {
                "calls": len(returned), "returned": raw,
                "unique": len(pools[t]), "duplicates_removed": raw - len(pools[t]),
            }
        return pools

    # -- step 2 ---------------------------------------------------------------------------------
    def _reject(self, plan: ItemPlan, reason: str, key: str | None, raw: Any, finish: str | None = None) -> None:
        self.stats.outcome(plan.task_type, plan.language_label, "rejected", reason, plan.generator)
        self.rejects.add((1, plan.index, 0), {
            "stage": "generate", "item": plan.index, "task_type": plan.task_type,
            "language": plan.language_label, "model": self.s.generators[plan.generator].model,
            "key": key, "reason": reason, "finish_reason": finish, "raw": raw,
        })

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

    async def _item(self, index: int, pools: dict[str, list[str]]) -> None:
        plan = self.planner.item(index, pools)
        req = self.item_request(plan)
        try:
            resp = await self._fetch(req)
        except RequestFailed as exc:
            self._reject(plan, f"transport: {exc}", None, None)
            return
        try:
            fields = parse_example(reply_text(resp.text, resp.refusal), plan.task_type)
            record = validate_record(to_example(plan, fields, self.s.generators[plan.generator].source).to_dict())
        except (ParseError, ValueError) as exc:
            self._reject(plan, _reason(exc, resp), req.key, resp.text, resp.finish_reason)
            return
        except Exception as exc:  # noqa: BLE001 - no cached reply may crash a replay
            self._reject(plan, f"unexpected_reply: {type(exc).__name__}", req.key, resp.text, resp.finish_reason)
            return
        self._keep(plan, record)

    async def _generate(self, pools: dict[str, list[str]]) -> None:
        if self.s.client.mode == "batch":
            reqs = (self.item_request(self.planner.item(i, pools)) for i in range(self.s.num_examples))
            await self.batch.ensure(reqs, phase="generate")
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
        return replace(self.s.client, base_url=base_url, api_key_env=key_env)

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
            report = self.stats.to_dict()
            tasks_json = (json.dumps(pools, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
            publish([
                (s.out_dir / EXAMPLES_FILE, self.examples), (s.out_dir / REJECTS_FILE, self.rejects),
                (s.out_dir / TASKS_FILE, tasks_json), (s.out_dir / REPORT_FILE, report_bytes(report)),
            ], fsync=s.fsync)
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
