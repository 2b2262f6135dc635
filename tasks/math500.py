"""MATH-500 (Lightman et al., 2023): the 500-problem test subset of MATH used by PRM800K."""

from __future__ import annotations


from tasks.base import Task


class MATH500(Task):
    name = "math500"
    hub_id = "HuggingFaceH4/MATH-500"  # fields: problem, solution, answer, subject, level, unique_id
    hub_split = "test"
