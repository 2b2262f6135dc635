"""ttscale: test-time scaling of language-model reasoning on vLLM.

    import tts
    from strategies import SelfConsistency
    gen = tts.VLLMGenerator("path/to/model")
    result = tts.solve_sync(tts.Problem("p1", "What is 2+3?"), SelfConsistency(8), generator=gen)
"""

from .answers import extract_boxed
from .context import Accountant, Context, Sampling
from .errors import BudgetExceeded, TTSError
from .interfaces import Generator, Strategy, Verifier
from .runner import run_many, run_many_sync, run_sync, solve, solve_sync
from .types import Budget, GenRequest, Problem, Result, Score, Step, Trace, Usage

__all__ = [
    "Accountant", "Budget", "BudgetExceeded", "Context", "GenRequest", "Generator", "Problem",
    "Result", "Sampling", "Score", "Step", "Strategy", "TTSError", "Trace", "Usage", "Verifier",
    "extract_boxed", "run_many", "run_many_sync", "run_sync", "solve", "solve_sync",
    "VLLMGenerator", "OpenAIGenerator",
]


def __getattr__(name: str):
    # Backends import heavy libraries (vLLM, openai); load them only when asked for.
    if name == "VLLMGenerator":
        from .vllm_generator import VLLMGenerator

        return VLLMGenerator
    if name == "OpenAIGenerator":
        from .openai_generator import OpenAIGenerator

        return OpenAIGenerator
    raise AttributeError(name)
