"""What code benchmarks share: the prompt asks for a Python function in a fenced block, the
answer is the program pulled out of the completion, and grading runs it against the hidden tests
in the sandbox (`tts.sandbox`), never in this process.

The prompt is evalplus's instruct prompt for chat models (evalplus/codegen.py,
`instruction_prefix`) with one change: the task's code sits in a ```python fence, not a plain
one. evalplus also prefills the assistant's reply ("Below is a Python script ... ```python"),
which a strategy's plain request cannot; without that prefill the embedded 0.5B coder echoes the
plain fence and often the bare stub (greedy pass@1 on HumanEval's first 40: plain fence 0.65,
evalplus with its prefill 0.70, python fence 0.80; docs/references.md). Extraction follows evalplus's sanitizer in spirit
(evalplus/sanitize.py): the code block, then only its imports, definitions and assignments
(the model's example calls and asserts dropped: a wrong example must not fail a right answer).
"""

from __future__ import annotations

import ast
import asyncio
import json
import re
import secrets
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tts.context import Context
from tts.errors import TTSError
from tts.registry import lookup
from tts.sandbox import ExecResult, Limits, Sandbox, default_sandbox
from tts.types import Problem, Result

from tasks.base import Task

INSTRUCTION = ("Please provide a self-contained Python script that solves the following problem "
               "in a markdown code block:")
HARNESS = Path(__file__).with_name("harness.py").read_text()  # runs inside the sandbox only
# A complete fenced block: ```lang ... ``` (lang optional), the fences on lines of their own, the
# closing one bare (so an opening fence inside a block, "```markdown\n```python", is its content).
_BLOCK = re.compile(r"^[ \t]*```[ \t]*([\w+.-]*)[^\n]*\n(.*?)^[ \t]*```[ \t]*$", re.S | re.M)
_OPEN_BLOCK = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*)\Z", re.S)  # cut by max_tokens
_PYTHON = {"", "python", "py", "python3"}
_KEPT = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)
OUTCOME_CACHE = 4096  # graded (problem, program) pairs remembered, so a record's detail costs no rerun
TEST_SECONDS = 1.0  # per test when a verifier or strategy runs tests (model-written tests may loop)


def instruct_prompt(task_prompt: str) -> str:
    """The user message posing `task_prompt` (evalplus's instruction, the code in a python fence)."""
    return f"{INSTRUCTION}\n```python\n{task_prompt.strip()}\n```\n"


def python_blocks(text: str) -> list[str]:
    """The bodies of the complete Python blocks in `text`, in order; a block in another language
    that wraps fences (the CPU model's "```markdown\n```python ... ```\n```") is searched inside."""
    found: list[str] = []
    for lang, body in _BLOCK.findall(text):
        if "```" not in body:
            found += [body] if lang.lower() in _PYTHON else []
        else:  # the wrapper's first bare fence closed the inner block: it is open inside the body
            inner = python_blocks(body) or [unclosed_block(body)]
            found += [b for b in inner if b is not None]
    return found


def unclosed_block(text: str) -> str | None:
    """The body of a Python block whose fence opened last and never closed (cut by max_tokens).
    A bare last fence opens a block only at an odd count (else it closed one); a ```python one
    always opens."""
    if "```" not in text:
        return None
    m = _OPEN_BLOCK.match(text[text.rindex("```"):])
    if m is None or m.group(1).lower() not in _PYTHON or (not m.group(1) and text.count("```") % 2 == 0):
        return None
    return m.group(2)


def extract_program(text: str) -> str | None:
    """The program in a completion: the first complete Python code block that defines something,
    else the first complete Python block, else an unclosed block (a completion cut by max_tokens),
    else the whole text (a model that answered with bare code). None for empty text."""
    blocks = python_blocks(text)
    if blocks:
        return next((b for b in blocks if re.search(r"^\s*(def|class)\s", b, re.M)), blocks[0])
    cut = unclosed_block(text)
    if cut is not None:
        return cut
    return text if text.strip() else None


