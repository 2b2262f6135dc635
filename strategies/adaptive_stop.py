"""Self-consistency that stops sampling once the vote is settled.

- ESC (Li et al., 2024, "Escape Sky-high Cost: Early-stopping Self-Consistency for Multi-step
  Reasoning"): sample in windows of `window`; stop as soon as one window is unanimous (every
  sample of it has an answer and all are equal: zero answer entropy in the window). The answer
  is the majority over everything sampled.
- Adaptive-consistency (Aggarwal et al., 2023, "Let's Sample Step by Step: Adaptive-Consistency
  for Efficient Reasoning and Coding with LLMs"): sample `batch` at a time (1 in the paper);
  stop when the stopping criterion says the majority is settled with probability >= `confidence`
  (0.95 in the paper):
  - "beta" (the paper's default): with v1, v2 the counts of the two leading answers,
    P(p1 > p2) for p1 ~ Beta(v1 + 1, v2 + 1), i.e. P(X > 1/2), computed exactly (for integer
    counts it is a binomial tail: sum_{j<=v1} C(v1+v2+1, j) / 2^(v1+v2+1));
  - "dirichlet": P(p_lead > p_j for every other answer j) under Dirichlet(counts + 1), by Monte
    Carlo (20,000 draws from a generator seeded by the run's seed; the paper integrates
    numerically).
Both stop at n samples at most; stopped_by is "early_stop" when the rule fired before n. Answers
are grouped by mathematical equivalence; a sample without an answer never votes.
"""

from __future__ import annotations

import math

import numpy as np

from tts.context import Context
from tts.interfaces import Strategy
from tts.registry import register
from tts.types import Problem, Result, Trace
from tts.answers.voting import vote

CRITERIA = ("beta", "dirichlet")


def beta_stop_probability(v1: int, v2: int) -> float:
    """P(p1 > p2) for p1 ~ Beta(v1 + 1, v2 + 1): the chance the leader is truly ahead."""
    n = v1 + v2 + 1
    return sum(math.comb(n, j) for j in range(v1 + 1)) / 2**n


def dirichlet_stop_probability(counts: list[int], rng: np.random.Generator, draws: int = 20_000) -> float:
    """P(the leading answer has the largest probability) under Dirichlet(counts + 1)."""
    if len(counts) < 2:
        counts = [*counts, 0]  # an unseen alternative: unanimity is not yet certainty
    lead = int(np.argmax(counts))
    p = rng.dirichlet(np.asarray(counts, dtype=float) + 1.0, size=draws)
    return float(np.mean(np.argmax(p, axis=1) == lead))


class _StopRule(Strategy):
    """Sample `step` traces at a time until `settled` or n traces (the shared loop)."""

    n: int
    step: int

    async def settled(self, batch: list[Trace], tally: dict[str, float], ctx: Context) -> bool:
        raise NotImplementedError

    async def solve(self, problem: Problem, ctx: Context) -> Result:
        traces: list[Trace] = []
        answer, tally, stopped, rounds = None, {}, "done", 0
        while len(traces) < self.n:
            batch, stopped = await ctx.sample(min(self.step, self.n - len(traces)), logprobs=None)
            traces += batch
            rounds += 1
            answer, tally = await vote([t.answer for t in traces])
            if stopped == "budget" or not batch:
                break
            if len(traces) < self.n and await self.settled(batch, tally, ctx):
                stopped = "early_stop"
                break
        return Result(problem.id, answer, traces, stopped_by=stopped,
                      telemetry={"votes": tally, "samples": len(traces), "rounds": rounds})


@register("strategy", "esc")
class ESC(_StopRule):
    name = "esc"

    def __init__(self, n: int = 40, window: int = 8):
        if n < 1 or window < 1:
            raise ValueError(f"n and window must be >= 1, got n={n}, window={window}")
        self.n = n
        self.window = window

    @property
    def step(self) -> int:
        return self.window

    async def settled(self, batch: list[Trace], tally: dict[str, float], ctx: Context) -> bool:
        answers = [t.answer for t in batch]
        if any(a is None for a in answers):
            return False
        _, window_tally = await vote(answers)
        return len(window_tally) == 1


@register("strategy", "adaptive_consistency")
class AdaptiveConsistency(_StopRule):
    name = "adaptive_consistency"

    def __init__(self, n: int = 40, confidence: float = 0.95, criterion: str = "beta", batch: int = 1):
        if n < 1 or batch < 1:
            raise ValueError(f"n and batch must be >= 1, got n={n}, batch={batch}")
        if not 0 < confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {confidence}")
        if criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got '{criterion}'")
        self.n = n
        self.confidence = confidence
        self.criterion = criterion
        self.batch = batch

    @property
    def step(self) -> int:
        return self.batch

    async def settled(self, batch: list[Trace], tally: dict[str, float], ctx: Context) -> bool:
        counts = sorted((int(v) for v in tally.values()), reverse=True)
        if not counts:
            return False
        if self.criterion == "beta":
            p = beta_stop_probability(counts[0], counts[1] if len(counts) > 1 else 0)
        else:
            p = dirichlet_stop_probability(counts, np.random.default_rng(ctx.rng.getrandbits(32)))
        return p >= self.confidence
