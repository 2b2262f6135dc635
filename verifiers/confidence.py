"""`Confidence`: scores a trace from the generator's own token log-probabilities, so Best-of-N
and weighted voting run without a reward model. Costs no verifier tokens."""

from __future__ import annotations

import math

from tts.errors import TTSError
from tts.context import Context, Verifier
from tts.types import Score, Trace

METHODS = ("probability", "self_certainty", "token_confidence")


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

    async def score(self, ctx: Context, traces: list[Trace]) -> list[Score]:
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


# -- DeepConf's confidence measures (Fu et al., 2025, "Deep Think with Confidence"; reference code
# facebookresearch/deepconf, helper.py and analysis_offline.py) ---------------------------------
MEASURES = ("lowest_group", "bottom_window", "tail", "mean")


def token_confidences(t: Trace, top_k: int | None = None) -> list[float]:
    """C_i = -mean_j log P_i(j) over the top-k tokens at each position: high when the model's
    distribution is peaked. (The reference also averages in the sampled token when vLLM adds it
    outside the top-k; our rows hold the true top-k only.)"""
    if not t.top_logprobs and t.num_tokens:
        raise TTSError("DeepConf needs the top-k logprobs of every token; generate with logprobs=k >= 1 "
                       "(a bank recorded with --logprobs k, or a backend that returns top logprobs)")
    return [token_confidence(row, top_k) for row in t.top_logprobs]


def token_confidence(row: list[float], top_k: int | None = None) -> float:
    """One position's confidence from its top-k logprobs (0 for an empty row)."""
    row = row[:top_k]
    return -sum(row) / len(row) if row else 0.0


def window_means(confs: list[float], window: int) -> list[float]:
    """Group confidences: the mean of every full sliding window of `window` tokens; a trace shorter
    than one window is one group (its mean), as the reference's `compute_least_grouped`."""
    if len(confs) < window:
        return [sum(confs) / len(confs)] if confs else [0.0]
    total = sum(confs[:window])
    means = [total / window]
    for i in range(window, len(confs)):
        total += confs[i] - confs[i - window]
        means.append(total / window)
    return means


def trace_confidence(confs: list[float], measure: str = "lowest_group", window: int = 2048) -> float:
    """One trace's confidence: lowest_group (min of the group confidences, what online DeepConf
    thresholds), bottom_window (mean of the lowest 10% of groups), tail (mean of the last
    `window` tokens) or mean (of all tokens)."""
    if not confs:
        return 0.0
    if measure == "mean":
        return sum(confs) / len(confs)
    if measure == "tail":
        tail = confs[-window:]
        return sum(tail) / len(tail)
    groups = window_means(confs, window)
    if measure == "lowest_group":
        return min(groups)
    if measure == "bottom_window":
        k = max(1, int(len(groups) * 0.1))
        return sum(sorted(groups)[:k]) / k
    raise TTSError(f"unknown confidence measure '{measure}'; valid: {', '.join(MEASURES)}")
