"""AIME 2024 and 2025: 30 competition problems each, every answer an integer 0-999."""

from __future__ import annotations


from tasks.base import Task


class AIME24(Task):
    name = "aime24"
    hub_id = "HuggingFaceH4/aime_2024"  # fields: id, problem, solution, answer, url, year
    hub_split = "train"  # the only split


class AIME25(Task):
    name = "aime25"
    # yentinglin/aime_2025 holds AIME I and II in one 30-row "train" split with problem/answer
    # fields (it is what lighteval and open-r1 evaluate on). opencompass/AIME2025 splits the two
    # exams into configs "AIME2025-I"/"AIME2025-II" (question/answer), which one load cannot read.
    hub_id = "yentinglin/aime_2025"
    hub_split = "train"
