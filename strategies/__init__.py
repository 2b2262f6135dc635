"""Test-time scaling strategies, one module each; all registered by name for the CLI."""

from .astar import AStar
from .beam_search import BeamSearch
from .best_of_n import BestOfN, weighted_majority
from .dvts import DVTS
from .particle_filter import ParticleFilter
from .self_consistency import SelfConsistency

__all__ = ["AStar", "BeamSearch", "BestOfN", "DVTS", "ParticleFilter", "SelfConsistency", "weighted_majority"]
