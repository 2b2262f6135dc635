"""The backend role: a `Generator` samples traces (and a `StreamPlan` is a stream known before
it is read). Backends implement it and register as plugins (kind "backend"); strategies and
verifiers never call one directly but go through `tts.context.Context`, whose accountant charges
every call. The other two roles work through the context: `tts.context.Verifier` scores traces,
`tts.strategy.Strategy` spends both.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import ClassVar

from tts.errors import TTSError
from tts.models import DEFAULT_MODEL
from tts.options import ModelOptions, SamplingOptions
from tts.spec import BackendId
from tts.thinking import Markers
from tts.types import GenRequest, TextCompletion, TextRequest, Trace, Usage


class Generator(ABC):
    """An async sampler. Both methods report what the backend says each call cost.

    Cancelling the awaiting task (or closing a `stream`) aborts the request at the backend.
    """

    kind: ClassVar[str] = ""  # its registered backend name ("" for a class that is not one)
    model: str = ""
    num_params: int | None = None  # for FLOPs estimates; None when unknown
    markers: Markers | None = None  # a reasoning model's thinking markers (None: not one)
    # Whether generation takes real time. False for a replay, whose traces are served from a
    # bank: a stream that waits for a verdict there loses no tokens to a clock (DeepPrune's wait).
    realtime: bool = True
    # Whether `stream_plan` works: every stream is known in full before it is read and streams
    # advance in lockstep, one snapshot per event-loop round (a replay). A race of streams
    # (`tts.search.streams.Streams.race`, first-finish) is then computed, not read token by token.
    plans_streams: bool = False

    def stream_plan(self, req: GenRequest) -> "StreamPlan":
        """What `stream(req)` would deliver, without streaming it (only where `plans_streams`);
        it takes the sample as `stream` does."""
        raise NotImplementedError(f"{type(self).__name__} does not plan its streams: read stream()")

    @abstractmethod
    async def generate(self, req: GenRequest) -> tuple[list[Trace], Usage]:
        """`req.n` finished traces, and the prompt / cached / completion tokens they took."""

    async def generate_many(self, reqs: list[GenRequest]) -> tuple[list[list[Trace]], Usage]:
        """Several requests at once: each one's traces, and what they took together. A backend
        that can send them as one call (a server's batch route) overrides this; here they go
        out together as separate calls."""
        done = await asyncio.gather(*(self.generate(r) for r in reqs))
        return [t for t, _ in done], sum((u for _, u in done), Usage())

    @abstractmethod
    def stream(self, req: GenRequest) -> AsyncIterator[tuple[Trace, Usage]]:
        """One sample (`req.n` must be 1) as it grows: cumulative trace snapshots with the
        cumulative usage so far; the last snapshot has `finish_reason` set."""

    @abstractmethod
    async def count_prompt_tokens(self, req: GenRequest) -> int:
        """How many prompt tokens `req` will take (the accountant's pre-dispatch check)."""

    async def complete(self, req: TextRequest) -> TextCompletion:
        """Optional: a raw-text completion of `req.prompt` (no chat template), with the prompt's
        own log-probabilities when `req.echo` and `req.logprobs` ask for them (what
        loglikelihood scoring reads). Backends that cannot say so."""
        raise TTSError(f"the {self.identity.kind} backend does not complete raw text prompts or report prompt "
                       "logprobs; use the vllm or openai backend (or the chat endpoint)")

    def for_run(self, seed: int) -> "Generator":
        """The generator one run (one problem solved once) uses: this one, for backends without
        per-run state. A replay returns a view of its bank with every sample available again, in
        `seed`'s order, so each run replays from the start however often a problem is asked."""
        return self

    async def close(self) -> None:
        """Release the backend (engine, connections)."""

    @property
    def identity(self) -> BackendId:
        """What a run on this generator is keyed by (`tts.spec`): its kind and model. A kind
        not declared is the class name without "Generator", lower case."""
        kind = self.kind or type(self).__name__.removesuffix("Generator").lower()
        return BackendId(kind=kind, model=str(self.model))

    @classmethod
    def identity_of(cls, options: ModelOptions) -> BackendId:
        """`identity` of the generator `from_options(options, ...)` would build, without building
        it (a run is keyed, and its records found, before any engine starts)."""
        return BackendId(kind=cls.kind, model=options.model or DEFAULT_MODEL)

    @classmethod
    def from_options(cls, options: ModelOptions, sampling: SamplingOptions, seed: int) -> "Generator":
        """The generator the options describe (a backend plugin's constructor from `tts bench`,
        `tts serve` and sweep options)."""
        raise TTSError(f"backend {cls.kind or cls.__name__} cannot be built from options; construct it in Python")


class StreamPlan(ABC):
    """A stream known before it is read: `snapshots` it yields, then, for snapshot i (1-based),
    `tokens(i)` completion tokens delivered so far and `trace(i)` the trace as it stands (a fresh
    object; at i = snapshots, the finished trace). `prompt_tokens`: what its usage reports."""

    prompt_tokens: int
    snapshots: int

    @abstractmethod
    def tokens(self, i: int) -> int: ...

    @abstractmethod
    def trace(self, i: int) -> Trace: ...
