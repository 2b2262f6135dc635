"""tts.answers.mathverify: math-verify in spawned worker processes with a hard per-comparison timeout."""

from __future__ import annotations

import asyncio
import time

import pytest

from tts.answers import mathverify as mv
from tts.errors import TTSError
from tts.answers.mathverify import MathVerifyPool


def _hangs_on_marker(gold: str, pred: str) -> bool:
    """Worker target for the timeout tests: a comparison that never returns, like a sympy hang."""
    if gold == "HANG":
        time.sleep(600)
    return mv._compare(gold, pred)


@pytest.fixture(scope="module")
def pool():
    p = MathVerifyPool(workers=2, timeout=5.0)
    yield p
    p.close()


@pytest.mark.parametrize(
    "a, b, same",
    [
        ("\\frac{1}{2}", "0.5", True),
        ("72", "72.0", True),
        ("3", "4", False),
        ("(1,2)", "(2,1)", False),
        ("x^2+2x+1", "(x+1)^2", True),
        ("1/2", "0.5", True),
        ("3\\sqrt{2}", "\\sqrt{18}", True),
        ("\\text{Evelyn}", "Evelyn", True),
        ("2", "\\frac{1}{2}", False),
    ],
)
def test_equivalent(pool, a, b, same):
    assert pool.equivalent(a, b) is same


def test_results_are_cached_in_the_parent(pool):
    assert pool.equivalent("\\sqrt{8}", "2\\sqrt{2}")
    assert pool._cache[("\\sqrt{8}", "2\\sqrt{2}")] == (True, None)
    # Same normal form and plain integers never need a worker.
    assert pool.cached("\\dfrac{1}{2}", "\\frac{1}{2}") is True
    assert pool.cached("1,000", "999") is False


def test_grade_none_is_false(pool):
    assert pool.grade("5", None) is False
    assert pool.grade("5", "5") is True
    assert mv.grade_sync("\\frac{1}{4}", "0.25") is True
    assert mv.grade_sync("\\frac{1}{4}", None) is False


def test_workers_are_spawned_not_forked(pool):
    assert pool._ctx.get_start_method() == "spawn"
    assert 0 < len(pool._live) <= pool.workers


def test_hung_comparison_is_killed_and_the_pool_recovers():
    p = MathVerifyPool(workers=1, timeout=1.0)
    p._target = _hangs_on_marker  # what a worker runs; pickled by reference into the child
    try:
        assert p.equivalent("1/2", "0.5")  # warm: worker started, startup not charged below
        (old,) = p._live
        t0 = time.monotonic()
        assert p.equivalent("HANG", "1") is False
        elapsed = time.monotonic() - t0
        assert 0.9 <= elapsed < 3.5, elapsed
        assert not old.proc.is_alive()  # killed, not left running in the background
        assert old not in p._live and len(p._live) == 1  # ...and replaced
        assert p.equivalent("\\frac{3}{4}", "0.75") is True  # the replacement works
        assert p.equivalent("2", "x") is False
    finally:
        p.close()
    assert not any(w.proc.is_alive() for w in [old])


async def test_async_api_does_not_block_the_event_loop(monkeypatch):
    p = MathVerifyPool(workers=1, timeout=1.0)
    p._target = _hangs_on_marker
    monkeypatch.setattr(mv, "_default", p)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    t = asyncio.create_task(ticker())
    try:
        assert await mv.equivalent("1/2", "0.5") is True
        ticks = 0
        assert await mv.equivalent("HANG", "2") is False  # ~1 s in a worker thread
        assert ticks >= 10  # the loop kept running meanwhile (~50 expected)
        assert await mv.grade("\\frac{1}{2}", "0.5") is True
        assert await mv.grade("\\frac{1}{2}", None) is False
    finally:
        t.cancel()
        p.close()


async def test_group_answers():
    ids = await mv.group_answers(["1/2", "\\frac{1}{2}", None, "0.5", "2", "2.0", "", "\\dfrac12"])
    assert ids == [0, 0, None, 0, 1, 1, None, 0]
    assert await mv.group_answers([]) == []
    assert await mv.group_answers([None, "7", "x+1", "1+x", "7"]) == [None, 0, 1, 1, 0]


