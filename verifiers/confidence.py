"""`Confidence`: scores a trace from the generator's own token log-probabilities, so Best-of-N
and weighted voting run without a reward model. Costs no verifier tokens."""

from __future__ import annotations

import math

from tts.errors import TTSError
from tts.interfaces import Verifier
from tts.registry import register
from tts.types import Problem, Score, Trace

METHODS = ("probability", "self_certainty", "token_confidence")


@register("verifier", "confidence")
class Confidence(Verifier):
    """Higher is more confident; every method's value is >= 0 so it can weight a vote.

    - probability: exp(mean log-probability of the sampled tokens), the geometric-mean token
      probability, in (0, 1].
    - self_certainty (Kang et al., 2025): mean over tokens of KL(uniform || p) over the top-k
      distribution renormalised, i.e. -log k - mean_j log p_j.
    - token_confidence (DeepConf): mean over tokens of -mean_j log p_j over the top-k.
    """

    name = "confidence"

    def __init__(self, method: str = "probability", top_k: int = 5):
        if method not in METHODS:
            raise TTSError(f"unknown confidence method '{method}'; valid: {', '.join(METHODS)}")
        if top_k < 1 and method != "probability":
            raise TTSError(f"confidence method '{method}' needs top_k >= 1")
        self.method = method
        self.top_k = top_k
        self.logprobs = 0 if method == "probability" else top_k

    async def score(self, problem: Problem, traces: list[Trace]) -> list[Score]:
        return [Score(self._value(t)) for t in traces]

    def _value(self, t: Trace) -> float:
        if t.num_tokens == 0:
            return 0.0
        if self.method == "probability":
            if not t.logprobs:
                raise TTSError("Confidence needs per-token logprobs; generate with logprobs=0 or more")
            return math.exp(sum(t.logprobs) / len(t.logprobs))
        if not t.top_logprobs:
            raise TTSError(f"Confidence('{self.method}') needs top-{self.top_k} logprobs; generate with logprobs={self.top_k}")
        per_token = []
        for row in t.top_logprobs:
            if self.method == "token_confidence":
                per_token.append(-sum(row) / len(row))
            else:
                log_z = math.log(sum(math.exp(lp) for lp in row))
                per_token.append(-math.log(len(row)) - sum(lp - log_z for lp in row) / len(row))
        return sum(per_token) / len(per_token)
