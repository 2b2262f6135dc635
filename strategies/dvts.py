"""Diverse verifier tree search (DVTS), as search-and-learn defines it
(huggingface/search-and-learn, src/sal/search/diverse_verifier_tree_search.py; Beeching et al.,
2024, "Scaling test-time compute with open models").

- n // beam_width independent subtrees start from the problem. In every iteration each open
  subtree expands its current path beam_width times (all subtrees' requests go out together),
  the candidates are scored (with an optional greedy look-ahead, as in beam search), and the
  subtree moves to its best candidate by the aggregate `agg` of its step rewards
  (search-and-learn's `agg_strategy`: "last", the default, "min" or "prod"; the first of equals
  wins): greedy within a subtree, diverse across subtrees. With `pipeline` (default) each
  subtree's candidates are scored as soon as they arrive, not after the slowest subtree's.
- A subtree stops when its chosen step completes the path (see `tts.search.tree`), or when the
  budget runs out. The last allowed step (the max_steps-th) is generated to the end of
  sequence, as search-and-learn's last iteration.
- Final answer: search-and-learn keeps, per subtree, all beam_width candidates of its last
  expansion and picks the highest-scored. We do the same over those candidates that are
  finished paths (a partial candidate is not a solution), preferring one with an answer, by the
  aggregate (select="max") or weighted majority voting (select="weighted"). At a budget stop
  with nothing finished, the best-scored open path answers.

The paper, the code read and every known deviation: docs/references.md.
"""

from __future__ import annotations

from tts.context import Context
from tts.search.tree import BeamStrategy, Node
from tts.types import Problem, Result


class DVTS(BeamStrategy):
    name = "dvts"

    async def solve(self, problem: Problem, ctx: Context) -> Result:
        s = self.search(ctx)
        m = self.n // self.beam_width
        heads: list[Node] = [s.root] * m  # each subtree's current path
        last: list[list[Node]] = [[] for _ in range(m)]  # each subtree's last expansion
        live = list(range(m))
        chosen: list[list[int]] = []
        while live:
            groups = await s.grow([(heads[i], self.beam_width) for i in live], self.lookahead, self.pipeline)
            picked, still = [], []
            for i, group in zip(live, groups):
                if not group:  # the budget refused this subtree's expansion
                    continue
                last[i] = group
                heads[i] = max(group, key=self.value)  # first of equals wins
                picked.append(heads[i].id)
                if not heads[i].complete:
                    still.append(i)
            chosen.append(picked)
            live = [] if s.stopped == "budget" else still
        paths = [c for group in last for c in group if c.complete] or s.best_partial(heads)
        answer, extra = await s.choose(paths, self.select, self.value)
        return s.result(problem, answer, paths, subtrees=m, chosen=chosen, **extra)
