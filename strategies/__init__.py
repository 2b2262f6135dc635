"""Test-time scaling strategies, one module each; all registered by name for the CLI."""

from .best_of_n import BestOfN, weighted_majority
from .self_consistency import SelfConsistency

__all__ = ["BestOfN", "SelfConsistency", "weighted_majority"]
