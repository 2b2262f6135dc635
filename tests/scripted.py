"""A deterministic scripted generator: a FAKE backend for pure algorithm tests only.

It replays given completions in order (cycling), one "token" per whitespace-separated word,
honouring max_tokens and stop strings, and reports usage the way real backends do.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from tts.interfaces import Generator
from tts.thinking import Markers, mark_thinking, opens_thinking
from tts.types import GenRequest, Trace, Usage


class ScriptedGenerator(Generator):
    def __init__(
        self,
        completions: list[str | tuple[str, float | list[float]]],
        logprob: float = -0.5,
        num_params: int = 1000,
        delay: float = 0.0,
        top: list[tuple[str, float]] | None = None,
        markers: Markers | None = None,
        route: Callable[[GenRequest], str | None] | None = None,
    ):
        self.markers = markers  # a reasoning model's: traces split into thinking and answer
        self.route = route  # a reply chosen from the request (its text) where it returns one
        self.requests: list[GenRequest] = []  # every request, in order
        self.completions = completions
        self.logprob = logprob
        self.top = top  # (token, logprob) pairs every position reports as its top-k, if given
        self.model = "scripted"
        self.num_params = num_params
        self.delay = delay
        self.calls = 0
        self._next = 0

    async def count_prompt_tokens(self, req: GenRequest) -> int:
        words = sum(len(m["content"].split()) for m in req.messages) + len(req.prefix.split())
        return words + 2 * len(req.messages)

    def _one(self, req: GenRequest) -> Trace:
        routed = self.route(req) if self.route is not None else None
        if routed is not None:
            item: str | tuple[str, float | list[float]] = routed
        else:
            item = self.completions[self._next % len(self.completions)]
            self._next += 1
        text, logprob = item if isinstance(item, tuple) else (item, self.logprob)
        finish, stop_reason = "stop", None
        for s in req.stop:
            if s in text:
                text, stop_reason = text[: text.index(s)], s
        words = text.split(" ")
        if len(words) > req.max_tokens:
            words, finish, stop_reason = words[: req.max_tokens], "length", None
        n = len(words) if text else 0
        # logprob: one value for every token, or a list with one per token (cycled)
        lp = [logprob[i % len(logprob)] for i in range(n)] if isinstance(logprob, list) else [logprob] * n
        top = [[x, x - 1.0][: req.logprobs] for x in lp] if req.logprobs else []
        tokens: list[list[str]] = []
        if req.logprobs and self.top is not None:
            rows = sorted(self.top, key=lambda x: x[1], reverse=True)[: req.logprobs]
            top = [[lp for _, lp in rows] for _ in range(n)]
            tokens = [[tok for tok, _ in rows] for _ in range(n)]
        t = Trace(
            " ".join(words), n, finish, lp if req.logprobs is not None else [], top,
            prefix=req.prefix, top_tokens=tokens, stop_reason=stop_reason,
        )
        if self.markers is not None:
            mark_thinking(t, self.markers, opens_thinking(req.prefix, self.markers))
        return t

    async def generate(self, req: GenRequest) -> tuple[list[Trace], Usage]:
        self.calls += 1
        self.requests.append(req)
        if self.delay:
            await asyncio.sleep(self.delay)
        traces = [self._one(req) for _ in range(req.n)]
        prompt = await self.count_prompt_tokens(req)
        return traces, Usage(
            prompt_tokens=prompt * req.n,
            cached_tokens=prompt * (req.n - 1),
            completion_tokens=sum(t.num_tokens for t in traces),
        )

    async def stream(self, req: GenRequest) -> AsyncIterator[tuple[Trace, Usage]]:
        self.calls += 1
        full = self._one(req)
        words = full.text.split(" ")
        prompt = await self.count_prompt_tokens(req)
        trace = Trace("", 0, prefix=req.prefix)
        for i, _ in enumerate(words[: full.num_tokens], 1):
            await asyncio.sleep(self.delay)
            trace.text = " ".join(words[:i])
            trace.num_tokens = i
            if full.logprobs:
                trace.logprobs.append(full.logprobs[i - 1])
            if full.top_logprobs:
                trace.top_logprobs.append(full.top_logprobs[i - 1])
            if i == full.num_tokens:
                trace.finish_reason, trace.stop_reason = full.finish_reason, full.stop_reason
                trace.thinking, trace.answer_part = full.thinking, full.answer_part
                trace.thinking_tokens = full.thinking_tokens
            yield trace, Usage(prompt_tokens=prompt, completion_tokens=i)
