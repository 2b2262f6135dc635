"""A*-decoding (Chatziveroglou, 2025, "A*-Decoding: Token-Efficient Inference Scaling",
arXiv 2505.13672): best-first search over partial solutions with a process reward model.

States are partial solutions; the start state is the empty solution. A transition samples n
continuations of a state (one step each) and scores them with the PRM. The evaluation function
is f(s) = g(s) + h(s), from a reward r(s) in [0, 1] of the partial trajectory (here the PRM
reward of its latest step):

- heuristic  h(s) = 1 - r(s), the complement of the reward; h(start) = 0;
- path cost  g(s') = g(s) + max(0, h(s') - h(s)): a transition costs only the *increase* of h
  (the drop of the PRM reward); g(start) = 0. So g never decreases along a path, but f does
  when the reward rises: a step whose reward rises by d has f(s') = f(s) - d, one whose reward
  falls by d has f(s') = f(s) + 2d. (f is not monotone, so a popped state is not settled for
  good; the search does not need it to be: every state is a distinct partial solution, pushed
  once, and the goal test is at pop time.) E.g. rewards 0.8 then 0.9 then 0.95 along a path give
  f = 0.4, 0.3, 0.25.

The search keeps every scored state in one global priority queue (lowest f first; ties: deeper
first, then older first). It pops the best state; a finished state with an answer is the
answer; a finished state without one (cut at the token limit, or ended without an answer) is a
dead end, kept only as a last resort; an open one is expanded (n samples in one request), its
children scored and pushed. The last allowed step (the max_steps-th) is generated to the end of
sequence, as search-and-learn's last iteration. It stops when an answered state is popped,
after `max_expansions` expansions (default 100: a guard for runs without a budget, since with a
noisy PRM best-first search keeps reopening shallow states; None: only the budget and max_steps
bound it), or when the budget runs out; then the best finished state left in the queue (with an
answer first, then lowest f) answers, else a dead end, else the best open state. Telemetry:
"expansions" (generator requests), "prm_passes" (sequences scored), "popped" (node ids in the
order they left the queue), "f" (of the answer).

The paper, the code read (the author's code could not be read here) and every known deviation:
docs/references.md.
"""

from __future__ import annotations

import heapq
import itertools

from tts.context import Context
from tts.options import Count, Delimiter, Share
from tts.search.tree import DEFAULT_DELIMITER, Node, StepStrategy, size_alias
from tts.types import Problem, Result


class AStar(StepStrategy):
    name = "astar"
    aliases = {"k": "n", **StepStrategy.aliases}  # the size (samples per expansion) is `n`; `k` is accepted too
    keyed_with_step_tokens = True

    def __init__(
        self,
        n: Count | None = None,
        max_expansions: Count | None = 100,
        max_steps: Count = 40,
        delimiter: Delimiter | None = DEFAULT_DELIMITER,
        tokens_per_step: Count | None = None,
        k: Count | None = None,
        prune_equivalent: str | None = None,
        prune_tau: Share | None = None,
    ):
        n = size_alias(n, k, "k", 4)
        self.n = n
        self.max_expansions = max_expansions
        self.set_steps(max_steps, delimiter, tokens_per_step, prune_equivalent, prune_tau)

    async def solve(self, problem: Problem, ctx: Context) -> Result:
        s = self.search(ctx)
        order = itertools.count()
        g: dict[int, float] = {s.root.id: 0.0}
        h: dict[int, float] = {s.root.id: 0.0}
        queue: list[tuple[float, int, int, Node]] = [(0.0, 0, next(order), s.root)]
        popped: list[int] = []
        dead: list[Node] = []  # finished states without an answer, in the order popped
        found: Node | None = None
        while queue:
            f, _, _, node = queue[0]
            if node.complete:
                heapq.heappop(queue)
                popped.append(node.id)
                if s.answer(node) is not None:
                    found = node
                    break
                dead.append(node)
                continue
            if s.stopped == "budget" or (self.max_expansions is not None and s.expansions >= self.max_expansions):
                break
            heapq.heappop(queue)
            popped.append(node.id)
            children = (await s.expand([(node, self.n)]))[0]
            await s.score(children)  # refused by the budget: pushed unscored (h = 1), then we stop
            for c in children:
                h[c.id] = 1.0 - c.reward if c.reward is not None else 1.0
                g[c.id] = g[node.id] + max(0.0, h[c.id] - h[node.id])
                heapq.heappush(queue, (g[c.id] + h[c.id], -c.depth, next(order), c))
        if found is None:
            ranked = [n for *_, n in sorted(queue) if n.parent is not None]
            done = sorted((n for n in ranked if n.complete), key=lambda n: s.answer(n) is None)  # stable
            found = (done or dead or ranked or [None])[0]
        paths = [found] if found is not None else []
        answer = s.answer(found) if found is not None else None
        f_found = g[found.id] + h[found.id] if found is not None and found.id in g else None
        return s.result(problem, answer, paths, popped=popped, f=f_found)
