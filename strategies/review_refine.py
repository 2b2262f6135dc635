"""Review, refine, repeat: iterative decoding with verifier-guided selection (Chakraborty et al.,
2025, "Review, Refine, Repeat: Understanding Iterative Decoding of AI Agents with Dynamic
Evaluation and Selection", arXiv 2504.01931; v4: "On the Role of Feedback in Test-Time Scaling
of Agentic AI Workflows": Iterative Agent Decoding, IAD). No reference code is public.

Round 0 samples `n` candidates and scores them with the verifier. Each later round reviews the
best-scored candidate so far (the critique step: the model points out its mistakes, given the
verifier's score) and generates `n` revisions conditioned on it, its score, the critique and, as
IAD contrasts them, the worst-scored candidate (the revision step); the revisions are scored and
join the pool. After `rounds` rounds, or once the best score reaches `stop_at` (1: every visible
test passes), the best-scored candidate of all rounds answers (first of equals). `rounds=0` is
Best-of-N; the verifier is any registered one (`visible_tests`, `codet`, `code_judge`, a PRM on
math), so the loop is Best-of-N with feedback between rounds.

Deviations: IAD turns scalar rewards into textual feedback ("surpass the best response, avoid
the worst") and composes it with a critique; here one critique of the best candidate by the
generator itself, the two scores stated in the prompt. `stop_at` is ours (IAD runs a fixed
number of iterations).
"""

from __future__ import annotations

from tts.context import Context
from tts.errors import BudgetExceeded
from tts.options import Count, NonNegative, Probability
from tts.strategy import Strategy
from tts.types import Problem, Result, Trace, stopped_by

REVIEW = ("Review your solution above; a verifier scored it {score:.2f} out of 1. Point out concrete mistakes: wrong "
          "logic, misread requirements, unhandled cases. Do not write code.")
REFINE = ("Write an improved solution that fixes the mistakes the review found.{worse} Give the complete solution "
          "in the same format as before.")
WORSE = "\nAvoid what went wrong in this weaker attempt (scored {score:.2f}):\n{text}\n"


class ReviewRefine(Strategy):
    name = "review_refine"
    default_verifier = "visible_tests"
    subsamplable = True  # round 0 is n independent samples (a sweep's bank); reviews and revisions are live

    def __init__(self, n: Count = 4, rounds: NonNegative = 2, stop_at: Probability | None = 1.0,
                 critique_tokens: Count = 256):
        self.n = n
        self.rounds = rounds
        self.stop_at = stop_at
        self.critique_tokens = critique_tokens

    async def solve(self, problem: Problem, ctx: Context) -> Result:
        pool, stopped = await ctx.sample(self.n)
        if not pool:
            return Result(problem.id, None, stopped_by=stopped)
        budget = stopped == "budget"
        try:
            scores = [s.value for s in await ctx.score(pool)]
        except BudgetExceeded:
            return Result(problem.id, pool[0].answer, pool, stopped_by="budget")
        born = [0] * len(pool)  # the round each candidate came from
        done = 0
        for r in range(1, self.rounds + 1):
            best = max(range(len(pool)), key=lambda i: scores[i])
            if self.stop_at is not None and scores[best] >= self.stop_at:
                break
            try:
                revisions = await self._refine(ctx, pool[best], scores[best], pool, scores)
                new = [s.value for s in await ctx.score(revisions)] if revisions else []
            except BudgetExceeded:
                budget = True
                break
            pool, scores, born = pool + revisions, scores + new, born + [r] * len(revisions)
            done = r
            if len(revisions) < self.n:  # the budget bought fewer
                budget = True
                break
        best = max(range(len(pool)), key=lambda i: scores[i])
        return Result(problem.id, pool[best].answer, pool, stopped_by=stopped_by(budget),
                      telemetry={"rounds": done, "chosen_round": born[best], "best_score": scores[best]})

    async def _refine(self, ctx: Context, best: Trace, score: float, pool: list[Trace],
                      scores: list[float]) -> list[Trace]:
        """The review of `best`, then up to n revisions conditioned on it (and the worst candidate)."""
        convo = [*ctx.request(1).messages, {"role": "assistant", "content": best.text},
                 {"role": "user", "content": REVIEW.format(score=score)}]
        review = (await ctx.generate(ctx.request(1, messages=convo, max_tokens=self.critique_tokens)))[0]
        worst = min(range(len(pool)), key=lambda i: scores[i])
        worse = WORSE.format(score=scores[worst], text=pool[worst].text) if scores[worst] < score else ""
        convo = [*convo, {"role": "assistant", "content": review.text},
                 {"role": "user", "content": REFINE.format(worse=worse)}]
        revisions, _ = await ctx.sample(self.n, messages=convo)
        return revisions
