"""Chat-completions client for any OpenAI-compatible endpoint, with our own retry loop.

The openai client's built-in retries are off (max_retries=0) so every retry is counted and
Retry-After is honoured here (capped at `client.max_retry_after_s`). Transient failures (429, 5xx,
408/409, timeouts, dropped connections) are retried with exponential backoff and jitter; 401/403/404
abort the run (every later request would fail the same way), and so does a connection that cannot
be made at all (refused, unknown host) unless `client.retry_connect` is true; other 4xx fail only
the one request.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import random
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import openai

from embedforge.errors import ServiceError
from embedforge.synth.ratelimit import RateLimiter
from embedforge.synth.settings import ClientSettings, SynthConfigError
from embedforge.synth.store import CachedResponse

log = logging.getLogger(__name__)
FATAL_STATUS = (401, 403, 404)


class RequestFailed(RuntimeError):
    """One request failed for good (retries exhausted or a non-retryable error)."""


class FatalAPIError(ServiceError):
    """The endpoint refuses every request (bad key, no access, unknown model/URL): stop the run."""


@dataclass
class ClientCounters:
    requests: int = 0  # HTTP attempts sent
    retries: int = 0
    retry_after_capped: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # by kind: 429, 500, timeout, ...

    def fail(self, kind: str) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + 1


def read_api_key(settings: ClientSettings, key_name: str = "client.api_key_env") -> str:
    """The key from the environment variable whose NAME the config holds; never logged."""
    key = os.environ.get(settings.api_key_env)
    if not key:
        raise SynthConfigError(
            f"{key_name}: environment variable {settings.api_key_env} is not set "
            f"(export it, or point {key_name} at another variable)"
        )
    return key


def cannot_connect(exc: BaseException) -> str | None:
    """The reason, if `exc` means no connection could be made (refused, unknown host), else None.

    Timeouts and connections dropped mid-request are not this: they are worth retrying.
    """
    reason: str | None = None
    x: BaseException | None = exc
    for _ in range(10):  # the cause chain is short; the bound guards against cycles
        if x is None:
            break
        if isinstance(x, (ConnectionRefusedError, socket.gaierror)):
            return f"{type(x).__name__}: {x}"
        if type(x).__name__ == "ConnectError":  # httpx / httpx2 / httpcore: connecting failed
            reason = str(x)
        x = x.__cause__ or x.__context__
    return reason


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
        self.base_url = str(self._client.base_url)
        self._sem = asyncio.Semaphore(settings.concurrency)
        self._limiter = RateLimiter(settings.requests_per_minute, settings.tokens_per_minute)

    @property
    def sdk(self) -> openai.AsyncOpenAI:
        """The underlying SDK client (the Batch API mode uses its files and batches resources)."""
        return self._client

    def backoff(self, attempt: int) -> float:
        base = self.settings.backoff_base_s * (2**attempt)
        return min(self.settings.backoff_max_s, base) * (0.5 + random.random() / 2)

    def capped(self, hinted: float | None, fallback: float) -> float:
        """The server's Retry-After, but never more than client.max_retry_after_s."""
        if hinted is None:
            return fallback
        cap = self.settings.max_retry_after_s
        if hinted > cap:
            self.counters.retry_after_capped += 1
            log.warning("server asked to wait %.0f s (Retry-After); waiting %.0f s (client.max_retry_after_s)", hinted, cap)
            return cap
        return hinted

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
                    delay = self.capped(retry_after_seconds(exc.response.headers), delay)
                except openai.APIStatusError as exc:
                    code = exc.status_code
                    if code in FATAL_STATUS:
                        raise FatalAPIError(f"HTTP {code} from the API: {self._short(exc)}") from None
                    if code < 500 and code not in (408, 409):
                        raise RequestFailed(f"http_{code}: {self._short(exc)}") from None
                    kind, last = str(code), f"HTTP {code}"
                    delay = self.capped(retry_after_seconds(exc.response.headers), delay)
                except openai.APITimeoutError:
                    kind, last = "timeout", f"timed out after {self.settings.timeout_s}s"
                except openai.APIConnectionError as exc:
                    refused = cannot_connect(exc)
                    if refused and not self.settings.retry_connect:
                        raise FatalAPIError(
                            f"cannot connect to {self.base_url} ({refused}); is the server running? "
                            f"(client.retry_connect=true retries instead)"
                        ) from None
                    kind, last = "connection", f"connection error: {refused or type(exc.__cause__).__name__}"
                else:
                    return self._settle(resp, est_tokens)
            self.counters.fail(kind)
            if attempt + 1 < attempts:
                self.counters.retries += 1
                await asyncio.sleep(delay)  # outside the semaphore: a waiting retry holds no slot
        raise RequestFailed(f"gave_up after {attempts} attempts: {last}")

    def _settle(self, resp: Any, est_tokens: int) -> CachedResponse:
        usage = getattr(resp, "usage", None)
        p = _count(getattr(usage, "prompt_tokens", 0))
        c = _count(getattr(usage, "completion_tokens", 0))
        self._limiter.settle(est_tokens, p + c)
        return response_from_completion(resp, p, c)

    def _short(self, exc: Exception) -> str:
        """Error text for messages and rejects: bounded, and never containing the key."""
        text = str(exc).replace(self._secret, "<redacted>") if self._secret else str(exc)
        return text if len(text) < 200 else text[:200] + "..."

    async def served_models(self) -> list[str] | None:
        """The model ids the endpoint lists at /v1/models, or None where it lists none or cannot."""
        try:
            page = await self._client.models.list()
        except (openai.APIStatusError, openai.APIConnectionError, openai.APITimeoutError) as exc:
            log.info("%s: no model list (%s); model names are not checked", self.base_url, type(exc).__name__)
            return None
        except Exception as exc:  # noqa: BLE001 - an odd /v1/models body must not stop the run
            log.info("%s: unreadable model list (%s); model names are not checked", self.base_url, type(exc).__name__)
            return None
        ids = [m.id for m in getattr(page, "data", None) or [] if isinstance(getattr(m, "id", None), str)]
        return ids or None

    async def close(self) -> None:
        await self._client.close()


