"""Beam search over reasoning steps, guided by a process reward model.

Semantics of search-and-learn's `_beam_search` (huggingface/search-and-learn,
src/sal/search/beam_search.py; Snell et al., 2024, "Scaling LLM test-time compute optimally"):

- n paths are active in every iteration. The first iteration samples n first steps from the
  problem; later ones expand each kept beam beam_width times (search-and-learn repeats the kept
  beams until there are n, so with fewer kept beams each gets more samples).
- Each new step is scored; paths that completed (see `tts.search.tree`) leave the beam and join
  the finished pool, in the order they completed. Of the rest, the top n // beam_width by the
  aggregate `agg` of their step rewards (search-and-learn's `agg_strategy`: "last", the
  default, "min" or "prod") are kept; the first of equals wins.
- lookahead k > 0 rolls each new open path out k more steps at temperature 0 and scores the path
  with its rollout; the rollout is not kept.
- pipeline (default): each expansion is scored as soon as its samples arrive, without waiting
  for the other beams' (one verifier call per expansion); the kept beams are the same.
- The last allowed step (the max_steps-th) is generated to the end of sequence, as
  search-and-learn's last iteration, so every path ends; the search also ends when no path is
  open, or when the budget runs out (stopped_by "budget").
- Final answer: over the first n finished paths (search-and-learn's `sort_completed=False`;
  `sort_completed=True` keeps the n with the highest aggregate instead), the one with an answer
  and the highest aggregate (select="max") or weighted majority voting (select="weighted").
  With nothing finished at a budget stop, the best-scored open path answers (often None).

The paper, the code read and every known deviation: docs/references.md.
"""

from __future__ import annotations

from typing import Any

from tts.context import Context
from tts.search.tree import BeamStrategy, Node, spread
from tts.types import Problem, Result


class BeamSearch(BeamStrategy):
    name = "beam_search"

    def __init__(self, *args: Any, sort_completed: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)  # BeamStrategy's parameters, which are this one's too
        self.sort_completed = sort_completed

    async def solve(self, problem: Problem, ctx: Context) -> Result:
        s = self.search(ctx)
        keep = self.n // self.beam_width

        beams: list[Node] = [s.root]
        finished: list[Node] = []
        kept: list[list[int]] = []
        while beams:
            groups = await s.grow(spread(beams, self.n), self.lookahead, self.pipeline)
            children = [c for group in groups for c in group]
            open_ = [c for c in children if not c.complete]
            finished += [c for c in children if c.complete]
            if s.stopped == "budget":
                beams = open_ or beams
                break
            beams = sorted(open_, key=lambda c: -self.value(c))[:keep]  # stable: first of equals
            if beams:
                kept.append([b.id for b in beams])
        if self.sort_completed:
            finished = sorted(finished, key=lambda c: -self.value(c))
        paths = finished[: self.n] or s.best_partial(beams)
        answer, extra = await s.choose(paths, self.select, self.value)
        return s.result(problem, answer, paths, kept=kept, finished=len(finished), **extra)
