"""Best-of-N: sample n traces, score them with the verifier, and select.

select="max" returns the answer of the best-scored trace; select="weighted" is weighted
majority voting: scores summed per (mathematically equal) answer.
"""

from __future__ import annotations

from typing import Literal

from tts.context import Context
from tts.errors import BudgetExceeded
from tts.strategy import Strategy
from tts.types import Problem, Result
from tts.answers.voting import vote
from tts.options import Count

Select = Literal["max", "weighted"]


class BestOfN(Strategy):
    name = "best_of_n"
    subsamplable = True  # selects among independent samples
    default_verifier = "confidence"  # the model's own logprobs: runs with no reward model

    def __init__(self, n: Count = 8, select: Select = "max"):
        self.n = n
        self.select = select

    async def solve(self, problem: Problem, ctx: Context) -> Result:
        traces, stopped = await ctx.sample(self.n)
        if not traces:
            return Result(problem.id, None, stopped_by=stopped)
        try:
            scores = [s.value for s in await ctx.score(traces)]
        except BudgetExceeded:
            # No budget left to score: the best answer we can still give is the majority one.
            answer, tally = await vote([t.answer for t in traces])
            return Result(problem.id, answer, traces, stopped_by="budget", telemetry={"votes": tally})
        if self.select == "max":
            best = max(range(len(traces)), key=lambda i: scores[i])  # first of equals wins
            return Result(problem.id, traces[best].answer, traces, stopped_by=stopped)
        answer, tally = await vote([t.answer for t in traces], scores)
        return Result(problem.id, answer, traces, stopped_by=stopped, telemetry={"votes": tally})


class WeightedMajority(BestOfN):
    """Weighted majority voting: Best-of-N with scores summed per answer."""

    name = "weighted_majority"

    def __init__(self, n: Count = 8):
        super().__init__(n, select="weighted")

weighted_majority = WeightedMajority  # the name the factory function had
