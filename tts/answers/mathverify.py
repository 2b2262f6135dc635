"""Mathematical equivalence of answers with math-verify, in worker processes with a hard timeout.

Why processes: math-verify's own timeouts use `signal.alarm`, which only works in the main thread,
and sympy can hang for minutes on a hostile expression. So we always call it with its timeouts
off and run it in "spawn" workers (never fork: the parent may hold vLLM/CUDA threads). A worker
that does not answer within `timeout` seconds is killed and replaced; that comparison counts as
"not equivalent". Model output is only ever parsed, never evaluated.

Grading never raises on any answer string: a timeout, a worker crash, a parser error, an
integer too long to convert, anything, is "not equivalent" plus a counted warning:
`MathVerifyPool.failures` counts them by kind for the process, and `count_failures()` counts
those of one piece of work (a record's grading) for its telemetry. Only a setup problem (no
worker can start) raises, as a TTSError: that would otherwise grade everything wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import multiprocessing as mp
import queue
import re
import threading
import weakref
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from tts.answers import normalize
from tts.errors import TTSError

_INT = re.compile(r"-?\d+")
log = logging.getLogger(__name__)
_counting: contextvars.ContextVar[Counter[str] | None] = contextvars.ContextVar("tts_grading_failures", default=None)


@contextlib.contextmanager
def count_failures() -> Iterator[Counter[str]]:
    """Counts the grading failures (by kind) of the comparisons awaited inside the block, in this
    task and the tasks it starts (e.g. `failed = sum(c.values())` for a record's telemetry)."""
    c: Counter[str] = Counter()
    token = _counting.set(c)
    try:
        yield c
    finally:
        _counting.reset(token)


def _int_key(s: str) -> str:
    """An integer's canonical digits without int(): Python refuses int() of over 4300 digits."""
    neg, digits = s.startswith("-"), s.lstrip("-").lstrip("0") or "0"
    return ("-" if neg and digits != "0" else "") + digits


def _compare(gold: str, pred: str) -> bool:
    """Runs inside a worker: parse both sides as inline LaTeX and verify (gold first: asymmetric)."""
    from math_verify import parse, verify

    g = parse(f"${gold}$", parsing_timeout=None)  # None: no signal.alarm; the parent times us out
    p = parse(f"${pred}$", parsing_timeout=None)
    return bool(verify(g, p, timeout_seconds=None))


def _serve(conn, target) -> None:
    """Worker loop: import math-verify once, say ready, then answer (gold, pred) -> bool forever."""
    try:
        import logging

        import math_verify  # noqa: F401  (slow import: done before the first timed comparison)

        logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout disabled" is on purpose
    except Exception as e:  # noqa: BLE001
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            gold, pred = conn.recv()
        except (EOFError, OSError):  # parent gone or closed us
            return
        try:
            conn.send(("ok", bool(target(gold, pred))))
        except Exception as e:  # noqa: BLE001  an unparsable answer is not equivalent (and counted)
            conn.send(("failed", f"{type(e).__name__}: {e}"[:200]))


class PoolClosed(RuntimeError):
    """Work asked of a closed pool: a programming error, raised (not a grading failure)."""


class _Worker:
    def __init__(self, ctx, target):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, target), daemon=True, name="tts-mathverify")
        self.proc.start()
        child.close()
        self.ready = False

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join(2)
        self.conn.close()


def _kill_all(live: set) -> None:  # a module function so the finalizer does not keep the pool alive
    for w in list(live):
        w.kill()
    live.clear()


