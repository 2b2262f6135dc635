"""Solving problems: one (`solve`, `solve_sync`) or many concurrently (`run_many`).

`run_many` keeps up to `concurrency` problems in flight so the engine batches requests across
problems; each problem gets its own accountant and budget.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol, TypeVar

from tts.answers import extract_boxed
from tts.context import Accountant, Context, Sampling
from tts.errors import BudgetExceeded
from tts.interfaces import Generator, Strategy, Verifier
from tts.types import Budget, Problem, Result

T = TypeVar("T")


class TaskLike(Protocol):
    """What the runner needs of a task (see the `tasks` package)."""

    name: str
    system_prompt: str

    def extract(self, text: str) -> str | None: ...

    async def grade(self, problem: Problem, answer: str | None) -> bool: ...


def config_hash(**parts: Any) -> str:
    """A short stable hash of everything that identifies a run's configuration."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def describe(
    strategy: Strategy,
    model: str,
    verifier: Verifier | None,
    budget: Budget | None,
    sampling: Sampling,
    task: TaskLike | None,
) -> dict[str, Any]:
    """The configuration a result belongs to (what `config_hash` hashes)."""
    return {
        "strategy": strategy.name,
        "params": strategy.config(),
        "model": model,
        "verifier": None if verifier is None else {"name": verifier.name, **_public(verifier)},
        "budget": None if budget is None or budget.is_unlimited() else _public(budget),
        "sampling": _public(sampling),
        "task": None if task is None else task.name,
    }


def _public(obj: Any) -> dict[str, Any]:
    fields = getattr(obj, "__dataclass_fields__", None)
    names = list(fields) if fields else [k for k in vars(obj) if not k.startswith("_")]
    out = {}
    for k in names:
        v = getattr(obj, k)
        if isinstance(v, (str, int, float, bool, type(None), list, tuple, dict)):
            out[k] = v
    return out


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
) -> Result:
    """Solve one problem with `strategy`; the Result carries its answer, cost and, when a task
    with a gold answer is given, whether it is correct."""
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
    result.config_hash = config_hash(**describe(strategy, generator.model, verifier, budget, sampling, task))
    result.telemetry = {**ctx.telemetry, **result.telemetry}
    if task is not None and problem.answer is not None:
        result.correct = await task.grade(problem, result.answer)
    return result


async def run_many(
    problems: Iterable[Problem],
    strategy: Strategy,
    *,
    generator: Generator,
    concurrency: int = 64,
    on_result: Callable[[Result], Awaitable[None] | None] | None = None,
    **kwargs: Any,
) -> list[Result]:
    """Solve `problems` with up to `concurrency` in flight; results in input order.

    `on_result` is called as each problem finishes (e.g. to append it to a store), so an
    interrupted run keeps everything finished so far. Other keyword arguments go to `solve`.
    """
    sem = asyncio.Semaphore(concurrency)

    async def one(p: Problem) -> Result:
        async with sem:
            r = await solve(p, strategy, generator=generator, **kwargs)
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
