"""Execution verifiers and refinement loops on code tasks, worked by hand: the programs run in
the real sandbox; the generator and the judges are scripted FAKES (tests/scripted.py), so every
score below is computed by hand from the programs and tests written here. Also: the context's
execution charges (`Context.execute`, `Usage.exec_seconds`) and the budget property test
extended to execution seconds."""

from __future__ import annotations

import asyncio
import math
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scripted import ScriptedGenerator

import tts
from strategies import BestOfN
from strategies.review_refine import ReviewRefine
from strategies.self_debug import SelfDebug
from tts.context import Accountant, Context
from tts.errors import BudgetExceeded, TTSError
from tts.sandbox import Limits
from tts.types import Budget, GenRequest, Problem
from verifiers.behavior_vote import BehaviorVote
from verifiers.code_judge import CodeJudge
from verifiers.codet import CodeT, parse_tests
from verifiers.visible_tests import VisibleTests

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None,
                                reason="bubblewrap not installed (make install installs it on Debian)")

# A HumanEval-format problem written for these tests: two docstring examples (the visible tests),
# two hidden tests.
ADD = {
    "task_id": "Toy/add", "entry_point": "add",
    "prompt": 'def add(a: int, b: int) -> int:\n    """Sum of a and b.\n    >>> add(2, 3)\n    5\n'
              '    >>> add(1, 1)\n    2\n    """\n',
    "canonical_solution": "    return a + b\n",
    "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n",
}


def block(body: str) -> str:
    return f"Here it is:\n```python\ndef add(a, b):\n    {body}\n```\n"


GOOD, GOOD2 = block("return a + b"), block("return b + a")  # the same behaviour, different text
FIVE, SUB = block("return 5"), block("return a - b")  # passes add(2, 3) only; passes neither


@pytest.fixture(scope="module")
def task():
    from tasks.humaneval import HumanEval

    return HumanEval()


@pytest.fixture(scope="module")
def add(task):
    return task.to_problem(0, ADD, "test")


# -- what the task gives the verifiers ----------------------------------------------------------
def test_docstring_examples_become_visible_tests_and_leave_the_spec(task, add):
    from tasks.humaneval import docstring_examples

    assert task.visible_tests(add) == ["assert add(2, 3) == 5", "assert add(1, 1) == 2"]
    assert ">>>" not in task.spec(add, examples=False) and "Sum of a and b." in task.spec(add, examples=False)
    assert task.entry_point(add) == "add"
    prompt = ('def f(s):\n    """Examples:\n    f("ab") ==> 2\n    f(x) => 1\n    f([1, 2]) should return 3.\n'
              '    >>> f("a") == 1\n    >>> round(f(""), 2)\n    0.0\n    >>> f(None)\n    """\n')
    asserts, lines = docstring_examples(prompt, "f")
    # f(x) is prose (x is no name the example defines); `>>> f(None)` printed nothing: None
    assert asserts == ["assert f('ab') == 2", "assert f([1, 2]) == 3", "assert f('a') == 1",
                       "assert round(f(''), 2) == 0.0", "assert f(None) == None"]
    assert lines == [2, 4, 5, 6, 7, 8]


async def test_humaneval_reference_programs_pass_their_visible_tests(task):
    """The first 40 problems' examples, run on their reference programs: all pass (HumanEval/47,
    /116 and /148, later, have docstring examples that contradict their own tests)."""
    problems = task.load(limit=40)

    async def one(p: Problem) -> bool:
        ctx = Context(p, ScriptedGenerator(["x"]), Accountant())
        return (await task.check(ctx, p.answer, task.visible_tests(p))).passed

    assert sum(bool(task.visible_tests(p)) for p in problems) == 39  # HumanEval/38 shows no example
    assert all(await asyncio.gather(*(one(p) for p in problems)))