def _count(value: Any) -> int:
    try:
        return max(int(value or 0), 0)
    except (TypeError, ValueError):
        return 0


def _plain(value: Any) -> Any:
    """A JSON-able copy of what the SDK parsed (pydantic models inside lists included)."""
    if hasattr(value, "model_dump"):
        return value.model_dump(exclude_none=True)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def response_from_completion(resp: Any, prompt_tokens: int, completion_tokens: int) -> CachedResponse:
    """The first choice's content in the shape the server sent it, plus refusal and finish reason.

    Also takes the plain dict of a Batch API result line. Nothing is interpreted here; parsing does
    that on every replay, so the cache holds exactly what was paid for.
    """
    if isinstance(resp, dict):
        choices = resp.get("choices") or []
        first = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
        msg = first.get("message") if isinstance(first.get("message"), dict) else {}
        content, refusal, finish = msg.get("content"), msg.get("refusal"), first.get("finish_reason")
        reasoning = msg.get("reasoning_content") or msg.get("reasoning")
        if not choices:
            finish = "no_choices"
    else:
        choices = getattr(resp, "choices", None) or []
        if not choices:
            return CachedResponse(None, prompt_tokens, completion_tokens, "no_choices")
        msg = getattr(choices[0], "message", None)
        content = _plain(getattr(msg, "content", None))
        refusal = getattr(msg, "refusal", None)
        finish = getattr(choices[0], "finish_reason", None)
        # vLLM / llama.cpp / SGLang send a reasoning model's thoughts beside the answer; the SDK keeps
        # such extra fields as attributes.
        reasoning = getattr(msg, "reasoning_content", None) or getattr(msg, "reasoning", None)
    return CachedResponse(
        _plain(content), prompt_tokens, completion_tokens,
        finish if isinstance(finish, str) else None, refusal if isinstance(refusal, str) else None,
        len(reasoning) if isinstance(reasoning, str) else 0,
    )
