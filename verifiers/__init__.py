"""Scorers and voting: confidence from logprobs (here), process reward models and judges."""

from .confidence import Confidence
from .equivalence import EmbeddingJudge, EquivalenceJudge, ModelJudge, ProbeJudge
from .prm import LLMJudgePRM, MathShepherdPRM, QwenPRM, aggregate
from .recorded import RecordedScore
from .voting import vote

__all__ = [
    "Confidence", "EmbeddingJudge", "EquivalenceJudge", "LLMJudgePRM", "MathShepherdPRM", "ModelJudge", "ProbeJudge",
    "QwenPRM", "RecordedScore", "aggregate", "vote",
]
