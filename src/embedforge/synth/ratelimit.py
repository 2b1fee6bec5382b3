"""Async token buckets for requests/min and tokens/min limits (0 disables a limit)."""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """Refills at `per_minute / 60` per second up to `burst_s` seconds' worth.

    A request larger than the bucket may drive the level negative (debt), which later requests wait
    out; this keeps the long-run rate right without ever blocking a big request forever.
    """

    def __init__(self, per_minute: float, burst_s: float = 5.0):
        self.rate = per_minute / 60.0
        self.capacity = max(self.rate * burst_s, 1.0)
        self._level = self.capacity
        self._t = time.monotonic()
        self._lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def _refill(self) -> None:
        now = time.monotonic()
        self._level = min(self.capacity, self._level + (now - self._t) * self.rate)
        self._t = now

    async def acquire(self, amount: float = 1.0) -> None:
        if not self.enabled:
            return
        async with self._lock:  # FIFO: one waiter at a time
            need = min(amount, self.capacity)
            while True:
                self._refill()
                if self._level >= need:
                    self._level -= amount
                    return
                await asyncio.sleep((need - self._level) / self.rate)

    def adjust(self, extra: float) -> None:
        """Charge (or refund, if negative) the difference once the true usage is known."""
        if self.enabled:
            self._refill()
            self._level = min(self.capacity, self._level - extra)


class RateLimiter:
    def __init__(self, requests_per_minute: float, tokens_per_minute: float):
        self.requests = TokenBucket(requests_per_minute)
        self.tokens = TokenBucket(tokens_per_minute)

    async def acquire(self, est_tokens: int) -> None:
        await self.requests.acquire(1)
        await self.tokens.acquire(est_tokens)

    def settle(self, est_tokens: int, actual_tokens: int) -> None:
        self.tokens.adjust(actual_tokens - est_tokens)