async def test_mbpp_shows_its_first_test_and_names_its_function(tmp_path):
    import json

    from tasks.mbpp import MBPP

    row = {"task_id": 901, "prompt": "Write a function to find the square root of the product of two numbers.",
           "code": "import math\ndef root_prod(a, b):\n    return math.sqrt(a * b)", "test_imports": ["import math"],
           "test_list": ["assert math.isclose(root_prod(2, 8), 4.0)", "assert root_prod(1, 1) == 1.0"]}
    (tmp_path / "m.jsonl").write_text(json.dumps(row) + "\n")
    task = MBPP()
    (p,) = task.load(tmp_path / "m.jsonl")
    assert task.visible_tests(p) == ["assert math.isclose(root_prod(2, 8), 4.0)"] and task.entry_point(p) == "root_prod"
    assert task.spec(p, examples=False).startswith("def root_prod(a, b):") and "isclose" not in task.spec(p, False)
    r = await tts.solve(p, BestOfN(2), generator=ScriptedGenerator([
        "```python\nimport math\ndef root_prod(a, b):\n    return math.sqrt(a * b)\n```",
        "```python\ndef root_prod(a, b):\n    return a * b\n```"]), verifier=VisibleTests(), task=task)
    assert [t.score for t in r.traces] == [1.0, 0.0] and r.correct  # the setup's `import math` is the test's


def test_codet_test_extraction():
    text = ("assert add(1, 2) == 3\nassert add(0, 0) == 0\nassert max(1, 2) == 2\nassert add(1,\n"
            "# trailing\nassert add(5, 5) == 10\n```\nmore words assert add(9, 9) == 18")
    assert parse_tests(text, "add", 5) == ["assert add(1, 2) == 3", "assert add(0, 0) == 0", "assert add(5, 5) == 10"]
    assert parse_tests(text, "add", 1) == ["assert add(1, 2) == 3"]


def test_a_code_verifier_on_a_math_problem_says_what_it_needs():
    ctx = Context(Problem("gsm8k/1", "2+2?", "4", task="gsm8k"), ScriptedGenerator(["x"]), Accountant())
    with pytest.raises(TTSError, match="need a code task"):
        asyncio.run(VisibleTests().score(ctx, []))


# -- the verifiers -----------------------------------------------------------------------------
async def test_visible_tests_scores_the_pass_rate_and_charges_exec_seconds(task, add):
    r = await tts.solve(add, BestOfN(4), generator=ScriptedGenerator([SUB, FIVE, GOOD, "no code at all"]),
                        verifier=VisibleTests(), task=task)
    assert [t.score for t in r.traces] == [0.0, 0.5, 1.0, 0.0]  # the bare text is a program that fails to load
    assert r.correct and r.answer == "def add(a, b):\n    return a + b\n"
    assert 0 < r.usage.exec_seconds <= 4 * task.check_limits.wall_seconds
    assert r.usage.verifier_tokens == 0  # nothing but execution


async def test_a_test_that_loops_fails_alone_within_its_time_limit(task, add):
    """Each test runs under its own limit inside the program's run: add(2, 3) loops (even behind
    an `except Exception`), add(1, 1) still runs and passes."""
    looping = block("while a == 2:\n        try:\n            pass\n        except Exception:\n            pass\n"
                    "    return a + b")
    ctx = Context(add, ScriptedGenerator(["x"]), Accountant())
    o = await task.check(ctx, task.extract(looping), task.visible_tests(add), test_seconds=0.5)
    assert [t["passed"] for t in o.tests] == [False, True] and "TestTimeout" in o.tests[0]["error"]
    assert o.pass_rate == 0.5 and 0.5 <= ctx.usage.exec_seconds < task.check_limits.wall_seconds


async def test_codet_dual_agreement_by_hand(task, add):
    # Four generated tests (one written twice, one wrong): add(2,3)==5 (x2), add(0,0)==0, add(1,1)==3.
    judge = ScriptedGenerator(["add(2, 3) == 5\nassert add(0, 0) == 0\n```", "add(2, 3) == 5\nassert add(1, 1) == 3\n"],
                      num_params=7)
    r = await tts.solve(add, BestOfN(4), generator=ScriptedGenerator([GOOD, FIVE, GOOD2, SUB]),
                        verifier=CodeT(judge, samples=2), task=task)
    # Consensus sets: {GOOD, GOOD2} pass add(2,3)==5 (x2) and add(0,0)==0: sqrt(2) * 3; FIVE passes
    # add(2,3)==5 (x2): sqrt(1) * 2; SUB passes add(0,0)==0: 1. The top value: sqrt(4) * 4 tests.
    top = math.sqrt(4) * 4
    assert [round(t.score, 6) for t in r.traces] == [round(v / top, 6) for v in
                                                     (math.sqrt(2) * 3, 2, math.sqrt(2) * 3, 1)]
    assert r.correct and r.telemetry["generated_tests"] == 3
    req = judge.requests[0]
    assert req.n == 2 and req.prefix.endswith("# check the correctness of add\nassert ")
    assert ">>>" not in req.messages[0]["content"]  # CodeT's prompt: the examples left out
    assert r.usage.verifier_calls == 1 and r.usage.verifier_tokens > 0 and r.usage.exec_seconds > 0


