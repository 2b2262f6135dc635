"""First-finish search (Agarwal et al., 2025, "First Finish Search: Efficient Test-Time Scaling in
Large Language Models", arXiv 2505.18149): launch n independent traces and return as soon as one
completes; shorter traces are more often right for reasoning models.

k = 1 returns the answer of the first trace to finish. k > 1 waits for the first k finished traces
and returns their majority answer (ties: the earliest finisher's group). The traces still running
are stopped at that moment (aborted at the engine) and are charged only what they generated.
A trace that fails at the backend is skipped; one the budget refuses to start makes stopped_by
"budget". Telemetry: "finish_order" (trace indices, in order of finishing), "stopped".
"""

from __future__ import annotations

from tts.context import Context
from tts.interfaces import Strategy
from tts.registry import register
from tts.types import Problem, Result
from tts.answers.voting import vote

from tts.search.streams import Streams


@register("strategy", "first_finish")
class FirstFinish(Strategy):
    name = "first_finish"
    subsamplable = True  # its traces are independent samples (a sweep may subsample a bank)

    def __init__(self, n: int = 8, k: int = 1):
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if not 1 <= k <= n:
            raise ValueError(f"k (finished traces to wait for) must be between 1 and n={n}, got {k}")
        self.n = n
        self.k = k

    async def solve(self, problem: Problem, ctx: Context) -> Result:
        pool = Streams(ctx, logprobs=None)  # selection by finishing order needs no logprobs
        pool.launch(self.n)
        done = []
        async for run in pool.ended():
            # Traces finishing in the same engine step as the k-th are done too, but not counted.
            if run.finished and len(done) < self.k:
                done.append(run)
                if len(done) == self.k:
                    pool.stop_all("first_finish")
        await pool.close()
        answer, tally = await vote([r.trace.answer for r in done])
        return Result(
            problem.id, answer, [r.trace for r in pool.runs],
            stopped_by=pool.stopped_by,
            telemetry={
                "finish_order": [r.index for r in done],
                "votes": tally,
                "stopped": sum(r.state == "stopped" for r in pool.runs),
            },
        )
