"""`CodeJudge`: a plain LLM judge of a program, for comparison with the execution verifiers: the
model is shown the problem (the task's signature and docstring, or description) and the
program, asked whether the program is correct, and the score is P(Yes) / (P(Yes) + P(No)) at its
first token from the top-k logprobs (`verifiers.prm.yes_probability`; 0.5 when neither word is
among them), as `llm_judge` reads a step's verdict and `self_eval` a restart's. Nothing runs.
One token per program; each call goes through `Context.judge` (verifier tokens at the judge's
size).
"""

from __future__ import annotations

import asyncio
from typing import Any

from tts.context import Context, Verifier
from tts.errors import TTSError
from tts.interfaces import Generator
from tts.types import GenRequest, Score, Trace

from tasks.code import code_task
from verifiers.codet import writer_of
from verifiers.prm import yes_probability

PROMPT = ("Here is a programming problem and a candidate solution.\n\nProblem:\n```python\n{spec}```\n\n"
          "Candidate solution:\n```python\n{program}\n```\n\nIs the candidate solution correct? Answer Yes or No.")


def code_judge(model: str | None = None, generator: Generator | None = None, **options: Any) -> "CodeJudge":
    """Registry factory: the generator judges (or `model`, in process)."""
    return CodeJudge(writer_of(model, generator, "code_judge"), **options)


class CodeJudge(Verifier):
    name = "code_judge"

    def __init__(self, generator: Generator, *, prompt: str = PROMPT, top_k: int = 20):
        if top_k < 1:
            raise TTSError("code_judge needs top_k >= 1 to read P(Yes)")
        self._judge = generator
        self.model = generator.model
        self.prompt = prompt
        self.top_k = top_k
        self.num_params = generator.num_params

    async def score(self, ctx: Context, traces: list[Trace]) -> list[Score]:
        task = code_task(ctx.problem)
        spec = task.spec(ctx.problem)
        distinct = list(dict.fromkeys(t.answer for t in traces if t.answer is not None))

        async def judge(answer: str) -> float:
            program = task.program(ctx.problem, answer).strip()
            req = GenRequest(messages=[{"role": "user", "content": self.prompt.format(spec=spec, program=program)}],
                             n=1, max_tokens=1, temperature=0.0, logprobs=self.top_k)
            p = yes_probability((await ctx.judge(self._judge, req))[0], self.model)
            return 0.5 if p is None else p

        p_yes = dict(zip(distinct, await asyncio.gather(*(judge(a) for a in distinct))))
        return [Score(0.0 if t.answer is None else p_yes[t.answer]) for t in traces]
