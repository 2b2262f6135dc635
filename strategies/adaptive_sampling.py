"""Adaptive sampling with self-evaluation (Manvi, Singh and Ermon, 2024, "Adaptive
Inference-Time Compute", section on adaptive sampling; see docs/references.md).

Draw samples in batches of growing size (1, 2, 4, ...: `growth`), score each with the
self-evaluation verifier (`verifiers/self_eval.py`: the model's own P(a restart would not do
better)), and stop as soon as the best sample so far scores at least `threshold`, i.e. once the
predicted gain of sampling again is below 1 - threshold; at most `n` samples. The answer is the
best-scored sample's. Temperature is annealed across batches: the first batch at
`first_temperature` (near-greedy, since it may be the only sample), later batches rising
geometrically to the run's temperature (diversity helps only once several samples are
compared): T_r = T - (T - T_0) / 2^r. The paper's exact schedule was not readable here; this
one keeps its intent and is the documented deviation.

stopped_by: "early_stop" when the threshold stopped it before n samples, "budget" when the budget
did, else "done". Telemetry: the self-evaluation of every sample (None for a batch the budget
let be drawn but not scored: drawn and charged, so in the traces, never chosen), the
temperatures used.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from tts.context import Context
from tts.errors import BudgetExceeded
from tts.strategy import Strategy
from tts.types import Problem, Result, StoppedBy, Trace
from tts.options import Count, Share


def annealed(round_: int, first: float, final: float) -> float:
    return final - (final - first) / 2**round_


class AdaptiveSampling(Strategy):
    name = "adaptive_sampling"

    def __init__(self, n: Count = 16, threshold: Share = 0.8, growth: Count = 2,
                 first_temperature: Annotated[float, Field(ge=0)] = 0.0):
        self.n, self.threshold, self.growth, self.first_temperature = n, threshold, growth, first_temperature

    async def solve(self, problem: Problem, ctx: Context) -> Result:
        traces: list[Trace] = []
        temps: list[float] = []
        stopped: StoppedBy = "done"
        size, round_ = 1, 0
        while len(traces) < self.n:
            temp = annealed(round_, self.first_temperature, ctx.sampling.temperature)
            batch, stopped = await ctx.sample(min(size, self.n - len(traces)), temperature=temp, logprobs=None)
            if not batch:
                break
            try:
                await ctx.score(batch)
            except BudgetExceeded:
                stopped = "budget"  # its samples were charged: kept, unscored (they cannot be ranked)
            traces += batch
            temps.append(temp)
            if stopped == "budget":
                break
            if max(t.score for t in traces) >= self.threshold:
                stopped = "early_stop" if len(traces) < self.n else "done"
                break
            size, round_ = size * self.growth, round_ + 1
        scored = [t for t in traces if t.score is not None]
        best = max(scored, key=lambda t: t.score) if scored else None
        return Result(problem.id, best.answer if best else None, traces, stopped_by=stopped,
                      telemetry={"self_eval": [t.score for t in traces], "temperatures": temps,
                                 "samples": len(traces)})
