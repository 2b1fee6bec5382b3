"""The two-step generation run: brainstorm task definitions, then one example per planned item.

Resuming is replay: every request is looked up in the cache first, so a rerun of the same command
re-parses what was already paid for (rebuilding examples.jsonl / rejects.jsonl from scratch) and
only sends what is missing. Transport failures are not cached, so a rerun retries them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Any

from embedforge.data.schema import validate_record
from embedforge.synth.client import ChatClient, RequestFailed, read_api_key
from embedforge.synth.parsing import ParseError, dedup_definitions, parse_brainstorm, parse_example, to_example
from embedforge.synth.prompts import Messages, brainstorm_messages, check_templates, item_messages
from embedforge.synth.report import Progress, RunStats, estimate_tokens, write_report
from embedforge.synth.sampling import BrainstormPlan, ItemPlan, Planner
from embedforge.synth.settings import GenerateSettings, brainstorm_types
from embedforge.synth.store import CachedResponse, JsonlAppender, RequestCache, request_key
from embedforge.synth.taxonomy import EXPECTED_OUTPUT_TOKENS

log = logging.getLogger(__name__)

EXAMPLES_FILE, REJECTS_FILE, REPORT_FILE, TASKS_FILE = (
    "examples.jsonl", "rejects.jsonl", "report.json", "task_definitions.json",
)


class BrainstormFailed(RuntimeError):
    """Step 1 could not complete; the task pools would differ on resume, so the run stops."""


class Pipeline:
    def __init__(self, settings: GenerateSettings, client: ChatClient | None = None):
        self.s = settings
        self.planner = Planner(settings)
        self.stats = RunStats(price_in=settings.price_input_per_m, price_out=settings.price_output_per_m)
        self._client = client
        self._seen: set[str] = set()

    # -- requests -------------------------------------------------------------------------------
    def _payload(self, messages: Messages, seed: int) -> tuple[dict[str, Any], str]:
        g = self.s.generator
        payload: dict[str, Any] = {
            "model": g.model, "messages": messages, "temperature": g.temperature,
            "top_p": g.top_p, "max_tokens": g.max_tokens,
        }
        # The sample seed is always part of the key, even when the API is not sent it.
        key = request_key({**payload, "seed": seed})
        if g.send_seed:
            payload["seed"] = seed
        return payload, key

    async def _fetch(self, kind: str, messages: Messages, seed: int) -> tuple[CachedResponse, str]:
        payload, key = self._payload(messages, seed)
        hit = self.cache.get(key)
        if hit is not None:
            self.stats.tokens(hit.prompt_tokens, hit.completion_tokens, cached=True)
            return hit, key
        est = sum(estimate_tokens(m["content"]) for m in messages) + EXPECTED_OUTPUT_TOKENS.get(kind, 500)
        resp = await self.client.complete(payload, est)
        self.cache.put(key, kind, resp)
        self.stats.tokens(resp.prompt_tokens, resp.completion_tokens, cached=False)
        return resp, key

    # -- step 1 ---------------------------------------------------------------------------------
    async def _brainstorm_one(self, plan: BrainstormPlan) -> list[str]:
        messages = brainstorm_messages(plan.task_type, self.s.synth.tasks_per_call)
        try:
            resp, key = await self._fetch("brainstorm", messages, plan.seed)
        except RequestFailed as exc:
            raise BrainstormFailed(
                f"brainstorm call {plan.task_type}#{plan.call} failed ({exc}); rerun the same command to resume"
            ) from None
        try:
            tasks = parse_brainstorm(resp.text)
        except ParseError as exc:
            self.stats.brainstorm["rejected"] += 1
            self.rejects.append({
                "stage": "brainstorm", "task_type": plan.task_type, "call": plan.call, "key": key,
                "reason": str(exc), "finish_reason": resp.finish_reason, "raw": resp.text,
            })
            return []
        self.stats.brainstorm["accepted"] += 1
        return tasks

    async def brainstorm(self) -> dict[str, list[str]]:
        types = brainstorm_types(self.s)
        plans = self.planner.brainstorm_plans(types)
        results = await _gather_or_cancel([self._brainstorm_one(p) for p in plans])
        pools: dict[str, list[str]] = {}
        for t in types:
            pools[t] = dedup_definitions([r for p, r in zip(plans, results) if p.task_type == t])
            if not pools[t]:
                raise BrainstormFailed(f"every brainstorm reply for task type '{t}' was rejected; see {REJECTS_FILE}")
            self.stats.task_definitions[t] = len(pools[t])
        return pools

    # -- step 2 ---------------------------------------------------------------------------------
    def _reject(self, plan: ItemPlan, reason: str, key: str | None, raw: str | None, finish: str | None = None) -> None:
        self.stats.outcome(plan.task_type, plan.language_label, "rejected", reason)
        self.rejects.append({
            "stage": "generate", "item": plan.index, "task_type": plan.task_type,
            "language": plan.language_label, "key": key, "reason": reason,
            "finish_reason": finish, "raw": raw,
        })

    async def _item(self, index: int, pools: dict[str, list[str]]) -> None:
        plan = self.planner.item(index, pools)
        messages = item_messages(plan)
        try:
            resp, key = await self._fetch(plan.task_type, messages, plan.seed)
        except RequestFailed as exc:
            self._reject(plan, f"transport: {exc}", None, None)
            return
        try:
            fields = parse_example(resp.text, plan.task_type)
            record = validate_record(to_example(plan, fields, self.s.source).to_dict())
        except (ParseError, ValueError) as exc:
            self._reject(plan, str(exc), key, resp.text, resp.finish_reason)
            return
        digest = hashlib.sha256(json.dumps(record, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        if digest in self._seen:
            self.stats.outcome(plan.task_type, plan.language_label, "duplicate")
            return
        self._seen.add(digest)
        self.examples.append(record)
        self.stats.outcome(plan.task_type, plan.language_label, "accepted")

    async def _generate(self, pools: dict[str, list[str]]) -> None:
        indices = iter(range(self.s.num_examples))
        with Progress(self.s.num_examples, self.stats, enabled=self.s.progress) as bar:

            async def worker() -> None:
                for i in indices:  # shared iterator: each index is taken exactly once
                    await self._item(i, pools)
                    bar.advance()

            # Cache hits finish without awaiting I/O, so a few extra workers keep the API busy.
            n = self.s.client.concurrency + 4
            await _gather_or_cancel([worker() for _ in range(min(n, max(self.s.num_examples, 1)))])

    # -- run ------------------------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        s = self.s
        check_templates(s)
        api_key = None if self._client else read_api_key(s.client)  # fail before touching any file
        s.out_dir.mkdir(parents=True, exist_ok=True)
        self.cache = RequestCache(s.cache_path, fsync=s.fsync)
        log.info("%s: %d cached responses", s.cache_path, len(self.cache))
        # Outputs are rebuilt on every run by replaying the cache (see module docstring).
        self.examples = JsonlAppender(s.out_dir / EXAMPLES_FILE, truncate=True, fsync=s.fsync)
        self.rejects = JsonlAppender(s.out_dir / REJECTS_FILE, truncate=True, fsync=s.fsync)
        self.stats.items_total = s.num_examples
        owns_client = self._client is None
        self.client = self._client or ChatClient(s.client, api_key, self.stats.client)
        if not owns_client:
            self.stats.client = self.client.counters
        try:
            pools = await self.brainstorm()
            tasks_path = s.out_dir / TASKS_FILE
            tasks_path.write_text(json.dumps(pools, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            await self._generate(pools)
        finally:
            self.cache.close()
            self.examples.close()
            self.rejects.close()
            if owns_client:
                await self.client.close()
        report = self.stats.to_dict()
        write_report(s.out_dir / REPORT_FILE, report)
        log.info("done: %s", self.stats.summary_line())
        return report


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
