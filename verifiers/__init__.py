"""Scorers and voting: confidence from logprobs (here), process reward models and judges."""

from .confidence import Confidence
from .voting import vote

__all__ = ["Confidence", "vote"]
