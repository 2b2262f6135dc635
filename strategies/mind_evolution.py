"""Mind Evolution (Lee et al. 2025, "Evolving Deeper LLM Thinking", arXiv 2501.09891): a genetic
search whose population is written, recombined and refined by the model itself.

Per generation (`n` of them; `generations` in a sweep or `--param`: the paper's N_gens), on
each of `islands` islands, `conversations` conversations each start from parents drawn from
that island (none in the first generation, and with probability `no_parents` later: a fresh
sample; else 1..`parents` of them by Boltzmann tournament on fitness) and run `turns` turns of
Refinement through Critical Conversation: turn 1 the author writes a solution (a plain sample
with no parents, a recombination of the parents in one prompt otherwise: crossover by the
model); every later turn a critic reviews the last solution with its fitness and the author
refines it (mutation). Every solution is evaluated and joins its island. After each generation
the best `emigrants` of island i are copied to island i+1; every `reset_interval` generations
the `resets` islands of lowest mean fitness are emptied and restarted from the best
`emigrants` of the `reset_candidates` best solutions overall (the paper picks that set with the
model, for diversity; here the fittest distinct answers). The search stops after `n`
generations or when a solution reaches fitness `stop_at`; the answer is the fittest solution's.

Fitness (`fitness`): "agreement" (math with no gold answer: the share of all solutions so far
that give this one's answer, grouped by math equivalence; recomputed as the population grows;
never stops early) or "verifier" (a verifier's score: the run's `--verifier`, or `verifier=NAME`
built with the generator, such as a code task's visible-test runner, whose score 1.0 means every
test passes and stops the search). The paper's defaults (Table: N_gens 10, N_island 4, N_convs 5,
N_seq 4, N_parent 5, Pr_no_parents 1/6, N_emigrate 5, N_reset_interval 3, N_reset 2, N_candidate
15) are the defaults here; a CPU run takes far fewer.

Telemetry: `generations` (per generation: each island's size, best and mean fitness, the best
overall, migrations, resets), `stopped` ("fitness" or "generations"), `solutions`. Every model
call goes through the context (`tts.pipeline.Work.ask`; a verifier's through `ctx.judge`).
"""

from __future__ import annotations

import math
from typing import Literal

from tts.answers.mathverify import group_answers
from tts.context import Context
from tts.errors import BudgetExceeded
from tts.options import Count, NonNegative, Probability
from tts.pipeline import Candidate, Verify, Work, together
from tts.pipeline import prompts
from tts.pipeline.operators import numbered, verdict_of
from tts.strategy import Strategy
from tts.types import Problem, Result, stopped_by

SELECTION_TEMPERATURE = 0.1  # Boltzmann tournament: weights exp(fitness / T), fitness in [0, 1]


