"""DeepPrune (Tu et al., 2025, "DeepPrune: Parallel Scaling without Inter-trace Redundancy",
arXiv 2510.08483): sample n traces in parallel and stop the ones an equivalence judge says will
reach an answer another trace is already heading for.

Online greedy clustering, as the paper describes it: traces are placed one at a time, in the
order their prefixes reach the configured length. A trace is compared with the representative
(first member) of every existing cluster; if the best P(same final answer) is >= tau it joins
that cluster and is stopped (its request aborted at the engine); otherwise it opens a new
cluster, becomes its representative and runs to the end. The answer is a vote over clusters:
each representative's answer counts with its cluster's size ("cluster_majority", the paper's
majority weighted by cluster size; equivalent answers of different clusters add up, grouped by
math equivalence as everywhere here), or the representative of the largest cluster wins
("largest_cluster").

The judge (`judge`): "model" by default, the paper's method: a judge model reads the two
prefixes and P = P(yes) / (P(yes) + P(no)) of its one-token verdict (verifiers/equivalence.py
`ModelJudge`). `judge_model` names the judge model to start (the paper's is
THU-KEG/DeepPrune-Judge-4B; give its training template as `judge_prompt`); without one the
context's own generator judges zero-shot with the documented `ZERO_SHOT_PROMPT` (as the paper's
zero-shot Qwen3-4B-Instruct baseline). "embedding" is the paper's SentenceBERT baseline; "probe"
(answer probing, our variant) gives P in {0, 1}, so `tau` has no effect with it.

Defaults: tau 0.5 (P(yes) >= P(no)); the joining rule takes the best-scoring cluster (not the
first one above tau), so all representatives are judged, concurrently; no cap on clusters or
judge calls (a trace costs at most one judge call per existing cluster). The prefix is cut at
`prefix_tokens` generated tokens (500). The released judge's tag ("sft_25") points to the
paper's other truncation, the first 25 "reasoning words"; that unit is not implemented (see
docs/references.md for this and every other known deviation). A
trace that finishes before reaching the prefix length is placed with its whole text (it cannot
be pruned any more, but it counts in a cluster, or represents one).

No verdict is never a reason to prune: a trace for which a judge answers neither yes nor no
(`NoVerdict`) continues, opens its own cluster and is counted in `telemetry["judge_failures"]`
(a call the budget refuses, likewise, in `telemetry["judge_refused"]`). A judge that fails (a
backend error) fails the problem: the traces are stopped and the error raised, so the record is
a failed one the next run retries, never an answer the missing verdicts would have changed.
Streams never wait for the judge: placement runs in its own task while every trace keeps
generating, so a pruned trace is charged the tokens it produced until the verdict stopped it.

A replay has no clock: replayed traces run to their end while a judge (an embedding, a probe on a
live engine) is still thinking, so nothing would ever be pruned. `wait=True` (replay only) makes a
trace pause at its prefix until its own verdict, modelling a judge that costs no generation time,
as on a real engine where judging a prefix takes far less than generating the rest.

Telemetry: `clusters` (member trace indices, representative first), `pruned`, `judge_calls`,
`judge_failures`, `judge_refused`, `votes`, `stop_reasons` (index -> why: "pruned", "budget");
the details (`Result.details["join_p"]`): each placed trace's best P(same answer) against the
representatives before it.

Reasoning models: the prefix is the first `prefix_tokens` generated tokens, so on a model that
thinks first it is a thinking prefix (the paper's setting: its judge reads truncated reasoning
traces of R1-style models); no `</think>` handling is needed or done. A trace that closed its
thinking before the prefix length is compared on thinking and the answer start, as written.
"""

from __future__ import annotations

from typing import Literal


import asyncio
from typing import Any

from tts.context import Context
from tts.errors import BudgetExceeded, TTSError
from tts.options import Count, Probability
from tts.strategy import Strategy
from tts.types import Problem, Result
from verifiers.equivalence import EquivalenceJudge, NoVerdict, Prefix, make_judge
from tts.answers.voting import vote

from tts.search.streams import Run, Streams

Vote = Literal["cluster_majority", "largest_cluster"]