async def test_codet_writes_its_tests_once_per_problem_and_seed(task, add):
    """Scored twice in one run, or in another run of the same problem and seed (a sweep's runs at
    several n): one generation; each run is charged it. Another seed writes its own."""
    judge = ScriptedGenerator(["add(2, 3) == 5\n"], num_params=7)
    v = CodeT(judge)
    charged = []
    for seed in (0, 0, 1):
        ctx = Context(add, ScriptedGenerator(["x"]), Accountant(None, 10, 7), seed=seed)
        traces, _ = await ctx.sample(1)
        await v.score(ctx, traces)
        await v.score(ctx, traces)
        charged.append((ctx.usage.verifier_tokens, ctx.usage.verifier_calls))
    assert len(judge.requests) == 2  # seeds 0 and 1
    assert charged[0] == charged[1] == charged[2] and charged[0][0] > 0 and charged[0][1] == 1


async def test_behaviour_vote_clusters_by_outputs_on_generated_inputs(task, add):
    judge = ScriptedGenerator(["add(2, 3) == 5\nassert add(-1, 1) == 0\nassert add(7, 0) == 7\n"])
    gens = [GOOD, block("return a + b if a > 0 else 0"), GOOD2, block("return abs(a) + b"), SUB]
    r = await tts.solve(add, BestOfN(5), generator=ScriptedGenerator(gens), verifier=BehaviorVote(judge), task=task)
    # All but SUB pass the visible tests (SUB is filtered out: 0). On the inputs (2,3), (-1,1), (7,0):
    # GOOD and GOOD2 give (5, 0, 7); `if a > 0` gives (5, 0, 7) too; abs gives (5, 2, 7).
    assert [t.score for t in r.traces] == [3 / 5, 3 / 5, 3 / 5, 1 / 5, 0.0]
    assert r.telemetry["behaviours"] == 2 and r.correct
    unfiltered = await tts.solve(add, BestOfN(5), generator=ScriptedGenerator(gens),
                                 verifier=BehaviorVote(judge, filter_visible=False), task=task)
    assert unfiltered.traces[4].score == 1 / 5  # SUB's own behaviour, (-1, -2, 7)


async def test_code_judge_reads_p_yes_per_distinct_program(task, add):
    judge = ScriptedGenerator(["Yes"], top=[("Yes", math.log(0.8)), ("No", math.log(0.2))])
    r = await tts.solve(add, BestOfN(3), generator=ScriptedGenerator([GOOD, SUB, GOOD]),
                        verifier=CodeJudge(judge), task=task)
    assert [round(t.score, 6) for t in r.traces] == [0.8] * 3
    assert len(judge.requests) == 2  # the repeated program is judged once
    assert "return a - b" in judge.requests[1].messages[0]["content"] and r.usage.exec_seconds == 0


# -- refinement loops --------------------------------------------------------------------------
async def test_self_debug_feeds_the_failure_back_until_the_tests_pass(task, add):
    gen = ScriptedGenerator([SUB, FIVE, GOOD])
    r = await tts.solve(add, SelfDebug(1, rounds=3), generator=gen, verifier=VisibleTests(), task=task)
    assert r.correct and r.telemetry["rounds"] == [2] and r.telemetry["visible_passed"] == 1
    first_fix, second_fix = gen.requests[1], gen.requests[2]
    told = first_fix.messages[-1]["content"]
    assert "Tests passed:\n(none)" in told and "assert add(2, 3) == 5 # output: -1" in told
    assert first_fix.messages[-2] == {"role": "assistant", "content": SUB} and first_fix.temperature == 0.0
    assert "Tests passed:\nassert add(2, 3) == 5\n\nTests failed:\nassert add(1, 1) == 2 # output: 5" in \
        second_fix.messages[-1]["content"]
    assert len(gen.requests) == 3  # stopped once the examples passed (a 4th round was allowed)
    assert [a["passed"] for a in r.details["attempts"][0]] == [False, False, True]