def keep_definitions(code: str) -> str:
    """`code` with only its top-level imports, definitions and assignments (decorators and
    comments inside them kept); unchanged when it does not parse (the sandbox reports the error)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return code
    lines = code.splitlines()
    kept = []
    for node in tree.body:
        if isinstance(node, _KEPT):
            first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
            kept.append("\n".join(lines[first - 1:node.end_lineno]))
    return "\n".join(kept) + "\n" if kept else code


@dataclass(slots=True)
class Outcome:
    """How a program did on a set of tests (a problem's hidden tests when graded). `tests`: one
    entry per test, in order ({"passed": bool} plus "error", "line" (the test's failing line),
    "where", and "got" (the value an `assert A == B` found for A) on a failure); `failure`: one
    line saying why it failed (None when it passed); `values`: per expression asked for, its
    value's repr or "!" + the exception it raised (None: not reached)."""

    passed: bool
    program: str
    tests: list[dict[str, Any]] = field(default_factory=list)
    failure: str | None = None
    wall_seconds: float = 0.0
    cpu_seconds: float | None = None
    values: list[str | None] = field(default_factory=list)
    loaded: bool = True  # the program (and the setup) loaded: it defines what it defines

    @property
    def pass_rate(self) -> float:
        return sum(bool(t.get("passed")) for t in self.tests) / len(self.tests) if self.tests else float(self.loaded)

    def detail(self) -> dict[str, Any]:
        return {"program": self.program, "passed": self.passed, "tests": self.tests, "failure": self.failure,
                "wall_seconds": round(self.wall_seconds, 4), "cpu_seconds": self.cpu_seconds}


class CodeTask(Task):
    """A benchmark graded by running the program against hidden tests. Subclasses load rows into
    Problems whose `meta` holds what `program` and `tests` need."""

    system_prompt = ""  # no system message: the chat template's own (evalplus sends none)
    limits = Limits(wall_seconds=10.0, cpu_seconds=5, memory_bytes=1 << 30)  # per program, all its tests
    # A verifier's or strategy's run (`check`): its wall limit is what the budget reserves for it.
    check_limits = Limits(wall_seconds=5.0, cpu_seconds=4, memory_bytes=1 << 30)

    def __init__(self, sandbox: Sandbox | None = None) -> None:
        self.sandbox = sandbox or default_sandbox()  # fails here, before any engine, without bubblewrap
        self._outcomes: OrderedDict[tuple[str, str], Outcome] = OrderedDict()

    def extract(self, text: str) -> str | None:
        return extract_program(text)

    def program(self, problem: Problem, answer: str) -> str:
        """The program that runs: the answer's definitions (subclasses add the prompt's context)."""
        return keep_definitions(answer)

    def tests(self, problem: Problem) -> tuple[str, list[str]]:
        """(setup code, hidden tests): each test is code run after the program; it fails by raising."""
        raise NotImplementedError

    def visible_tests(self, problem: Problem) -> list[str]:
        """The tests the prompt shows the model (its examples, as asserts): what an execution
        verifier or a repair loop may run; never the hidden ones."""
        raise NotImplementedError

    def entry_point(self, problem: Problem) -> str:
        """The name of the function the problem asks for (what generated tests call)."""
        raise NotImplementedError

    def spec(self, problem: Problem, examples: bool = True) -> str:
        """The problem as code for a model to test or judge: the signature and docstring (or the
        description); `examples=False` leaves out the examples the prompt shows (CodeT's test
        generation prompt does, so generated tests are not copies of the visible ones)."""
        raise NotImplementedError

    async def check(self, ctx: Context, answer: str, tests: list[str], exprs: list[str] = (),
                    test_seconds: float | None = TEST_SECONDS) -> Outcome:
        """Run `answer`'s program against `tests` (and report the values of `exprs`) in the
        sandbox, charged to `ctx`'s run as execution seconds (`Context.execute`): an execution
        verifier's or a strategy's run, never the task's grading. Each test is limited to
        `test_seconds` (model-written tests may loop)."""
        setup, _ = self.tests(ctx.problem)
        program = self.program(ctx.problem, answer)

        async def run(files: dict[str, str]) -> ExecResult:
            return await ctx.execute(self.sandbox, HARNESS, files=files, limits=self.check_limits)

        return await _harness(run, program, setup, list(tests), list(exprs), test_seconds)

    async def check_all(self, ctx: Context, answers: Sequence[str | None], tests: list[str], exprs: list[str] = (),
                        test_seconds: float | None = TEST_SECONDS) -> list[Outcome | None]:
        """`check` of each answer (None: no program), every distinct program run once, concurrently."""
        distinct = list(dict.fromkeys(a for a in answers if a is not None))
        runs = await asyncio.gather(*(self.check(ctx, a, tests, exprs, test_seconds) for a in distinct))
        by = dict(zip(distinct, runs))
        return [None if a is None else by[a] for a in answers]

    async def grade(self, problem: Problem, answer: str | None) -> bool:
        return answer is not None and (await self.outcome(problem, answer)).passed

    async def grade_detail(self, problem: Problem, result: Result) -> dict[str, Any]:
        """What a record keeps of the final answer's run: {"execution": {program, passed, tests,
        failure, wall_seconds, cpu_seconds}} (the run is the one `grade` made, remembered)."""
        if result.answer is None:
            return {"execution": {"program": None, "passed": False, "tests": [], "failure": "no program in the answer"}}
        return {"execution": (await self.outcome(problem, result.answer)).detail()}

    async def outcome(self, problem: Problem, answer: str) -> Outcome:
        key = (problem.id, answer)
        if key in self._outcomes:
            self._outcomes.move_to_end(key)
            return self._outcomes[key]
        program = self.program(problem, answer)
        setup, tests = self.tests(problem)

        async def run(files: dict[str, str]) -> ExecResult:  # grading: the task's, charged to no run
            return await self.sandbox.run(HARNESS, files=files, limits=self.limits)

        outcome = await _harness(run, program, setup, tests, [], None)
        self._outcomes[key] = outcome
        if len(self._outcomes) > OUTCOME_CACHE:
            self._outcomes.popitem(last=False)
        return outcome


_tasks: dict[str, CodeTask] = {}


def code_task(problem: Problem) -> CodeTask:
    """The registered code task `problem` comes from (one instance per task name): what an
    execution verifier or a repair strategy builds, runs and tests its programs with."""
    task = _tasks.get(problem.task)
    if task is None:
        cls = lookup("task", problem.task)
        if not (isinstance(cls, type) and issubclass(cls, CodeTask)):
            raise TTSError(f"problem {problem.id} is from task '{problem.task}', which runs no programs: execution "
                           "verifiers and repair strategies need a code task (humaneval, mbpp)")
        task = _tasks[problem.task] = cls()
    return task


async def _harness(run: Any, program: str, setup: str, tests: list[str], exprs: list[str],
                   test_seconds: float | None) -> Outcome:
    """Run the harness over `program` with `run(files)` (the sandbox's run, or the context's)."""
    tag = f"@@tts-{secrets.token_hex(8)}@@"
    spec = json.dumps({"tag": tag, "setup": setup, "tests": tests, "exprs": exprs, "test_seconds": test_seconds})
    result = await run({"solution.py": program, "spec.json": spec})
    return _outcome(program, len(tests), result, tag, len(exprs))


def _outcome(program: str, n_tests: int, run: ExecResult, tag: str, n_exprs: int = 0) -> Outcome:
    """Read the harness's tagged lines. A run that died (time, memory, output cap, a crash) fails
    the tests it had not reported; `failure` names the first thing that went wrong."""
    tests: list[dict[str, Any] | None] = [None] * n_tests
    values: list[str | None] = [None] * n_exprs
    done, load_error = False, None
    for line in run.stdout.splitlines():
        if not line.startswith(tag):
            continue
        try:
            rep = json.loads(line[len(tag):])
        except json.JSONDecodeError:
            continue
        if rep.get("done"):
            done = True
        elif "load" in rep:
            what = "the program" if rep["load"] == "solution.py" else "the test setup"
            load_error = f"{what} failed to load: {_describe(rep)}"
        elif isinstance(rep.get("test"), int) and 0 <= rep["test"] < n_tests:
            tests[rep["test"]] = {k: v for k, v in rep.items() if k != "test"}
        elif isinstance(rep.get("expr"), int) and 0 <= rep["expr"] < n_exprs:
            values[rep["expr"]] = str(rep["value"]) if "value" in rep else "!" + str(rep.get("error"))
    died = None if run.ok else run.summary()
    if died and run.stderr.strip():
        died += f" ({run.stderr.strip().splitlines()[-1][:200]})"
    ran = [t for t in tests if t is not None]
    graded = [t if t is not None else {"passed": False, "error": f"not run: {load_error or died or 'the program ended before it'}"}
              for t in tests]
    passed = done and run.ok and len(ran) == n_tests and all(t["passed"] for t in ran)
    failure = None
    if not passed:
        first = next((i for i, t in enumerate(tests) if t is not None and not t["passed"]), None)
        failure = (load_error or (f"test {first}: {_describe(graded[first])}" if first is not None else None)
                   or died or "the program ended before the tests finished")
    reached = done or any(t is not None for t in tests) or any(v is not None for v in values)
    return Outcome(passed, program, graded, failure, run.wall_seconds, run.cpu_seconds, values,
                   load_error is None and reached)


def _describe(rep: dict[str, Any]) -> str:
    """`<failing line> -> <error> (at <file:line>)`, with whichever parts the harness found."""
    text = rep.get("error", "failed")
    if rep.get("line"):
        text = f"{rep['line']} -> {text}"
    return f"{text} (at {rep['where']})" if rep.get("where") else text
