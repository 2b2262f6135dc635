"""`VisibleTests`: a program's score is the share of the prompt's own examples it passes, run in
the sandbox (HumanEval's docstring examples as asserts, MBPP's shown test: the task's
`visible_tests`); never the hidden tests, which only grading runs.

Each distinct program of a scoring call runs once, all its tests in one sandbox run, charged to
the run as execution seconds (`Context.execute`). A program that does not load scores 0; on a
problem that shows no example, a program that loads scores 1 (nothing tells them apart).
"""

from __future__ import annotations

from tts.context import Context, Verifier
from tts.types import Score, Trace

from tasks.code import code_task


class VisibleTests(Verifier):
    name = "visible_tests"

    async def score(self, ctx: Context, traces: list[Trace]) -> list[Score]:
        task = code_task(ctx.problem)
        outcomes = await task.check_all(ctx, [t.answer for t in traces], task.visible_tests(ctx.problem))
        return [Score(0.0 if o is None else o.pass_rate) for o in outcomes]
