"""Dry run: render prompts and estimate tokens, cost and wall time without sending anything.

Input tokens are estimated as characters / 4 of the rendered prompts (a tokenizer-free heuristic
that is close for English and low for CJK scripts); output tokens use per-task typical sizes
(taxonomy.EXPECTED_OUTPUT_TOKENS). Step-2 prompts carry a stand-in task definition of similar length.

Time, online: each step (brainstorm, then generation) takes as long as the tightest of three limits
on each endpoint: requests per minute, tokens per minute, and concurrency x per-request latency
(`estimate.request_overhead_s` + output tokens / `estimate.output_tokens_per_s`). Time, batch mode:
each step is one round of batches, which the API completes within `client.batch_window`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from embedforge.synth.prompts import brainstorm_messages, check_templates, item_messages
from embedforge.synth.report import estimate_tokens
from embedforge.synth.sampling import Planner
from embedforge.synth.settings import (
    GenerateSettings, brainstorm_calls_per_type, brainstorm_types, planned_unique_tasks, window_seconds,
)
from embedforge.synth.taxonomy import EXPECTED_OUTPUT_TOKENS

SAMPLE_CAP = 2000  # items rendered to estimate the average; the total is scaled up from them


class _Load:
    """Requests, tokens and summed latency of one step on one endpoint."""

    def __init__(self) -> None:
        self.requests = 0.0
        self.tokens_in = 0.0
        self.tokens_out = 0.0
        self.latency_s = 0.0

    def add(self, tokens_in: float, tokens_out: float, settings: GenerateSettings, times: float = 1.0) -> None:
        self.requests += times
        self.tokens_in += tokens_in * times
        self.tokens_out += tokens_out * times
        self.latency_s += (settings.est_request_overhead_s + tokens_out / settings.est_output_tokens_per_s) * times

    def seconds(self, settings: GenerateSettings) -> tuple[float, str]:
        c = settings.client
        bounds = {"concurrency": self.latency_s / c.concurrency}
        if c.requests_per_minute:
            bounds["requests_per_minute"] = self.requests / c.requests_per_minute * 60
        if c.tokens_per_minute:
            bounds["tokens_per_minute"] = (self.tokens_in + self.tokens_out) / c.tokens_per_minute * 60
        limit = max(bounds, key=bounds.get)
        return bounds[limit], limit


def human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def dry_run(settings: GenerateSettings) -> dict[str, Any]:
    check_templates(settings)
    planner = Planner(settings)
    gens = settings.generators
    endpoints = list(dict.fromkeys(g.endpoint for g in gens))
    tokens = [[0.0, 0.0] for _ in gens]  # per generator: in, out
    steps: dict[str, dict[tuple, _Load]] = {"brainstorm": defaultdict(_Load), "generate": defaultdict(_Load)}
    prompts: list[str] = []

    calls = brainstorm_calls_per_type(settings)
    plans = planner.brainstorm_plans(brainstorm_types(settings))
    for plan in plans:
        fmt = gens[plan.generator].response_format
        text = brainstorm_messages(plan.task_type, settings.synth.tasks_per_call, fmt)[0]["content"]
        t_in, t_out = estimate_tokens(text), EXPECTED_OUTPUT_TOKENS["brainstorm"]
        tokens[plan.generator][0] += t_in
        tokens[plan.generator][1] += t_out
        steps["brainstorm"][gens[plan.generator].endpoint].add(t_in, t_out, settings)
        if plan.call == 0 and len(prompts) < settings.dry_run_prompts:
            prompts.append(text)

    n = settings.num_examples
    sample = min(n, SAMPLE_CAP)
    scale = n / sample if sample else 0.0
    by_task: dict[str, int] = {}
    by_gen = [0] * len(gens)
    for i in range(sample):
        plan = planner.item(i)
        text = item_messages(plan)[0]["content"]
        if len(prompts) < settings.dry_run_prompts * 2:
            prompts.append(text)
        t_in = estimate_tokens(text)
        t_out = min(EXPECTED_OUTPUT_TOKENS[plan.task_type], settings.generator.max_tokens)
        tokens[plan.generator][0] += t_in * scale
        tokens[plan.generator][1] += t_out * scale
        steps["generate"][gens[plan.generator].endpoint].add(t_in, t_out, settings, times=scale)
        by_task[plan.task_type] = by_task.get(plan.task_type, 0) + 1
        by_gen[plan.generator] += 1

    cost_online = [(t_in * g.price_input_per_m + t_out * g.price_output_per_m) / 1e6 for g, (t_in, t_out) in zip(gens, tokens)]
    online_s, limits = 0.0, {}
    for step, loads in steps.items():
        if not loads:
            continue
        per_endpoint = {ep: loads[ep].seconds(settings) for ep in loads}
        worst = max(per_endpoint.values())
        online_s += worst[0]
        limits[step] = worst[1]
    batch_steps = sum(1 for loads in steps.values() if loads)
    batch_max_s = batch_steps * window_seconds(settings.client.batch_window)
    tokens_in = round(sum(t for t, _ in tokens))
    tokens_out = round(sum(t for _, t in tokens))
    return {
        "requests": len(plans) + n,
        "brainstorm_requests": len(plans),
        "brainstorm_calls_per_type": calls,
        "planned_unique_tasks": planned_unique_tasks(settings),
        "brainstorm_task_capacity": len(plans) * settings.synth.tasks_per_call,
        "items": n,
        "items_by_task_type_in_sample": by_task,
        "est_input_tokens": tokens_in,
        "est_output_tokens": tokens_out,
        "est_cost_usd": round(sum(cost_online), 4),
        "est_cost_usd_online": round(sum(cost_online), 4),
        "est_cost_usd_batch": round(sum(cost_online) * settings.batch_discount, 4),
        "by_generator": {
            g.model: {
                "share_of_items_in_sample": round(by_gen[k] / sample, 4) if sample else 0.0,
                "est_input_tokens": round(tokens[k][0]), "est_output_tokens": round(tokens[k][1]),
                "est_cost_usd_online": round(cost_online[k], 4),
                "est_cost_usd_batch": round(cost_online[k] * settings.batch_discount, 4),
            }
            for k, g in enumerate(gens)
        },
        "endpoints": len(endpoints),
        "est_time_online_s": round(online_s, 1),
        "est_time_online": human(online_s),
        "time_limited_by": limits,
        "est_time_batch_max_s": batch_max_s,
        "est_time_batch_max": f"{human(batch_max_s)} ({batch_steps} rounds of batches, each within {settings.client.batch_window})",
        "mode": settings.client.mode,
        "response_formats": {g.model: response_format_label(g.response_format) for g in gens},
        "token_estimate": "chars/4 for prompts; typical per-task sizes for outputs",
        "prompts": prompts,
    }


def response_format_label(mode: str | None) -> str:
    return {
        None: "none (plain text; the prompt asks for JSON)",
        "json_object": "json_object (JSON mode: some JSON object)",
        "json_schema": "json_schema (structured outputs: our keys and types, strict)",
    }.get(mode, str(mode))


def format_estimate(est: dict[str, Any]) -> str:
    return "\n".join([
        "response_format: " + "; ".join(f"{m}: {f}" for m, f in est.get("response_formats", {}).items()),
        f"requests {est['requests']:,} ({est['brainstorm_requests']} brainstorm for ~{est['planned_unique_tasks']:,} "
        f"unique tasks), tokens in/out ~{est['est_input_tokens']:,}/{est['est_output_tokens']:,}",
        f"cost: online ${est['est_cost_usd_online']:,.2f}, batch ${est['est_cost_usd_batch']:,.2f}",
        f"time: online ~{est['est_time_online']} (limited by {', '.join(f'{k}: {v}' for k, v in est['time_limited_by'].items())}); "
        f"batch up to {est['est_time_batch_max']}",
    ])
