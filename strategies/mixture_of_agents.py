"""Mixture-of-agents (Wang et al. 2024, "Mixture-of-Agents Enhances Large Language Model
Capabilities", arXiv 2406.04692; togethercomputer/MoA) with one model playing every agent.

Layer 1: `n` proposals (samples at the run's temperature, MoA's 0.7). Each of the `layers - 2`
middle layers: `n` proposers, each shown every response of the layer before with MoA's
aggregate-and-synthesize prompt (one request for n samples of that prompt). Last layer: one
aggregator does the same and answers (advanced-moa.py: `layers = 3`). `critique=True` is
optillm's variant (optillm/moa.py): one call critiques the last layer's responses jointly
before the aggregator sees them with the critique. Where MoA draws proposers from different
models, here they are samples of one.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from strategies.pipeline import Pipeline
from tts.options import Count
from tts.pipeline import Critique, Fuse, Generate


class MixtureOfAgents(Pipeline):
    name = "mixture_of_agents"

    def __init__(self, n: Count = 4, layers: Annotated[int, Field(ge=2)] = 3, critique: bool = False):
        self.n, self.layers, self.critique = n, layers, critique
        self._stages = [Generate(strategy="self_consistency", n=n),
                        *(Fuse(samples=n) for _ in range(layers - 2)),
                        *([Critique(joint=True)] if critique else []),
                        Fuse(samples=1)]
        self.answer = "first"
