"""First-finish search (Agarwal et al., 2025, "First Finish Search: Efficient Test-Time Scaling in
Large Language Models", arXiv 2505.18149): launch n independent traces and return as soon as one
completes; shorter traces are more often right for reasoning models.

"Completes" means it reached its end of sequence (finish reason "stop": an EOS or stop string),
as in the paper; a trace cut off at `max_tokens` (finish reason "length") has not finished and is
not counted. k = 1 returns the answer of the first trace to finish. k > 1 waits for the first k
finished traces and returns their majority answer (ties: the earliest finisher's group). The
traces still running are stopped at that moment (aborted at the engine) and are charged only
what they generated.

When fewer than k traces finish (the others cut at max_tokens, failed or refused), the fallback
is the majority over every trace that ran to its end, finished ones first, then the cut ones in
the order they ended (their answer, if any, is what they boxed before the cut); telemetry
"fallback" says so (None when k traces finished). A trace that fails at the backend (a cut
stream, an error after the retries) fails the problem: a failed record, which the next run
retries, never an answer from the traces that were left. One the budget refuses to start makes
stopped_by "budget". Telemetry: "finish_order" (indices of the counted finished traces, in
order), "cut" (indices of traces cut at max_tokens), "stopped", "fallback", "votes",
"stop_reasons" (index -> why). References and deviations: docs/references.md.

Reasoning models: "finished" is the end of the whole sequence (thinking closed and the answer
written), and lengths are all generated tokens, thinking included, as the paper compares
trace lengths of R1-style models; a trace that closed its thinking but was cut in its answer
has not finished.
"""

from __future__ import annotations

from tts.context import Context
from tts.strategy import Strategy
from tts.types import Problem, Result
from tts.answers.voting import vote

from tts.search.streams import Streams
from tts.options import Count


class FirstFinish(Strategy):
    name = "first_finish"
    subsamplable = True  # its traces are independent samples (a sweep may subsample a bank)

    def __init__(self, n: Count = 8, k: Count = 1):
        if k > n:
            raise ValueError(f"k (finished traces to wait for) must be between 1 and n={n}, got {k}")
        self.n = n
        self.k = k

    async def solve(self, problem: Problem, ctx: Context) -> Result:
        pool = Streams(ctx, logprobs=None)  # selection by finishing order needs no logprobs
        done, cut = [], []
        # The race stops the rest at the k-th end of sequence (computed, not streamed, on a replay)
        async for run in pool.race(self.n, self.k, "first_finish"):
            if not run.finished:
                continue
            if run.trace.finish_reason == "length":  # cut off at max_tokens: not an end of sequence
                cut.append(run)
            elif len(done) < self.k:  # others finishing in the same engine step are not counted
                done.append(run)
        await pool.close()
        fallback = None
        voters = done
        if len(done) < self.k:
            voters = done + cut
            fallback = (f"only {len(done)} of k={self.k} traces reached their end; majority over "
                        f"those and the {len(cut)} cut at max_tokens")
        answer, tally = await vote([r.trace.answer for r in voters])
        return Result(
            problem.id, answer, [r.trace for r in pool.runs],
            stopped_by=pool.stopped_by,
            telemetry={
                "finish_order": [r.index for r in done],
                "cut": [r.index for r in cut],
                "votes": tally,
                "stopped": sum(r.state == "stopped" for r in pool.runs),
                "stop_reasons": pool.stop_reasons(),
                "fallback": fallback,
            },
        )