class MindEvolution(Strategy):
    name = "mind_evolution"
    aliases = {"generations": "n"}  # the paper's N_gens is the size `-n` sets

    def __init__(self, n: Count = 10, islands: Count = 4, conversations: Count = 5, turns: Count = 4,
                 parents: Count = 5, no_parents: Probability = 1 / 6, emigrants: NonNegative = 5,
                 reset_interval: Count = 3, resets: NonNegative = 2, reset_candidates: Count = 15,
                 fitness: Literal["agreement", "verifier"] = "agreement", verifier: str | None = None,
                 stop_at: Probability = 1.0):
        self.generations, self.islands, self.conversations, self.turns = n, islands, conversations, turns
        self.parents, self.no_parents, self.emigrants = parents, no_parents, emigrants
        self.reset_interval, self.resets, self.reset_candidates = reset_interval, resets, reset_candidates
        self.fitness, self.stop_at = fitness, stop_at
        self._scorer = Verify(verifier=verifier) if fitness == "verifier" else None

    async def solve(self, problem: Problem, ctx: Context) -> Result:
        work = Work(ctx)
        pop: list[list[Candidate]] = [[] for _ in range(self.islands)]
        history: list[dict] = []
        stop = "generations"
        try:
            for g in range(self.generations):
                born = await together([self._conversation(work, pop, i, first=g == 0)
                                       for i in range(self.islands) for _ in range(self.conversations)])
                for k, sols in enumerate(born):
                    pop[k // self.conversations] += sols
                await self._score(work, pop, [c for island in pop for c in island])
                record = self._census(g, pop)
                if self.fitness == "verifier" and record["best"] >= self.stop_at:
                    stop = "fitness"
                    history.append(record)
                    break
                record["migrated"] = self._migrate(pop)
                if (g + 1) % self.reset_interval == 0 and g + 1 < self.generations:
                    record["reset"] = self._reset(pop)
                history.append(record)
                if work.budget:
                    break
        except BudgetExceeded:  # a verifier call refused: answer from what is there
            work.budget = True
        everyone = [c for island in pop for c in island]
        best = max(everyone, key=lambda c: c.score or 0.0, default=None)
        telemetry = {"generations": history, "stopped": "budget" if work.budget else stop,
                     "solutions": len(work.traces), **work.telemetry}
        return Result(problem.id, best.answer if best else None, list(work.traces),
                      stopped_by=stopped_by(budget=work.budget), telemetry=telemetry)

    async def close(self) -> None:
        if self._scorer is not None:
            await self._scorer.close()

    # -- one conversation: parents -> author, then critic/author turns --------------------------------
    async def _conversation(self, work: Work, pop: list[list[Candidate]], i: int, first: bool) -> list[Candidate]:
        rng = work.ctx.rng
        island = pop[i]
        chosen: list[Candidate] = []
        if not first and island and rng.random() >= self.no_parents:
            chosen = self._tournament(island, rng.randint(1, min(self.parents, len(island))), rng)
        if chosen:
            text = prompts.CROSSOVER.format(question=work.problem.question, count=len(chosen),
                                            candidates=numbered(chosen, scores=True))
            out = await work.ask(text, candidate=True)
            work.count("crossovers")
        else:  # a fresh sample of the problem as posed (the run's own request)
            out = await self._sample(work)
        sols = work.made(out, "crossover" if chosen else "sample")
        for _ in range(self.turns - 1):
            if not sols:
                break
            await self._score(work, pop, sols[-1:])
            last = sols[-1]
            shown = f"{last.text}\n\n(An evaluator gave this solution a fitness of {last.score or 0.0:.2f} of 1.)"
            crit = await work.ask(prompts.CRITIQUE.format(question=work.problem.question, candidate=shown),
                                  candidate=False)
            if not crit:
                break
            last.critique, last.verdict = crit[0].text, verdict_of(crit[0].text)
            out = await work.ask(prompts.REFINE.format(question=work.problem.question, candidate=last.text,
                                                       critique=last.critique), candidate=True)
            sols += work.made(out, "refine")
        return sols

    async def _sample(self, work: Work):
        try:
            traces, stopped = await work.ctx.sample(1)
        except BudgetExceeded:
            work.budget = True
            return []
        work.budget |= stopped == "budget"
        return traces

    def _tournament(self, island: list[Candidate], k: int, rng) -> list[Candidate]:
        """k distinct parents, each drawn with probability proportional to exp(fitness / T)."""
        left = list(island)
        out = []
        for _ in range(k):
            top = max(c.score or 0.0 for c in left)
            weights = [math.exp(((c.score or 0.0) - top) / SELECTION_TEMPERATURE) for c in left]
            out.append(left.pop(rng.choices(range(len(left)), weights)[0]))
        return out

    # -- fitness -----------------------------------------------------------------------------------
    async def _score(self, work: Work, pop: list[list[Candidate]], cands: list[Candidate]) -> None:
        """Fitness of `cands`: a verifier's score (once per candidate), or their answers' share of
        the whole population with them (agreement: everyone's is recomputed, as it shifts)."""
        if self._scorer is not None:
            todo = [c for c in cands if c.score is None]
            if todo:
                scores = await self._scorer.verifier_for(work.ctx).score(work.ctx, [c.trace for c in todo])
                for c, s in zip(todo, scores):
                    c.score = c.trace.score = s.value
            return
        everyone = _distinct([c for island in pop for c in island] + cands)
        groups = await group_answers([c.answer for c in everyone])
        size: dict[int, int] = {}
        for g in groups:
            if g is not None:
                size[g] = size.get(g, 0) + 1
        for c, g in zip(everyone, groups):
            c.score = c.trace.score = size[g] / len(everyone) if g is not None else 0.0

    # -- islands -----------------------------------------------------------------------------------
    def _census(self, g: int, pop: list[list[Candidate]]) -> dict:
        isl = [{"size": len(p), "best": max((c.score or 0.0 for c in p), default=0.0),
                "mean": sum(c.score or 0.0 for c in p) / len(p) if p else 0.0} for p in pop]
        return {"generation": g, "islands": isl, "best": max((i["best"] for i in isl), default=0.0)}

    def _migrate(self, pop: list[list[Candidate]]) -> int:
        """The best `emigrants` of island i are copied to island i+1 (a ring)."""
        if len(pop) < 2 or not self.emigrants:
            return 0
        best = [sorted(p, key=lambda c: -(c.score or 0.0))[: self.emigrants] for p in pop]
        for i, group in enumerate(best):
            dest = pop[(i + 1) % len(pop)]
            there = {id(c) for c in dest}
            dest += [c for c in group if id(c) not in there]
        return sum(len(b) for b in best)

    def _reset(self, pop: list[list[Candidate]]) -> list[int]:
        """Empty the `resets` islands of lowest mean fitness; restart each from the fittest
        `emigrants` distinct answers among the `reset_candidates` best solutions overall."""
        if not self.resets:
            return []
        mean = [sum(c.score or 0.0 for c in p) / len(p) if p else 0.0 for p in pop]
        worst = sorted(range(len(pop)), key=lambda i: mean[i])[: min(self.resets, len(pop) - 1)]
        ranked = sorted(_distinct([c for p in pop for c in p]), key=lambda c: -(c.score or 0.0))
        pool = ranked[: self.reset_candidates]
        seeds, seen = [], set()
        for c in pool:  # the fittest, one per answer first (diversity), then the rest
            if c.answer not in seen:
                seen.add(c.answer)
                seeds.append(c)
        chosen = {id(c) for c in seeds}
        seeds += [c for c in pool if id(c) not in chosen]
        for i in worst:
            pop[i] = seeds[: self.emigrants]
        return worst


def _distinct(cands: list[Candidate]) -> list[Candidate]:
    """Each candidate once (a migrant is the same object on two islands)."""
    seen: set[int] = set()
    return [c for c in cands if not (id(c) in seen or seen.add(id(c)))]  # type: ignore[func-returns-value]