class DeepPrune(Strategy):
    name = "deepprune"

    def __init__(
        self,
        n: Count = 8,
        judge: str | EquivalenceJudge = "model",
        tau: Probability = 0.5,
        prefix_tokens: Count = 500,
        vote: Vote = "cluster_majority",
        judge_model: str | None = None,
        wait: bool = False,
        judge_prompt: str | None = None,
    ):
        if judge_model is not None and judge not in ("model", "embedding"):
            raise ValueError("judge_model is for judge=model or judge=embedding")
        if judge_prompt is not None and judge != "model":
            raise ValueError("judge_prompt is for judge=model (the judge model's prompt template)")
        self.n, self.tau, self.prefix_tokens, self.vote, self.wait = n, tau, prefix_tokens, vote, wait
        options = {"model": judge_model, "prompt": judge_prompt}
        self._judge = make_judge(judge, **{k: v for k, v in options.items() if v is not None})

    def config(self) -> dict[str, Any]:
        return {"n": self.n, "tau": self.tau, "prefix_tokens": self.prefix_tokens, "vote": self.vote,
                "wait": self.wait, "judge": self._judge.config()}

    async def close(self) -> None:
        await self._judge.close()

    async def solve(self, problem: Problem, ctx: Context) -> Result:
        if self.wait and ctx.generator.realtime:
            raise TTSError("DeepPrune(wait=True) is for replayed traces (a live engine keeps generating while a "
                           "trace waits for its verdict); use wait=False with a live generator")
        clustering = _Clustering(self._judge, self.tau, ctx)
        placing: list[asyncio.Task] = []

        def place(run: Run) -> asyncio.Task:
            run.data["prefix"] = Prefix.of(run.trace)
            placing.append(asyncio.create_task(clustering.place(run, pool)))
            return placing[-1]

        def watch(run: Run) -> Any:
            if "prefix" not in run.data and run.trace.num_tokens >= self.prefix_tokens:
                task = place(run)  # judged in its own task: every other stream goes on
                # wait: this stream too pauses for its verdict (shielded: a prune cancels the
                # stream, which must not cancel the placement that pruned it).
                return asyncio.shield(task) if self.wait else None
            return None

        pool = Streams(ctx, watch=watch, logprobs=None)  # judging needs no logprobs
        pool.launch(self.n)
        try:
            async for run in pool.ended():
                if run.finished and "prefix" not in run.data:
                    place(run)  # finished short of the prefix length: it still counts
            await asyncio.gather(*placing)
        finally:
            for t in placing:
                t.cancel()
            await pool.close()

        answer, tally = await self._vote(clustering.clusters)
        stopped = pool.stopped_by
        return Result(
            problem.id, answer, [r.trace for r in pool.runs], stopped_by=stopped,
            telemetry={
                "clusters": [[r.index for r in c] for c in clustering.clusters],
                "pruned": sum(r.reason == "pruned" for r in pool.runs),
                "judge_calls": clustering.calls,
                "judge_failures": clustering.failures,
                "judge_refused": clustering.refused,
                "votes": tally,
                "stop_reasons": pool.stop_reasons(),
            },
            details={"join_p": clustering.join_p},
        )

    async def _vote(self, clusters: list[list[Run]]) -> tuple[str | None, dict[str, float]]:
        answers = [c[0].trace.answer for c in clusters]
        sizes = [float(len(c)) for c in clusters]
        if self.vote == "cluster_majority":
            return await vote(answers, sizes)
        tally = {a: s for a, s in zip(answers, sizes) if a is not None}
        # largest_cluster: the biggest cluster whose representative has an answer (ties: the older)
        best = max((i for i, a in enumerate(answers) if a is not None), key=lambda i: (sizes[i], -i), default=None)
        return (None if best is None else answers[best]), tally


class _Clustering:
    """The online greedy clustering: one placement at a time, in arrival order (asyncio.Lock is
    FIFO), so each trace sees every cluster opened before it."""

    def __init__(self, judge: EquivalenceJudge, tau: float, ctx: Context):
        self.judge, self.tau, self.ctx = judge, tau, ctx
        self.clusters: list[list[Run]] = []
        self.calls = self.failures = self.refused = 0
        self.join_p: dict[int, float] = {}  # run index -> its best verdict (placed with others before it)
        self._lock = asyncio.Lock()

    async def place(self, run: Run, pool: Streams) -> None:
        async with self._lock:
            reps = [c[0].data["prefix"] for c in self.clusters]
            mine = run.data["prefix"]
            self.calls += len(reps)
            verdicts = await asyncio.gather(
                *(self.judge.probability(self.ctx, mine, rep) for rep in reps), return_exceptions=True
            )
            errors = [v for v in verdicts if isinstance(v, BaseException)]
            fault = next((e for e in errors if not isinstance(e, (BudgetExceeded, NoVerdict))), None)
            if fault is not None:
                pool.stop_all("judge failed")
                raise fault
            self.refused += sum(isinstance(e, BudgetExceeded) for e in errors)
            self.failures += sum(isinstance(e, NoVerdict) for e in errors)
            best = None if errors else max(range(len(reps)), key=lambda i: verdicts[i], default=None)
            if best is not None:
                self.join_p[run.index] = float(verdicts[best])
            if best is None or verdicts[best] < self.tau:
                self.clusters.append([run])  # a representative: it runs to its end
                return
            self.clusters[best].append(run)
            pool.stop(run, "pruned")
