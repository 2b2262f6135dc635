"""REBASE: reward balanced search (Wu, Sun, Li, Welleck, Yang, 2024, "Inference Scaling Laws: An
Empirical Analysis of Compute-Optimal Inference for Problem-Solving with Language Models",
arXiv 2408.00724), as its code does it (thu-wyz/inference_scaling, `rebase.py`,
`Tree.select_and_expand` / `select_softmax`, hyper-parameters `hype-parameters/rebase.yaml`).

The search grows the tree one depth at a time with a width budget of n samples:

1. At depth d, every finished node there (see `tts.search.tree`) takes one unit of the width
   for good (the reference: `remaining_width -= 1` for each leaf); the open nodes are the
   candidates, weighted by the reward of their latest step. No width left, or no candidate:
   the search ends.
2. The remaining width W is shared among the candidates in proportion to softmax(reward / T)
   (`softmax_temp`, T = 0.2 in the reference's configuration), rounding up in order of reward:
   sorted by reward (highest first; of equals the later first, as the reference's reversed
   ascending sort), the i-th candidate gets ceil(W_i e_i / S_i), where W_i and S_i are the width
   and the sum of e = exp(reward / T) not yet handed out; so the best get at least one sample
   while width is left, and the last ones may get none.
3. Each candidate is expanded by its share (all requests together), the children scored by the
   PRM, and the search moves to depth d + 1. The max_steps-th step goes to the end of sequence.

Final answer over every finished path: weighted majority voting (select="weighted", the
reference's best-performing aggregation in the paper; weights the aggregate `agg` of the step
rewards, "last" by default) or the best by it (select="max"; the reference's `--agg_func`).
With EquivPruner (`prune_equivalent`) a merged sibling is not a leaf: its width returns to the
pool of the next depth. Telemetry: "widths", per depth, [node id, samples] of each expansion.

The paper, the code read and every deviation: docs/references.md.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field

from tts.context import Context
from tts.options import Count, Delimiter, Share
from tts.search.tree import DEFAULT_DELIMITER, Aggregate, Node, StepStrategy, aggregate
from tts.types import Problem, Result


def rebase_widths(rewards: list[float], width: int, temperature: float) -> list[tuple[int, int]]:
    """The reference's `select_softmax`: (candidate index, samples) in allocation order."""
    order = sorted(range(len(rewards)), key=lambda i: rewards[i])[::-1]  # highest first; of equals the later
    top = max(rewards)
    e = [math.exp((rewards[i] - top) / temperature) for i in order]  # shifted: the same ratios, no overflow
    left, total, out = width, sum(e), []
    for i, w in zip(order, e):
        k = math.ceil(left * w / total) if total > 0 else 0
        out.append((i, k))
        left -= k
        total -= w
    return out


class REBASE(StepStrategy):
    name = "rebase"

    def __init__(
        self,
        n: Count = 8,
        softmax_temp: Annotated[float, Field(gt=0)] = 0.2,
        select: Literal["weighted", "max"] = "weighted",
        agg: Aggregate = "last",
        max_steps: Count = 40,
        delimiter: Delimiter | None = DEFAULT_DELIMITER,
        tokens_per_step: Count | None = None,
        prune_equivalent: str | None = None,
        prune_tau: Share | None = None,
    ):
        self.n = n
        self.softmax_temp = softmax_temp
        self.select = select
        self.agg = agg
        self.set_steps(max_steps, delimiter, tokens_per_step, prune_equivalent, prune_tau)

    async def solve(self, problem: Problem, ctx: Context) -> Result:
        s = self.search(ctx)
        width, level = self.n, [s.root]
        finished: list[Node] = []
        widths: list[list[tuple[int, int]]] = []
        while True:
            leaves = [c for c in level if c.complete]
            finished += leaves
            width -= len(leaves)
            candidates = [c for c in level if not c.complete]
            if width <= 0 or not candidates or s.stopped == "budget":
                break
            rewards = [0.0 if c.reward is None else c.reward for c in candidates]  # the root has none
            jobs = [(candidates[i], k) for i, k in rebase_widths(rewards, width, self.softmax_temp) if k > 0]
            widths.append([(node.id, k) for node, k in jobs])
            groups = await s.grow(jobs)
            level = [c for g in groups for c in g]
        paths = finished or s.best_partial(level)
        answer, extra = await s.choose(paths, self.select, lambda c: aggregate(c, self.agg))
        return s.result(problem, answer, paths, widths=widths, **extra)
