"""DeepConf (Fu et al., 2025, "Deep Think with Confidence", arXiv 2508.15260), following its reference
code (facebookresearch/deepconf: helper.py, deepconf-online.py, analysis_offline.py).

Confidence comes from the generator's own top-k logprobs (`verifiers.confidence`): the token
confidence C_i = -mean log-probability of the top-k tokens, group confidences the means of
sliding windows of `window` tokens (2048 in the paper), and a trace's confidence its lowest
group confidence (or, offline, another measure: bottom-10% of groups, tail, mean).

online (the reference's deepconf-online.py):
1. `warmup` traces (default min(16, n), the reference's 16) run to the end. The stopping threshold is
   `np.percentile(lowest group confidences of the warm-up, 100 * (1 - keep))`:
   keep=0.1 is DeepConf-low (the reference's CONFIDENCE_PERCENTILE = 90), keep=0.9 DeepConf-high.
2. The other n - warmup traces are generated with the threshold: a trace stops the moment the
   mean confidence of its last `window` tokens falls below it (checked once it has a full window,
   as the reference's vLLM fork does), and its tokens up to there are all it costs.
3. Vote: traces whose lowest group confidence is at least the threshold (warm-up ones included;
   a finished trace shorter than a window is judged by its mean), weighted by that confidence.
   Nothing passes: the plain majority of the finished traces answers (telemetry "fallback").
   Beyond the reference code, the paper's adaptive sampling: with `consensus` = tau, sampling
   stops (running traces are stopped) once the leading answer holds tau of the vote weight; and
   `in_flight` caps how many final traces run at once (None: all at once, as the reference),
   which lets the consensus stop save more at the price of latency.

offline: n traces, then a vote over them: "majority", "weighted" (by the measure), or
"filtered" (the top `keep` fraction by the measure, then weighted), the reference's
analysis_offline.py variants.

Telemetry: "votes", "voters", "threshold" (online: the stopping threshold; offline "filtered":
the filter's bar), "warmup_confidences", "stop_reasons" (index -> why), "failed", "fallback",
"confidences" (offline); `Result.details["confidence_curves"]`: each trace's group confidence
along its tokens (`confidence_curve`), what `tts view` draws against the threshold.

Where the reference rounds confidences to 3 decimals we do not; its token confidence also
averages in the sampled token when vLLM adds it outside the top-k, ours uses the true top-k.
References read (repository, files) and every known deviation: docs/references.md.

Reasoning models: confidence runs over every generated token, thinking and answer alike, as
the reference does (deepconf-online.py scores the whole output of DeepSeek-R1-0528-Qwen3-8B
with no `</think>` handling); a trace stopped inside its thinking has no answer part and votes
with the last answer its thinking boxed, if any (the trace's `answer_from` says "thinking").
"""

from __future__ import annotations

from typing import Literal


import numpy as np

from tts.context import Context
from tts.strategy import Strategy
from tts.types import Problem, Result, Trace
from tts.options import Count, Share
from verifiers.confidence import MEASURES, token_confidence, token_confidences, trace_confidence, window_means
from tts.answers.voting import vote

from tts.search.streams import Run, Streams

Mode = Literal["online", "offline"]
Vote = Literal["majority", "weighted", "filtered"]


def threshold(lowest_group_confs: list[float], keep: float) -> float:
    """The online stopping threshold from the warm-up traces' lowest group confidences."""
    return float(np.percentile(lowest_group_confs, 100 * (1 - keep)))


