"""Self-consistency (Wang et al., 2023): sample n reasoning paths, return the majority answer."""

from __future__ import annotations

from tts.context import Context
from tts.strategy import Strategy
from tts.types import Problem, Result
from tts.answers.voting import vote
from tts.options import Count


class SelfConsistency(Strategy):
    name = "self_consistency"
    subsamplable = True  # votes among independent samples

    def __init__(self, n: Count = 8):
        self.n = n

    async def solve(self, problem: Problem, ctx: Context) -> Result:
        traces, stopped = await ctx.sample(self.n, logprobs=None)  # voting needs no logprobs
        answer, tally = await vote([t.answer for t in traces])
        return Result(problem.id, answer, traces, stopped_by=stopped, telemetry={"votes": tally})
