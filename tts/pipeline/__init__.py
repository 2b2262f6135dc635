"""Composed inference: a pipeline of operators over one problem's candidate pool.

    Pipeline([Generate(SelfConsistency(8)), Critique(), Fuse(top=3), Verify("llm_judge")])

A pipeline is one strategy (`strategies.pipeline.Pipeline`, registered as `pipeline`; the
presets mixture-of-agents, GenSelect, Archon, Self-Refine and Review-Refine-Repeat are
pipelines with their own parameters): its configuration is the list of stages, plain JSON that
a sweep file writes and the run spec hashes. The operators are in `operators`, their prompts in
`prompts`; `run` below runs the stages in order and answers from the last pool.

Cost: every operator calls the model through the context, so the run's usage is exactly the
sum of its stages' (each stage's share is in `telemetry["stages"]`), and a budget holds across
them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from tts.answers.voting import vote
from tts.context import Context
from tts.pipeline.operators import (OPERATORS, Calls, Candidate, Critique, Fuse, Generate, Op, Rank, Refine, Revise,
                                    Stage, Stages, Verify, Vote, Work, describe, together)
from tts.types import Problem, Result, Usage, stopped_by

AnswerRule = Literal["vote", "first"]
_USAGE = ("prompt_tokens", "cached_tokens", "completion_tokens", "verifier_tokens", "verifier_cached_tokens",
          "generator_calls", "verifier_calls")


async def run(stages: Sequence[Op], problem: Problem, ctx: Context, answer: AnswerRule = "vote") -> Result:
    """Run `stages` in order on `problem`; the answer is the majority of the last pool's answers
    (`answer="vote"`, ties to the earlier candidate) or its first candidate's ("first": the best,
    after a rank or verify stage). A stage the budget stopped is the last one run.

    Telemetry: `stages` (per stage: its operator, the pool size after it and the usage it
    charged), `pipeline` (a one-line description) and what the operators count."""
    work = Work(ctx)
    per_stage = []
    for stage in stages:
        before = Usage() + ctx.usage
        await stage.run(work)
        spent = ctx.usage - before
        per_stage.append({"op": stage.op, "candidates": len(work.pool),
                          **{k: getattr(spent, k) for k in _USAGE}})
        if work.budget:
            break
    if answer == "first" or not work.pool:
        chosen = work.pool[0].answer if work.pool else None
    else:
        chosen, _ = await vote([c.answer for c in work.pool])
    telemetry = {"pipeline": describe(stages), "stages": per_stage, **work.telemetry}
    return Result(problem.id, chosen, list(work.traces), stopped_by=stopped_by(budget=work.budget),
                  telemetry=telemetry)


async def close(stages: Sequence[Op]) -> None:
    for s in stages:
        await s.close()


__all__ = ["OPERATORS", "AnswerRule", "Calls", "Candidate", "Critique", "Fuse", "Generate", "Op", "Rank", "Refine",
           "Revise", "Stage", "Stages", "Verify", "Vote", "Work", "close", "describe", "run", "together"]
