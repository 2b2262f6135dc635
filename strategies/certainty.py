"""Certainty probing (Dynasor-CoT: Fu et al., 2025, "Efficiently Serving LLM Reasoning Programs
with Certaindex"; reference code hao-ai-lab/Dynasor, dynasor/cot.py).

Each of n traces (n = 1 in the reference; n > 1 votes over them) is probed every `chunk` tokens,
the first probe at 0 tokens (the reference probes the prompt before the first chunk;
`probe_at_start=False` starts at `chunk`): the partial trace plus a forcing suffix that opens
`\\boxed{` is continued for `probe_tokens` tokens (see `verifiers.probe`). The trace is stopped
as soon as its last `k` probes are all non-empty and certain (no hesitation word in the probe:
`hesitation`, substring by default as the reference) and all give one answer, compared by
mathematical equivalence (`compare="math"`, the reference's math_equal grouping, here with
math-verify; "exact" compares normalised strings). The last probe's answer is the trace's answer.
A trace that finishes first answers with its own `\\boxed{}`. The reference's effort levels are
(k, chunk) = (8, 64) mild, (5, 64) low, (3, 64) mid, (2, 64) high, (2, 32).

Probes run beside the trace (the trace keeps generating while its probe is answered, as in the
reference, which probes while the next chunk streams) and are charged as generator calls: their
prompt is the trace so far (mostly from the prefix cache), their completion the probe tokens.
A probe the budget refuses ends probing for that trace (it runs on); a probe that fails (a
backend fault) fails the problem, as a failed stream does: the traces are stopped and the error
raised, so the record is a failed one that the next run retries, never an answer reached without
the probes that should have stopped it. References and deviations:
docs/references.md.

Reasoning models: the probe suffix is appended to the trace as it stands, inside the thinking,
exactly as the reference (dynasor/cot.py appends "... Oh, I suddenly got the answer ..." to the
running prompt without closing the thinking; it writes "</think>" only into the final text it
returns after a certain stop). A stopped trace answers with its last probe's answer; its text is
not extended with the closing answer the reference prints.
"""

from __future__ import annotations

from typing import Literal


import asyncio

from tts.context import Context
from tts.errors import BudgetExceeded
from tts.strategy import Strategy
from tts.types import Problem, Result, Trace
from tts.options import Count
from verifiers.probe import HESITATION_RULES, Probe, probe_answer
from tts.answers.mathverify import group_answers
from tts.answers.voting import vote

from tts.search.streams import Run, Streams

Compare = Literal["math", "exact"]


class CertaintyProbe(Strategy):
    name = "certainty_probe"

    def __init__(
        self,
        n: Count = 1,
        chunk: Count = 64,
        k: Count = 3,
        probe_tokens: Count = 20,
        hesitation: Literal[HESITATION_RULES] = "substring",  # type: ignore[valid-type]
        compare: Compare = "math",
        probe_at_start: bool = True,
    ):
        self.n, self.chunk, self.k, self.probe_tokens = n, chunk, k, probe_tokens
        self.hesitation, self.compare, self.probe_at_start = hesitation, compare, probe_at_start

    async def agree(self, last: list[Probe]) -> bool:
        """One answer among the last k (certain, non-empty) probes."""
        answers = [q.answer for q in last]
        if self.compare == "exact":
            return len(set(answers)) == 1
        return len(set(await group_answers(answers))) == 1

    async def solve(self, problem: Problem, ctx: Context) -> Result:
        pending: set[asyncio.Task] = set()
        faults: list[BaseException] = []

        async def probe(run: Run, i: int, snapshot: Trace) -> None:
            try:
                p = await probe_answer(ctx, snapshot, max_tokens=self.probe_tokens, hesitation=self.hesitation)
            except BudgetExceeded:
                run.data["no_budget"] = True
                return
            except Exception as e:  # noqa: BLE001 - raised below, once every probe has ended
                faults.append(e)
                pool.stop_all("probe failed")
                return
            probes: dict[int, Probe] = run.data.setdefault("probes", {})
            probes[i] = p
            last = [probes.get(j) for j in range(i - self.k + 1, i + 1)]
            if i + 1 >= self.k and all(q is not None and q.certain for q in last) and await self.agree(last):
                if run.running:
                    run.data["answer"] = p.answer
                    pool.stop(run, "certain")

        def watch(run: Run) -> None:
            d, t = run.data, run.trace
            if d.get("no_budget"):
                return
            nxt = d.setdefault("next", 0 if self.probe_at_start else self.chunk)
            if t.num_tokens >= nxt:
                # Probes are numbered in order; a delta that crosses several chunk boundaries
                # (a slow consumer) probes the latest text once. The probe at 0 tokens is the
                # prompt alone (launched with the first snapshot).
                i = d["probed"] = d.get("probed", 0) + 1
                snap = Trace("", 0, prefix=t.prefix) if nxt == 0 else Trace(t.text, t.num_tokens, prefix=t.prefix)
                d["next"] = self.chunk if nxt == 0 else (t.num_tokens // self.chunk + 1) * self.chunk
                task = asyncio.create_task(probe(run, i - 1, snap))
                pending.add(task)
                task.add_done_callback(pending.discard)

        pool = Streams(ctx, watch=watch, logprobs=None)
        pool.launch(self.n)
        async for _ in pool.ended():
            pass
        while pending:  # let probes in flight finish: they are charged, so they are not cancelled
            await asyncio.gather(*pending, return_exceptions=True)
        await pool.close()
        if faults:
            raise faults[0]
        for r in pool.runs:
            if r.state == "stopped" and "answer" in r.data:
                r.trace.answer = r.data["answer"]
        answers = [r.trace.answer for r in pool.runs if r.finished or "answer" in r.data]
        answer, tally = await vote(answers)
        return Result(
            problem.id, answer, [r.trace for r in pool.runs],
            stopped_by=pool.stopped_by,
            telemetry={
                "votes": tally,
                "certain_stops": sum("answer" in r.data for r in pool.runs),
                "probes": sum(r.data.get("probed", 0) for r in pool.runs),
                "stopped_at": [r.trace.num_tokens for r in pool.runs],
                "stop_reasons": pool.stop_reasons(),
            },
        )