class MathVerifyPool:
    """A few reusable math-verify worker processes, started lazily, shut down at exit."""

    _target = staticmethod(_compare)  # tests swap in a hanging function to prove the hard timeout
    startup_timeout = 60.0  # a fresh worker imports sympy; that time is not charged to a comparison

    def __init__(self, workers: int = 2, timeout: float = 5.0):
        if workers < 1 or timeout <= 0:
            raise ValueError("workers must be >= 1 and timeout > 0")
        self.workers, self.timeout = workers, timeout
        self._ctx = mp.get_context("spawn")
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._live: set[_Worker] = set()
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[bool, str | None]] = {}
        self.failures: Counter[str] = Counter()  # grading failures by kind, for the process
        self._closed = False
        self._finalizer = weakref.finalize(self, _kill_all, self._live)  # runs at exit too
        # Own threads for the async API: a call blocks up to `timeout`, and the loop's default
        # executor is shared with everything else. More threads than workers would only queue.
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="tts-mathverify")

    def cached(self, gold: str, pred: str) -> bool | None:
        """The answer without a worker when it is known: same normal form, two integers, cache."""
        ng, np_ = normalize(gold), normalize(pred)
        if ng is not None and ng == np_:
            return True
        if ng and np_ and _INT.fullmatch(ng) and _INT.fullmatch(np_):
            return _int_key(ng) == _int_key(np_)
        hit = self._cache.get((gold, pred))
        return None if hit is None else hit[0]

    def check(self, a: str, b: str) -> tuple[bool, str | None]:
        """(whether `b` means the same as `a`, why grading failed or None). Never raises for any
        strings, only TTSError when no worker can start."""
        try:
            known = self.cached(a, b)
            if known is not None:
                return known, self._cache.get((a, b), (known, None))[1]
            ok, why = self._run(a, b)
        except (TTSError, PoolClosed):
            raise
        except Exception as e:  # noqa: BLE001  the fast path or the pipe failed on this input
            ok, why = False, f"error: {type(e).__name__}: {str(e)[:120]}"
        if len(self._cache) > 200_000:
            self._cache.clear()
        self._cache[(a, b)] = (ok, why)
        return ok, why

    def note(self, why: str, a: str, b: str) -> None:
        """Count (and warn about) one grading failure."""
        kind = why.split(":", 1)[0]
        self.failures[kind] += 1
        counter = _counting.get()
        if counter is not None:
            counter[kind] += 1
        log.warning("grading %r against %r failed (%s); counted as not equivalent", b[:80], a[:80], why)

    def equivalent(self, a: str, b: str) -> bool:
        """Whether `b` means the same as `a` (`a` is taken as the reference side)."""
        ok, why = self.check(a, b)
        if why is not None:
            self.note(why, a, b)
        return ok

    def grade(self, gold: str, pred: str | None) -> bool:
        return pred is not None and gold is not None and self.equivalent(gold, pred)

    def _spawn(self) -> _Worker:  # call with the lock held
        w = _Worker(self._ctx, self._target)
        self._live.add(w)
        return w

    def _acquire(self) -> _Worker:
        while True:  # an idle worker, else a new one while under `workers`, else wait for one
            with self._lock:
                if self._closed:
                    raise PoolClosed("MathVerifyPool is closed")
                try:
                    return self._idle.get_nowait()
                except queue.Empty:
                    if len(self._live) < self.workers:
                        return self._spawn()
            try:
                return self._idle.get(timeout=0.5)
            except queue.Empty:
                pass

    def _replace(self, w: _Worker) -> None:
        w.kill()
        with self._lock:
            self._live.discard(w)
            if not self._closed:
                self._idle.put(self._spawn())  # start now: it warms up while callers go on

    def _start(self, w: _Worker) -> None:
        """Wait for a fresh worker's hello. A worker that cannot start is a setup problem, not a
        "no": raise (and do not respawn) rather than silently grading everything wrong."""
        try:
            kind, msg = w.conn.recv() if w.conn.poll(self.startup_timeout) else ("error", "timeout")
        except (EOFError, OSError):
            kind, msg = "died", ""
        if kind == "ready":
            w.ready = True
            return
        w.kill()
        with self._lock:
            self._live.discard(w)
        if kind == "died":  # typically: spawn re-imported an unguarded main script, which crashed
            raise TTSError("a math-verify worker process died while starting; if you run a script, "
                           "put its top-level code under `if __name__ == '__main__':` (workers are "
                           "spawned and re-import the main module)")
        raise TTSError(f"math-verify cannot run in a worker ({msg}); check that `import math_verify` "
                       "works, or install it: pip install 'math-verify[antlr4_13_2]'")

    def _run(self, a: str, b: str) -> tuple[bool, str | None]:
        w = self._acquire()
        try:
            if not w.ready:
                self._start(w)
            w.conn.send((a, b))
            if not w.conn.poll(self.timeout):  # hung in sympy: kill it, the answer is "no"
                self._replace(w)
                return False, f"timeout: no answer within {self.timeout:g}s"
            kind, value = w.conn.recv()
        except (EOFError, OSError):  # the worker crashed on this input (or close() ran under us)
            self._replace(w)
            return False, "crash: the worker died on this input"
        except BaseException:  # start failed (already dropped), or interrupted mid-call
            if w in self._live:
                self._replace(w)
            raise
        self._idle.put(w)
        return (bool(value), None) if kind == "ok" else (False, f"parser: {value}")

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._finalizer()
        self.executor.shutdown(wait=False, cancel_futures=True)


_default: MathVerifyPool | None = None
_default_lock = threading.Lock()


def default_pool() -> MathVerifyPool:
    global _default
    with _default_lock:
        if _default is None:
            _default = MathVerifyPool()
        return _default


async def equivalent(a: str, b: str) -> bool:
    """Never raises for any strings (see the module's docstring); failures are counted."""
    pool = default_pool()
    try:
        known = pool.cached(a, b)  # most comparisons end here, without a thread hop
    except Exception as e:  # noqa: BLE001
        pool.note(f"error: {type(e).__name__}: {str(e)[:120]}", a, b)
        return False
    if known is not None:
        why = pool._cache.get((a, b), (known, None))[1]  # a failure remembered is counted again
        if why is not None:
            pool.note(why, a, b)
        return known
    ok, why = await asyncio.get_running_loop().run_in_executor(pool.executor, pool.check, a, b)
    if why is not None:
        pool.note(why, a, b)  # here, not in the thread: count_failures() is this task's
    return ok


async def grade(gold: str | None, pred: str | None) -> bool:
    return gold is not None and pred is not None and await equivalent(gold, pred)


def grade_sync(gold: str | None, pred: str | None) -> bool:
    return default_pool().grade(gold, pred)  # type: ignore[arg-type]


async def group_answers(answers: list[str | None]) -> list[int | None]:
    """Cluster ids by equivalence, numbered in order of first appearance; no answer -> None.

    Answers with the same normal form share a cluster without math-verify; a new normal form is
    compared with each cluster's first member (concurrently) and joins the first that matches.
    An answer spanning several lines is a program (a code task's), not a formula: math-verify
    parses one expression, so it is never asked about one (each comparison could take its
    timeout), and programs group by their normal form (whitespace collapsed) alone.
    """
    ids: list[int | None] = []
    reps: list[str] = []
    by_norm: dict[str, int] = {}
    for a in answers:
        n = normalize(a) if a is not None else None
        if n is None:
            ids.append(None)
            continue
        if n not in by_norm:
            same = [] if _program(a) else await asyncio.gather(*(_formulas_equal(r, a) for r in reps))
            by_norm[n] = next((i for i, s in enumerate(same) if s), len(reps))
            if by_norm[n] == len(reps):
                reps.append(a)
        ids.append(by_norm[n])
    return ids


def _program(answer: str) -> bool:
    return "\n" in answer.strip()


async def _formulas_equal(a: str, b: str) -> bool:
    return not _program(a) and await equivalent(a, b)
