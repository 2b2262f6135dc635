"""Every asyncio task a request starts, so cancelling the request stops all of them.

Cancelling a strategy's own task is not enough: strategies start traces in tasks of their own
(`tts.search.streams.Streams`, probes, judges), and a task does not cancel the tasks it created.
Those would keep generating at the engine for a client that is gone. A loop task factory adds
every task created inside a request (directly or transitively: tasks inherit the context var)
to that request's `Scope`; `Scope.cancel` cancels them and waits until each has let go of its
backend request (for vLLM in process: aborted at the engine).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any

_CURRENT: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("tts_serve_scope", default=None)


class Scope:
    def __init__(self) -> None:
        self.tasks: set[asyncio.Task] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        """Run `coro` as a task of this scope (it and every task it starts are tracked)."""
        ctx = contextvars.copy_context()
        ctx.run(_CURRENT.set, self)
        return asyncio.get_running_loop().create_task(coro, context=ctx)

    def add(self, task: asyncio.Task) -> None:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def cancel(self) -> None:
        """Cancel every task of the scope still running and wait for them to finish."""
        while pending := [t for t in self.tasks if not t.done()]:
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


def install(loop: asyncio.AbstractEventLoop) -> Any:
    """Track tasks on `loop` from now on; returns the previous factory (for `uninstall`)."""
    previous = loop.get_task_factory()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task:
        task = previous(loop, coro, **kwargs) if previous else asyncio.Task(coro, loop=loop, **kwargs)
        ctx = kwargs.get("context")
        scope = ctx.get(_CURRENT) if ctx is not None else _CURRENT.get()
        if scope is not None:
            scope.add(task)
        return task

    loop.set_task_factory(factory)
    return previous


def uninstall(loop: asyncio.AbstractEventLoop, previous: Any) -> None:
    loop.set_task_factory(previous)
