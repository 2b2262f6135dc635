"""Scorers and voting: confidence from logprobs (here), process reward models and judges."""

from .confidence import Confidence
from .prm import LLMJudgePRM, MathShepherdPRM, QwenPRM, aggregate
from .voting import vote

__all__ = ["Confidence", "LLMJudgePRM", "MathShepherdPRM", "QwenPRM", "aggregate", "vote"]
