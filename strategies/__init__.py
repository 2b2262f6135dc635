"""Test-time scaling strategies, one module each; all registered by name for the CLI."""

from .adaptive_stop import ESC, AdaptiveConsistency
from .astar import AStar
from .beam_search import BeamSearch
from .best_of_n import BestOfN, weighted_majority
from .certainty import CertaintyProbe
from .deepconf import DeepConf
from .deepprune import DeepPrune
from .dvts import DVTS
from .first_finish import FirstFinish
from .particle_filter import ParticleFilter
from .self_consistency import SelfConsistency

__all__ = [
    "AStar", "AdaptiveConsistency", "BeamSearch", "BestOfN", "CertaintyProbe", "DVTS", "DeepConf", "DeepPrune", "ESC",
    "FirstFinish", "ParticleFilter", "SelfConsistency", "weighted_majority",
]
