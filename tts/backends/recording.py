"""Recording trace banks (`tts record`): generation once, replay (tts.backends.replay) ever after.

`RecordingGenerator` wraps any generator and keeps a copy of every finished sample that passes
through it, per prompt, in request order, with the logprobs of a fixed top-k requested from the
backend whatever the strategy asked (the strategy still sees only what it asked for).
Streams abandoned before they finish are not recorded (a bank holds whole samples); requests
with a prefix (step-level continuation) are refused. Writing banks with it (`record_bank`,
`record_run`, the `tts record` command) is in `tts.experiment.record`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from tts.types import Sampling
from tts.errors import TTSError
from tts.interfaces import Generator
from tts.spec import BackendId
from tts.types import GenRequest, Trace, Usage


@dataclass
class _Slot:
    trace: Trace | None = None
    char_ends: list[int] | None = None


@dataclass
class _Prompt:
    prompt_tokens: int = 0
    cached_tokens: int = 0
    slots: list[_Slot] = field(default_factory=list)


class RecordingGenerator(Generator):
    """Passes requests to `inner` and records every finished sample, per prompt.

    `logprobs`: the top-k logprobs recorded for every sample (requested from `inner` whatever
    a request asks; None records none). `sampling`, when given, is the one sampling
    configuration the bank holds: a request with other temperature / top_p / max_tokens / stop
    is a TTSError (a bank mixing them could not be replayed faithfully).
    """

    def __init__(self, inner: Generator, logprobs: int | None = None, sampling: Sampling | None = None,
                 stop: Sequence[str] = ()):
        self.inner = inner
        self.model = inner.model
        self.num_params = inner.num_params
        self.markers = inner.markers
        self.logprobs = logprobs
        self.sampling = sampling
        self.stop = tuple(stop)
        self._prompts: dict[str, _Prompt] = {}

    @property
    def identity(self) -> BackendId:
        """A recorder is keyed as the backend it wraps."""
        return self.inner.identity

    @staticmethod
    def prompt_key(messages: list[dict[str, str]]) -> str:
        return json.dumps(messages, sort_keys=True, ensure_ascii=False)

    def take(self, messages: list[dict[str, str]]) -> tuple[int, int, list[tuple[Trace, list[int] | None]]]:
        """Remove and return what was recorded for a prompt: (prompt tokens per sample, cached
        tokens reported, [(trace, char ends or None)] in request order)."""
        p = self._prompts.pop(self.prompt_key(messages), None)
        if p is None:
            return 0, 0, []
        return p.prompt_tokens, p.cached_tokens, [(s.trace, s.char_ends) for s in p.slots if s.trace is not None]

    def _inner(self, req: GenRequest) -> GenRequest:
        if req.prefix:
            raise TTSError("step-level continuation (a request with a prefix) cannot be recorded into a bank: "
                           "a bank holds whole samples")
        if self.sampling is not None:
            for f in ("temperature", "top_p", "max_tokens"):
                if getattr(req, f) != getattr(self.sampling, f):
                    raise TTSError(f"this bank records {f}={getattr(self.sampling, f)}; a request asked "
                                   f"{f}={getattr(req, f)} (one sampling configuration per bank)")
            if tuple(req.stop) != self.stop:
                raise TTSError(f"this bank records stop={list(self.stop)}; a request asked stop={list(req.stop)}")
        if req.logprobs is not None and (self.logprobs is None or req.logprobs > self.logprobs):
            raise TTSError(f"the strategy asks logprobs={req.logprobs}; record with --logprobs {req.logprobs} "
                           f"or more (now {self.logprobs})")
        return req.replace(logprobs=self.logprobs) if self.logprobs is not None else req

    def _reserve(self, req: GenRequest, n: int) -> tuple[_Prompt, list[_Slot]]:
        p = self._prompts.setdefault(self.prompt_key(req.messages), _Prompt())
        slots = [_Slot() for _ in range(n)]
        p.slots.extend(slots)  # reserved at request time: the bank keeps request order
        return p, slots

    def _release(self, p: _Prompt, slots: list[_Slot]) -> None:
        for s in slots:
            if s.trace is None and s in p.slots:
                p.slots.remove(s)

    async def count_prompt_tokens(self, req: GenRequest) -> int:
        return await self.inner.count_prompt_tokens(req)

    async def generate(self, req: GenRequest) -> tuple[list[Trace], Usage]:
        ireq = self._inner(req)
        p, slots = self._reserve(req, req.n)
        try:
            traces, usage = await self.inner.generate(ireq)
        except BaseException:
            self._release(p, slots)
            raise
        p.prompt_tokens = usage.prompt_tokens // max(req.n, 1)
        p.cached_tokens += usage.cached_tokens
        for s, t in zip(slots, traces):
            if t.finish_reason in ("stop", "length"):
                s.trace = _copy(t)
        self._release(p, slots)
        return [_view(t, req.logprobs) for t in traces], usage

    async def stream(self, req: GenRequest) -> AsyncIterator[tuple[Trace, Usage]]:
        ireq = self._inner(req)
        p, slots = self._reserve(req, 1)
        ends: list[int] = []
        view: Trace | None = None
        agen = self.inner.stream(ireq)
        try:
            async for t, usage in agen:
                ends.extend(_spread(len(ends), t.num_tokens, ends[-1] if ends else 0, len(t.text)))
                p.prompt_tokens = usage.prompt_tokens
                if t.finished:
                    p.cached_tokens += usage.cached_tokens
                    if t.finish_reason in ("stop", "length"):
                        slots[0].trace, slots[0].char_ends = _copy(t), list(ends)
                if ireq.logprobs == req.logprobs:
                    yield t, usage
                else:
                    view = _grow(view, t, req.logprobs)
                    yield view, usage
        finally:
            self._release(p, slots)
            await agen.aclose()

    async def close(self) -> None:
        await self.inner.close()


def _copy(t: Trace) -> Trace:
    return Trace(t.text, t.num_tokens, t.finish_reason, list(t.logprobs), [list(r) for r in t.top_logprobs],
                 prefix=t.prefix, token_ids=list(t.token_ids))


def _view(t: Trace, k: int | None) -> Trace:
    """`t` as a request for logprobs=k would have returned it."""
    if k is None:
        t.logprobs, t.top_logprobs, t.top_tokens = [], [], []
    elif k == 0:
        t.top_logprobs, t.top_tokens = [], []
    else:
        t.top_logprobs = [r[:k] for r in t.top_logprobs]
        t.top_tokens = [r[:k] for r in t.top_tokens]
    return t


def _grow(view: Trace | None, t: Trace, k: int | None) -> Trace:
    if view is None:
        view = Trace("", 0, prefix=t.prefix)
    n0 = view.num_tokens
    view.text, view.num_tokens, view.finish_reason = t.text, t.num_tokens, t.finish_reason
    view.token_ids.extend(t.token_ids[n0:])
    if k is not None:
        view.logprobs.extend(t.logprobs[n0:])
        if k > 0:
            view.top_logprobs.extend(r[:k] for r in t.top_logprobs[n0:])
            view.top_tokens.extend(r[:k] for r in t.top_tokens[n0:])
    return view


def _spread(n0: int, n1: int, c0: int, c1: int) -> list[int]:
    """Char ends for tokens n0..n1 revealed together with text c0..c1 (the last token of a chunk
    ends where the chunk's text does; tokens inside it are interpolated)."""
    k = n1 - n0
    return [c0 + (c1 - c0) * (i + 1) // k for i in range(k)] if k > 0 else []