async def test_self_debug_reflexion_reflects_first_and_chains_are_selected(task, add):
    gen = ScriptedGenerator([SUB, "It subtracts instead of adding.", GOOD])
    r = await tts.solve(add, SelfDebug(1, rounds=1, reflect=True), generator=gen, verifier=VisibleTests(), task=task)
    reflect, fix = gen.requests[1], gen.requests[2]
    assert "assert add(2, 3) == 5 # output: -1" in reflect.messages[-1]["content"]
    assert "Do not write any code" in reflect.messages[-1]["content"]
    assert fix.messages[-2] == {"role": "assistant", "content": "It subtracts instead of adding."}
    assert r.correct and r.details["attempts"][0][0]["reflection"] == "It subtracts instead of adding."
    # n chains, no repair rounds: the verifier selects among their programs (best-of-n)
    two = await tts.solve(add, SelfDebug(3, rounds=0), generator=ScriptedGenerator([SUB, FIVE, GOOD]),
                          verifier=VisibleTests(), task=task)
    assert two.correct and two.telemetry["rounds"] == [0, 0, 0] and two.telemetry["visible_passed"] == 1


async def test_self_debug_stops_without_examples_to_test(task):
    p = task.to_problem(1, {**ADD, "task_id": "Toy/noex", "prompt": 'def add(a, b):\n    """Sum."""\n'}, "t")
    gen = ScriptedGenerator([SUB])
    r = await tts.solve(p, SelfDebug(1), generator=gen, verifier=VisibleTests(), task=task)
    assert len(gen.requests) == 1 and r.usage.exec_seconds == 0 and not r.correct


async def test_review_refine_reviews_the_best_and_contrasts_the_worst(task, add):
    gen = ScriptedGenerator([SUB, FIVE, "It returns a constant.", GOOD, SUB])
    r = await tts.solve(add, ReviewRefine(2, rounds=3), generator=gen, verifier=VisibleTests(), task=task)
    assert r.correct and r.telemetry == {"rounds": 1, "chosen_round": 1, "best_score": 1.0}
    assert [t.score for t in r.traces] == [0.0, 0.5, 1.0, 0.0]
    review, refine = gen.requests[1], gen.requests[2]
    assert review.messages[-2]["content"] == FIVE and "scored it 0.50" in review.messages[-1]["content"]
    assert refine.n == 2 and refine.messages[-2]["content"] == "It returns a constant."
    assert "weaker attempt (scored 0.00)" in refine.messages[-1]["content"] and SUB in refine.messages[-1]["content"]
    assert len(gen.requests) == 3  # the best reached stop_at=1: no further round


async def test_review_refine_with_no_rounds_is_best_of_n(task, add):
    r = await tts.solve(add, ReviewRefine(3, rounds=0), generator=ScriptedGenerator([SUB, FIVE, GOOD]),
                        verifier=VisibleTests(), task=task)
    b = await tts.solve(add, BestOfN(3), generator=ScriptedGenerator([SUB, FIVE, GOOD]),
                        verifier=VisibleTests(), task=task)
    assert r.answer == b.answer and [t.score for t in r.traces] == [t.score for t in b.traces]


# -- execution charges and the budget ----------------------------------------------------------
class CountingSandbox:
    """The task's sandbox, counting the runs it is asked for."""

    def __init__(self, sandbox):
        self.sandbox, self.runs, self.limits = sandbox, 0, sandbox.limits

    async def run(self, *args, **kwargs):
        self.runs += 1
        return await self.sandbox.run(*args, **kwargs)


async def test_execute_reserves_the_limit_charges_what_ran_and_waits_its_turn(task, add):
    box = CountingSandbox(task.sandbox)
    limits = Limits(wall_seconds=1.0, cpu_seconds=1)
    refused = Context(add, ScriptedGenerator(["x"]), Accountant(Budget(exec_seconds=0.5)))
    with pytest.raises(BudgetExceeded) as e:
        await refused.execute(box, "print(1)", limits=limits)
    assert e.value.cap == "exec_seconds" and box.runs == 0  # refused before it ran
    # A sleeper killed at its 1 s limit is charged the limit; three quick runs under a 2.5 s cap
    # (reserved 1 s each) go two at a time, the third once one has returned.
    ctx = Context(add, ScriptedGenerator(["x"]), Accountant(Budget(exec_seconds=2.5)))
    slow = await ctx.execute(box, "import time; time.sleep(30)", limits=limits)
    assert slow.timed_out and ctx.usage.exec_seconds == 1.0
    ctx = Context(add, ScriptedGenerator(["x"]), Accountant(Budget(exec_seconds=2.5)))
    runs = await asyncio.gather(*(ctx.execute(box, "print(2)", limits=limits) for _ in range(3)))
    assert all(r.ok for r in runs) and 0 < ctx.usage.exec_seconds < 2.5 and ctx.accountant._reserved.exec_seconds == 0


