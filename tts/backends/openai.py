"""`OpenAIGenerator`: any OpenAI-compatible chat server, vLLM's first, as one async sampler.

Several replicas (`base_urls`) are served round-robin, so a fleet looks like one generator.
Retries are ours, not the client's: exponential backoff with jitter on 429, 5xx, connection
errors and timeouts, over the next replica each time, then one `TTSError` that says what to do.

With `vllm=True` we use vLLM's server extensions:
- `continue_final_message` to continue a partial assistant message (`GenRequest.prefix`);
- `continuous_usage_stats`, so every streamed chunk carries the completion tokens so far;
- `POST /tokenize` (at the server root, not under /v1) to count prompt tokens exactly.
Cached prompt tokens come from `usage.prompt_tokens_details.cached_tokens`, which vLLM reports
only when started with `--enable-prompt-tokens-details` (else they read as 0).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai

from tts.backends.common import LRU, byte_bound, prompt_key
from tts.errors import TTSError
from tts.interfaces import Generator
from tts.types import GenRequest, Trace, Usage

log = logging.getLogger(__name__)

_RETRYABLE = (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError)
_MAX_DELAY = 30.0


class OpenAIGenerator(Generator):
    """Samples from `model` behind one or more OpenAI-compatible servers.

    `api_key` defaults to $OPENAI_API_KEY, else "EMPTY" (vLLM without --api-key); it is never
    logged. `max_retries` is the number of attempts per request in all. `extra_body` holds
    extra server sampling parameters sent with every request (e.g. vLLM's `top_k`,
    `ignore_eos`). Set `vllm=False` for servers without vLLM's extensions.
    """

    def __init__(
        self,
        model: str,
        base_urls: str | list[str],
        api_key: str | None = None,
        max_concurrency: int = 64,
        max_retries: int = 5,
        backoff: float = 0.5,
        timeout: float = 600,
        num_params: int | None = None,
        vllm: bool = True,
        extra_body: dict[str, Any] | None = None,
    ):
        self.model = model
        self.num_params = num_params
        self.base_urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not self.base_urls:
            raise TTSError("no server given: pass at least one base URL, e.g. http://127.0.0.1:8000/v1")
        key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        # The client's own retries are off: ours rotate replicas and end in a TTSError.
        self._clients = [
            openai.AsyncOpenAI(base_url=u, api_key=key, max_retries=0, timeout=timeout) for u in self.base_urls
        ]
        self._http = httpx.AsyncClient(timeout=timeout, headers={"Authorization": f"Bearer {key}"})
        self.max_retries = max(1, max_retries)
        self.backoff = backoff
        self.vllm = vllm
        self.extra_body = dict(extra_body or {})
        self.calls: Counter[str] = Counter()  # attempts sent to each base URL
        self._rr = itertools.count()
        self._tok_rr = itertools.count()  # /tokenize rotates on its own, so `calls` stays clean
        self._sem = asyncio.Semaphore(max_concurrency)
        self._counts: LRU[tuple[str, str], int] = LRU(4096)
        self._can_tokenize = vllm

    # -- plumbing ------------------------------------------------------------------------------
    def _pick(self) -> tuple[str, Any]:
        i = next(self._rr) % len(self.base_urls)
        self.calls[self.base_urls[i]] += 1
        return self.base_urls[i], self._clients[i]

    async def _retry_or_raise(self, e: Exception, url: str, attempt: int, tried: list[str]) -> None:
        """Sleep before the next attempt, or raise the TTSError that ends the request."""
        if not isinstance(e, _RETRYABLE):
            status = getattr(e, "status_code", None)
            body = getattr(e, "body", None)
            msg = body.get("message", e) if isinstance(body, dict) else e
            raise TTSError(f"server at {url} rejected the request{f' (HTTP {status})' if status else ''}: {msg}") from e
        tried.append(url)
        if attempt + 1 >= self.max_retries:
            where = ", ".join(dict.fromkeys(tried))
            cause = f"{e} ({e.__cause__})" if e.__cause__ else str(e)
            if isinstance(e, openai.APIConnectionError):
                raise TTSError(
                    f"server at {where} unreachable after {attempt + 1} attempts: {cause}; "
                    "is it running? check --base-url"
                ) from e
            raise TTSError(f"server at {where} still failing after {attempt + 1} attempts: {cause}") from e
        delay = min(_MAX_DELAY, self.backoff * 2**attempt) * random.uniform(0.5, 1.0)
        log.warning("request to %s failed (%s); retrying in %.2fs", url, e, delay)
        await asyncio.sleep(delay)

    def _kwargs(self, req: GenRequest) -> dict[str, Any]:
        messages = list(req.messages)
        extra = dict(self.extra_body)
        if req.prefix:
            messages.append({"role": "assistant", "content": req.prefix})
            if self.vllm:
                extra.update(add_generation_prompt=False, continue_final_message=True)
        kw: dict[str, Any] = dict(
            model=self.model, messages=messages, n=req.n, max_tokens=req.max_tokens,
            temperature=req.temperature, top_p=req.top_p,
        )
        if req.stop:
            kw["stop"] = list(req.stop)
        if req.logprobs is not None:
            # vLLM's server fills top_logprobs with the *sampled* token first, then the top
            # tokens, cut to k: ask for k+1 and keep the k largest, which are the true top k.
            k = req.logprobs + 1 if self.vllm and req.logprobs > 0 else req.logprobs
            kw.update(logprobs=True, top_logprobs=k)
        if extra:
            kw["extra_body"] = extra
        return kw

    # -- generation ----------------------------------------------------------------------------
    async def generate(self, req: GenRequest) -> tuple[list[Trace], Usage]:
        """n samples as n single-sample requests, as VLLMGenerator does: the server prefills
        each sample's prompt anyway (its usage for n>1 counts the prompt once), single requests
        report every sample's prompt, cached and completion tokens exactly, and replicas share
        one prompt's samples round-robin."""
        one = req.replace(n=1)
        done = await asyncio.gather(*(self._sample(one) for _ in range(req.n)))
        return [t for t, _ in done], sum((u for _, u in done), Usage())

    async def _sample(self, req: GenRequest) -> tuple[Trace, Usage]:
        kw = self._kwargs(req)
        tried: list[str] = []
        async with self._sem:
            for attempt in itertools.count():
                url, client = self._pick()
                try:
                    resp = await client.chat.completions.create(**kw)
                    break
                except openai.APIError as e:
                    await self._retry_or_raise(e, url, attempt, tried)
        c, u = resp.choices[0], resp.usage
        t = Trace(text=c.message.content or "", num_tokens=0, finish_reason=_finish(c.finish_reason), prefix=req.prefix)
        content = _add_logprobs(t, c.logprobs, req.logprobs)
        # usage is exact for one sample; without it, one logprob entry per token, else the
        # UTF-8 byte count (an upper bound for byte-level BPE: never an undercount).
        t.num_tokens = u.completion_tokens if u else len(content) if content is not None else len(t.text.encode())
        prompt = u.prompt_tokens if u else await self.count_prompt_tokens(req)
        return t, Usage(prompt_tokens=prompt, cached_tokens=_cached(u), completion_tokens=t.num_tokens)

    async def stream(self, req: GenRequest) -> AsyncIterator[tuple[Trace, Usage]]:
        """Yields the same Trace object, grown in place (copy it to keep a snapshot), as the
        in-process generator does; the last yield has `finish_reason` set and the final usage
        (with cached tokens, which vLLM reports only at the end)."""
        if req.n != 1:
            raise ValueError("stream() samples one trace; use n=1 and start several streams")
        kw = self._kwargs(req)
        opts = {"include_usage": True, "continuous_usage_stats": True} if self.vllm else {"include_usage": True}
        tried: list[str] = []
        async with self._sem:
            for attempt in itertools.count():
                url, client = self._pick()
                trace, usage, yielded = Trace(text="", num_tokens=0, prefix=req.prefix), Usage(), False
                try:
                    s = await client.chat.completions.create(**kw, stream=True, stream_options=opts)
                    try:  # leaving early (aclose, cancellation) closes the HTTP stream: vLLM aborts
                        async for chunk in s:
                            new = False
                            for c in chunk.choices[:1]:
                                trace.text += c.delta.content or ""
                                content = _add_logprobs(trace, c.logprobs, req.logprobs)
                                new = bool(c.delta.content or content)
                                if not self.vllm:  # approximate until the final usage arrives
                                    trace.num_tokens += len(content) if content else int(new)
                                if c.finish_reason is not None:
                                    trace.finish_reason = _finish(c.finish_reason)
                            if chunk.usage:
                                usage.prompt_tokens = chunk.usage.prompt_tokens
                                usage.cached_tokens = _cached(chunk.usage)
                                trace.num_tokens = chunk.usage.completion_tokens or 0
                            usage.completion_tokens = trace.num_tokens
                            if new and trace.finish_reason is None:
                                yielded = True
                                yield trace, Usage(usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens)
                    finally:
                        await s.close()
                except openai.APIError as e:
                    if yielded:
                        raise TTSError(f"stream from {url} broke after {trace.num_tokens} tokens: {e}") from e
                    await self._retry_or_raise(e, url, attempt, tried)
                    continue
                trace.finish_reason = trace.finish_reason or "abort"
                yield trace, usage
                return

    async def post(self, route: str, body: dict[str, Any]) -> Any:
        """POST `body` (JSON) to `route` at the server root, outside /v1 (vLLM's "/pooling",
        "/tokenize", ...), with generation's replica rotation and retry policy; the JSON reply."""
        tried: list[str] = []
        async with self._sem:
            for attempt in itertools.count():
                url, client = self._pick()
                root = url.rstrip("/").removesuffix("/v1")
                try:
                    return await client.post(f"{root}{route}", cast_to=object, body=body)
                except openai.APIError as e:
                    await self._retry_or_raise(e, url, attempt, tried)

    # -- prompt tokens ---------------------------------------------------------------------------
    async def count_prompt_tokens(self, req: GenRequest) -> int:
        """Exact via vLLM's /tokenize (cached by prompt), else an upper bound."""
        key = prompt_key(req)
        n = self._counts.get(key)
        if n is None:
            n = await self._tokenize(req) if self._can_tokenize else None
            if n is None:
                return byte_bound(req.messages, req.prefix)
            self._counts.put(key, n)
        return n

    async def _tokenize(self, req: GenRequest) -> int | None:
        url = self.base_urls[next(self._tok_rr) % len(self.base_urls)]
        root = url.rstrip("/").removesuffix("/v1")
        messages = list(req.messages) + ([{"role": "assistant", "content": req.prefix}] if req.prefix else [])
        body = {
            "model": self.model, "messages": messages,
            "add_generation_prompt": not req.prefix, "continue_final_message": bool(req.prefix),
        }
        try:
            async with self._sem:
                r = await self._http.post(f"{root}/tokenize", json=body)
            if r.status_code == 404:  # not a vLLM server: stop asking
                self._can_tokenize = False
            r.raise_for_status()
            return int(r.json()["count"])
        except (httpx.HTTPError, KeyError, ValueError) as e:
            log.warning("could not count prompt tokens at %s/tokenize (%s); using an upper bound", root, e)
            return None

    async def close(self) -> None:
        for c in self._clients:
            await c.close()
        await self._http.aclose()


def _add_logprobs(t: Trace, lp: Any, k: int | None) -> list | None:
    """Append a choice's logprobs to `t`; returns the per-token entries (None when absent)."""
    content = getattr(lp, "content", None) if k is not None else None
    for c in content or ():
        t.logprobs.append(c.logprob)
        if k:
            top = sorted(c.top_logprobs, key=lambda x: x.logprob, reverse=True)[:k]
            t.top_logprobs.append([x.logprob for x in top])
            t.top_tokens.append([x.token for x in top])
    return content


def _cached(u: Any) -> int:
    details = getattr(u, "prompt_tokens_details", None)
    return (getattr(details, "cached_tokens", None) or 0) if details else 0


def _finish(reason: str | None) -> Any:
    return None if reason is None else reason if reason in ("stop", "length", "abort") else "stop"
