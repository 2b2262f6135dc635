"""Voting over extracted answers, grouping answers that are mathematically equal
("1/2", "\\frac{1}{2}" and "0.5" are one answer), not just equal strings."""

from __future__ import annotations

import math
from collections.abc import Sequence

from tts.errors import TTSError
from tts.answers.mathverify import group_answers


async def vote(
    answers: Sequence[str | None], weights: Sequence[float] | None = None
) -> tuple[str | None, dict[str, float]]:
    """The answer whose equivalence group has the largest total weight (1 per answer when
    `weights` is None: plain majority), and the tally per group representative.

    Ties go to the group seen first; traces without an answer never vote.
    """
    if weights is not None and any(w < 0 for w in weights):
        raise TTSError(f"weighted voting needs non-negative weights, got {min(weights)}: use a probability-like "
                       "score (e.g. a PRM's P(correct), Confidence), not a raw reward-model logit")
    groups = await group_answers(list(answers))
    tally: dict[int, float] = {}
    rep: dict[int, str] = {}
    for i, (a, g) in enumerate(zip(answers, groups)):
        if g is None or a is None:
            continue
        rep.setdefault(g, a)
        tally[g] = tally.get(g, 0.0) + (1.0 if weights is None else weights[i])
    if not tally:
        return None, {}
    best = max(tally, key=lambda g: (tally[g], -g))  # group ids grow in order of first appearance
    return rep[best], {rep[g]: tally[g] for g in tally}


def beta_stop_probability(v1: int, v2: int) -> float:
    """P(p1 > p2) for p1 ~ Beta(v1 + 1, v2 + 1): the chance the leading answer (v1 votes) is
    truly ahead of the runner-up (v2 votes); adaptive-consistency's Beta stopping criterion."""
    n = v1 + v2 + 1
    return sum(math.comb(n, j) for j in range(v1 + 1)) / 2**n
