"""The accountant, the context a strategy works through, and the verifier that works through it.

Every model call of a strategy, a verifier, a judge or a pipeline operator goes through
`Context`, whose `Accountant` checks the worst case of the call against the budget *before*
dispatch (counting calls still in flight as reserved), and charges what the backend reports
afterwards. This module is the only place that counts tokens: generations are charged by
`generate`/`stream`/`plan_stream`, a verifier's model calls by `judge` (a generative judge) and
`verify` (any other computation: a reward model's pooling call, an embedding), each one
reserved on its own, so no run can go over its budget, verifier and judge caps included.
Sandboxed program runs of a verifier or strategy go through `execute`, reserved at their time
limit and charged the seconds they ran (`Usage.exec_seconds`).

`Verifier` lives here because it is defined by what it does with a context; `Strategy`, which
is too, is in `tts.strategy` (the context never needs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from tts.answers import extract_boxed
from tts.errors import BudgetExceeded, TTSError
from tts.interfaces import Generator, StreamPlan
from tts.thinking import extract_answer, force_thinking, inserted_bound, need_markers
from tts.types import (Budget, Forcing, GenRequest, Problem, Sampling, Score, StoppedBy, Trace, Usage,
                       stopped_by)

if TYPE_CHECKING:
    from tts.sandbox import ExecResult, Limits, Sandbox

T = TypeVar("T")


@dataclass(slots=True)
class Hold:
    """What a running call still holds of its reservation (its worst case, less what it has
    been charged so far): a budget-forced sample's continuations all charge one Hold."""

    left: Usage


class Accountant:
    """Charges calls to a Usage and refuses the ones that could exceed the Budget."""

    def __init__(
        self,
        budget: Budget | None = None,
        generator_params: int | None = None,
        verifier_params: int | None = None,
    ):
        self.budget = budget or Budget()
        self.usage = Usage()
        self._reserved = Usage()
        self._gen_params = generator_params or 0
        self._ver_params = verifier_params or 0
        self._start = time.perf_counter()

    # -- FLOPs ---------------------------------------------------------------------------
    def generator_flops(self, prompt: int, cached: int, completion: int) -> float:
        return 2.0 * self._gen_params * (prompt - cached + completion)

    def verifier_flops(self, tokens: int, params: int | None = None) -> float:
        """`params`: the scoring model's size when it is not the context's verifier (a judge)."""
        return 2.0 * (self._ver_params if params is None else params) * tokens

    # -- budget ----------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.perf_counter() - self._start

    def remaining_seconds(self) -> float | None:
        cap = self.budget.wall_seconds
        return None if cap is None else cap - self.elapsed()

    def check(self, worst: Usage) -> None:
        """Raise BudgetExceeded if `worst`, on top of what is used and reserved, could go over."""
        projected = self.usage + self._reserved + worst
        projected.wall_seconds = self.elapsed()
        cap = self.budget.exceeded_by(projected)
        if cap is not None:
            raise BudgetExceeded(cap, f"cap {getattr(self.budget, cap)}, this call could reach {_value(projected, cap)}")
        rem = self.remaining_seconds()
        if rem is not None and rem <= 0:
            raise BudgetExceeded("wall_seconds")

    def worst_generation(self, prompt_tokens: int, n: int, max_tokens: int) -> Usage:
        """The most an n-sample call can cost: each sample prefills its prompt (none of it
        assumed cached) and runs to max_tokens."""
        prompt, completion = n * prompt_tokens, n * max_tokens
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            generator_calls=1,
            generator_flops=self.generator_flops(prompt, 0, completion),
        )

    def worst_verification(self, tokens: int, params: int | None = None) -> Usage:
        return Usage(verifier_tokens=tokens, verifier_calls=1, verifier_flops=self.verifier_flops(tokens, params))

    @contextlib.contextmanager
    def reserve(self, worst: Usage):
        """Check `worst` fits, hold it as reserved while the call runs, then release what is
        still held. Yields the Hold: charges passed it (a stream's, as it grows) come out of
        the reservation, so what a running call delivered counts once, not as used and held."""
        self.check(worst)
        hold = Hold(worst)
        self._reserved = self._reserved + worst
        try:
            yield hold
        finally:
            self._reserved = self._reserved - hold.left

    def _take(self, usage: Usage, hold: Hold | None) -> None:
        self.usage = self.usage + usage
        if hold is not None:
            take = usage.min(hold.left)
            hold.left = hold.left - take
            self._reserved = self._reserved - take

    def charge_generation(self, usage: Usage, hold: Hold | None = None) -> None:
        usage.generator_flops = self.generator_flops(
            usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens
        )
        self._take(usage, hold)

    def charge_verification(self, engine: Usage, params: int | None = None, hold: Hold | None = None) -> None:
        """A verifier-side model call, from what its engine reported (`engine`: prompt tokens,
        those served from its prefix cache, completion tokens): the tokens it computed are
        verifier tokens (FLOPs, budgets), the cached ones verifier cached tokens (recorded,
        costing nothing)."""
        computed = engine.prompt_tokens - engine.cached_tokens + engine.completion_tokens
        self._take(Usage(verifier_tokens=computed, verifier_cached_tokens=engine.cached_tokens,
                         verifier_calls=1, verifier_flops=self.verifier_flops(computed, params)), hold)

    def charge_execution(self, seconds: float, hold: Hold | None = None) -> None:
        """A sandboxed program run of `seconds` wall time."""
        self._take(Usage(exec_seconds=seconds), hold)

    def finish(self) -> Usage:
        self.usage.wall_seconds = self.elapsed()
        return self.usage


