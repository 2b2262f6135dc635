"""A*-decoding (Chatziveroglou, 2025, "A*-Decoding: Token-Efficient Inference Scaling",
arXiv 2505.13672): best-first search over partial solutions with a process reward model.

States are partial solutions; the start state is the empty solution. A transition samples k
continuations of a state (one step each) and scores them with the PRM. The evaluation function
is f(s) = g(s) + h(s), from a reward r(s) in [0, 1] of the partial trajectory (here the PRM
reward of its latest step):

- heuristic  h(s) = 1 - r(s), the complement of the reward; h(start) = 0;
- path cost  g(s') = g(s) + max(0, h(s') - h(s)): a transition costs only the *increase* of h
  (the drop of the PRM reward); g(start) = 0. So f never decreases along a path, and the
  first finished state popped is the best finished state the search can reach.

Source caveat: no public code of the paper exists, and its full text could not be read from
here. h = 1 - r is as summaries of the paper's method section quote it; g (cost accumulating
only increases of h) is as a survey summarises the paper. Check both against Section 3 of the
paper before quoting numbers.

The search keeps every scored state in a priority queue (lowest f first; ties: deeper first,
then older first). It pops the best state; a finished state is the answer; an open one is
expanded (k samples in one request), its children scored and pushed. It stops when a finished
state is popped, after `max_expansions` expansions (default 100: a guard for runs without a
budget, since with a noisy PRM best-first search keeps reopening shallow states; None: only
the budget and max_steps bound it), or when the budget runs out; then the best finished state
left in the queue (lowest f) answers, or else the best open one. Telemetry: "expansions"
(generator requests), "prm_passes" (sequences scored), "popped" (node ids in the order they
left the queue), "f" (of the answer).
"""

from __future__ import annotations

import heapq
import itertools

from tts.context import Context
from tts.interfaces import Strategy
from tts.registry import register
from tts.types import Problem, Result

from tts.search.tree import DEFAULT_DELIMITER, Node, StepSearch, validate_steps


@register("strategy", "astar")
class AStar(Strategy):
    name = "astar"
    default_verifier = "llm_judge"  # the generator as its own step judge: no reward model needed
    aliases = {"k": "n"}  # the size (samples per expansion) is `n`; `k` is accepted too

    def __init__(
        self,
        k: int = 4,
        max_expansions: int | None = 100,
        max_steps: int = 40,
        delimiter: str = DEFAULT_DELIMITER,
        step_tokens: int | None = None,
    ):
        validate_steps(max_steps, delimiter, step_tokens)
        if k < 1:
            raise ValueError(f"k (samples per expansion) must be >= 1, got {k}")
        if max_expansions is not None and max_expansions < 1:
            raise ValueError(f"max_expansions must be >= 1 or None, got {max_expansions}")
        self.k = k
        self.max_expansions = max_expansions
        self.max_steps = max_steps
        self.delimiter = delimiter
        self.step_tokens = step_tokens

    async def solve(self, problem: Problem, ctx: Context) -> Result:
        s = StepSearch(ctx, delimiter=self.delimiter, max_steps=self.max_steps, step_tokens=self.step_tokens)
        order = itertools.count()
        g: dict[int, float] = {s.root.id: 0.0}
        h: dict[int, float] = {s.root.id: 0.0}
        queue: list[tuple[float, int, int, Node]] = [(0.0, 0, next(order), s.root)]
        popped: list[int] = []
        found: Node | None = None
        while queue:
            f, _, _, node = queue[0]
            if node.complete:
                heapq.heappop(queue)
                popped.append(node.id)
                found = node
                break
            if s.stopped == "budget" or (self.max_expansions is not None and s.expansions >= self.max_expansions):
                break
            heapq.heappop(queue)
            popped.append(node.id)
            children = (await s.expand([(node, self.k)]))[0]
            await s.score(children)  # refused by the budget: pushed unscored (h = 1), then we stop
            for c in children:
                h[c.id] = 1.0 - c.reward if c.reward is not None else 1.0
                g[c.id] = g[node.id] + max(0.0, h[c.id] - h[node.id])
                heapq.heappush(queue, (g[c.id] + h[c.id], -c.depth, next(order), c))
        if found is None:
            ranked = [n for *_, n in sorted(queue) if n.parent is not None]
            done = [n for n in ranked if n.complete]
            found = (done or ranked or [None])[0]
        paths = [found] if found is not None else []
        answer = s.answer(found) if found is not None else None
        f_found = g[found.id] + h[found.id] if found is not None and found.id in g else None
        return s.result(problem, answer, paths, popped=popped, f=f_found)
