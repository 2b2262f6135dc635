"""`RecordedScore`: the scores a bank recorded, for strategies replayed from it.

`tts.backends.replay.ReplayGenerator` serves each trace with the bank's outcome score in `trace.score`
(and per-step PRM scores in `trace.steps`); this verifier hands them back as the trace's Score,
so Best-of-N, weighted voting and the like select by a reward model at no cost. Costs no
verifier tokens (the scoring was paid for when the bank was recorded).
"""

from __future__ import annotations

from tts.errors import TTSError
from tts.context import Context, Verifier
from tts.types import Score, Trace

SOURCES = ("outcome", "prm_last", "prm_min", "prm_mean")


class RecordedScore(Verifier):
    """`source`: "outcome" (the recorded outcome score), or an aggregate of the recorded
    per-step PRM scores ("prm_last", "prm_min", "prm_mean")."""

    name = "recorded"

    def __init__(self, source: str = "outcome"):
        if source not in SOURCES:
            raise TTSError(f"unknown recorded score source '{source}'; valid: {', '.join(SOURCES)}")
        self.source = source

    async def score(self, ctx: Context, traces: list[Trace]) -> list[Score]:
        return [self._one(t) for t in traces]

    def _one(self, t: Trace) -> Score:
        steps = tuple(s.score for s in t.steps if s.score is not None)
        if self.source == "outcome":
            if t.score is None and t.finish_reason == "length":
                # A recorded sample cut at a shorter max_tokens was never scored as cut: it
                # ranks lowest (0, the floor of the probability-like outcome rewards banks hold).
                return Score(0.0, steps)
            if t.score is None:
                raise TTSError("RecordedScore needs traces replayed from a bank with outcome scores "
                               "(ReplayGenerator(..., prefill_scores=True)); this trace has none (a sample cut at the request's "
                               "max_tokens has none: ask for max_tokens >= the bank's sampling['max_tokens'])")
            return Score(float(t.score), steps)
        if not steps:
            raise TTSError(f"RecordedScore('{self.source}') needs a bank with per-step PRM scores; this trace has none")
        value = {"prm_last": steps[-1], "prm_min": min(steps), "prm_mean": sum(steps) / len(steps)}[self.source]
        return Score(value, steps)