async def test_programs_group_by_their_text_without_math_verify(monkeypatch):
    """Code answers (programs) span lines: math-verify, which parses one expression, is never
    asked about them (under load each comparison waited out its timeout: a best-of-8 record's
    majority took minutes); equal texts (whitespace aside) group, different ones do not."""
    asked = []

    async def spy(a, b):
        asked.append((a, b))
        return False

    monkeypatch.setattr(mv, "equivalent", spy)
    f = "def f(x):\n    return x + 1\n"
    ids = await mv.group_answers([f, "def f(x):\n    return x+2\n", "def f(x):\n        return x + 1", "5", f])
    assert ids == [0, 1, 0, 2, 0] and asked == []


def test_closed_pool_refuses_work():
    p = MathVerifyPool(workers=1)
    p.close()
    with pytest.raises(RuntimeError):
        p.equivalent("1/2", "x")


def test_worker_that_cannot_start_raises_instead_of_grading_wrong():
    p = MathVerifyPool(workers=1)
    p.startup_timeout = 0.001  # no worker imports sympy that fast
    try:
        with pytest.raises(TTSError, match="math_verify"):
            p.equivalent("1/2", "0.5")
        assert p._live == set()  # dropped, not kept as a dead slot
        p.startup_timeout = 60.0
        assert p.equivalent("1/2", "0.5") is True  # and the pool starts a fresh one
    finally:
        p.close()


# -- grading never raises ----------------------------------------------------------------------
def _raises_on_marker(gold: str, pred: str) -> bool:
    """Worker target: a parser that raises on some input (as math-verify/sympy can)."""
    if pred == "BOOM":
        raise RecursionError("maximum recursion depth exceeded")
    return mv._compare(gold, pred)


HOSTILE = [  # valid strings of a model's output
    "1" + "0" * 5000,  # an integer over Python's 4300-digit int() limit
    "-" + "9" * 10000,
    "1," + "000," * 2000 + "000",  # thousands separators, 6004 digits
    "10^{10^{10^{10}}}",
    "{" * 3000 + "1" + "}" * 3000,
    "\\begin{pmatrix}\\end{",
    "\ud800",
    "\\" * 1001,
]


@pytest.mark.parametrize("answer", HOSTILE, ids=[f"hostile{i}" for i in range(len(HOSTILE))])
async def test_hostile_answers_grade_false_never_raise(answer):
    """Failed before: the integer answers raised ValueError (int() of over 4300 digits) in the
    parent's fast path, which crashed the run and kept no record."""
    assert await mv.grade("1", answer) is False
    assert mv.grade_sync("1", answer) is False
    assert await mv.grade(answer, answer + "\x00") in (True, False)  # NUL bytes through the pipe


def test_huge_integers_compare_without_int(pool):
    big = "1" + "0" * 5000
    assert pool.cached(big, big + "") is True and pool.cached(big, "0" + big) is True
    assert pool.cached(big, big[:-1] + "1") is False and pool.cached("-0", "0") is True


def test_every_grading_failure_is_counted():
    pool = MathVerifyPool(workers=1, timeout=2.0)
    pool._target = _raises_on_marker
    try:
        with mv.count_failures() as failed:
            assert pool.equivalent("1", "BOOM") is False  # a parser error in the worker
            pool.note("timeout: test", "1", "x")
        assert failed == {"parser": 1, "timeout": 1} and pool.failures["parser"] == 1
    finally:
        pool.close()


async def test_count_failures_is_per_task(monkeypatch):
    pool = MathVerifyPool(workers=1, timeout=1.0)
    pool._target = _hangs_on_marker
    monkeypatch.setattr(mv, "_default", pool)
    try:
        async def one(gold):
            with mv.count_failures() as failed:
                ok = await mv.equivalent(gold, "2")
            return ok, sum(failed.values())

        assert await asyncio.gather(one("HANG"), one("2")) == [(False, 1), (True, 0)]
    finally:
        pool.close()
