"""φ-Decoding (Xu et al., 2025, "φ-Decoding: Adaptive Foresight Sampling for Balanced
Inference-Time Exploration and Exploitation", arXiv 2503.13288), as its authors' code does it
(xufangzhi/phi-Decoding, `phi_decoding.py`: `PhiDecoder.process_example`, `_process_step`,
`_should_stop_early`, `_generate_final_response`, `select_response`). No reward model: a step
is valued by how probable the model finds the rest of the solution after it (its foresight).

n beams start from the problem (the code's `step_beam_size`, 4), each with value 0. A step:

1. Candidates: each open beam samples `num_rollout` next steps (4); a step's probability is
   exp of its mean token logprob.
2. In-width pruning ("low_sigma"): of all candidates, those whose mean logprob is above
   mean - `sigma_rate` std (population std over the candidates) are kept; when fewer than the
   slots to fill are kept, the rest are drawn from the others without replacement, weights
   softmax(logprob / T) (T = `softmax_temp`, the code's TEMPERATURE = 0.1).
3. Foresight: each kept candidate is rolled out to the end of the solution (one sample);
   its foresight value is the rollout's mean token logprob, its advantage that value minus its
   beam's value.
4. Alignment: the rollouts are clustered (TF-IDF, k-means into `cluster_num` = 3 clusters,
   `tts.search.cluster`); a candidate's cluster weight is softmax over candidates of its
   cluster's share of the rollouts, its advantage weight softmax(advantage / T); the joint
   distribution is their mean, and the beams are drawn from it without replacement. A
   clustering that fails (fewer rollouts than clusters, no words) leaves the advantage weights.
   The drawn candidates are the new beams, their foresight values the beams' values.
5. In-depth pruning: from step `least_foresight_num` (4) on, the search stops when all rollouts
   are the same text, or (`depth_pruning`) when the largest cluster holds at least `threshold`
   (0.69) of them; as in the code, that step's draw is then not taken.

After `num_foresight` steps (8) or the stop, each beam is generated to the end (one sample),
and the answer is one of these final responses: they are clustered into 2, and within the
larger cluster one is drawn with weights softmax(advantage / T) (with fewer non-empty responses
than beams: drawn among all by advantage). Draws use the run's seeded `ctx.rng`.
Every generation (steps, rollouts, final responses) is charged as any other. Telemetry per
step: "steps" (candidates, kept, foresight logprobs, advantages, cluster labels, weights,
drawn); "stopped_at"; the tree's nodes carry "foresight" (their rollout's mean logprob).

The paper, the code read and every deviation: docs/references.md.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from random import Random
from typing import Annotated

from pydantic import Field

from tts.context import Context
from tts.options import Count, Delimiter, NonNegative, Probability, Share
from tts.search.cluster import cluster
from tts.search.tree import Node, StepSearch, StepStrategy, softmax
from tts.types import Problem, Result


def mean_logprob(node: Node) -> float:
    """The code's `cumulative_logprob / (len(token_ids) + 1e-8)`: 0 for an empty text."""
    lps = node.trace.logprobs if node.trace is not None else []
    return sum(lps) / (len(lps) + 1e-8)


def draw(rng: Random, weights: list[float], k: int) -> list[int]:
    """k indices drawn without replacement, each with probability proportional to its weight
    among those left (NumPy's `choice(replace=False, p=...)`)."""
    left, out = list(range(len(weights))), []
    for _ in range(min(k, len(weights))):
        i = rng.choices(range(len(left)), weights=[weights[j] for j in left])[0]
        out.append(left.pop(i))
    return out


