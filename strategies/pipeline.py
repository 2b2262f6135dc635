"""A composed pipeline as one strategy: `Pipeline([Generate(SelfConsistency(8)), Critique(),
Fuse(top=3), Verify("llm_judge")])` in Python, `--param stages='[{op: generate, n: 8}, {op:
critique}, {op: fuse, top: 3}]'` on the command line, a list under `params: {stages: ...}` (or a
grid axis `stages:`) in a sweep file. The operators and their prompts are `tts.pipeline`'s; the
stages are validated by their pydantic models and hashed into the run spec as plain JSON.

The presets (`mixture_of_agents`, `genselect`, `archon`, `self_refine`) are subclasses whose parameters build the stages (`stages()`), so a
sweep varies a layer by one scalar (`grid: {layers: [2, 3]}`).
"""

from __future__ import annotations

from tts.context import Context
from tts.options import Count
from tts.pipeline import AnswerRule, Critique, Fuse, Generate, Op, Stages, close, run
from tts.strategy import Strategy
from tts.types import Problem, Result

# The three-operator example: n samples, each critiqued, the first 3 fused.
DEFAULT_STAGES = [Generate(strategy="self_consistency"), Critique(), Fuse(top=3)]


class Pipeline(Strategy):
    """The stages, in order, over one candidate pool; the answer by `answer` (see
    `tts.pipeline.run`). `n` (`-n`, a sweep's n axis) is the size of every generate stage that
    does not set its own. A preset subclass has its own parameters and sets `_stages` and
    `answer` from them in its constructor."""

    name = "pipeline"

    def __init__(self, stages: Stages = DEFAULT_STAGES, n: Count = 8, answer: AnswerRule = "vote"):
        checked = type(self).validate({"stages": stages, "n": n, "answer": answer}).stages
        self._stages: list[Op] = [sized(s, n) for s in checked]
        self.n, self.answer = n, answer

    def stages(self) -> list[Op]:
        return self._stages

    async def solve(self, problem: Problem, ctx: Context) -> Result:
        return await run(self._stages, problem, ctx, self.answer)

    async def close(self) -> None:
        await close(self._stages)


def sized(stage: Op, n: int) -> Op:
    """A generate stage without its own size gets the pipeline's."""
    if isinstance(stage, Generate) and stage.n is None:
        return Generate(**{**stage.model_dump(), "n": n})
    return stage