def confidence_curve(confs: list[float], window: int, points: int = 64) -> list[list[float]]:
    """[token, group confidence] along a trace (the mean of the `window` tokens ending there:
    what the online stop rule reads; one point for a trace shorter than a window), thinned to
    about `points` with the lowest one always kept: the view of a trace against the threshold."""
    if not confs:
        return []
    groups = window_means(confs, window)
    first = min(window, len(confs))  # the token the first group ends at
    step = max(1, len(groups) // points)
    keep = sorted({*range(0, len(groups), step), len(groups) - 1, int(np.argmin(groups))})
    return [[first + i, round(groups[i], 4)] for i in keep]


class DeepConf(Strategy):
    name = "deepconf"

    def __init__(
        self,
        n: Count = 64,
        mode: Mode = "online",
        warmup: Count | None = None,
        keep: Share = 0.1,
        window: Count = 2048,
        top_k: Count = 20,
        measure: Literal[MEASURES] = "lowest_group",  # type: ignore[valid-type]
        vote: Vote = "filtered",
        consensus: Share | None = None,
        in_flight: Count | None = None,
    ):
        warmup = min(16, n) if warmup is None else warmup  # the reference: 16 (of 256)
        if mode == "online" and not 1 <= warmup <= n:
            raise ValueError(f"warmup must be between 1 and n={n} (the warm-up traces are part of n), got {warmup}")
        self.n, self.mode, self.warmup, self.keep = n, mode, warmup, keep
        self.window, self.top_k, self.measure, self.vote = window, top_k, measure, vote
        self.consensus, self.in_flight = consensus, in_flight

    @property
    def logprobs(self) -> int:
        """The top-k logprobs it asks of the generator (a sweep records a bank with as many)."""
        return self.top_k

    @property
    def subsamplable(self) -> bool:
        """Offline DeepConf only selects among independent samples (a sweep may subsample them)."""
        return self.mode == "offline"

    async def solve(self, problem: Problem, ctx: Context) -> Result:
        if self.mode == "offline":
            return await self._offline(problem, ctx)
        return await self._online(problem, ctx)

    # -- offline -------------------------------------------------------------------------------
    async def _offline(self, problem: Problem, ctx: Context) -> Result:
        traces, stopped = await ctx.sample(self.n, logprobs=self.top_k)
        tokens = [token_confidences(t, self.top_k) for t in traces]
        confs = [trace_confidence(c, self.measure, self.window) for c in tokens]
        voters = [i for i, t in enumerate(traces) if t.answer is not None]
        bar = None  # the filter's confidence bar (vote="filtered")
        if self.vote == "filtered" and voters:
            bar = float(np.percentile([confs[i] for i in voters], 100 * (1 - self.keep)))
            voters = [i for i in voters if confs[i] >= bar]
        weights = None if self.vote == "majority" else [confs[i] for i in voters]
        answer, tally = await vote([traces[i].answer for i in voters], weights)
        for t, c in zip(traces, confs):
            t.score = c
        telemetry = {"votes": tally, "voters": voters, "confidences": confs}
        if bar is not None:
            telemetry["threshold"] = bar
        return Result(problem.id, answer, traces, stopped_by=stopped, telemetry=telemetry,
                      details={"confidence_curves": [confidence_curve(c, self.window) for c in tokens]})

    # -- online --------------------------------------------------------------------------------
    async def _online(self, problem: Problem, ctx: Context) -> Result:
        bar: list[float] = []  # set after the warm-up; the watch reads it

        def watch(run: Run) -> str | None:
            """Grow the run's token confidences and window sum; stop below the threshold."""
            d = run.data
            confs: list[float] = d.setdefault("confs", [])
            rows = run.trace.top_logprobs
            if not bar or d.get("warmup"):
                return None
            while len(confs) < len(rows):
                confs.append(token_confidence(rows[len(confs)], self.top_k))
                d["sum"] = d.get("sum", 0.0) + confs[-1]
                if len(confs) > self.window:
                    d["sum"] -= confs[-1 - self.window]
                if len(confs) >= self.window and d["sum"] / self.window < bar[0]:
                    return "low_confidence"
            return None

        pool = Streams(ctx, watch=watch, logprobs=self.top_k)
        for run in pool.launch(self.warmup):
            run.data["warmup"] = True
        async for _ in pool.ended():
            pass
        warm = [r for r in pool.runs if r.finished]
        min_conf = {r: self._lowest(r.trace) for r in warm}
        telemetry: dict = {"warmup_confidences": [min_conf[r] for r in warm]}
        if warm:
            bar.append(threshold(list(min_conf.values()), self.keep))
            telemetry["threshold"] = bar[0]

        voters: list[Run] = [r for r in warm if min_conf[r] >= bar[0] and r.trace.answer is not None] if bar else []
        todo = self.n - self.warmup if warm and not pool.refused else 0
        if self.consensus is not None and await self._settled(voters, min_conf):
            todo = 0  # the warm-up already agrees
        todo -= self._top_up(pool, todo)
        async for run in pool.ended():
            if run.finished:
                min_conf[run] = self._lowest(run.trace)
                if min_conf[run] >= bar[0] and run.trace.answer is not None:
                    voters.append(run)
                if self.consensus is not None and await self._settled(voters, min_conf):
                    pool.stop_all("consensus")
                    todo = 0
            todo -= self._top_up(pool, todo)
        await pool.close()

        weights = [min_conf[r] for r in voters]
        answer, tally = await vote([r.trace.answer for r in voters], weights)
        if answer is None:
            finished = [r.trace.answer for r in pool.runs if r.finished]
            answer, tally = await vote(finished)
            telemetry["fallback"] = True
        for r, c in min_conf.items():
            r.trace.score = c
        telemetry.update(
            votes=tally,
            voters=[r.index for r in voters],
            stop_reasons=pool.stop_reasons(),
        )
        curves = [confidence_curve(token_confidences(r.trace, self.top_k), self.window) for r in pool.runs]
        return Result(problem.id, answer, [r.trace for r in pool.runs], stopped_by=pool.stopped_by,
                      telemetry=telemetry, details={"confidence_curves": curves, "warmup": self.warmup})

    def _top_up(self, pool: Streams, todo: int) -> int:
        """Launch final traces up to the in-flight cap; returns how many were launched."""
        room = todo if self.in_flight is None else min(todo, self.in_flight - len(pool.live))
        if room > 0 and not pool.refused:
            pool.launch(room)
            return room
        return 0

    def _lowest(self, t: Trace) -> float:
        return trace_confidence(token_confidences(t, self.top_k), "lowest_group", self.window)

    async def _settled(self, voters: list[Run], conf: dict[Run, float]) -> bool:
        """The paper's consensus: the leading answer's share of the vote weight >= consensus."""
        if not voters:
            return False
        _, tally = await vote([r.trace.answer for r in voters], [conf[r] for r in voters])
        total = sum(tally.values())
        return total > 0 and max(tally.values()) / total >= self.consensus
