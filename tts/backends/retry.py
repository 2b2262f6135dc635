"""The OpenAI backend's retry policy: which failures are retried, how long to wait (backoff
with jitter, or the server's Retry-After, bounded), and the BackendError that ends a request.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import openai

from tts.secrets import redact
from tts.errors import BackendError

log = logging.getLogger("tts.backends.openai")

_MAX_DELAY = 30.0  # the longest wait between attempts (backoff or Retry-After)


class BadResponse(Exception):
    """An answer we cannot use (not JSON, no choices, no finish reason, a stream cut short)."""


@dataclass
class RetryPolicy:
    """`attempts` per request in all, over `urls` round-robin; `timeout` seconds per attempt.
    A replica that timed out (accepted, no answer) is not asked again for that request."""

    attempts: int
    backoff: float
    timeout: float
    urls: list[str]
    secrets: tuple[str, ...] = ()  # never shown: redacted from every message (a server may echo a key)

    async def after_failure(self, e: Exception, url: str, attempt: int, tried: list[str]) -> None:
        """Sleep before the next attempt, or raise the BackendError that ends the request.
        `tried` holds one entry per failed attempt: (url, kind) as "url" or "url!hang"."""
        kind, detail, wait = self.classify(e)
        tried.append(url + ("!hang" if kind == "hang" else ""))
        hung = {u.removesuffix("!hang") for u in tried if u.endswith("!hang")}
        where = ", ".join(dict.fromkeys(u.removesuffix("!hang") for u in tried))
        final = kind == "rejected" or attempt + 1 >= self.attempts or hung >= set(self.urls)
        if final:
            n = f"{attempt + 1} attempt{'s' * (attempt > 0)}"
            if kind == "rejected":
                raise BackendError(f"server at {url} rejected the request{detail}") from e
            if kind == "hang":
                raise BackendError(
                    f"server at {where} accepted the connection but sent no answer within {self.timeout:g}s "
                    f"({n}); is it overloaded or stuck? raise the timeout (--timeout) if answers take longer") from e
            if kind == "connect":
                raise BackendError(f"cannot connect to {where} ({n}): {detail}; is the server running? "
                                   "check --base-url") from e
            raise BackendError(f"server at {where} still failing after {n}: {detail}") from e
        delay = min(_MAX_DELAY, self.backoff * 2**attempt) * random.uniform(0.5, 1.0)
        if wait is not None:  # the server said when to come back: honoured, within bounds
            delay = min(max(wait, delay), _MAX_DELAY, self.timeout)
        log.warning("request to %s failed (%s); retrying in %.2fs", url, detail, delay)
        await asyncio.sleep(delay)

    def classify(self, e: Exception) -> tuple[str, str, float | None]:
        """(kind, detail, Retry-After seconds) of a failed attempt; kinds: "rejected" (not
        retried), "hang", "connect", "broken" (retried). Anything else is a bug: re-raised. The
        detail, built from what the server or the client library said, is redacted."""
        kind, detail, wait = self._classify(e)
        return kind, redact(detail, self.secrets), wait

    def _classify(self, e: Exception) -> tuple[str, str, float | None]:
        if isinstance(e, BadResponse):
            return "broken", f"unusable answer ({e})", None
        if isinstance(e, openai.APITimeoutError):
            if _cause_is(e, "ConnectTimeout"):
                return "connect", f"connect timed out after {self.timeout:g}s", None
            return "hang", f"no answer within {self.timeout:g}s", None
        if isinstance(e, openai.APIConnectionError):
            cause = e.__cause__
            if _cause_is(e, "ConnectError"):
                return "connect", str(cause) or "connection refused", None
            return "broken", f"connection broke ({cause or e})", None
        if isinstance(e, openai.APIStatusError):
            status, body = e.status_code, e.body
            msg = body.get("message", e) if isinstance(body, dict) else e
            if status in (408, 429) or status >= 500:
                return "broken", f"HTTP {status}: {msg}", _retry_after(e.response)
            return "rejected", f" (HTTP {status}): {msg}", None
        if isinstance(e, (openai.APIResponseValidationError, ValueError)):  # a body that is not JSON
            return "broken", f"malformed answer ({type(e).__name__}: {e})", None
        raise e


def _cause_is(e: Exception, name: str) -> bool:
    # by name: the openai client may be built on its own copy of httpx (e.g. `httpx2`)
    return type(e.__cause__).__name__ == name


def _retry_after(response: Any) -> float | None:
    """Seconds from a Retry-After header (a number, or an HTTP date), or None."""
    value = getattr(response, "headers", {}).get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from email.utils import parsedate_to_datetime

        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
