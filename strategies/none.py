"""No test-time scaling: one sample, answered as the model wrote it (the baseline every strategy
is compared with, and `tts serve`'s drop-in for a plain vLLM endpoint)."""

from __future__ import annotations

from tts.context import Context
from tts.strategy import Strategy
from tts.types import Problem, Result


class PassThrough(Strategy):
    name = "none"
    size = ""  # no size: `n` does not apply

    def __init__(self) -> None:
        pass

    async def solve(self, problem: Problem, ctx: Context) -> Result:
        traces, stopped = await ctx.sample(1)
        return Result(problem.id, traces[0].answer if traces else None, traces, stopped_by=stopped)
