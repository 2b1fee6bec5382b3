"""Dry run: render prompts and estimate tokens and cost without sending anything.

Input tokens are estimated as characters / 4 of the rendered prompts (a tokenizer-free heuristic
that is close for English and low for CJK scripts); output tokens use per-task typical sizes
(taxonomy.EXPECTED_OUTPUT_TOKENS). Step-2 prompts carry a stand-in task definition of similar length.
"""

from __future__ import annotations

from typing import Any

from embedforge.synth.prompts import brainstorm_messages, check_templates, item_messages
from embedforge.synth.report import estimate_tokens
from embedforge.synth.sampling import Planner
from embedforge.synth.settings import GenerateSettings, brainstorm_types
from embedforge.synth.taxonomy import EXPECTED_OUTPUT_TOKENS

SAMPLE_CAP = 2000  # items rendered to estimate the average; the total is scaled up from them


def dry_run(settings: GenerateSettings) -> dict[str, Any]:
    check_templates(settings)
    planner = Planner(settings)
    prompts: list[str] = []
    b_types = brainstorm_types(settings)
    b_calls = len(b_types) * settings.synth.brainstorm_calls
    b_in = sum(
        estimate_tokens(brainstorm_messages(t, settings.synth.tasks_per_call)[0]["content"]) for t in b_types
    ) * settings.synth.brainstorm_calls
    b_out = b_calls * EXPECTED_OUTPUT_TOKENS["brainstorm"]
    for t in b_types[: settings.dry_run_prompts]:
        prompts.append(brainstorm_messages(t, settings.synth.tasks_per_call)[0]["content"])

    n = settings.num_examples
    sample = min(n, SAMPLE_CAP)
    g_in = g_out = 0
    by_task: dict[str, int] = {}
    for i in range(sample):
        plan = planner.item(i)
        text = item_messages(plan)[0]["content"]
        if len(prompts) < settings.dry_run_prompts * 2:
            prompts.append(text)
        g_in += estimate_tokens(text)
        g_out += min(EXPECTED_OUTPUT_TOKENS[plan.task_type], settings.generator.max_tokens)
        by_task[plan.task_type] = by_task.get(plan.task_type, 0) + 1
    scale = n / sample if sample else 0.0
    tokens_in = b_in + round(g_in * scale)
    tokens_out = b_out + round(g_out * scale)
    cost = (tokens_in * settings.price_input_per_m + tokens_out * settings.price_output_per_m) / 1e6
    return {
        "requests": b_calls + n,
        "brainstorm_requests": b_calls,
        "items": n,
        "items_by_task_type_in_sample": by_task,
        "est_input_tokens": tokens_in,
        "est_output_tokens": tokens_out,
        "est_cost_usd": round(cost, 4),
        "token_estimate": "chars/4 for prompts; typical per-task sizes for outputs",
        "prompts": prompts,
    }
