"""Monte Carlo tree search over reasoning steps, guided by a process reward model, as OpenR does it
(openreasoner/openr, reason/guided_search/tree.py: `SearchTree.vanila_mcts`, `_simulate`,
`_select_child`, `_ucb_score`, `_expand_leaf_node`; envs/base_env.py for the priors). The
same search EquivPruner prunes (Lolo1222/EquivPruner builds on that file).

A node's statistics are its visit count N and value sum W; its value Q = W / N once visited,
before that the PRM reward of its latest step (OpenR's `init_critic_value`). A simulation:

1. Selection. From the root, move to the child with the highest PUCT score
   Q(c) + c(N_p) P(c) sqrt(N_p) / (1 + N(c)),  c(N_p) = log((N_p + c_base + 1) / c_base) + c_init
   (OpenR's `_ucb_score`, c_base 19652, c_init 1.25; the first of equals). At a node not yet
   visited (N_p = 0) this is the child with the highest reward: a greedy step.
2. Expansion. A node reached without children (and not finished) is expanded: k steps sampled in
   one request and scored by the PRM. Priors P: exp(mean token logprob) of each step normalised
   over the siblings (OpenR's `logp_avg_by_len` prior; a step merged by EquivPruner adds its
   prior to its representative's, as EquivPruner's `merge_node`); uniform with prior=False.
3. Evaluation (`evaluate`): "rollout" (default, OpenR's `vanila_mcts`): the simulation goes on
   selecting and expanding, greedily through new nodes, until it reaches a finished path; its
   value is that node's Q. "prm" (OpenR's `_simulate`, AlphaZero's lazy expansion): the
   simulation stops at the first node it had never visited, whose value is its PRM reward; a
   node is expanded when a simulation reaches it again.
4. Backup: every node on the simulation's path gets N += 1, W += value (OpenR's
   `update_recursive`, "play_with_bot_mode").

`n` simulations are run (fewer when the budget ends the search; stopped_by "budget"). The last
allowed step (the max_steps-th) is generated to the end of sequence, so every descent ends.
Final answer over the finished paths that simulations reached, each counted once per visit (as
OpenR's list of trajectories): weighted majority voting by their values (select="weighted",
OpenR's `prm_last_vote`), the highest value (select="max", OpenR's `prm_last_max`), or the most
visited (select="visits", ties by value). Answered paths first, as every search here.
Telemetry: the tree with each node's "visits", "q" and "prior"; "ends" (the node each simulation ended
at), "simulations".

The paper/code read and every deviation: docs/references.md.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field

from tts.context import Context
from tts.options import Count, Delimiter, Share
from tts.search.tree import DEFAULT_DELIMITER, Node, StepSearch, StepStrategy, rank_key
from tts.types import Problem, Result


class MCTS(StepStrategy):
    name = "mcts"

    def __init__(
        self,
        n: Count = 16,
        k: Count = 4,
        evaluate: Literal["rollout", "prm"] = "rollout",
        select: Literal["weighted", "max", "visits"] = "weighted",
        c_init: Annotated[float, Field(ge=0)] = 1.25,
        c_base: Annotated[float, Field(gt=0)] = 19652.0,
        prior: bool = True,
        max_steps: Count = 40,
        delimiter: Delimiter | None = DEFAULT_DELIMITER,
        tokens_per_step: Count | None = None,
        prune_equivalent: str | None = None,
        prune_tau: Share | None = None,
    ):
        self.n, self.k, self.evaluate, self.select = n, k, evaluate, select
        self.c_init, self.c_base, self.prior = c_init, c_base, prior
        self.set_steps(max_steps, delimiter, tokens_per_step, prune_equivalent, prune_tau)

    async def solve(self, problem: Problem, ctx: Context) -> Result:
        s = self.search(ctx, logprobs=0 if self.prior else None)
        tree = _Tree(s, self)
        ends: list[Node] = []
        for _ in range(self.n):
            end = await tree.simulate()
            if end is not None:
                ends.append(end)
            if s.stopped == "budget":
                break
        reached = [e for e in ends if e.complete]
        votes = reached or [c for c in s.nodes if c.complete and c.equivalent_to is None]
        paths = list(dict.fromkeys(votes)) or s.best_partial([c for c in s.nodes if c.equivalent_to is None])
        q = tree.q
        if self.select == "visits":
            best = max(paths, key=lambda c: (s.answer(c) is not None, tree.visits.get(c.id, 0), rank_key(q(c))))
            answer, extra = s.answer(best), {}
        else:
            answer, extra = await s.choose(votes or paths, self.select, q)
        data = {"visits": dict(tree.visits), "q": {i: tree.q(s.nodes[i]) for i in tree.visits}, "prior": tree.priors}
        return s.result(problem, answer, paths, node_data=data, ends=[e.id for e in ends],
                        simulations=len(ends), **extra)


class _Tree:
    """The statistics of one search and its simulations."""

    def __init__(self, s: StepSearch, m: MCTS):
        self.s, self.m = s, m
        self.visits: dict[int, int] = {}
        self.sums: dict[int, float] = {}
        self.children: dict[int, list[Node]] = {}
        self.priors: dict[int, float] = {}

    def q(self, node: Node) -> float:
        n = self.visits.get(node.id, 0)
        return self.sums[node.id] / n if n else rank_key(node.reward)

    def puct(self, parent: Node, child: Node) -> float:
        n_p = self.visits.get(parent.id, 0)
        c = math.log((n_p + self.m.c_base + 1) / self.m.c_base) + self.m.c_init
        return self.q(child) + c * self.priors[child.id] * math.sqrt(n_p) / (self.visits.get(child.id, 0) + 1)

    async def expand(self, node: Node) -> list[Node]:
        kids = (await self.s.grow([(node, self.m.k)]))[0]
        if kids:  # the budget may refuse the whole expansion: the node stays a leaf
            self.children[node.id] = kids
            odds = [sum(_odds(x) for x in (c, *c.merged)) if self.m.prior else 1.0 for c in kids]
            for c, o in zip(kids, odds):
                self.priors[c.id] = o / sum(odds)
        return kids

    async def simulate(self) -> Node | None:
        """One simulation; the node it ended at (None when the budget refused everything)."""
        node, path = self.s.root, [self.s.root]
        while not node.complete:
            if node.id not in self.children:
                if self.m.evaluate == "prm" and node.parent is not None and not self.visits.get(node.id):
                    break  # a new node: evaluated by its reward, expanded when reached again
                if not await self.expand(node):
                    break
            parent = node
            node = max(self.children[parent.id], key=lambda c: self.puct(parent, c))  # the first of equals
            path.append(node)
        if node.parent is None:
            return None
        value = self.q(node)
        value = 0.0 if math.isinf(value) else value  # an unscored node (budget) backs up nothing useful
        for n in path:
            self.visits[n.id] = self.visits.get(n.id, 0) + 1
            self.sums[n.id] = self.sums.get(n.id, 0.0) + value
        return node


def _odds(node: Node) -> float:
    """exp(mean token logprob) of a sampled step (1 when it has no logprobs)."""
    lps = node.trace.logprobs if node.trace is not None else []
    return math.exp(sum(lps) / len(lps)) if lps else 1.0
