"""Run accounting: counters, the live progress line, and the final JSON/printed report.

Token counts are the API's own `usage` numbers. Tokens of responses replayed from the cache are
reported apart ("cached") and cost nothing in this run.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from embedforge.synth.client import ClientCounters


def estimate_tokens(text: str) -> int:
    """Heuristic: ~4 characters per token (English-centric; no tokenizer dependency)."""
    return max(1, len(text) // 4)


@dataclass
class RunStats:
    prices: list[tuple[float, float]] = field(default_factory=lambda: [(0.0, 0.0)])  # per generator, USD/M in, out
    models: list[str] = field(default_factory=lambda: ["model"])
    price_factor: float = 1.0  # batch mode: the Batch API discount
    started: float = field(default_factory=time.monotonic)
    client: ClientCounters = field(default_factory=ClientCounters)
    paid: list[list[int]] = field(default_factory=list)  # per generator: [prompt, completion]
    cached_prompt_tokens: int = 0
    cached_completion_tokens: int = 0
    cache_hits: int = 0
    items_total: int = 0
    by_task: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    by_language: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    by_generator: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    reject_reasons: Counter = field(default_factory=Counter)
    brainstorm: Counter = field(default_factory=Counter)
    task_definitions: dict[str, dict[str, int]] = field(default_factory=dict)
    planned_unique_tasks: int = 0
    batches: dict[str, int] = field(default_factory=dict)
    cache_lines_skipped: int = 0  # unreadable cache lines (each logged as file:line)
    language_check: dict[str, Any] | None = None
    attempts: Counter = field(default_factory=Counter)  # retries: accepted after one, attempts left
    attempt_reasons: Counter = field(default_factory=Counter)  # every rejected attempt, by reason
    reasoning: Counter = field(default_factory=Counter)  # reasoning_content replies, <think> blocks

    def __post_init__(self) -> None:
        if not self.paid:
            self.paid = [[0, 0] for _ in self.prices]

    @property
    def paid_prompt_tokens(self) -> int:
        return sum(p for p, _ in self.paid)

    @property
    def paid_completion_tokens(self) -> int:
        return sum(c for _, c in self.paid)

    def tokens(self, prompt: int, completion: int, cached: bool, generator: int = 0) -> None:
        if cached:
            self.cache_hits += 1
            self.cached_prompt_tokens += prompt
            self.cached_completion_tokens += completion
        else:
            self.paid[generator][0] += prompt
            self.paid[generator][1] += completion

    def outcome(self, task_type: str, language: str, status: str, reason: str | None = None,
                generator: int = 0, delta: int = 1) -> None:
        """status: accepted | rejected | duplicate; delta=-1 takes an earlier outcome back."""
        self.by_task[task_type][status] += delta
        self.by_language[language][status] += delta
        self.by_generator[self.models[generator]][status] += delta
        if reason:
            self.reject_reasons[reason.split(":")[0].split(" ")[0]] += delta

    def attempt_rejected(self, reason: str) -> None:
        self.attempts["rejected_attempts"] += 1
        self.attempt_reasons[reason.split(":")[0].split(" ")[0]] += 1

    def total(self, status: str) -> int:
        return sum(c[status] for c in self.by_task.values())

    def cost_of(self, generator: int) -> float:
        (p_in, p_out), (t_in, t_out) = self.prices[generator], self.paid[generator]
        return (t_in * p_in + t_out * p_out) * self.price_factor / 1e6

    @property
    def cost(self) -> float:
        return sum(self.cost_of(g) for g in range(len(self.prices)))

    def summary_line(self) -> str:
        return (
            f"req {self.client.requests} (retries {self.client.retries}, cached {self.cache_hits}) | "
            f"tok {self.paid_prompt_tokens + self.paid_completion_tokens:,} | "
            f"ok {self.total('accepted')} rej {self.total('rejected')} dup {self.total('duplicate')} | "
            f"${self.cost:.4f}"
        )

    def to_dict(self) -> dict[str, Any]:
        done = self.total("accepted") + self.total("rejected") + self.total("duplicate")
        wall = time.monotonic() - self.started
        unique = sum(v.get("unique", 0) for v in self.task_definitions.values())
        out = {
            "items": self.items_total,
            "accepted": self.total("accepted"),
            "rejected": self.total("rejected"),
            "duplicates": self.total("duplicate"),
            "rejection_rate": round(self.total("rejected") / done, 4) if done else 0.0,
            "reject_reasons": {k: v for k, v in self.reject_reasons.most_common() if v},
            "by_task_type": {k: _nonzero(v) for k, v in sorted(self.by_task.items())},
            "by_language": {k: _nonzero(v) for k, v in sorted(self.by_language.items())},
            "by_generator": {
                m: {**_nonzero(self.by_generator.get(m, Counter())), "prompt_tokens": self.paid[g][0],
                    "completion_tokens": self.paid[g][1], "cost_usd": round(self.cost_of(g), 6)}
                for g, m in enumerate(self.models)
            },
            "brainstorm": dict(self.brainstorm),
            "task_definitions": self.task_definitions,
            "unique_task_definitions": unique,
            "planned_unique_tasks": self.planned_unique_tasks,
            "examples_per_unique_task": round(self.total("accepted") / unique, 3) if unique else None,
            "requests_sent": self.client.requests,
            "retries": self.client.retries,
            "retry_after_capped": self.client.retry_after_capped,
            "transport_failures": dict(self.client.failures),
            "cache_hits": self.cache_hits,
            "cache_lines_skipped": self.cache_lines_skipped,
            "tokens": {
                "prompt": self.paid_prompt_tokens,
                "completion": self.paid_completion_tokens,
                "cached_prompt": self.cached_prompt_tokens,
                "cached_completion": self.cached_completion_tokens,
            },
            "cost_usd": round(self.cost, 6),
            "wall_s": round(wall, 3),
        }
        out["attempts"] = {**dict(self.attempts), "reject_reasons": dict(self.attempt_reasons.most_common())}
        if self.reasoning:
            out["reasoning"] = dict(self.reasoning)
        if self.batches:
            out["batches"] = dict(self.batches)
        if self.language_check is not None:
            out["language_check"] = self.language_check
        return out


def _nonzero(counter: Counter) -> dict[str, int]:
    return {k: v for k, v in counter.items() if v}


def report_bytes(report: dict[str, Any]) -> bytes:
    return (json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"items {report['items']}: accepted {report['accepted']}, rejected {report['rejected']} "
        f"({report['rejection_rate']:.1%}), duplicates {report['duplicates']}",
        f"requests {report['requests_sent']} (retries {report['retries']}, cache hits {report['cache_hits']}), "
        f"tokens in/out {report['tokens']['prompt']:,}/{report['tokens']['completion']:,}, "
        f"cost ${report['cost_usd']:.4f}, {report['wall_s']:.1f}s",
        "by task type: " + ", ".join(f"{k} {v.get('accepted', 0)}/{sum(v.values())}" for k, v in report["by_task_type"].items()),
    ]
    langs = sorted(report["by_language"].items(), key=lambda kv: -sum(kv[1].values()))
    lines.append("by language (top 10): " + ", ".join(f"{k} {v.get('accepted', 0)}/{sum(v.values())}" for k, v in langs[:10]))
    if report.get("task_definitions"):
        lines.append(
            f"unique task definitions {report['unique_task_definitions']} (planned {report['planned_unique_tasks']}): "
            + ", ".join(f"{k} {v['unique']} (-{v['duplicates_removed']} dup)" for k, v in report["task_definitions"].items())
        )
    if len(report.get("by_generator", {})) > 1:
        lines.append("by generator: " + ", ".join(
            f"{m} {v.get('accepted', 0)} (${v['cost_usd']:.4f})" for m, v in report["by_generator"].items()))
    if report.get("batches"):
        lines.append("batch API: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in report["batches"].items()))
    if report.get("language_check"):
        lc = report["language_check"]
        lines.append(f"language check ({lc['detector']}): {lc['matched']}/{lc['checked']} match "
                     f"({lc['share']:.1%}); per language in report.json")
    if report["reject_reasons"]:
        lines.append("reject reasons: " + ", ".join(f"{k} {v}" for k, v in report["reject_reasons"].items()))
    att = report.get("attempts") or {}
    if att.get("rejected_attempts"):
        lines.append(
            f"attempts: {att['rejected_attempts']} rejected ("
            + ", ".join(f"{k} {v}" for k, v in att.get("reject_reasons", {}).items())
            + f"); items accepted after a retry {att.get('items_accepted_after_retry', 0)}, "
            f"with attempts left for a rerun {att.get('items_with_attempts_left', 0)}"
        )
    if report.get("reasoning"):
        lines.append("reasoning replies: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in report["reasoning"].items()))
    return "\n".join(lines)


class Progress:
    """A rich progress bar whose text shows requests, tokens, accepted/rejected and spend."""

    def __init__(self, total: int, stats: RunStats, enabled: bool = True):
        self.stats = stats
        self._bar = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress
            from rich.progress import TextColumn, TimeElapsedColumn

            self._bar = RichProgress(
                TextColumn("[bold]generate"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.fields[info]}"), transient=False,
            )
            self._task = self._bar.add_task("generate", total=total, info="")

    def __enter__(self) -> "Progress":
        if self._bar:
            self._bar.__enter__()
        return self

    def advance(self) -> None:
        if self._bar:
            self._bar.update(self._task, advance=1, info=self.stats.summary_line())

    def __exit__(self, *exc) -> None:
        if self._bar:
            self._bar.update(self._task, info=self.stats.summary_line())
            self._bar.__exit__(*exc)
