"""Self-debugging: run the program on the examples the prompt shows, feed the failures back, and
let the model fix it, for up to `rounds` rounds (Chen et al., 2023, "Teaching Large Language
Models to Self-Debug", arXiv 2304.05128, its unit-test feedback; with `reflect`, Reflexion's
programming loop: Shinn et al., 2023, arXiv 2303.11366, code read: noahshinn/reflexion,
programming_runs/reflexion.py, generators/py_generate.py, executors/py_executor.py).

`n` independent chains start from `n` samples; each runs its program against the task's visible
tests in the sandbox (`CodeTask.check`: charged as execution seconds), stops when they all pass
(or when the problem shows none: nothing to debug against), and otherwise asks for a fix with
the failures as Reflexion's executor formats them ("Tests passed: ... Tests failed: assert
f(x) == y # output: <what f(x) returned>"). `reflect`: first a few sentences on why the program
is wrong (Reflexion's self-reflection), then the fix. Fixes are greedy (`repair_temperature`
0, as both papers decode their repairs). With n > 1, the chains' final programs are scored by the
verifier and the best-scored answers (first of equals): best-of-n over self-debugged programs.

In a sweep over n, the first samples come from one generation at the largest n (subsampled, as
Best-of-N's) and every repair is generated live.

Deviations: the tests fed back are the prompt's own examples (Self-Debugging on MBPP shows the
one given test; Reflexion on HumanEval writes its own internal tests with the model); the
feedback is a user turn after the program in one conversation (Reflexion restates the previous
implementation in a fresh prompt).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import Field

from tts.context import Context
from tts.errors import BudgetExceeded
from tts.options import Count, NonNegative
from tts.strategy import Strategy
from tts.types import Problem, Result, Trace, stopped_by

from tasks.code import CodeTask, Outcome, code_task

Temperature = Annotated[float, Field(ge=0, allow_inf_nan=False)]

FIX = "Fix the program. Write the whole corrected program in a ```python code block."
REFLECT = ("Explain in a few sentences why the program is wrong, as the test results show. Do not write any code; "
           "this is a hint for your next attempt.")
NO_CODE = "Your answer has no Python code block, so it could not be tested."


def feedback(tests: list[str], outcome: Outcome | None) -> str:
    """What the model is told about a failed run: Reflexion's test report, or why nothing ran."""
    if outcome is None:
        return NO_CODE
    if not outcome.loaded:
        return f"Your program was run and {outcome.failure or 'failed before the tests ran'}."
    passed = [t for t, r in zip(tests, outcome.tests) if r.get("passed")]
    failed = []
    for t, r in zip(tests, outcome.tests):
        if not r.get("passed"):
            what = f"output: {r['got']}" if "got" in r else f"error: {r.get('error', 'failed')}"
            failed.append(f"{t} # {what}")
    return ("Your program was run on the examples from the problem.\nTests passed:\n" + ("\n".join(passed) or "(none)")
            + "\n\nTests failed:\n" + "\n".join(failed))


@dataclass
class Chain:
    """One chain's attempts: the last trace, and per attempt its program and what it was told."""

    trace: Trace
    attempts: list[dict[str, Any]] = field(default_factory=list)
    budget: bool = False
    passed: bool = False


class SelfDebug(Strategy):
    name = "self_debug"
    default_verifier = "visible_tests"  # selects among the n chains' final programs
    # Its n first samples are independent: a sweep draws them from one bank at the largest n, and
    # the repair turns, which no bank holds, are generated live (ReplayGenerator's continuation).
    subsamplable = True

    def __init__(self, n: Count = 1, rounds: NonNegative = 2, reflect: bool = False,
                 repair_temperature: Temperature = 0.0):
        self.n = n
        self.rounds = rounds
        self.reflect = reflect
        self.repair_temperature = repair_temperature

    async def solve(self, problem: Problem, ctx: Context) -> Result:
        task = code_task(problem)
        tests = task.visible_tests(problem)
        first, stopped = await ctx.sample(self.n)
        if not first:
            return Result(problem.id, None, stopped_by=stopped)
        chains = await asyncio.gather(*(self._chain(ctx, task, tests, t) for t in first))
        finals = [c.trace for c in chains]
        budget = stopped == "budget" or any(c.budget for c in chains)
        best = 0
        if len(finals) > 1:
            try:
                scores = [s.value for s in await ctx.score(finals)]
                best = max(range(len(finals)), key=lambda i: scores[i])
            except BudgetExceeded:  # no budget to score: the first chain whose program passed its tests
                budget = True
                best = next((i for i, c in enumerate(chains) if c.passed), 0)
        telemetry = {"rounds": [len(c.attempts) - 1 for c in chains],
                     "visible_passed": sum(c.passed for c in chains), "visible_tests": len(tests)}
        return Result(problem.id, finals[best].answer, finals, stopped_by=stopped_by(budget), telemetry=telemetry,
                      details={"attempts": [c.attempts for c in chains]})

    async def _chain(self, ctx: Context, task: CodeTask, tests: list[str], trace: Trace) -> Chain:
        chain = Chain(trace)
        messages = ctx.request(1).messages
        for r in range(self.rounds + 1):
            outcome = await task.check(ctx, trace.answer, tests) if trace.answer is not None and tests else None
            chain.passed = outcome is not None and outcome.passed
            told = None if chain.passed or not tests else feedback(tests, outcome)
            chain.attempts.append({"program": trace.answer, "passed": chain.passed, "feedback": told})
            if told is None or r == self.rounds:  # passed, or nothing to test against, or out of rounds
                break
            messages = [*messages, {"role": "assistant", "content": trace.text}]
            try:
                if self.reflect:
                    asked = [*messages, {"role": "user", "content": f"{told}\n\n{REFLECT}"}]
                    hint = (await ctx.generate(ctx.request(1, messages=asked, temperature=self.repair_temperature)))[0]
                    messages = [*asked, {"role": "assistant", "content": hint.text}, {"role": "user", "content": FIX}]
                    chain.attempts[-1]["reflection"] = hint.text
                else:
                    messages = [*messages, {"role": "user", "content": f"{told}\n\n{FIX}"}]
                trace = (await ctx.generate(ctx.request(1, messages=messages, temperature=self.repair_temperature)))[0]
            except BudgetExceeded:
                chain.budget = True
                break
            chain.trace = trace
        return chain
