"""Solving problems: one (`solve`, `solve_sync`) or many concurrently (`run_many`).

`run_many` keeps up to `concurrency` problems in flight so the engine batches requests across
problems; each problem gets its own accountant and budget.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol, TypeVar

from tts.answers import extract_boxed
from tts.context import Accountant, Context, Verifier
from tts.errors import BackendError, BudgetExceeded, TTSError
from tts.interfaces import Generator
from tts.spec import RunSpec, spec_of
from tts.strategy import Strategy
from tts.types import Budget, Problem, Result, Sampling

T = TypeVar("T")


class TaskLike(Protocol):
    """What the runner needs of a task (see the `tasks` package)."""

    name: str
    system_prompt: str

    def extract(self, text: str) -> str | None: ...

    async def grade(self, problem: Problem, answer: str | None) -> bool: ...


async def solve(
    problem: Problem,
    strategy: Strategy,
    *,
    generator: Generator,
    verifier: Verifier | None = None,
    budget: Budget | None = None,
    sampling: Sampling | None = None,
    task: TaskLike | None = None,
    seed: int = 0,
    spec: RunSpec | None = None,
) -> Result:
    """Solve one problem with `strategy`; the Result carries its answer, cost and, when a task
    with a gold answer is given, whether it is correct. Its `config_hash` is that of `spec`
    (the run's configuration; built from the arguments when not given)."""
    sampling = sampling or Sampling()
    acc = Accountant(budget, generator.num_params, verifier.num_params if verifier else None)
    ctx = Context(
        problem=problem,
        generator=generator,
        accountant=acc,
        verifier=verifier,
        sampling=sampling,
        system_prompt=task.system_prompt if task is not None else None,
        extract=task.extract if task is not None else extract_boxed,
        seed=seed,
    )
    try:
        result = await strategy.solve(problem, ctx)
    except BudgetExceeded:
        # A strategy that does not handle the budget itself has nothing to return.
        result = Result(problem.id, None, stopped_by="budget")
    result.usage = acc.finish()
    result.strategy = strategy.name
    result.seed = seed
    spec = spec or _spec(strategy, generator, verifier, budget, sampling, task, seed)
    result.config_hash = spec.config_hash()
    result.telemetry = {**ctx.telemetry, **result.telemetry}
    if task is not None and problem.answer is not None:
        result.correct = await task.grade(problem, result.answer)
    return result


def _spec(strategy: Strategy, generator: Generator, verifier: Verifier | None, budget: Budget | None,
          sampling: Sampling | None, task: TaskLike | None, seed: int) -> RunSpec:
    """The spec of a run given as objects: the verifier by its registered name, and its model
    only when it is not the generator itself (a judge that is the generator names none)."""
    vmodel = getattr(verifier, "model", None)
    return spec_of(strategy, generator.identity, verifier=None if verifier is None else verifier.name,
                   verifier_model=vmodel if isinstance(vmodel, str) and vmodel != generator.model else None,
                   budget=budget, sampling=sampling, task=None if task is None else task.name, seed=seed)


async def run_many(
    problems: Iterable[Problem],
    strategy: Strategy,
    *,
    generator: Generator,
    concurrency: int = 64,
    on_result: Callable[[Result], Awaitable[None] | None] | None = None,
    on_error: Callable[[Problem, Exception], Awaitable[None] | None] | None = None,
    **kwargs: Any,
) -> list[Result | None]:
    """Solve `problems` with up to `concurrency` in flight; results in input order.

    `on_result` is called as each problem finishes (e.g. to append it to a store), so an
    interrupted run keeps everything finished so far. With `on_error`, a problem whose solving
    raised a fault (a BackendError, or any exception that is not a user error, TTSError) is
    passed to it and the run goes on (its result is None); without, the first fault stops the
    run. Other keyword arguments go to `solve`.
    """
    sem = asyncio.Semaphore(concurrency)
    if "spec" not in kwargs:  # one spec for the whole run (the strategy's config is read once)
        kwargs["spec"] = _spec(strategy, generator, kwargs.get("verifier"), kwargs.get("budget"),
                               kwargs.get("sampling"), kwargs.get("task"), kwargs.get("seed", 0))

    async def one(p: Problem) -> Result | None:
        async with sem:
            try:
                r = await solve(p, strategy, generator=generator, **kwargs)
            except Exception as e:
                if on_error is None or (isinstance(e, TTSError) and not isinstance(e, BackendError)):
                    raise
                maybe = on_error(p, e)
                if asyncio.iscoroutine(maybe):
                    await maybe
                return None
        if on_result is not None:
            maybe = on_result(r)
            if asyncio.iscoroutine(maybe):
                await maybe
        return r

    tasks = [asyncio.create_task(one(p)) for p in problems]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for t in tasks:  # one failure (e.g. the server is gone) stops the rest cleanly
            t.cancel()


# -- the synchronous twin ------------------------------------------------------------------
class _LoopThread:
    """One event loop in a daemon thread shared by all sync calls, so an engine created for
    one call keeps working in the next (and sync calls work inside notebooks)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="tts-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()  # type: ignore[arg-type]


_loop: _LoopThread | None = None
_loop_lock = threading.Lock()


def run_sync(coro: Awaitable[T]) -> T:
    """Run a coroutine on the framework's background loop and wait for it."""
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = _LoopThread()
    return _loop.run(coro)


def solve_sync(problem: Problem, strategy: Strategy, **kwargs: Any) -> Result:
    """`solve` for scripts and notebooks: blocks until the result is ready."""
    return run_sync(solve(problem, strategy, **kwargs))


def run_many_sync(problems: Iterable[Problem], strategy: Strategy, **kwargs: Any) -> list[Result]:
    return run_sync(run_many(problems, strategy, **kwargs))
