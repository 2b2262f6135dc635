"""Self-consistency that stops sampling once the vote is settled.

- ESC (Li et al., 2024, "Escape Sky-high Cost: Early-stopping Self-Consistency for Multi-step
  Reasoning"): sample in windows of `window` (5 in the paper); stop as soon as one window is
  unanimous (zero answer entropy in the window). As in the reference (Yiwei98/ESC
  early_stop_math.py), the answer after a unanimous window is that window's answer (the last
  window included); when no window is unanimous it is the majority over everything sampled.
  `no_answer`: "votes" (the reference, whose extraction yields an empty answer that counts):
  samples without an answer form one "empty" answer that can make a window unanimous and can win
  the vote (the result's answer is then None); "abstains": they never vote and a window holding
  one is never unanimous.
- Adaptive-consistency (Aggarwal et al., 2023, "Let's Sample Step by Step: Adaptive-Consistency
  for Efficient Reasoning and Coding with LLMs"): sample `batch` at a time (1 in the paper);
  stop when the stopping criterion says the majority is settled with probability >= `confidence`
  (0.95 in the paper):
  - "beta" (the paper's default): with v1, v2 the counts of the two leading answers,
    P(p1 > p2) for p1 ~ Beta(v1 + 1, v2 + 1), i.e. P(X > 1/2), computed exactly (for integer
    counts it is a binomial tail: sum_{j<=v1} C(v1+v2+1, j) / 2^(v1+v2+1));
  - "dirichlet": P(p_lead > p_j for every other answer j) under Dirichlet(counts + 1) over the
    5 most frequent answers, the Beta rule with fewer than 3 distinct answers (both as the
    reference's DirichletStoppingCriteria). The integral is estimated by Monte Carlo from 20,000
    Dirichlet draws (seeded by the run's seed): standard error sqrt(p(1-p)/20000) <= 0.0035, so a
    probability within ~0.01 of `confidence` may fall either side (the reference also integrates
    by Monte Carlo, uniformly over the region, with 50,000 points).
Both stop at n samples at most; stopped_by is "early_stop" when the rule fired before n. Answers
are grouped by mathematical equivalence; for adaptive-consistency a sample without an answer
never votes. References read and every known deviation: docs/references.md.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field


import numpy as np

from tts.context import Context
from tts.strategy import Strategy
from tts.types import Problem, Result, Trace
from tts.answers.voting import beta_stop_probability, vote
from tts.answers.mathverify import group_answers
from tts.options import Count

Criterion = Literal["beta", "dirichlet"]


def dirichlet_stop_probability(
    counts: list[int], rng: np.random.Generator, draws: int = 20_000, top: int = 5
) -> float:
    """P(the leading answer has the largest probability) under Dirichlet(counts + 1), as the
    reference computes it: with fewer than 3 distinct answers the Beta rule (exact), otherwise
    over the `top` most frequent answers only (the others dropped), by Monte Carlo."""
    counts = sorted(counts, reverse=True)
    if len(counts) < 3:
        return beta_stop_probability(counts[0] if counts else 0, counts[1] if len(counts) > 1 else 0)
    p = rng.dirichlet(np.asarray(counts[:top], dtype=float) + 1.0, size=draws)
    return float(np.mean(np.argmax(p, axis=1) == 0))


class _StopRule(Strategy):
    """Sample `step` traces at a time until `settled` or n traces (the shared loop)."""

    n: int
    step: int

    async def settled(self, batch: list[Trace], tally: dict[str, float], ctx: Context) -> bool:
        raise NotImplementedError

    async def tally(self, traces: list[Trace]) -> tuple[str | None, dict[str, float]]:
        return await vote([t.answer for t in traces])

    def settled_answer(self, batch: list[Trace], answer: str | None) -> str | None:
        """The answer once the rule has fired (default: the vote over everything)."""
        return answer

    async def solve(self, problem: Problem, ctx: Context) -> Result:
        traces: list[Trace] = []
        answer, tally, stopped, rounds = None, {}, "done", 0
        while len(traces) < self.n:
            batch, stopped = await ctx.sample(min(self.step, self.n - len(traces)), logprobs=None)
            traces += batch
            rounds += 1
            answer, tally = await self.tally(traces)
            if stopped == "budget" or not batch:
                break
            if await self.settled(batch, tally, ctx):
                answer = self.settled_answer(batch, answer)
                if len(traces) < self.n:
                    stopped = "early_stop"
                break
        return Result(problem.id, answer, traces, stopped_by=stopped,
                      telemetry={"votes": tally, "samples": len(traces), "rounds": rounds})


EMPTY = ""  # the tally key of samples without an answer (ESC with no_answer="votes")
NoAnswer = Literal["votes", "abstains"]


class ESC(_StopRule):
    name = "esc"

    def __init__(self, n: Count = 40, window: Count = 5, no_answer: NoAnswer = "votes"):
        self.n, self.window, self.no_answer = n, window, no_answer

    @property
    def step(self) -> int:
        return self.window

    async def tally(self, traces: list[Trace]) -> tuple[str | None, dict[str, float]]:
        answers = [t.answer for t in traces]
        answer, tally = await vote(answers)
        empty = sum(a is None for a in answers)
        if self.no_answer == "abstains" or not empty:
            return answer, tally
        # The empty answer is one more group; ties go to the group seen first, as in vote().
        best = max(tally.values(), default=0.0)
        first = answers.index(answer) if answer is not None else len(answers)
        tally = {**tally, EMPTY: float(empty)}
        if empty > best or (empty == best and answers.index(None) < first):
            return None, tally
        return answer, tally

    async def settled(self, batch: list[Trace], tally: dict[str, float], ctx: Context) -> bool:
        if len(batch) < self.window:  # a short last window (n not a multiple) is not a window
            return False
        answers = [t.answer for t in batch]
        if all(a is None for a in answers):
            return self.no_answer == "votes"  # a window of empty answers is unanimous
        if any(a is None for a in answers):
            return False
        groups = await group_answers(answers)
        return len(set(groups)) == 1

    def settled_answer(self, batch: list[Trace], answer: str | None) -> str | None:
        return batch[0].answer  # the unanimous window's answer (None: the empty answer)


class AdaptiveConsistency(_StopRule):
    name = "adaptive_consistency"

    def __init__(self, n: Count = 40, confidence: Annotated[float, Field(gt=0, lt=1)] = 0.95,
                 criterion: Criterion = "beta", batch: Count = 1):
        self.n, self.confidence, self.criterion, self.batch = n, confidence, criterion, batch

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