def _value(usage: Usage, cap: str) -> float:
    return {"calls": usage.calls, "flops": usage.flops, "total_tokens": usage.total_tokens}.get(
        cap, getattr(usage, cap, 0)
    )


class Verifier(ABC):
    """Scores traces. Process verifiers fill `Score.steps` (one value per step).

    A verifier that reads the generator's own logprobs sets `logprobs` to the number of top
    log-probabilities it needs, and strategies request them when generating. Every model call
    it makes goes through the context it is given (`ctx.judge`, `ctx.verify`), so the
    accountant reserves and charges it like any generation.
    """

    name: str = ""
    logprobs: int | None = None
    num_params: int | None = None

    @abstractmethod
    async def score(self, ctx: "Context", traces: list[Trace]) -> list[Score]:
        """One Score per trace of `ctx.problem`, in order."""

    async def close(self) -> None:
        """Release what the verifier started (an engine)."""


@dataclass
class Context:
    """What a strategy sees while solving one problem."""

    problem: Problem
    generator: Generator
    accountant: Accountant
    verifier: Verifier | None = None
    sampling: Sampling = field(default_factory=Sampling)
    system_prompt: str | None = None
    extract: Callable[[str], str | None] = extract_boxed
    seed: int = 0
    telemetry: dict[str, Any] = field(default_factory=dict)
    # Budget forcing of every sample (set by the budget_forcing strategy); None:
    # `sampling.thinking_budget`'s plain cap, if any.
    forcing: Forcing | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._executing = 0  # sandboxed runs in flight (`execute`), and their returns
        self._executed = asyncio.Condition()

    @property
    def usage(self) -> Usage:
        return self.accountant.usage

    def request(self, n: int = 1, **overrides: Any) -> GenRequest:
        """A request for `n` samples of this problem with the run's sampling defaults."""
        msgs = (
            self.problem.messages(self.system_prompt)
            if self.system_prompt is not None
            else self.problem.messages()
        )
        base = dict(
            messages=msgs,
            n=n,
            max_tokens=self.sampling.max_tokens,
            temperature=self.sampling.temperature,
            top_p=self.sampling.top_p,
            logprobs=self.verifier.logprobs if self.verifier is not None else None,
            enable_thinking=self.sampling.enable_thinking,
            forcing=self._forcing(),
        )
        base.update(overrides)
        return GenRequest(**base)

    def _forcing(self) -> Forcing | None:
        if self.forcing is not None:
            return self.forcing
        if self.sampling.thinking_budget is not None:
            return Forcing(self.sampling.thinking_budget)
        return None

    async def worst(self, req: GenRequest) -> Usage:
        """The most `req` can cost. A budget-forced sample takes up to `Forcing.calls` calls,
        each prefilling the prompt plus the prefix grown so far (at most max_tokens generated
        and the inserted text), none of it assumed cached."""
        prompt = await self.generator.count_prompt_tokens(req)
        f = req.forcing
        if f is None:
            return self.accountant.worst_generation(prompt, req.n, req.max_tokens)
        markers = self.generator.markers
        extra = inserted_bound(f, markers) if markers is not None else 0
        w = self.accountant.worst_generation(f.calls * (prompt + req.max_tokens + extra), req.n, req.max_tokens)
        w.generator_calls = req.n * f.calls
        return w

    async def affordable(self, req: GenRequest) -> int:
        """The largest n' <= req.n whose worst case fits the budget now (0 if none does)."""
        lo, hi = 0, req.n
        while lo < hi:  # binary search: the worst case grows monotonically with n
            mid = (lo + hi + 1) // 2
            try:
                self.accountant.check(await self.worst(req.replace(n=mid)))
                lo = mid
            except BudgetExceeded:
                hi = mid - 1
        return lo

    async def sample(self, n: int, **overrides: Any) -> tuple[list[Trace], StoppedBy]:
        """Up to `n` independent traces (`overrides` as for `request`), in one engine request when
        the budget covers all n at their worst case. When it does not, as many as fit go first
        and the rest follow as their charges come back (a sample rarely uses all its max_tokens),
        so a cap buys every sample it can and never one that could overrun it. Fewer than `n`
        only when the budget is spent, and then stopped_by is "budget"."""
        req = self.request(n, **overrides)
        traces: list[Trace] = []
        while len(traces) < n:
            k = await self.affordable(req.replace(n=n - len(traces)))
            if k == 0:
                break
            got = await self.generate(req.replace(n=k))
            if not got:  # a backend with nothing left to serve (an exhausted bank)
                break
            traces += got
        return traces, stopped_by(budget=len(traces) < n)

    def _finish_traces(self, traces: Sequence[Trace]) -> None:
        for t in traces:
            if t.answer is None and t.finish_reason is not None:
                t.answer, t.answer_from = extract_answer(t, self.extract)

    def _forced(self, req: GenRequest, hold: Hold, stream: bool) -> AsyncIterator[Trace]:
        """One budget-forced sample of `req`, its continuations charged under `hold`."""
        gen = self.generator
        return force_thinking(
            req, need_markers(gen.markers, gen.model, "budget forcing (thinking_budget)"),
            count=gen.count_prompt_tokens,
            call=lambda r: self.call(r, hold),
            stream_call=(lambda r: self.call_stream(r, hold)) if stream else None,
            telemetry=self.telemetry,
        )

    async def generate(self, req: GenRequest) -> list[Trace]:
        """`req.n` traces, answers extracted; raises BudgetExceeded if they might not fit.
        With `req.forcing`, each is a budget-forced sample (`tts.thinking.force_thinking`),
        its continuations charged under one reservation of the n samples' worst case."""
        if req.forcing is None:
            return await self.call(req)

        async def one(hold: Hold) -> Trace:
            last = None
            async for last in self._forced(req.replace(n=1), hold, stream=False):
                pass
            assert last is not None
            return last

        with self.accountant.reserve(await self.worst(req)) as hold:
            try:
                async with asyncio.TaskGroup() as tg:  # one sample failing stops the others
                    tasks = [tg.create_task(one(hold)) for _ in range(req.n)]
            except BaseExceptionGroup as eg:  # the first failure, as a plain call raises it
                raise eg.exceptions[0] from None
        traces = [t.result() for t in tasks]
        self._finish_traces(traces)
        return traces

    async def call(self, req: GenRequest, hold: Hold | None = None) -> list[Trace]:
        """One generator call (`req.forcing` not applied); under `hold` (a caller's reservation
        that covers it, as a budget-forced sample's) or a reservation of its own."""
        acc = self.accountant
        worst = await self.worst(req.replace(forcing=None))
        with (acc.reserve(worst) if hold is None else contextlib.nullcontext(hold)) as held:
            try:
                async with _deadline(acc.remaining_seconds()):
                    traces, usage = await self.generator.generate(req)
            except TimeoutError:
                # The engine aborted the call at the wall-clock cap; how far it got is unknown,
                # so charge the worst case we reserved (an upper bound, never an undercount).
                acc.charge_generation(worst, held)
                raise BudgetExceeded("wall_seconds") from None
            usage.generator_calls = 1
            usage.thinking_tokens = sum(t.thinking_tokens for t in traces)
            acc.charge_generation(usage, held)
        self._finish_traces(traces)
        return traces

    async def stream(self, req: GenRequest) -> AsyncIterator[Trace]:
        """One growing sample; charged as it grows, so an abandoned stream is charged only up
        to where it was abandoned (closing the iterator aborts the backend request). With
        `req.forcing`, a budget-forced sample streamed continuation by continuation."""
        if req.forcing is None:
            agen = self.call_stream(req)
        else:
            async def forced() -> AsyncIterator[Trace]:
                with self.accountant.reserve(await self.worst(req)) as hold:
                    inner = self._forced(req, hold, stream=True)
                    try:
                        async for t in inner:
                            if t.finished:
                                self._finish_traces([t])
                            yield t
                    finally:
                        await inner.aclose()

            agen = forced()
        try:
            async for t in agen:
                yield t
        finally:
            await agen.aclose()

    async def call_stream(self, req: GenRequest, hold: Hold | None = None) -> AsyncIterator[Trace]:
        """One streamed generator call (`req.forcing` not applied), charged as it grows; under
        `hold` (a caller's reservation) or a reservation of its own."""
        acc = self.accountant
        worst = await self.worst(req.replace(forcing=None))
        charged = Usage(generator_calls=1)
        with (acc.reserve(worst) if hold is None else contextlib.nullcontext(hold)) as held:
            acc.charge_generation(Usage(generator_calls=1), held)  # dispatched: a call, whatever follows
            agen = self.generator.stream(req)
            try:
                async with _deadline(acc.remaining_seconds()):
                    async for trace, usage in agen:
                        delta = Usage(
                            prompt_tokens=usage.prompt_tokens - charged.prompt_tokens,
                            cached_tokens=usage.cached_tokens - charged.cached_tokens,
                            completion_tokens=usage.completion_tokens - charged.completion_tokens,
                            thinking_tokens=(trace.thinking_tokens - charged.thinking_tokens) if trace.finished else 0,
                        )
                        acc.charge_generation(delta, held)
                        charged = charged + delta
                        if trace.finished:
                            self._finish_traces([trace])
                        yield trace
            except TimeoutError:
                raise BudgetExceeded("wall_seconds") from None
            finally:
                await agen.aclose()

    async def plan_stream(self, req: GenRequest) -> tuple[StreamPlan, Callable[[int], Trace]]:
        """`stream(req)` up to its first snapshot on a generator that plans its streams
        (`Generator.plans_streams`), nothing read: the same budget check (BudgetExceeded),
        dispatch and charges as `stream`. Returns the plan and `end(i)`, which ends the stream
        after its snapshot i: charges what it delivered, releases its reservation, returns the
        trace. Until then its worst case, less what it delivered, stays reserved (as a running
        stream's does)."""
        acc = self.accountant
        prompt = await self.generator.count_prompt_tokens(req)
        reservation = acc.reserve(acc.worst_generation(prompt, 1, req.max_tokens))
        hold = reservation.__enter__()  # held across calls (no stream body to hold it): released by end()
        acc.charge_generation(Usage(generator_calls=1), hold)
        try:
            plan = self.generator.stream_plan(req)
        except BaseException:
            reservation.__exit__(None, None, None)
            raise
        acc.charge_generation(Usage(prompt_tokens=plan.prompt_tokens, completion_tokens=plan.tokens(1)), hold)

        def end(i: int) -> Trace:
            acc.charge_generation(Usage(completion_tokens=plan.tokens(i) - plan.tokens(1)), hold)
            reservation.__exit__(None, None, None)
            trace = plan.trace(i)
            if trace.finished:
                self._finish_traces([trace])
            return trace

        return plan, end

    # -- verifiers ---------------------------------------------------------------------------
    async def score(self, traces: list[Trace]) -> list[Score]:
        """Score traces with the context's verifier; sets each trace's `score`. Each scored
        trace's `Score.path` is counted in `telemetry["verifier_paths"]` ("incremental" /
        "full-prefix": which way a process verifier scored it)."""
        if self.verifier is None:
            raise TTSError("this strategy needs a verifier; pass verifier=... (e.g. Confidence()), --verifier NAME "
                           "or, over `tts serve`, tts.verifier")
        scores = await self.verifier.score(self, traces)
        paths = self.telemetry.setdefault("verifier_paths", {})
        for t, s in zip(traces, scores):
            t.score = s.value
            if s.path:
                paths[s.path] = paths.get(s.path, 0) + 1
        if not paths:
            del self.telemetry["verifier_paths"]
        return scores

    async def verify(self, work: Callable[[], Awaitable[tuple[T, Usage]]], worst_tokens: int,
                     params: int | None = None) -> T:
        """Run one verifier-side model call under the accountant: `work()` returns its result and
        what its engine reported (`Usage` with prompt, cached and completion tokens). It is
        refused (BudgetExceeded) unless `worst_tokens` computed tokens fit, and charged as one
        verifier call at `params` (default: the context's verifier's size)."""
        acc = self.accountant
        with acc.reserve(acc.worst_verification(worst_tokens, params)) as hold:
            result, engine = await work()
            acc.charge_verification(engine, params, hold)
        return result

    async def judge(self, judge: Generator, req: GenRequest) -> list[Trace]:
        """A judge model's generation (a verifier's or an equivalence judge's own model call),
        charged as verifier tokens at the judge's size, its cached prompt tokens as verifier
        cached tokens."""

        async def work() -> tuple[list[Trace], Usage]:
            return await judge.generate(req)

        worst = await judge.count_prompt_tokens(req) + req.n * req.max_tokens
        return await self.verify(work, worst, judge.num_params)

    async def judge_many(self, judge: Generator, reqs: Sequence[GenRequest]) -> list[list[Trace]]:
        """Several judge requests as ONE verifier call (`Generator.generate_many`: a server
        that takes a batch gets one HTTP request), reserved at the sum of their worst cases and
        charged from what the backend reported for all of them, as `judge` charges one."""
        if not reqs:
            return []
        batch = list(reqs)

        async def work() -> tuple[list[list[Trace]], Usage]:
            return await judge.generate_many(batch)

        prompts = await asyncio.gather(*(judge.count_prompt_tokens(r) for r in batch))
        worst = sum(prompts) + sum(r.n * r.max_tokens for r in batch)
        return await self.verify(work, worst, judge.num_params)


    async def execute(self, sandbox: "Sandbox", source: str, *, limits: "Limits | None" = None,
                      **run: Any) -> "ExecResult":
        """Run the program `source` in `sandbox` (`run`: `Sandbox.run`'s stdin, argv, files) as
        part of this run's compute: a verifier's or strategy's execution, never the task's
        grading. Reserved at its wall-time limit before it starts, then charged the wall seconds
        it ran, at most that limit (what a killed program took past it is the sandbox's kill, not
        the program's time). When the reservation does not fit the budget (the `exec_seconds`
        cap) while other runs of this context are in flight, it waits for them to return what
        they did not use, as `sample` does for generations; with none in flight it is refused
        (BudgetExceeded). A sandbox failure (SandboxError) propagates: a fault, never a score."""
        limits = limits or sandbox.limits
        acc = self.accountant
        while True:
            reservation = acc.reserve(Usage(exec_seconds=limits.wall_seconds))
            try:
                hold = reservation.__enter__()
                break
            except BudgetExceeded:
                if not self._executing:
                    raise
                async with self._executed:
                    await self._executed.wait()
        self._executing += 1
        try:
            try:
                async with _deadline(acc.remaining_seconds()):
                    result = await sandbox.run(source, limits=limits, **run)
            except TimeoutError:  # the run's wall-clock cap: the program was killed; charge its limit
                acc.charge_execution(limits.wall_seconds, hold)
                raise BudgetExceeded("wall_seconds") from None
            acc.charge_execution(min(result.wall_seconds, limits.wall_seconds), hold)
        finally:
            reservation.__exit__(None, None, None)
            self._executing -= 1
            async with self._executed:
                self._executed.notify_all()
        return result


@contextlib.asynccontextmanager
async def _deadline(seconds: float | None):
    if seconds is None:
        yield
    else:
        async with asyncio.timeout(max(seconds, 0.0)):
            yield
