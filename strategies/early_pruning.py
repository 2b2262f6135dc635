"""Early pruning with mid-generation self-evaluation (Manvi, Singh and Ermon, 2024, "Adaptive
Inference-Time Compute", section on pruning; see docs/references.md).

Start `n` samples, stop them after `prune_at` tokens, let the model self-evaluate each partial
response (`verifiers/self_eval.py`), and continue only the best `keep` fraction (at least one) to
the end; samples that already finished within `prune_at` are complete and stay. The answer is
the best self-evaluated complete sample's (`select="self_eval"`, the paper's Best-of-N with the
self-evaluation as reward) or the majority of the complete samples (`select="vote"`).
Continuations reuse the partial text as a prefix, which the engine's prefix cache serves, so a
kept sample costs about what one uninterrupted sample would. Backends that cannot continue a
prefix (replay of a bank) say so with a TTSError.
"""

from __future__ import annotations

from typing import Literal


import math

from tts.answers.voting import vote
from tts.context import Context
from tts.errors import BudgetExceeded
from tts.options import Count, Share
from tts.strategy import Strategy
from tts.types import Problem, Result, Trace

Select = Literal["self_eval", "vote"]


class EarlyPruning(Strategy):
    name = "early_pruning"

    def __init__(self, n: Count = 8, prune_at: Count = 128, keep: Share = 0.5, select: Select = "self_eval"):
        self.n, self.prune_at, self.keep, self.select = n, prune_at, keep, select

    async def solve(self, problem: Problem, ctx: Context) -> Result:
        full = ctx.sampling.max_tokens
        head, stopped = await ctx.sample(self.n, max_tokens=min(self.prune_at, full), logprobs=None)
        # Partial: cut at prune_at with more of the run's max_tokens to go. A sample that stopped
        # by itself, or was cut at the run's own max_tokens (which may be within prune_at), is
        # complete: there is nothing to continue.
        more = full > self.prune_at
        partial = [t for t in head if more and t.finish_reason != "stop" and t.num_tokens >= self.prune_at]
        done = [t for t in head if t not in partial]
        whole: dict[int, Trace] = {}  # id(partial head) -> its continued sample (head + continuation)
        try:
            if partial:
                await ctx.score(partial)
                k = max(1, math.ceil(self.keep * len(partial)))
                for t in sorted(partial, key=lambda t: t.score, reverse=True)[:k]:
                    (cont,) = await ctx.generate(ctx.request(1, prefix=t.text, max_tokens=full - t.num_tokens,
                                                             logprobs=None))
                    cont.prefix, cont.num_tokens = t.text, t.num_tokens + cont.num_tokens
                    cont.answer = ctx.extract(t.text + cont.text)
                    whole[id(t)] = cont
                    done.append(cont)
            if self.select == "self_eval" and done:
                await ctx.score([t for t in done])
        except BudgetExceeded:
            stopped = "budget"
        complete = done or head
        if self.select == "self_eval" and all(t.score is not None for t in complete):
            answer = max(complete, key=lambda t: t.score).answer
        else:
            answer, _ = await vote([t.answer for t in complete])
        # One trace per sample: a continued one replaces its head (its tokens count once).
        return Result(problem.id, answer, [whole.get(id(t), t) for t in head], stopped_by=stopped,
                      telemetry={"pruned": len(partial) - len(whole), "continued": len(whole),
                                 "finished_early": len(head) - len(partial)})
