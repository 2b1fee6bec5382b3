"""Chat-completions client for any OpenAI-compatible endpoint, with our own retry loop.

The openai client's built-in retries are off (max_retries=0) so every retry is counted and
Retry-After is honoured here. Transient failures (429, 5xx, 408/409, timeouts, connection errors)
are retried with exponential backoff and jitter; 401/403/404 abort the run (every later request
would fail the same way); other 4xx fail only the one request.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

import openai

from embedforge.synth.ratelimit import RateLimiter
from embedforge.synth.settings import ClientSettings, ConfigError
from embedforge.synth.store import CachedResponse

log = logging.getLogger(__name__)
FATAL_STATUS = (401, 403, 404)


class RequestFailed(RuntimeError):
    """One request failed for good (retries exhausted or a non-retryable error)."""


class FatalAPIError(RuntimeError):
    """The endpoint refuses every request (bad key, no access, unknown model/URL): stop the run."""


@dataclass
class ClientCounters:
    requests: int = 0  # HTTP attempts sent
    retries: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # by kind: 429, 500, timeout, ...

    def fail(self, kind: str) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + 1


def read_api_key(settings: ClientSettings) -> str:
    """The key from the environment variable whose NAME the config holds; never logged."""
    key = os.environ.get(settings.api_key_env)
    if not key:
        raise ConfigError(
            f"client.api_key_env: environment variable {settings.api_key_env} is not set "
            f"(export it, or point client.api_key_env at another variable)"
        )
    return key


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or HTTP date), if present."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(float(ms) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(parsed.timestamp() - time.time(), 0.0) if parsed else None


class ChatClient:
    def __init__(self, settings: ClientSettings, api_key: str, counters: ClientCounters | None = None):
        self.settings = settings
        self.counters = counters or ClientCounters()
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=settings.base_url or None, max_retries=0, timeout=settings.timeout_s
        )
        self._secret = api_key
        self._sem = asyncio.Semaphore(settings.concurrency)
        self._limiter = RateLimiter(settings.requests_per_minute, settings.tokens_per_minute)

    def backoff(self, attempt: int) -> float:
        base = self.settings.backoff_base_s * (2**attempt)
        return min(self.settings.backoff_max_s, base) * (0.5 + random.random() / 2)

    async def complete(self, payload: dict[str, Any], est_tokens: int) -> CachedResponse:
        attempts = self.settings.max_retries + 1
        last = "no attempt"
        for attempt in range(attempts):
            delay = self.backoff(attempt)
            async with self._sem:
                await self._limiter.acquire(est_tokens)
                self.counters.requests += 1
                try:
                    resp = await self._client.chat.completions.create(**payload)
                except openai.RateLimitError as exc:
                    kind, last = "429", "rate limited (429)"
                    hinted = retry_after_seconds(exc.response.headers)
                    delay = hinted if hinted is not None else delay
                except openai.APIStatusError as exc:
                    code = exc.status_code
                    if code in FATAL_STATUS:
                        raise FatalAPIError(f"HTTP {code} from the API: {self._short(exc)}") from None
                    if code < 500 and code not in (408, 409):
                        raise RequestFailed(f"http_{code}: {self._short(exc)}") from None
                    kind, last = str(code), f"HTTP {code}"
                    hinted = retry_after_seconds(exc.response.headers)
                    delay = hinted if hinted is not None else delay
                except openai.APITimeoutError:
                    kind, last = "timeout", f"timed out after {self.settings.timeout_s}s"
                except openai.APIConnectionError as exc:
                    kind, last = "connection", f"connection error: {type(exc.__cause__).__name__}"
                else:
                    return self._settle(resp, est_tokens)
            self.counters.fail(kind)
            if attempt + 1 < attempts:
                self.counters.retries += 1
                await asyncio.sleep(delay)  # outside the semaphore: a waiting retry holds no slot
        raise RequestFailed(f"gave_up after {attempts} attempts: {last}")

    def _settle(self, resp: Any, est_tokens: int) -> CachedResponse:
        usage = getattr(resp, "usage", None)
        p = int(getattr(usage, "prompt_tokens", 0) or 0)
        c = int(getattr(usage, "completion_tokens", 0) or 0)
        self._limiter.settle(est_tokens, p + c)
        choices = getattr(resp, "choices", None) or []
        if not choices:
            return CachedResponse(None, p, c, "no_choices")
        msg = choices[0].message
        return CachedResponse(getattr(msg, "content", None), p, c, choices[0].finish_reason)

    def _short(self, exc: Exception) -> str:
        """Error text for messages and rejects: bounded, and never containing the key."""
        text = str(exc).replace(self._secret, "<redacted>") if self._secret else str(exc)
        return text if len(text) < 200 else text[:200] + "..."

    async def close(self) -> None:
        await self._client.close()
