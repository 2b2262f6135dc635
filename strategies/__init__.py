"""Test-time scaling strategies, one module each; all registered by name for the CLI."""

from strategies.ab_mcts import ABMCTS
from strategies.adaptive_sampling import AdaptiveSampling
from strategies.adaptive_stop import ESC, AdaptiveConsistency
from strategies.archon import Archon
from strategies.astar import AStar
from strategies.beam_search import BeamSearch
from strategies.best_of_n import BestOfN, weighted_majority
from strategies.budget_forcing import BudgetForcing
from strategies.certainty import CertaintyProbe
from strategies.deepconf import DeepConf
from strategies.deepprune import DeepPrune
from strategies.dvts import DVTS
from strategies.early_pruning import EarlyPruning
from strategies.first_finish import FirstFinish
from strategies.genselect import GenSelect
from strategies.mcts import MCTS
from strategies.mind_evolution import MindEvolution
from strategies.mixture_of_agents import MixtureOfAgents
from strategies.particle_filter import ParticleFilter
from strategies.phi_decoding import PhiDecoding
from strategies.pipeline import Pipeline
from strategies.rebase import REBASE
from strategies.self_consistency import SelfConsistency
from strategies.self_refine import SelfRefine

__all__ = [
    "AdaptiveSampling", "EarlyPruning",
    "AStar", "AdaptiveConsistency", "BeamSearch", "BestOfN", "BudgetForcing", "CertaintyProbe", "DVTS", "DeepConf", "DeepPrune", "ESC",
    "FirstFinish", "ParticleFilter", "SelfConsistency", "weighted_majority",
    "ABMCTS", "MCTS", "PhiDecoding", "REBASE",
    "Archon", "GenSelect", "MindEvolution", "MixtureOfAgents", "Pipeline", "SelfRefine",
]
