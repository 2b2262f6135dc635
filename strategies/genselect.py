"""GenSelect (Toshniwal et al. 2025, "GenSelect: A Generative Approach to Best-of-N", arXiv
2507.17797; NeMo-Skills' genselect): `n` samples, then the model itself reads a group of
candidate solutions and names the best ("Judgment: [IDX]"). More than `group` candidates play a
knockout tournament (the paper's N-ary tournament; `group=2` is pairwise), and `repeats`
tournaments over random orders vote by majority on the selected answers (the paper: 8 and 32
selections). The solutions are shown whole (the paper summarises a reasoning model's long
thinking first; a reasoning model's answer part is shown here).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from strategies.pipeline import Pipeline
from tts.options import Count
from tts.pipeline import Generate, Rank


class GenSelect(Pipeline):
    name = "genselect"

    def __init__(self, n: Count = 8, group: Annotated[int, Field(ge=2)] = 8, repeats: Count = 1):
        self.n, self.group, self.repeats = n, group, repeats
        self._stages = [Generate(strategy="self_consistency", n=n),
                        Rank(method="select", group=group, repeats=repeats, top=1, critiques=False)]
        self.answer = "first"
