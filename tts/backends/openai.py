"""`OpenAIGenerator`: any OpenAI-compatible chat server, vLLM's first, as one async sampler.

Several replicas (`base_urls`) are served round-robin, so a fleet looks like one generator.
Retries are ours, not the client's: exponential backoff with jitter (or the server's
`Retry-After`, bounded) on 429, 5xx, connection errors, malformed or empty responses and streams
cut before their finish reason, over the next replica each time; then one `BackendError` that
says what failed and what to do. A fault is never a finished Trace with silent empty text.

Timeouts: `timeout` seconds per attempt (connect, and each read of the answer). A server that
accepts and does not answer in that time is not asked again (it rarely answers the next time,
and every retry would add `timeout` to the wait); another replica is. So with one server the
slowest fault, a hang, surfaces after about `timeout` seconds, as "connected but no answer";
"cannot connect" is a different message.

With `vllm=True` we use vLLM's server extensions:
- `continue_final_message` to continue a partial assistant message (`GenRequest.prefix`);
- `continuous_usage_stats`, so every streamed chunk carries the completion tokens so far;
- `POST /tokenize` (at the server root, not under /v1) to count prompt tokens exactly.
- `return_token_ids`, so a reasoning model's thinking tokens are counted from the generated ids.
- `POST /v1/chat/completions/batch` (`generate_many`): several conversations with the same
  sampling parameters in one HTTP request, one choice per conversation (a judge's requests of
  one expansion). vLLM's batch route reports no cached prompt tokens, so such a call's prompt
  is charged as computed (an upper bound). A server without the route (404) is asked request
  by request from then on.
- `n` (`share_prompt=True`): a request's n samples in one HTTP request instead of n, the prompt
  rendered and tokenized once. vLLM still runs them as n engine requests, each prefilling the
  prompt, and reports the prompt once: it is charged n times (its cached part n times).
Cached prompt tokens come from `usage.prompt_tokens_details.cached_tokens`, which vLLM reports
only when started with `--enable-prompt-tokens-details` (else they read as 0).

Reasoning models: a server started with `--reasoning-parser` (e.g. `deepseek_r1`) returns the
thinking in the message's `reasoning` field (vLLM 0.32's name; older servers' `reasoning_content`
is read too) and the answer in `content`; without a parser the markers are split from the text
(`tts.thinking`). `enable_thinking` goes to the template as `chat_template_kwargs`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import openai

from tts.backends.common import LRU, byte_bound, prompt_key
from tts.secrets import split_credentials
from tts.backends.retry import BadResponse, RetryPolicy
from tts.errors import BackendError, TTSError
from tts.interfaces import Generator
from tts.options import ModelOptions, SamplingOptions
from tts.thinking import Markers, mark_thinking, markers_for, opens_thinking
from tts.types import GenRequest, TextCompletion, TextRequest, Trace, Usage

log = logging.getLogger(__name__)

class OpenAIGenerator(Generator):
    """Samples from `model` behind one or more OpenAI-compatible servers.

    `api_key` defaults to $OPENAI_API_KEY, else "EMPTY" (vLLM without --api-key); it is never
    logged, and redacted from what a server says back. A base URL's `user:password@` is sent as
    Basic auth and kept out of `base_urls` (and so out of every message, log and record).
    `timeout`: seconds per attempt; `retries`: attempts after the first (`max_retries`, the
    older name, counts attempts in all). `max_model_len`: the served model's length, which
    clips each request's max_tokens to what fits after the prompt (with `vllm=True` it is read
    from the server's /v1/models when not given). `extra_body` holds
    extra server sampling parameters sent with every request (e.g. vLLM's `top_k`,
    `ignore_eos`). Set `vllm=False` for servers without vLLM's extensions. `share_prompt`: send
    a request's n samples as one request with `n` (default: n single-sample requests);
    `batch`: send `generate_many`'s requests through vLLM's batch route (see the module doc).
    """

    kind = "openai"

    @classmethod
    def from_options(cls, options: ModelOptions, sampling: SamplingOptions, seed: int) -> "OpenAIGenerator":
        if not options.model or not options.base_urls:
            raise TTSError("--backend openai needs --model NAME (as the server knows it) and --base-url URL")
        policy = {k: v for k, v in (("timeout", options.timeout), ("retries", options.retries)) if v is not None}
        return cls(options.model, options.base_urls, think_open=options.think_open, think_close=options.think_close,
                   **policy)

    def __init__(
        self,
        model: str,
        base_urls: str | list[str],
        api_key: str | None = None,
        max_concurrency: int = 64,
        retries: int = 3,
        backoff: float = 0.5,
        timeout: float = 120,
        num_params: int | None = None,
        vllm: bool = True,
        extra_body: dict[str, Any] | None = None,
        max_model_len: int | None = None,
        max_retries: int | None = None,
        max_logprobs: int = 20,
        think_open: str | None = None,
        think_close: str | None = None,
        share_prompt: bool = False,
        batch: bool = True,
    ):
        if max_retries is not None:
            retries = max_retries - 1
        if retries < 0 or not timeout > 0 or backoff < 0 or max_concurrency < 1:
            raise ValueError("need retries >= 0, timeout > 0, backoff >= 0 and max_concurrency >= 1")
        self.model = model
        self.num_params = num_params
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise TTSError("no server given: pass at least one base URL, e.g. http://127.0.0.1:8000/v1")
        # A URL's user:password becomes its Basic auth (as httpx would make it) and leaves the URL:
        # the URLs every client, message, log and metric sees hold no password.
        split = [split_credentials(u) for u in urls]
        self.base_urls = [u for u, _ in split]
        self._auths = {u: cred for u, cred in split if cred is not None}  # (user, password): Basic auth
        key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        # The client's own retries are off: ours rotate replicas and end in a TTSError.
        self._clients = [
            openai.AsyncOpenAI(base_url=u, api_key=key, max_retries=0, timeout=timeout, http_client=(
                openai.DefaultAsyncHttpxClient(auth=self._auths[u]) if u in self._auths else None))
            for u in self.base_urls
        ]
        self._http = httpx.AsyncClient(timeout=timeout, headers={"Authorization": f"Bearer {key}"})
        self._policy = RetryPolicy(retries + 1, backoff, float(timeout), self.base_urls,
                                   secrets=(key,) if key != "EMPTY" else ())
        self.timeout = float(timeout)
        self.max_model_len = max_model_len
        self._len_known = max_model_len is not None or not vllm
        self.vllm = vllm
        self.extra_body = dict(extra_body or {})
        self.max_logprobs = max_logprobs  # the server's --max-logprobs (vLLM's default: 20)
        self.calls: Counter[str] = Counter()  # attempts sent to each base URL
        self._rr = itertools.count()
        self._tok_rr = itertools.count()  # /tokenize rotates on its own, so `calls` stays clean
        self._sem = asyncio.Semaphore(max_concurrency)
        self._counts: LRU[tuple[str, str], int] = LRU(4096)
        self._can_tokenize = vllm
        # A reasoning model's markers (its family's, or given); a server's reasoning field with
        # no markers known is split at <think>/</think>.
        self.markers = markers_for(model, None, think_open, think_close)
        self._close_id: int | None | bool = False  # False: not looked up yet
        self._switch_checked = False
        self.share_prompt = share_prompt
        self._can_batch = batch and vllm  # False once a server answers the batch route with 404

    # -- plumbing ------------------------------------------------------------------------------
    def _auth(self, url: str) -> Any:
        """The credentials `url` came with, for a request outside the openai client."""
        return self._auths.get(url, httpx.USE_CLIENT_DEFAULT)

    def _pick(self) -> tuple[str, Any]:
        i = next(self._rr) % len(self.base_urls)
        self.calls[self.base_urls[i]] += 1
        return self.base_urls[i], self._clients[i]

    async def _model_len(self) -> int | None:
        """The served model's max_model_len (vLLM's /v1/models reports it), read once."""
        if not self._len_known:
            self._len_known = True
            try:
                r = await self._http.get(f"{self.base_urls[0].rstrip('/')}/models", auth=self._auth(self.base_urls[0]))
                r.raise_for_status()
                rows = [m for m in r.json().get("data", []) if m.get("id") == self.model] or r.json().get("data", [])
                self.max_model_len = int(rows[0]["max_model_len"]) if rows and rows[0].get("max_model_len") else None
            except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
                log.warning("could not read the model's length from %s/models (%s); max_tokens not clipped",
                            self.base_urls[0], e)
        return self.max_model_len

    async def _clip(self, req: GenRequest) -> int:
        """max_tokens clipped to what fits in the model after the prompt (a server rejects
        more): what this backend can return for `req`, never above req.max_tokens."""
        length = await self._model_len()
        if length is None:
            return req.max_tokens
        room = length - await self.count_prompt_tokens(req)
        if room < 1:
            raise TTSError(f"the prompt fills the model's length ({length} tokens); shorten it or serve a longer "
                           "context (--max-model-len)")
        return min(req.max_tokens, room)

    async def _kwargs(self, req: GenRequest) -> dict[str, Any]:
        messages = list(req.messages)
        extra = dict(self.extra_body)
        if req.prefix:
            messages.append({"role": "assistant", "content": req.prefix})
            if self.vllm:
                extra.update(add_generation_prompt=False, continue_final_message=True)
        kw: dict[str, Any] = dict(
            model=self.model, messages=messages, n=req.n, max_tokens=await self._clip(req),
            temperature=req.temperature, top_p=req.top_p,
        )
        if req.stop:
            kw["stop"] = list(req.stop)
        if req.enable_thinking is not None:
            await self._check_switch(req)
            switch = (self.markers.switch if self.markers else None) or "enable_thinking"
            extra["chat_template_kwargs"] = {**extra.get("chat_template_kwargs", {}), switch: req.enable_thinking}
        if self.vllm:
            extra["return_token_ids"] = True
        if req.logprobs is not None:
            if req.logprobs > self.max_logprobs:
                raise TTSError(
                    f"{req.logprobs} top logprobs asked of a server that allows {self.max_logprobs}: start "
                    f"it with --max-logprobs {req.logprobs} and pass max_logprobs={req.logprobs}, or ask for fewer"
                )
            # vLLM's server fills top_logprobs with the *sampled* token first, then the top
            # tokens, cut to k: when sampling, ask for k+1 and keep the k largest, which are the
            # true top k. Greedy samples the top token, so k already holds the top k; and k+1
            # is never asked past the server's cap (a 400 otherwise), at the cost of the k-th
            # token where the sampled one falls outside the top k.
            sampled = self.vllm and req.logprobs > 0 and req.temperature > 0
            k = min(req.logprobs + 1, self.max_logprobs) if sampled else req.logprobs
            kw.update(logprobs=True, top_logprobs=k)
        if extra:
            kw["extra_body"] = extra
        return kw

    # -- generation ----------------------------------------------------------------------------
    async def generate(self, req: GenRequest) -> tuple[list[Trace], Usage]:
        """n samples as n single-sample requests, as VLLMGenerator does: the server prefills
        each sample's prompt anyway (its usage for n>1 counts the prompt once), single requests
        report every sample's prompt, cached and completion tokens exactly, and replicas share
        one prompt's samples round-robin. With `share_prompt`, one request with `n`."""
        if self.share_prompt and req.n > 1:
            kw = await self._kwargs(req)
            resp = await self._send(lambda client: client.chat.completions.create(**kw), req.n)
            traces = [await self._trace(c, req, kw["max_tokens"]) for c in resp.choices]
            u = resp.usage
            if u is None:  # no usage: each sample's prompt counted, none of it cached
                prompt = await self.count_prompt_tokens(req)
                return traces, Usage(prompt_tokens=req.n * prompt, completion_tokens=sum(t.num_tokens for t in traces))
            # n engine requests, each prefilling the prompt (its cached part from the cache)
            return traces, Usage(prompt_tokens=req.n * u.prompt_tokens, cached_tokens=req.n * _cached(u),
                                 completion_tokens=u.completion_tokens)
        one = req.replace(n=1)
        done = await asyncio.gather(*(self._sample(one) for _ in range(req.n)))
        return [t for t, _ in done], sum((u for _, u in done), Usage())

    async def generate_many(self, reqs: list[GenRequest]) -> tuple[list[list[Trace]], Usage]:
        """Requests that differ only in their conversation (single samples, the same sampling
        parameters, all continuing a prefix or none) go to vLLM's batch route together, one
        HTTP request per such group; the others as `generate` does."""
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(reqs):
            key = (r.max_tokens, r.temperature, r.top_p, r.stop, r.logprobs, bool(r.prefix), r.enable_thinking)
            groups.setdefault(key if r.n == 1 and self._can_batch else ("single", i), []).append(i)
        out: list[list[Trace]] = [[] for _ in reqs]
        usage = Usage()

        async def one(idx: list[int]) -> None:
            nonlocal usage
            if len(idx) > 1 and self._can_batch:
                got, u = await self._batch([reqs[i] for i in idx])
            else:
                got, u = [], Usage()
                for traces, each in await asyncio.gather(*(self.generate(reqs[i]) for i in idx)):
                    got.append(traces)
                    u = u + each
            for i, traces in zip(idx, got):
                out[i] = traces
            usage = usage + u

        await asyncio.gather(*(one(idx) for idx in groups.values()))
        return out, usage

    async def _batch(self, reqs: list[GenRequest]) -> tuple[list[list[Trace]], Usage]:
        """One POST to /v1/chat/completions/batch for single-sample requests that share their
        sampling parameters; falls back to one request each where the server has no such route."""
        kw = await self._kwargs(reqs[0])
        kw["max_tokens"] = min([kw["max_tokens"]] + [await self._clip(r) for r in reqs[1:]])
        kw["messages"] = [list(r.messages) + ([{"role": "assistant", "content": r.prefix}] if r.prefix else [])
                          for r in reqs]
        body = {**{k: v for k, v in kw.items() if k != "extra_body"}, **kw.get("extra_body", {})}
        try:
            resp = await self._send(lambda client: client.post(
                "/chat/completions/batch", cast_to=openai.types.chat.ChatCompletion, body=body), len(reqs))
        except BackendError as e:
            if not isinstance(e.__cause__, openai.NotFoundError):
                raise
            log.warning("%s has no batch route (/v1/chat/completions/batch): sending requests one by one",
                        self.base_urls[0])
            self._can_batch = False
            done = await asyncio.gather(*(self.generate(r) for r in reqs))
            return [t for t, _ in done], sum((u for _, u in done), Usage())
        choices = sorted(resp.choices, key=lambda c: c.index)
        traces = [[await self._trace(c, r, kw["max_tokens"])] for c, r in zip(choices, reqs)]
        u = resp.usage
        if u is None:
            prompt = sum([await self.count_prompt_tokens(r) for r in reqs])
            return traces, Usage(prompt_tokens=prompt, completion_tokens=sum(t[0].num_tokens for t in traces))
        return traces, Usage(prompt_tokens=u.prompt_tokens, cached_tokens=_cached(u),
                             completion_tokens=u.completion_tokens)

    async def _send(self, call: Callable[[Any], Awaitable[Any]], n: int) -> Any:
        """`call(client)` under the concurrency limit and the retry policy over the replicas;
        the response, which must hold `n` choices, each with a message and a finish reason."""
        tried: list[str] = []
        async with self._sem:
            for attempt in itertools.count():
                url, client = self._pick()
                try:
                    resp = await call(client)
                    choices = getattr(resp, "choices", None)
                    if not choices or any(getattr(c, "message", None) is None for c in choices):
                        raise BadResponse("no choices")
                    if len(choices) != n:
                        raise BadResponse(f"{len(choices)} choices for {n} samples")
                    if any(c.finish_reason is None for c in choices):
                        raise BadResponse("a choice without a finish reason")
                    return resp
                except Exception as e:  # noqa: BLE001  classify re-raises what is not a backend fault
                    await self._policy.after_failure(e, url, attempt, tried)

    async def _trace(self, c: Any, req: GenRequest, max_tokens: int, completion: int | None = None) -> Trace:
        """One choice as a finished Trace. Its tokens: `completion` (the usage of a single
        sample), else its token ids, else one logprob entry per token, else the UTF-8 byte
        count (an upper bound for byte-level BPE: never an undercount), all bounded by the
        server's max_tokens."""
        t = Trace(text=c.message.content or "", num_tokens=0, finish_reason=_finish(c.finish_reason), prefix=req.prefix,
                  token_ids=list(getattr(c, "token_ids", None) or ()), stop_reason=_stop_reason(c))
        content = _add_logprobs(t, c.logprobs, req.logprobs)
        if completion is not None:
            t.num_tokens = completion
        elif t.token_ids:
            t.num_tokens = len(t.token_ids)
        else:
            t.num_tokens = min(len(content) if content is not None else len(t.text.encode()), max_tokens)
        await self._mark(t, req, _reasoning(c.message), c.message.content)
        return t

    async def _sample(self, req: GenRequest) -> tuple[Trace, Usage]:
        kw = await self._kwargs(req)
        resp = await self._send(lambda client: client.chat.completions.create(**kw), 1)
        u = resp.usage
        t = await self._trace(resp.choices[0], req, kw["max_tokens"], u.completion_tokens if u else None)
        prompt = u.prompt_tokens if u else await self.count_prompt_tokens(req)
        return t, Usage(prompt_tokens=prompt, cached_tokens=_cached(u), completion_tokens=t.num_tokens)

    # -- reasoning models --------------------------------------------------------------------------
    async def _mark(self, t: Trace, req: GenRequest, reasoning: str | None, content: str | None) -> None:
        """Split a finished trace into thinking and answer: the server's reasoning field when its
        parser gave one (the text becomes thinking + close marker + answer, as generated), else
        the markers in the text."""
        markers = self.markers
        if reasoning is not None and req.prefix and (markers or Markers()).close in req.prefix \
                and not opens_thinking(req.prefix, markers or Markers()):
            # continued after a closed thinking: the parser, which sees only the output, takes
            # an answer without markers for thinking (deepseek_r1 does); it is all answer
            t.text = reasoning + (content or "")
            t.thinking, t.answer_part, t.thinking_tokens = None, None, 0
            return
        if reasoning is not None:
            markers = markers or Markers()
            close_id = await self._close_token(markers)
            closed = (close_id in t.token_ids) if isinstance(close_id, int) and t.token_ids else content is not None
            t.text = reasoning + (markers.close + (content or "") if closed else "")
            mark_thinking(t, markers, True, close_id if isinstance(close_id, int) else None)
            return
        if markers is None:
            return
        opened = (markers.prompt_opens and req.enable_thinking is not False and not req.prefix) \
            or opens_thinking(req.prefix, markers)
        close_id = await self._close_token(markers)
        mark_thinking(t, markers, opened, close_id if isinstance(close_id, int) else None)

    async def _close_token(self, markers: Markers) -> int | None:
        """The close marker's token id (by the server's /tokenize; None when it is not one token)."""
        if self._close_id is False:
            self._close_id = None
            if self._can_tokenize:
                root = self.base_urls[0].rstrip("/").removesuffix("/v1")
                try:
                    r = await self._http.post(f"{root}/tokenize", auth=self._auth(self.base_urls[0]), json={
                        "model": self.model, "prompt": markers.close, "add_special_tokens": False})
                    r.raise_for_status()
                    toks = r.json().get("tokens") or []
                    self._close_id = int(toks[0]) if len(toks) == 1 else None
                except (httpx.HTTPError, KeyError, ValueError, TypeError) as e:
                    log.warning("could not look up the close marker's token at %s/tokenize (%s)", root, e)
        return self._close_id  # type: ignore[return-value]

    async def _check_switch(self, req: GenRequest) -> None:
        """A thinking switch asked of a model whose template has none is an error: the server
        drops template variables it does not know, so the switch is tried on /tokenize (the
        prompt must change between on and off)."""
        if self._switch_checked or not self._can_tokenize:
            return
        root = self.base_urls[0].rstrip("/").removesuffix("/v1")
        switch = (self.markers.switch if self.markers else None) or "enable_thinking"
        counts = []
        try:
            for on in (True, False):
                r = await self._http.post(f"{root}/tokenize", auth=self._auth(self.base_urls[0]), json={
                    "model": self.model, "messages": list(req.messages), "add_generation_prompt": True,
                    "chat_template_kwargs": {switch: on}})
                r.raise_for_status()
                counts.append(r.json().get("tokens"))
        except (httpx.HTTPError, KeyError, ValueError) as e:
            log.warning("could not check the template's thinking switch at %s/tokenize (%s)", root, e)
            return
        self._switch_checked = True
        if counts[0] == counts[1]:
            raise TTSError(
                f"enable_thinking={req.enable_thinking} asked of model {self.model!r}, whose chat template has no "
                f"thinking switch ({switch!r}: the prompt is the same on and off): drop the option "
                "(--enable-thinking / sampling.enable_thinking) and control thinking with thinking_budget, or serve "
                "a template that has the switch")

    async def stream(self, req: GenRequest) -> AsyncIterator[tuple[Trace, Usage]]:
        """Yields the same Trace object, grown in place (copy it to keep a snapshot), as the
        in-process generator does; the last yield has `finish_reason` set and the final usage
        (with cached tokens, which vLLM reports only at the end). A stream that breaks or ends
        without a finish reason is retried while nothing was yielded, else a BackendError."""
        if req.n != 1:
            raise ValueError("stream() samples one trace; use n=1 and start several streams")
        kw = await self._kwargs(req)
        opts = {"include_usage": True, "continuous_usage_stats": True} if self.vllm else {"include_usage": True}
        tried: list[str] = []
        async with self._sem:
            for attempt in itertools.count():
                url, client = self._pick()
                trace, usage, yielded = Trace(text="", num_tokens=0, prefix=req.prefix), Usage(), False
                reasoning: str | None = None
                answer = ""
                try:
                    s = await client.chat.completions.create(**kw, stream=True, stream_options=opts)
                    try:  # leaving early (aclose, cancellation) closes the HTTP stream: vLLM aborts
                        async for chunk in s:
                            new = False
                            for c in (getattr(chunk, "choices", None) or ())[:1]:
                                answer += c.delta.content or ""
                                think = _reasoning(c.delta)
                                if think:
                                    reasoning = (reasoning or "") + think
                                # the growing text: thinking, then (once it has closed) the answer
                                trace.text = answer if reasoning is None else reasoning + (
                                    (self.markers or Markers()).close + answer if answer else "")
                                trace.token_ids.extend(getattr(c, "token_ids", None) or ())
                                content = _add_logprobs(trace, c.logprobs, req.logprobs)
                                new = bool(c.delta.content or content or think)
                                if not self.vllm:  # approximate until the final usage arrives
                                    trace.num_tokens = min(trace.num_tokens + (len(content) if content else int(new)),
                                                           kw["max_tokens"])
                                if c.finish_reason is not None:
                                    trace.finish_reason = _finish(c.finish_reason)
                                    trace.stop_reason = _stop_reason(c)
                            if getattr(chunk, "usage", None):
                                usage.prompt_tokens = chunk.usage.prompt_tokens
                                usage.cached_tokens = _cached(chunk.usage)
                                trace.num_tokens = chunk.usage.completion_tokens or 0
                            usage.completion_tokens = trace.num_tokens
                            if new and trace.finish_reason is None:
                                yielded = True
                                yield trace, Usage(usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens)
                    finally:
                        await s.close()
                    if trace.finish_reason is None:
                        raise BadResponse(f"the stream ended without a finish reason after {trace.num_tokens} tokens")
                    await self._mark(trace, req, reasoning, answer or None)
                except Exception as e:  # noqa: BLE001  classify re-raises what is not a backend fault
                    if yielded:  # the caller has seen this sample grow: it cannot be restarted
                        kind, detail, _ = self._policy.classify(e)
                        raise BackendError(f"stream from {url} broke after {trace.num_tokens} tokens: {detail}") from e
                    await self._policy.after_failure(e, url, attempt, tried)
                    continue
                yield trace, usage
                return

    async def complete(self, req: TextRequest) -> TextCompletion:
        """A raw-text completion through the server's /v1/completions, n single-sample requests
        (as `generate`), with the retry policy. With echo the server returns the prompt before
        each choice: the prompt part (its `usage.prompt_tokens` first tokens and their logprobs)
        is split off."""
        kw: dict[str, Any] = dict(model=self.model, prompt=req.prompt, n=1, max_tokens=req.max_tokens,
                                  temperature=req.temperature, top_p=req.top_p, echo=req.echo)
        if req.stop:
            kw["stop"] = list(req.stop)
        if req.logprobs is not None:
            kw["logprobs"] = req.logprobs
        if self.vllm and not req.echo:  # (vLLM leaves the prompt out of an echo that returns token ids)
            kw["extra_body"] = {**self.extra_body, "return_token_ids": True}
        done = await asyncio.gather(*(self._complete_one(kw) for _ in range(req.n)))
        first, _ = done[0]
        p = first.usage.prompt_tokens if first.usage else 0
        c0 = first.choices[0]
        lp = c0.logprobs
        prompt_ids = list(getattr(c0, "prompt_token_ids", None) or ())
        if isinstance(req.prompt, str):
            prompt_text = req.prompt
        else:
            prompt_text = "".join(lp.tokens[:p]) if lp and lp.tokens else ""
            prompt_ids = prompt_ids or list(req.prompt)
        out = TextCompletion(prompt_text, prompt_ids, [], sum((u for _, u in done), Usage()))
        if req.echo and lp is not None:
            out.prompt_tokens = list(lp.tokens[:p])
            out.prompt_logprobs = list(lp.token_logprobs[:p])
            out.prompt_top = list(lp.top_logprobs[:p]) if lp.top_logprobs else [None] * p
        for resp, usage in done:
            c = resp.choices[0]
            skip = p if req.echo else 0
            text = c.text[len(prompt_text):] if req.echo else c.text
            t = Trace(text=text, num_tokens=usage.completion_tokens, finish_reason=_finish(c.finish_reason),
                      token_ids=list(getattr(c, "token_ids", None) or ()), stop_reason=_stop_reason(c))
            if req.logprobs is not None and c.logprobs is not None:
                t.tokens = list(c.logprobs.tokens[skip:])
                t.logprobs = list(c.logprobs.token_logprobs[skip:])
                for row in (c.logprobs.top_logprobs or [])[skip:]:
                    top = sorted((row or {}).items(), key=lambda x: x[1], reverse=True)[:req.logprobs]
                    t.top_tokens.append([tok for tok, _ in top])
                    t.top_logprobs.append([v for _, v in top])
            out.choices.append(t)
        return out

    async def _complete_one(self, kw: dict[str, Any]) -> tuple[Any, Usage]:
        tried: list[str] = []
        async with self._sem:
            for attempt in itertools.count():
                url, client = self._pick()
                try:
                    resp = await client.completions.create(**kw)
                    if not getattr(resp, "choices", None) or resp.choices[0].finish_reason is None:
                        raise BadResponse("no finished choice")
                    break
                except Exception as e:  # noqa: BLE001  classify re-raises what is not a backend fault
                    await self._policy.after_failure(e, url, attempt, tried)
        u = resp.usage
        return resp, Usage(prompt_tokens=u.prompt_tokens if u else 0, cached_tokens=_cached(u),
                           completion_tokens=u.completion_tokens if u else 0)

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
                except Exception as e:  # noqa: BLE001  classify re-raises what is not a backend fault
                    await self._policy.after_failure(e, url, attempt, tried)

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
                r = await self._http.post(f"{root}/tokenize", json=body, auth=self._auth(url))
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
        t.tokens.append(c.token)
        if k:
            top = sorted(c.top_logprobs, key=lambda x: x.logprob, reverse=True)[:k]
            t.top_logprobs.append([x.logprob for x in top])
            t.top_tokens.append([x.token for x in top])
    return content


def _reasoning(message: Any) -> str | None:
    """A message's (or stream delta's) reasoning: `reasoning` in vLLM 0.32, `reasoning_content`
    before."""
    r = getattr(message, "reasoning", None)
    if r is None:
        r = getattr(message, "reasoning_content", None)
    if r is None and getattr(message, "model_extra", None):
        r = message.model_extra.get("reasoning") or message.model_extra.get("reasoning_content")
    return r


def _stop_reason(choice: Any) -> str | None:
    r = getattr(choice, "stop_reason", None)
    return r if isinstance(r, str) else None


def _cached(u: Any) -> int:
    details = getattr(u, "prompt_tokens_details", None)
    return (getattr(details, "cached_tokens", None) or 0) if details else 0


def _finish(reason: str | None) -> Any:
    return None if reason is None else reason if reason in ("stop", "length", "abort") else "stop"
