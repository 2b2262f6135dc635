"""Review, Refine, Repeat: Iterative Agent Decoding (Chakraborty et al. 2025, "Review, Refine,
Repeat: Understanding Iterative Decoding of AI Agents with Dynamic Evaluation and Selection",
arXiv 2504.01931). Each iteration a verifier scores the candidates (review), the best- and
worst-scored ones with their scores are fed back to the model, which proposes `n` new ones
(refine), and the best so far is kept beside them (dynamic selection), `iterations` times;
the answer is the best-scored candidate. The verifier is the run's (`--verifier`; default
`self_eval`: the generator's own P(no better restart), one token per candidate, so it runs
with no reward model) or `verifier=NAME`. No released code was found: the feedback prompt
(`tts.pipeline.prompts.REVISE`) follows the paper's description, see docs/references.md.
"""

from __future__ import annotations

from strategies.pipeline import Pipeline
from tts.options import Count
from tts.pipeline import Generate, Revise, Verify


class ReviewRefineRepeat(Pipeline):
    name = "review_refine_repeat"
    default_verifier = "self_eval"

    def __init__(self, n: Count = 4, iterations: Count = 3, verifier: str | None = None):
        self.n, self.iterations, self.verifier = n, iterations, verifier
        stages: list = [Generate(strategy="self_consistency", n=n), Verify(verifier=verifier)]
        for _ in range(iterations - 1):
            stages += [Revise(n=n), Verify(verifier=verifier)]
        self._stages = stages
        self.answer = "first"