class PhiDecoding(StepStrategy):
    name = "phi_decoding"
    default_verifier = None  # valued by the model's own foresight, no reward model

    def __init__(
        self,
        n: Count = 4,
        num_rollout: Count = 4,
        num_foresight: Count = 8,
        cluster_num: Count = 3,
        threshold: Probability = 0.69,
        least_foresight_num: NonNegative = 4,
        sigma_rate: Annotated[float, Field(ge=0)] = 1.0,
        softmax_temp: Annotated[float, Field(gt=0)] = 0.1,
        width_pruning: bool = True,
        depth_pruning: bool = True,
        delimiter: Delimiter | None = "\n",
        tokens_per_step: Count | None = None,
        prune_equivalent: str | None = None,
        prune_tau: Share | None = None,
    ):
        self.n, self.num_rollout, self.num_foresight = n, num_rollout, num_foresight
        self.cluster_num, self.threshold, self.least_foresight_num = cluster_num, threshold, least_foresight_num
        self.sigma_rate, self.softmax_temp = sigma_rate, softmax_temp
        self.width_pruning, self.depth_pruning = width_pruning, depth_pruning
        # max_steps: the foresight steps, then the final response
        self.set_steps(num_foresight + 1, delimiter, tokens_per_step, prune_equivalent, prune_tau)

    async def solve(self, problem: Problem, ctx: Context) -> Result:
        s = self.search(ctx, logprobs=0, scored=False)
        beams, values = [s.root] * self.n, [0.0] * self.n
        log: dict = {"steps": [], "stopped_at": None}
        foresight: dict[int, float] = {}
        for depth in range(self.num_foresight):
            if all(b.complete for b in beams) or s.stopped == "budget":
                break
            step = await self._step(s, beams, values, foresight)
            if step is None:
                break
            log["steps"].append(step["log"])
            if depth >= self.least_foresight_num and (step["same"] or (self.depth_pruning and step["converged"])):
                log["stopped_at"] = depth  # as the code: this step's draw is not taken
                break
            beams, values = step["beams"], step["values"]
        finals = await self._final(s, beams)
        texts = [f.text for f in finals]
        adv = [mean_logprob(f) - v for f, v in zip(finals, values)]
        pick = self._pick(s.ctx.rng, texts, adv)
        log["final"] = {"advantages": adv, "picked": pick}
        answer = s.answer(finals[pick]) if finals else None
        return s.result(problem, answer, finals, node_data={"foresight": foresight}, **log)

    async def _step(self, s: StepSearch, beams: list[Node], values: list[float],
                    foresight: dict[int, float]) -> dict | None:
        """One foresight step over the beams; None when the budget refused its candidates or
        rollouts."""
        done = [i for i, b in enumerate(beams) if b.complete]
        slots: dict[int, list[int]] = defaultdict(list)  # beams on one node share a request
        for i, b in enumerate(beams):
            if not b.complete:
                slots[b.id].append(i)
        groups = await s.expand([(beams[idx[0]], self.num_rollout * len(idx)) for idx in slots.values()])
        cands = [(idx[0], c) for idx, kids in zip(slots.values(), groups) for c in kids]
        if not cands:
            return None
        m = self.n - len(done)
        lp = [mean_logprob(c) for _, c in cands]
        kept = self._width(s.ctx.rng, lp, m)
        rollouts = await s.rollout([cands[j][1] for j in kept])
        if s.stopped == "budget":  # a candidate without its foresight cannot be valued: the step is not taken
            return None
        texts, flp = [], []
        for j in kept:
            node = cands[j][1]
            r = rollouts.get(node.id)
            texts.append(r.text.strip() if r is not None else "")
            flp.append(sum(r.logprobs) / (len(r.logprobs) + 1e-8) if r is not None else 0.0)
            foresight[node.id] = flp[-1]
        adv = [f - values[cands[j][0]] for j, f in zip(kept, flp)]
        labels = cluster(texts, self.cluster_num)
        aw = softmax([a / self.softmax_temp for a in adv])
        converged = False
        if labels is None:
            weights = aw
        else:
            share = {c: k / len(labels) for c, k in Counter(labels).items()}
            cw = softmax([share[c] for c in labels])
            weights = [(x + y) / 2 for x, y in zip(cw, aw)]
            converged = max(share.values()) >= self.threshold
        chosen = draw(s.ctx.rng, weights, m)
        new = [cands[kept[c]][1] for c in chosen]
        return {
            "beams": [beams[i] for i in done] + new,
            "values": [values[i] for i in done] + [flp[c] for c in chosen],
            "same": len(set(texts)) == 1,
            "converged": converged,
            "log": {"candidates": [c.id for _, c in cands], "kept": [cands[j][1].id for j in kept],
                    "foresight": flp, "advantages": adv, "clusters": labels, "weights": weights,
                    "drawn": [n.id for n in new]},
        }

    def _width(self, rng: Random, lp: list[float], m: int) -> list[int]:
        """In-width pruning ("low_sigma"): the kept candidates' indices, in order."""
        if not self.width_pruning:
            return list(range(len(lp)))
        mean = sum(lp) / len(lp)
        std = math.sqrt(sum((x - mean) ** 2 for x in lp) / len(lp))
        kept = [j for j, x in enumerate(lp) if x > mean - self.sigma_rate * std]
        if len(kept) < m:
            w = softmax([x / self.softmax_temp for x in lp])
            rest = [j for j in range(len(lp)) if j not in kept]
            kept += [rest[i] for i in draw(rng, [w[j] for j in rest], m - len(kept))]
        return sorted(kept)

    async def _final(self, s: StepSearch, beams: list[Node]) -> list[Node]:
        """Each beam generated to the end (beams on one node share a request); a finished beam
        is its own final response, as is a beam the budget left without one."""
        slots: dict[int, list[int]] = defaultdict(list)
        for i, b in enumerate(beams):
            if not b.complete:
                slots[b.id].append(i)
        finals = list(beams)
        if slots and s.stopped != "budget":
            groups = await s.expand([(beams[idx[0]], len(idx)) for idx in slots.values()], to_end=True)
            for idx, kids in zip(slots.values(), groups):
                for i, kid in zip(idx, kids):
                    finals[i] = kid
        return [f for f in finals if f.parent is not None]

    def _pick(self, rng: Random, texts: list[str], adv: list[float]) -> int:
        """The code's `select_response`: the index of the final response."""
        if not texts:
            return 0
        valid = [i for i, t in enumerate(texts) if t.strip()]
        if not valid:
            return draw(rng, softmax([-a / self.softmax_temp for a in adv]), 1)[0]
        labels = cluster([texts[i] for i in valid], 2) if len(valid) >= self.n else None
        if labels is None:
            return draw(rng, softmax([a / self.softmax_temp for a in adv]), 1)[0]
        big = 0 if labels.count(0) > labels.count(1) else 1
        members = [valid[i] for i, c in enumerate(labels) if c == big]
        return members[draw(rng, softmax([adv[i] / self.softmax_temp for i in members]), 1)[0]]
