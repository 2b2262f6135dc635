"""Beam search over reasoning steps, guided by a process reward model.

Semantics of search-and-learn's `_beam_search` (huggingface/search-and-learn,
src/sal/search/beam_search.py; Snell et al., 2024, "Scaling LLM test-time compute optimally"):

- n paths are active in every iteration. The first iteration samples n first steps from the
  problem; later ones expand each kept beam beam_width times (search-and-learn repeats the kept
  beams until there are n, so with fewer kept beams each gets more samples).
- Each new step is scored; paths that completed (see `step_search`) leave the beam and join the
  finished pool. Of the rest, the top n // beam_width by the reward of their latest step (the
  "last" aggregation) are kept.
- lookahead k > 0 rolls each new open path out k more steps at temperature 0 and scores the path
  by the reward of its rollout's last step; the rollout is not kept (search-and-learn computes
  the rollout but scores only the path, a known slip; we score the rollout, as its DVTS does).
- The search ends when no path is open, after max_steps steps (paths still open end with
  finish_reason "max_steps"), or when the budget runs out (stopped_by "budget").
- Final answer: among the finished paths, the one with the highest aggregate PRM score
  (select="max") or weighted majority voting over all of them (select="weighted").
  With nothing finished at a budget stop, the best-scored open path answers (often None).
"""

from __future__ import annotations

from tts.context import Context
from tts.registry import register
from tts.types import Problem, Result

from tts.search.tree import (
    BeamStrategy,
    Node,
    StepSearch,
    rank_key,
    spread,
)


@register("strategy", "beam_search")
class BeamSearch(BeamStrategy):
    name = "beam_search"
    default_verifier = "llm_judge"  # the generator as its own step judge: no reward model needed

    async def solve(self, problem: Problem, ctx: Context) -> Result:
        s = StepSearch(ctx, delimiter=self.delimiter, max_steps=self.max_steps, step_tokens=self.step_tokens)
        keep = self.n // self.beam_width
        beams: list[Node] = [s.root]
        finished: list[Node] = []
        kept: list[list[int]] = []
        while beams:
            children = [c for group in await s.expand(spread(beams, self.n)) for c in group]
            open_ = [c for c in children if not c.complete]
            rollouts = await s.lookahead(open_, self.lookahead)
            await s.score(children, rollouts)
            finished += [c for c in children if c.complete]
            if s.stopped == "budget":
                beams = open_ or beams
                break
            beams = sorted(open_, key=lambda c: -rank_key(c.reward))[:keep]  # stable: first of equals
            if beams:
                kept.append([b.id for b in beams])
        paths = finished or s.best_partial(beams)
        answer, extra = await s.choose(paths, self.select)
        return s.result(problem, answer, paths, kept=kept, finished=len(finished), **extra)
