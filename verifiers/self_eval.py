"""`SelfEval`: the generator predicts whether it would do better by starting over (Manvi,
Singh and Ermon, 2024, "Adaptive Inference-Time Compute: LLMs Can Predict if They Can Do Better,
Even Mid-Generation").

After the (possibly partial) response, one user turn asks the paper's fixed question, "Would
you do better if you started over? ("Yes." or "No.")", and the score is P(No) / (P(Yes) +
P(No)) at the first generated token, read from the top-k logprobs: the model's estimate that a
restart would *not* beat this response (1 - score is the predicted gain of another sample). One
token per call, so it is cheap; charged as verifier tokens and calls like any verifier.

The paper fine-tunes the model on preference data to make this prediction calibrated; here it
works with any chat model, uncalibrated (a fine-tuned model plugs in by name:
`--verifier self_eval --verifier-model DIR`). See docs/references.md.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tts.errors import TTSError
from tts.context import Context, Verifier
from tts.interfaces import Generator
from tts.types import GenRequest, Problem, Score, Trace
from verifiers.prm import yes_probability

QUESTION = 'Would you do better if you started over? ("Yes." or "No.")'


def self_eval(model: str | None = None, generator: Generator | None = None, **options: Any) -> "SelfEval":
    """Registry factory: the generator evaluates itself; with `model`, that model does."""
    if model is not None:
        from tts.backends.vllm import VLLMGenerator

        ev = SelfEval(VLLMGenerator(model), **options)
        ev._owns_generator = True
        return ev
    if generator is None:
        raise TTSError("the self_eval verifier needs the generator (or model=DIR of a fine-tuned evaluator)")
    return SelfEval(generator, **options)


class SelfEval(Verifier):
    name = "self_eval"
    _owns_generator = False

    def __init__(self, generator: Generator, *, question: str = QUESTION, top_k: int = 20):
        if top_k < 1:
            raise TTSError("SelfEval needs top_k >= 1 to read P(Yes) and P(No)")
        self._evaluator = generator
        self.model = generator.model
        self.question = question
        self.top_k = top_k
        self.num_params = generator.num_params

    def request(self, problem: Problem, trace: Trace) -> GenRequest:
        msgs = [*problem.messages(), {"role": "assistant", "content": trace.prefix + trace.text},
                {"role": "user", "content": self.question}]
        return GenRequest(messages=msgs, n=1, max_tokens=1, temperature=0.0, logprobs=self.top_k)

    async def score(self, ctx: Context, traces: list[Trace]) -> list[Score]:
        outs = await asyncio.gather(*(ctx.judge(self._evaluator, self.request(ctx.problem, t)) for t in traces))
        scores = []
        for judged in outs:
            p_yes = yes_probability(judged[0], self.model)
            # neither word among the top-k: no prediction either way
            scores.append(Score(0.5 if p_yes is None else 1.0 - p_yes))
        return scores

    async def close(self) -> None:
        if self._owns_generator:
            await self._evaluator.close()
