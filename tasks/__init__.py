"""Benchmarks: loading problems, the prompt, answer extraction and grading, one module each.

    import tasks
    task = tasks.get_task("math500")
    problems = task.load("path/to/math500.jsonl", limit=50)   # or task.load() from the hub
"""

from __future__ import annotations

from tts.registry import lookup

from tasks.aime import AIME24, AIME25
from tasks.base import Task
from tasks.gsm8k import GSM8K
from tasks.humaneval import HumanEval
from tasks.math500 import MATH500
from tasks.mbpp import MBPP

TASKS: dict[str, type[Task]] = {t.name: t for t in (GSM8K, MATH500, AIME24, AIME25, HumanEval, MBPP)}


def get_task(name: str) -> Task:
    """The task called `name`, or a TTSError listing the valid names."""
    return lookup("task", name)()


__all__ = ["AIME24", "AIME25", "GSM8K", "MATH500", "MBPP", "TASKS", "HumanEval", "Task", "get_task"]
