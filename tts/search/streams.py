"""Many traces of one problem growing at once, watched token by token and stopped at will: what
first-finish, DeepPrune, DeepConf-online and certainty probing share.

    pool = Streams(ctx, watch=my_check, logprobs=5)   # request overrides as for ctx.request
    pool.launch(8)                                    # 8 concurrent streams
    async for run in pool.ended():                    # each run as it finishes or is stopped
        if run.finished and ...: pool.stop_all("first_finish")

- `watch(run)` is called after every snapshot of a stream, synchronously, in that stream's own
  task: returning a reason (a string) stops that stream right there, at an exact token. That is
  how DeepConf cuts a trace the moment its window confidence drops. It may instead return an
  awaitable: that stream (only) reads no further until it resolves, to a reason or None. Only
  replayed traces should wait so (a replay has no clock: a trace waiting for a verdict models a
  judge that takes no generation time); a live engine keeps generating for a waiting stream.
- `stop(run, reason)` stops a stream from anywhere (a judge's verdict arriving later). Stopping
  cancels the stream's task, which closes the backend request: vLLM in process aborts it, a
  server sees the connection close and aborts it, a replayed stream stops reading the bank.
- The accountant charges each stream as it grows (`Context.stream`), so a stopped trace costs
  exactly the tokens it delivered up to the stop.
- A stream the budget refuses to start ends at once with state "refused"; `refused` counts them.
  `stopped_by` is the pool's `Result.stopped_by`: "budget" when the budget refused or cut any
  stream, else "done".
- A stream whose backend fails (or ends without a finish reason) ends with state "failed" and the
  error in `run.error`, and fails the problem: the others are stopped and `ended` / `race` raise
  that error once every stream has let go of its request. An answer from the traces that were
  left would be a fault turned into an answer; a failed record is retried by the next run.
- `stop_reasons()`: why each stopped stream was stopped, by index (the strategies' telemetry
  "stop_reasons"; where it stopped is its trace's token count).
- `race(n, k, reason)` launches n streams and stops the rest once k reach their end of sequence
  (first-finish). On a generator that plans its streams (a replay) it reads no token: the race
  is computed, with the runs, traces, order and charges the streamed race has.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from tts.context import Context
from tts.errors import BackendError, BudgetExceeded
from tts.types import StoppedBy, Trace, stopped_by

State = Literal["running", "finished", "stopped", "refused", "failed"]


@dataclass(eq=False)
class Run:
    """One stream: its trace (grown in place), its state and, once stopped, why."""

    index: int
    trace: Trace = field(default_factory=lambda: Trace("", 0))
    state: State = "running"
    reason: str | None = None  # why it was stopped
    error: str | None = None  # why it failed
    data: dict[str, Any] = field(default_factory=dict)  # the strategy's own per-trace state

    @property
    def finished(self) -> bool:
        """It ran to its end (stop token or max_tokens) and has an extracted answer field."""
        return self.state == "finished"

    @property
    def running(self) -> bool:
        return self.state == "running"


class Streams:
    def __init__(
        self, ctx: Context, watch: Callable[[Run], str | Awaitable[str | None] | None] | None = None, **overrides: Any
    ):
        self.ctx = ctx
        self.watch = watch
        self.request = ctx.request(1, **overrides)
        self.runs: list[Run] = []
        self._tasks: dict[Run, asyncio.Task] = {}
        self._ended: asyncio.Queue[Run] = asyncio.Queue()
        self.fault: BaseException | None = None  # the first stream failure: the problem fails with it

    @property
    def refused(self) -> int:
        return sum(r.state == "refused" for r in self.runs)

    @property
    def stopped_by(self) -> StoppedBy:
        return stopped_by(budget=any(r.reason == "budget" for r in self.runs))

    @property
    def live(self) -> list[Run]:
        return [r for r in self.runs if r.running]

    def launch(self, k: int, **overrides: Any) -> list[Run]:
        """Start k more streams (of the pool's request, with `overrides`)."""
        req = self.request.replace(**overrides) if overrides else self.request
        new = [Run(len(self.runs) + i) for i in range(k)]
        for run in new:
            self.runs.append(run)
            self._tasks[run] = asyncio.create_task(self._drive(run, req))
        return new

    async def _drive(self, run: Run, req: Any) -> None:
        agen = self.ctx.stream(req)
        try:
            async for trace in agen:
                run.trace = trace
                if trace.finished:
                    run.state = "finished"
                    break
                reason = self.watch(run) if self.watch is not None else None
                if inspect.isawaitable(reason):
                    reason = await reason
                if reason is not None:
                    self._mark_stopped(run, reason)
                    break
            else:
                if run.running:  # a backend that stopped short of a finish reason: not an answer
                    raise BackendError(f"the stream ended after {run.trace.num_tokens} tokens without a finish reason")
        except asyncio.CancelledError:
            if run.running:  # cancelled from outside without stop(): still a stop
                self._mark_stopped(run, "cancelled")
        except BudgetExceeded:
            if run.running:
                run.state = "refused" if run.trace.num_tokens == 0 else "stopped"
                run.reason = "budget"
        except Exception as e:  # noqa: BLE001 - any failure fails the problem, raised by ended()
            self._fail(run, e)
        finally:
            # Close the stream now (aborting the backend request), not whenever it is collected.
            try:
                await agen.aclose()
            finally:
                self._ended.put_nowait(run)

    def _fail(self, run: Run, e: BaseException) -> None:
        run.state, run.error = "failed", f"{type(e).__name__}: {e}"
        if self.fault is None:
            self.fault = e
            self.stop_all("failed")  # the problem fails: nothing more is worth generating

    def _mark_stopped(self, run: Run, reason: str) -> None:
        run.state, run.reason = "stopped", reason
        run.trace.finish_reason = "abort"

    def stop(self, run: Run, reason: str) -> None:
        """Stop a running stream now (its request is aborted at the backend)."""
        if not run.running:
            return
        self._mark_stopped(run, reason)
        task = self._tasks.get(run)
        if task is not None and not task.done():
            task.cancel()

    def stop_reasons(self) -> dict[int, str]:
        """Run index -> why it was stopped, for every stopped run."""
        return {r.index: r.reason for r in self.runs if r.state == "stopped" and r.reason is not None}

    def stop_all(self, reason: str) -> None:
        for run in self.live:
            self.stop(run, reason)

    async def ended(self) -> AsyncIterator[Run]:
        """Each run as it ends (in the order they end), until no stream is left running.

        Leaving the loop early stops nothing by itself: call `stop_all` (or `close`). A failed
        stream raises its error here instead of being yielded (after the others have stopped)."""
        while any(not t.done() for t in self._tasks.values()) or not self._ended.empty():
            run = await self._ended.get()
            if self.fault is not None:
                await self.close("failed")
                raise self.fault
            yield run

    async def race(self, n: int, k: int, reason: str) -> AsyncIterator[Run]:
        """Launch n streams and yield each as it ends (as `ended` does); once k of them have
        reached their end of sequence (finished, not cut at max_tokens), stop the rest."""
        if (self.ctx.generator.plans_streams and self.watch is None and not self.runs
                and self.request.forcing is None):
            for run in await self._planned_race(n, k, reason):
                yield run
            return
        self.launch(n)
        counted = 0
        async for run in self.ended():
            if run.finished and run.trace.finish_reason != "length":
                counted += 1
                if counted == k:
                    self.stop_all(reason)
            yield run

    async def _planned_race(self, n: int, k: int, reason: str) -> list[Run]:
        """The streamed race on a planning generator, computed. Its streams advance in lockstep:
        in round r each live stream delivers its r-th snapshot, in launch order, so a stream ends
        in round `snapshots`. Round 1 goes through the accountant stream by stream, as the tasks
        run: each is checked with the ones before it charged their first snapshot and reserved
        (unless they ended at once), so the budget refuses exactly the streams it would; refused
        streams end in round 1 (a failed one fails the problem there). The reader of `ended` is
        woken by the first end after it last looked and runs in the next round where the stream
        that woke it was: it sees every end before that point, in (round, launch index) order. If
        they make k finishes, the streams still running stop there, having delivered that round's
        snapshot when launched before the one that woke the reader, else the round before's. Returns the runs in the
        order `ended` yields them."""
        runs = [Run(i) for i in range(n)]
        self.runs.extend(runs)
        ends: list[tuple[int, int, Run]] = []  # (round it ends in, launch index, run)
        live: dict[Run, Callable[[int], Trace]] = {}  # started, not ended: its `end`
        for run in runs:
            try:
                plan, end = await self.ctx.plan_stream(self.request)
            except BudgetExceeded:
                run.state, run.reason = "refused", "budget"
                ends.append((1, run.index, run))
                continue
            except Exception as e:  # noqa: BLE001 - as in _drive: the problem fails
                run.state, run.error = "failed", f"{type(e).__name__}: {e}"
                for other in live.values():  # release what the streams planned so far reserved
                    other(1)
                raise
            ends.append((plan.snapshots, run.index, run))
            if plan.snapshots == 1:  # ended in round 1: its reservation goes before the next check
                run.trace, run.state = end(1), "finished"
            else:
                live[run] = end
        ends.sort(key=lambda e: e[:2])
        seen: list[Run] = []
        counted, i, stop = 0, 0, None
        while i < len(ends) and stop is None:
            at = (ends[i][0] + 1, ends[i][1])  # where the reader runs, woken by this end
            while i < len(ends) and ends[i][:2] < at:
                r, _, run = ends[i]
                i += 1
                if run in live:
                    run.trace, run.state = live.pop(run)(r), "finished"
                seen.append(run)
                if run.finished and run.trace.finish_reason != "length":
                    counted += 1
                    if counted == k:
                        stop = at
        if live:  # stopped at `stop`; they end (cancelled) in the order their tasks run next
            rnd, waker = stop
            for run in sorted(live, key=lambda r: (r.index < waker, r.index)):
                run.trace = live[run](rnd if run.index < waker else rnd - 1)
                self._mark_stopped(run, reason)
                seen.append(run)
        return seen

    async def close(self, reason: str = "done") -> None:
        """Stop whatever still runs and wait until every stream has let go of its request."""
        self.stop_all(reason)
        if self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
