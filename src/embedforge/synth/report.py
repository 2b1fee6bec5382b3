"""Run accounting: counters, the live progress line, and the final JSON/printed report.

Token counts are the API's own `usage` numbers. Tokens of responses replayed from the cache are
reported apart ("cached") and cost nothing in this run.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedforge.synth.client import ClientCounters


def estimate_tokens(text: str) -> int:
    """Heuristic: ~4 characters per token (English-centric; no tokenizer dependency)."""
    return max(1, len(text) // 4)


@dataclass
class RunStats:
    price_in: float = 0.0  # per million tokens
    price_out: float = 0.0
    started: float = field(default_factory=time.monotonic)
    client: ClientCounters = field(default_factory=ClientCounters)
    paid_prompt_tokens: int = 0
    paid_completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    cached_completion_tokens: int = 0
    cache_hits: int = 0
    items_total: int = 0
    by_task: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    by_language: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    reject_reasons: Counter = field(default_factory=Counter)
    brainstorm: Counter = field(default_factory=Counter)
    task_definitions: dict[str, int] = field(default_factory=dict)

    def tokens(self, prompt: int, completion: int, cached: bool) -> None:
        if cached:
            self.cache_hits += 1
            self.cached_prompt_tokens += prompt
            self.cached_completion_tokens += completion
        else:
            self.paid_prompt_tokens += prompt
            self.paid_completion_tokens += completion

    def outcome(self, task_type: str, language: str, status: str, reason: str | None = None) -> None:
        """status: accepted | rejected | duplicate."""
        self.by_task[task_type][status] += 1
        self.by_language[language][status] += 1
        if reason:
            self.reject_reasons[reason.split(":")[0].split(" ")[0]] += 1

    def total(self, status: str) -> int:
        return sum(c[status] for c in self.by_task.values())

    @property
    def cost(self) -> float:
        return (self.paid_prompt_tokens * self.price_in + self.paid_completion_tokens * self.price_out) / 1e6

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
        return {
            "items": self.items_total,
            "accepted": self.total("accepted"),
            "rejected": self.total("rejected"),
            "duplicates": self.total("duplicate"),
            "rejection_rate": round(self.total("rejected") / done, 4) if done else 0.0,
            "reject_reasons": dict(self.reject_reasons.most_common()),
            "by_task_type": {k: dict(v) for k, v in sorted(self.by_task.items())},
            "by_language": {k: dict(v) for k, v in sorted(self.by_language.items())},
            "brainstorm": dict(self.brainstorm),
            "task_definitions": self.task_definitions,
            "requests_sent": self.client.requests,
            "retries": self.client.retries,
            "transport_failures": dict(self.client.failures),
            "cache_hits": self.cache_hits,
            "tokens": {
                "prompt": self.paid_prompt_tokens,
                "completion": self.paid_completion_tokens,
                "cached_prompt": self.cached_prompt_tokens,
                "cached_completion": self.cached_completion_tokens,
            },
            "cost_usd": round(self.cost, 6),
            "wall_s": round(wall, 3),
        }


def write_report(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


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
    if report["reject_reasons"]:
        lines.append("reject reasons: " + ", ".join(f"{k} {v}" for k, v in report["reject_reasons"].items()))
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
