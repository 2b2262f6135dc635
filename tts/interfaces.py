"""The three roles: a Generator samples traces, a Verifier scores them, a Strategy spends both.

Backends implement `Generator`; strategies never call one directly but go through
`tts.Context`, whose accountant charges every call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

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
    """A test-time scaling method: turns compute (through `ctx`) into an answer."""

    name: str = ""

    @abstractmethod
    async def solve(self, problem: Problem, ctx: "Context") -> Result:
        """Solve one problem. Usage, grading and config hash are filled in by the runner."""

    def config(self) -> dict:
        """The parameters that identify this strategy's configuration (for config hashes)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}
