"""Scorers and voting: confidence from logprobs (here), process reward models and judges."""

from verifiers.confidence import Confidence
from verifiers.equivalence import EmbeddingJudge, EquivalenceJudge, MathJudge, ModelJudge, ProbeJudge
from verifiers.llm_judge import LLMJudgePRM
from verifiers.math_shepherd import MathShepherdPRM
from verifiers.prm import aggregate
from verifiers.qwen_prm import QwenPRM
from verifiers.recorded import RecordedScore
from verifiers.self_eval import SelfEval
from tts.answers.voting import vote

__all__ = [
    "SelfEval",
    "Confidence", "EmbeddingJudge", "EquivalenceJudge", "LLMJudgePRM", "MathJudge", "MathShepherdPRM", "ModelJudge", "ProbeJudge",
    "QwenPRM", "RecordedScore", "aggregate", "vote",
]
