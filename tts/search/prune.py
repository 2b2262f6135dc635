"""EquivPruner as a layer of every step-level search (Liu et al., 2025, "EquivPruner: Boosting
Efficiency and Quality in LLM-Based Search via Action Pruning"; code: Lolo1222/EquivPruner,
`SearchTree._merge_leaf_node` in reason/guided_search/tree.py).

When a node is expanded, its sampled children are candidate next steps of one partial solution.
Those an equivalence judge (`tts.judges`) calls equivalent are merged before they are scored:
the first of each group stands for the others (`Node.merged`), which stay in the tree
(`Node.equivalent_to`) but are neither scored nor explored. The order is the reference's: each
child, in sampling order, is compared with the kept ones before it and joins the first it is
equivalent to (P >= tau); all of a child's comparisons go out together. Children whose text is
the same (whitespace aside) are merged without asking the judge (ours: it is the same step).
Only open children are merged: a finished one is a whole solution whose answer counts (ours;
the reference merges terminal children too).

A judge that gives no verdict (`NoVerdict`) never merges; a judgement the budget refuses stops
the merging of that group (its remaining children are kept) and reports the refusal, so the
search stops at the budget. Every judgement is charged by the judge through the context.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from tts.context import Context
from tts.errors import BudgetExceeded
from tts.judges import EquivalenceJudge, NoVerdict, Prefix
from tts.search.paths import Node
from tts.types import Trace


class EquivalencePruner:
    """Merges equivalent sibling steps; counts what it did (`telemetry()`)."""

    def __init__(self, judge: EquivalenceJudge, tau: float | None = None):
        self.judge = judge
        self.tau = judge.default_tau if tau is None else tau
        self.groups = 0  # sibling groups looked at
        self.merged = 0  # children merged into an equivalent sibling
        self.same_text = 0  # of them, merged for the same text (no judgement)
        self.calls = 0  # judgements asked
        self.failures = 0  # judgements without a verdict
        self.refused = 0  # judgements the budget refused

    async def merge(self, ctx: Context, siblings: Sequence[Node]) -> tuple[list[Node], bool]:
        """The kept siblings (finished ones and one per equivalent group of open ones, in their
        order), and whether the budget refused a judgement."""
        self.groups += 1
        kept: list[Node] = []
        reps: list[Node] = []  # the kept open siblings, the ones a newcomer is compared with
        sides: dict[int, Prefix] = {}
        for i, node in enumerate(siblings):
            if node.complete:
                kept.append(node)
                continue
            same = next((r for r in reps if r.text.split() == node.text.split()), None)
            if same is None and reps:
                try:
                    same = await self._first_equivalent(ctx, node, reps, sides)
                except BudgetExceeded:
                    self.refused += 1
                    return kept + [n for n in siblings[i:] if n not in kept], True
            elif same is not None:
                self.same_text += 1
            if same is None:
                reps.append(node)
                kept.append(node)
            else:
                same.merged.append(node)
                node.equivalent_to = same
                self.merged += 1
        return kept, False

    async def _first_equivalent(self, ctx: Context, node: Node, reps: list[Node],
                                sides: dict[int, Prefix]) -> Node | None:
        def side(n: Node) -> Prefix:
            if n.id not in sides:
                sides[n.id] = Prefix(Trace(n.text, n.tokens), kind="step")
            return sides[n.id]

        self.calls += len(reps)
        ps = await asyncio.gather(*(self.judge.probability(ctx, side(node), side(r)) for r in reps),
                                  return_exceptions=True)
        for p in ps:  # a budget refusal first (nothing is merged on a partial verdict), then faults
            if isinstance(p, BudgetExceeded):
                raise p
        for r, p in zip(reps, ps):
            if isinstance(p, NoVerdict):
                self.failures += 1
            elif isinstance(p, BaseException):
                raise p
            elif p >= self.tau:
                return r
        return None

    def telemetry(self) -> dict:
        return {"judge": self.judge.name, "tau": self.tau, "groups": self.groups, "merged": self.merged,
                "same_text": self.same_text, "judge_calls": self.calls, "judge_failures": self.failures,
                "judge_refused": self.refused}
