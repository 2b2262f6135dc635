"""The three roles: a Generator samples traces, a Verifier scores them, a Strategy spends both.

Backends implement `Generator`; strategies never call one directly but go through
`tts.Context`, whose accountant charges every call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
import inspect
import typing
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, create_model

from tts.types import GenRequest, Problem, Result, Score, Trace, Usage

if TYPE_CHECKING:
    from tts.context import Context


class Generator(ABC):
    """An async sampler. Both methods report what the backend says each call cost.

    Cancelling the awaiting task (or closing a `stream`) aborts the request at the backend.
    """

    model: str = ""
    num_params: int | None = None  # for FLOPs estimates; None when unknown
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

    @abstractmethod
    def stream(self, req: GenRequest) -> AsyncIterator[tuple[Trace, Usage]]:
        """One sample (`req.n` must be 1) as it grows: cumulative trace snapshots with the
        cumulative usage so far; the last snapshot has `finish_reason` set."""

    @abstractmethod
    async def count_prompt_tokens(self, req: GenRequest) -> int:
        """How many prompt tokens `req` will take (the accountant's pre-dispatch check)."""

    async def close(self) -> None:
        """Release the backend (engine, connections)."""


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


class Verifier(ABC):
    """Scores traces. Process verifiers fill `Score.steps` (one value per step).

    A verifier that reads the generator's own logprobs sets `logprobs` to the number of top
    log-probabilities it needs, and strategies request them when generating.
    """

    name: str = ""
    logprobs: int | None = None
    num_params: int | None = None

    @abstractmethod
    async def score(self, problem: Problem, traces: list[Trace]) -> list[Score]:
        """One Score per trace, in order. `Score.tokens` is what computing it consumed."""

    async def estimate_tokens(self, problem: Problem, traces: list[Trace]) -> int:
        """An upper bound on verifier tokens for this call (0 for free verifiers)."""
        return 0


class Strategy(ABC):
    """A test-time scaling method: turns compute (through `ctx`) into an answer.

    A strategy declares itself with class attributes, so the CLI, the sweep and the run spec
    never list strategy names:

    - `size`: the constructor parameter that `-n` / a sweep's `n` sets (one name, `n`,
      across strategies); `aliases` maps another accepted name (a paper's) to a parameter.
    - `subsamplable`: whether it only selects among independent samples, so a sweep may draw
      its runs for several n from one recorded bank (a property where it depends on the
      configuration, as for offline vs online DeepConf).
    - `default_verifier`: the verifier it gets when none is named (None: it needs none).
    - `logprobs`: the top-k logprobs it asks of the generator (None: none).

    Its typed parameter model (`params_model()`) is derived from the constructor's signature:
    type hints and defaults give validation, the sweep schema and the configuration hashed
    into the run spec (`config()`: the constructor arguments, defaults filled in).
    """

    name: str = ""
    size: ClassVar[str] = "n"
    aliases: ClassVar[dict[str, str]] = {}
    subsamplable: bool = False
    default_verifier: ClassVar[str | None] = None
    logprobs: int | None = None

    def __new__(cls, *args: Any, **kwargs: Any) -> "Strategy":
        self = super().__new__(cls)
        try:  # remember the constructor arguments: they are the configuration (see config())
            bound = inspect.signature(cls.__init__).bind(self, *args, **kwargs)
            bound.apply_defaults()
            self._params = {k: v for k, v in list(bound.arguments.items())[1:]
                            if cls._signature().get(k) is not None}
        except TypeError:  # unpickling (no arguments) or a bad call, which __init__ reports
            pass
        return self

    @abstractmethod
    async def solve(self, problem: Problem, ctx: "Context") -> Result:
        """Solve one problem. Usage, grading and config hash are filled in by the runner."""

    def config(self) -> dict:
        """The parameters that identify this strategy's configuration (for config hashes): the
        constructor arguments with defaults filled in, normalised by the parameter model."""
        params = getattr(self, "_params", None)
        if params is None:
            return {k: v for k, v in vars(self).items() if not k.startswith("_")}
        try:
            return type(self).params_model().model_validate(params).model_dump(mode="json")
        except Exception:  # an object argument (DeepPrune's judge): hashed by its repr
            return dict(params)

    @classmethod
    def _signature(cls) -> dict[str, inspect.Parameter]:
        ps = list(inspect.signature(cls.__init__).parameters.values())[1:]
        return {p.name: p for p in ps if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}

    @classmethod
    def size_param(cls) -> str | None:
        """The parameter `n` sets: `size`, or a parameter that `aliases` names as its alias."""
        sig = cls._signature()
        if cls.size in sig:
            return cls.size
        return next((a for a, target in cls.aliases.items() if target == cls.size and a in sig), None)

    @classmethod
    def params_model(cls) -> type[BaseModel]:
        """The pydantic model of the constructor's parameters (cached per class)."""
        cached = cls.__dict__.get("_params_model")
        if cached is not None:
            return cached
        try:
            hints = typing.get_type_hints(cls.__init__)
        except Exception:  # an annotation that cannot be resolved: validate nothing for it
            hints = {}
        sig = cls._signature()
        # Accept an alias for a parameter (either way round, so a rename keeps the old name).
        alt = {t: a for a, t in cls.aliases.items() if t in sig}
        alt.update({a: t for a, t in cls.aliases.items() if a in sig and t not in sig})
        fields: dict[str, Any] = {}
        for name, p in sig.items():
            default = ... if p.default is p.empty else p.default
            extra = {"validation_alias": AliasChoices(name, alt[name])} if name in alt else {}
            fields[name] = (hints.get(name, Any), Field(default, **extra))
        model = create_model(f"{cls.__name__}Params", __config__=ConfigDict(extra="forbid", populate_by_name=True,
                                                 arbitrary_types_allowed=True),
                             **fields)
        cls._params_model = model
        return model