def _strategy(which: int, n: int):
    judge = ScriptedGenerator(["add(2, 3) == 5\nassert add(0, 0) == 0\n"], num_params=10)
    return [(BestOfN(n), VisibleTests()), (BestOfN(n), CodeT(judge, samples=1, max_tokens=8)),
            (SelfDebug(n, rounds=2), VisibleTests()), (ReviewRefine(n, rounds=1), VisibleTests())][which]


@settings(max_examples=24, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 3), n=st.integers(1, 3),
       cap=st.sampled_from(["exec_seconds", "total_tokens", "verifier_tokens", "calls"]), value=st.integers(0, 40))
def test_no_run_ever_exceeds_its_budget_execution_seconds_included(task, add, which, n, cap, value):
    """The budget property test (tests/test_core.py) over execution: every sandboxed run of a
    verifier or strategy is reserved at its time limit before it starts, so no cap is crossed,
    exec_seconds included; a run refused by its budget says so."""
    strategy, verifier = _strategy(which, n)
    limit = {"exec_seconds": value * 0.5, "total_tokens": value * 20, "verifier_tokens": value * 5, "calls": value % 6}
    budget = Budget(**{cap: limit[cap]})
    r = tts.solve_sync(add, strategy, generator=ScriptedGenerator([SUB, FIVE, GOOD], num_params=10),
                       verifier=verifier, budget=budget, task=task, sampling=tts.Sampling(max_tokens=30))
    assert budget.exceeded_by(r.usage) is None, (budget, r.usage)


# -- a sweep: one bank for every subsampled configuration, judges served live ----------------------
async def test_a_sweep_draws_samples_once_and_its_judges_run_live(tmp_path):
    """Best-of-N over n = 1, 2 scored by visible tests and by the code judge, self-consistency
    and self-debugging: four subsample groups with the same samples share one bank (one
    generation); the code judge's requests and self-debugging's repair turns, which no bank
    holds, go to the live generator."""
    import json

    import yaml

    from tts.experiment import sweep
    from tts.models import DEFAULT_MODEL

    data = tmp_path / "toy.jsonl"
    data.write_text(json.dumps(ADD) + "\n")
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump({
        "tasks": [{"name": "humaneval", "data": str(data)}],
        "strategies": [{"name": "best_of_n", "verifier": "visible_tests"}, {"name": "best_of_n", "verifier": "code_judge"},
                       {"name": "self_consistency"}, {"name": "self_debug", "params": {"rounds": 1}}],
        "grid": {"n": [1, 2]}, "sampling": {"max_tokens": 40}, "output": str(tmp_path / "out")}))
    p = sweep.plan(f)
    assert len(p.jobs) == 1 and len(p.jobs[0].runs) == 8 and p.jobs[0].record_n == 2
    gen = ScriptedGenerator([SUB, GOOD], top=[("Yes", math.log(0.6)), ("No", math.log(0.4))])
    gen.model = DEFAULT_MODEL  # the planned model: runs are keyed by it
    store = await sweep.run_local(p, generator=gen)
    samples = [r for r in gen.requests if len(r.messages) == 1 and r.logprobs is None]
    judged = [r for r in gen.requests if r.logprobs is not None]
    repairs = [r for r in gen.requests if len(r.messages) > 1]
    assert [r.n for r in samples] == [2]  # the bank: 2 samples of the one problem, drawn once
    assert judged and all("Is the candidate solution correct?" in r.messages[0]["content"] for r in judged)
    # self_debug n=2 draws both samples, SUB among them: its chain is told its failures and repaired live
    assert repairs and all("Tests failed:" in r.messages[-1]["content"] and r.temperature == 0.0 for r in repairs)
    recs = list(store.records.values())
    assert len(recs) == 8 and all(r["model"].startswith("replay:") for r in recs)
    best2 = next(r for r in recs if r["strategy"] == "best_of_n" and r["n_samples"] == 2
                 and r["scores"] in ([0.0, 1.0], [1.0, 0.0]))
    assert best2["correct"] and best2["usage"]["exec_seconds"] > 0
