"""Particle filtering and particle Gibbs over reasoning steps (Puri et al., 2025, "A Probabilistic
Inference Approach to Inference-Time Scaling of LLMs using Particle-Based Monte Carlo Methods",
arXiv 2502.01618), following its reference code (probabilistic-inference-scaling,
src/sal/search/particle_gibbs.py, `particle_gibbs_kernel`, with resample_inactive on as in every
published run script) and its successor Red-Hat-AI-Innovation-Team/its_hub
(its_hub/algorithms/particle_gibbs.py).

One filtering run with n particles:

1. every particle starts from the problem and takes one step (one request, n samples); each
   particle is scored by the PRM. With `single_step` (the default, the paper's "model-based
   aggregation"; the reference's `outputs_is_single_step=True`) the whole partial solution is
   scored as one step, newline runs collapsed to one "\\n"; r is that reward. Without it, r is
   the reward of the particle's latest step.
2. while some particle is unfinished, the particles are resampled: weights
   w = softmax(logit(r) / softmax_temp), logit(r) = log r - log(1 - r) with r clipped to
   [eps, 1 - eps]; n indices are drawn with replacement (multinomial, `ctx.rng.choices`, so a
   run is reproducible from its seed). With `resample_inactive` (default) the pool is every
   particle, a finished one with its final weight, so a finished high-reward particle can be
   drawn many times (it stays finished); without it only the unfinished particles are
   resampled (as many draws as there are of them) and finished ones are kept as they are.
   Then every unfinished particle takes one more step (particles sharing a partial solution
   share one request) and is scored.
3. A particle finishes as a path completes (see `tts.search.tree`; its max_steps-th step is
   generated to the end of sequence) or at a budget stop. With EquivPruner
   (`prune_equivalent`), a particle whose new step was merged into an equivalent sibling's
   continues as that sibling (the same partial solution), and only the kept steps are scored.

Particle Gibbs (gibbs_iterations > 0): after each run one particle is drawn as the reference
with probability softmax(logit(r) / softmax_temp) over the final particles. The next run uses
n - 1 free particles plus the reference: at resampling step t the reference's ancestor at step
t (its partial solution truncated to t steps, or all of it when shorter) joins the pool with
its reward at that step, so it can be drawn (a drawn copy continues from the truncated
solution), and the reference itself is kept unchanged to the end of the run.

Final answer over the last run's particles (the reference included): the particle with an
answer and the highest score (select="max"; its_hub's argmax) or weighted majority voting by it
(select="weighted_vote"; "weighted" is accepted too); the score is the verifier's value, r
itself with `single_step`. Duplicated particles count once per copy.
Telemetry per resampling: "weights" and "resampled" (drawn pool indices; the pool lists the
particles in order — only the unfinished ones without `resample_inactive` — then the
reference's ancestor); per run: "resamplings" (how many of those entries it made); per Gibbs
iteration: "references" (the reference's node id).

The paper, the code read and every known deviation: docs/references.md.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated, Literal

from pydantic import Field

from tts.context import Context
from tts.options import Count, Delimiter, NonNegative, Share
from tts.search.tree import DEFAULT_DELIMITER, Node, StepSearch, StepStrategy, logit, size_alias, softmax
from tts.types import Problem, Result

Select = Literal["max", "weighted_vote", "weighted"]


def particle_weights(rewards: list[float | None], softmax_temp: float = 1.0) -> list[float]:
    """Resampling weights from latest-step rewards: softmax(logit(r) / softmax_temp)."""
    return softmax([logit(0.5 if r is None else r) for r in rewards], softmax_temp)


class ParticleFilter(StepStrategy):
    name = "particle_filter"
    aliases = {"n_particles": "n", **StepStrategy.aliases}  # the size is `n`; the paper's `n_particles` too
    keyed_with_step_tokens = True

    def __init__(
        self,
        n: Count | None = None,
        max_steps: Count = 40,
        gibbs_iterations: NonNegative = 0,
        select: Select = "max",
        softmax_temp: Annotated[float, Field(gt=0)] = 1.0,
        delimiter: Delimiter | None = DEFAULT_DELIMITER,
        tokens_per_step: Count | None = None,
        resample_inactive: bool = True,
        single_step: bool = True,
        n_particles: Count | None = None,
        prune_equivalent: str | None = None,
        prune_tau: Share | None = None,
    ):
        n = size_alias(n, n_particles, "n_particles", 8)
        if gibbs_iterations and n < 2:
            raise ValueError("particle Gibbs needs n >= 2 particles (one is the reference)")
        self.n = n
        self.gibbs_iterations = gibbs_iterations
        self.select = select
        self.softmax_temp = softmax_temp
        self.resample_inactive = resample_inactive
        self.single_step = single_step
        self.set_steps(max_steps, delimiter, tokens_per_step, prune_equivalent, prune_tau)

    async def solve(self, problem: Problem, ctx: Context) -> Result:
        s = self.search(ctx)
        log = {"weights": [], "resampled": [], "references": [], "resamplings": []}
        reference: Node | None = None
        particles: list[Node] = []
        for it in range(self.gibbs_iterations + 1):
            particles = await self._filter(s, reference, log)
            if s.stopped == "budget" or it == self.gibbs_iterations:
                break
            w = particle_weights([p.reward for p in particles], self.softmax_temp)
            reference = particles[ctx.rng.choices(range(len(particles)), weights=w, k=1)[0]]
            log["references"].append(reference.id)
        paths = [p for p in particles if p.parent is not None]
        select = "max" if self.select == "max" else "weighted"
        answer, extra = await s.choose(paths, select)
        return s.result(problem, answer, paths, **log, **extra)

    async def _filter(self, s: StepSearch, reference: Node | None, log: dict) -> list[Node]:
        """One particle-filtering run; the final particles (the reference last, if any)."""
        particles: list[Node] = [s.root] * (self.n - (reference is not None))
        step = 0
        log["resamplings"].append(0)
        while True:
            # Extend every unfinished particle by one step; equal partial solutions share a request.
            slots: dict[int, list[int]] = defaultdict(list)
            for i, p in enumerate(particles):
                if not p.complete:
                    slots[p.id].append(i)
            if not slots:
                break
            jobs = [(particles[idx[0]], len(idx)) for idx in slots.values()]
            groups = await s.expand(jobs)
            new = []
            for idx, kids in zip(slots.values(), groups):
                # a child merged with equivalent siblings stands for their particles too
                copies = [kid for kid in kids for _ in range(1 + len(kid.merged))]
                for i, kid in zip(idx, copies):
                    particles[i] = kid
                new += kids
            await s.score(new, single_step=self.single_step)
            step += 1
            if s.stopped == "budget":
                break
            live = [i for i, p in enumerate(particles) if not p.complete]
            if not live:
                break
            # Resample every particle (or only the unfinished ones), and the reference's state at
            # this step; a drawn finished particle stays finished.
            resampled = range(len(particles)) if self.resample_inactive else live
            pool = [particles[i] for i in resampled]
            if reference is not None:
                pool.append(reference.ancestor(step))
            w = particle_weights([p.reward for p in pool], self.softmax_temp)
            drawn = s.ctx.rng.choices(range(len(pool)), weights=w, k=len(resampled))
            for i, d in zip(resampled, drawn):
                particles[i] = pool[d]
            log["weights"].append(w)
            log["resampled"].append(drawn)
            log["resamplings"][-1] += 1
        return particles + ([reference] if reference is not None else [])
