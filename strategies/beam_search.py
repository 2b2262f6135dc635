"""Beam search over reasoning steps, guided by a process reward model.

Semantics of search-and-learn's `_beam_search` (huggingface/search-and-learn,
src/sal/search/beam_search.py; Snell et al., 2024, "Scaling LLM test-time compute optimally"):

- n paths are active in every iteration. The first iteration samples n first steps from the
  problem; later ones expand each kept beam beam_width times (search-and-learn repeats the kept
  beams until there are n, so with fewer kept beams each gets more samples).
  `first_samples="beam_width"` samples only beam_width first steps (its_hub's rule: the problem
  is one beam, expanded as any other), n / beam_width times less work in the first iteration;
  the kept beams are then the best n // beam_width of those beam_width.
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
  open, or when the budget runs out (stopped_by "budget"). `last_step="delimited"` (its_hub's
  rule) generates it as any other step instead, cheaper: a path still open after it ends
  there, finish "max_steps", usually without an answer.
- `stop_when_decided` (default): with `sort_completed=False` the answer is read from the first n
  finished paths only, so once n paths have finished, no later path can change it: the search
  stops there (search-and-learn goes on until no path is open). The answer and the returned
  paths are the same either way; only the wasted iterations go (and the tree is smaller).
- Final answer: over the first n finished paths (search-and-learn's `sort_completed=False`;
  `sort_completed=True` keeps the n with the highest aggregate instead), the one with an answer
  and the highest aggregate (select="max") or weighted majority voting (select="weighted").
  With nothing finished at a budget stop, the best-scored open path answers (often None).

The paper, the code read and every known deviation: docs/references.md.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from tts.context import Context
from tts.search.tree import BeamStrategy, LastStep, Node, spread
from tts.types import Problem, Result


class BeamSearch(BeamStrategy):
    name = "beam_search"
    # Parameters added after beam search results were keyed: in the configuration (and its
    # hash) only when set off their default, so every run keyed before keeps its key.
    late_defaults: ClassVar[dict[str, Any]] = {"first_samples": "n", "stop_when_decided": True, "last_step": "to_end"}

    def __init__(self, *args: Any, sort_completed: bool = False, first_samples: Literal["n", "beam_width"] = "n",
                 stop_when_decided: bool = True, last_step: LastStep = "to_end", **kwargs: Any):
        super().__init__(*args, **kwargs)  # BeamStrategy's parameters, which are this one's too
        self.sort_completed = sort_completed
        self.first_samples = first_samples
        self.stop_when_decided = stop_when_decided
        self.last_step = last_step

    def config(self) -> dict:
        late = self.late_defaults
        return {k: v for k, v in super().config().items() if not (k in late and late[k] == v)}

    async def solve(self, problem: Problem, ctx: Context) -> Result:
        s = self.search(ctx)
        keep = self.n // self.beam_width

        beams: list[Node] = [s.root]
        finished: list[Node] = []
        kept: list[list[int]] = []
        first = self.beam_width if self.first_samples == "beam_width" else self.n
        while beams:
            jobs = spread(beams, self.n) if beams[0] is not s.root else [(s.root, first)]
            groups = await s.grow(jobs, self.lookahead, self.pipeline)
            children = [c for group in groups for c in group]
            open_ = [c for c in children if not c.complete]
            finished += [c for c in children if c.complete]
            if s.stopped == "budget":
                beams = open_ or beams
                break
            if self.stop_when_decided and not self.sort_completed and len(finished) >= self.n:
                break  # finished[:n], the answer's pool, can no longer change
            beams = sorted(open_, key=lambda c: -self.value(c))[:keep]  # stable: first of equals
            if beams:
                kept.append([b.id for b in beams])
        if self.sort_completed:
            finished = sorted(finished, key=lambda c: -self.value(c))
        paths = finished[: self.n] or s.best_partial(beams)
        answer, extra = await s.choose(paths, self.select, self.value)
        return s.result(problem, answer, paths, kept=kept, finished=len(finished), **extra)
