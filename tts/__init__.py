"""ttscale: test-time scaling of language-model reasoning on vLLM.

    import tts
    from strategies import SelfConsistency
    gen = tts.VLLMGenerator("path/to/model")
    result = tts.solve_sync(tts.Problem("p1", "What is 2+3?"), SelfConsistency(8), generator=gen)
"""

from tts.answers import extract_boxed
from tts.context import Accountant, Context, Verifier
from tts.errors import BudgetExceeded, TTSError
from tts.interfaces import Generator
from tts.runner import run_many, run_many_sync, run_sync, solve, solve_sync
from tts.strategy import Strategy
from tts.types import Budget, GenRequest, Problem, Result, Sampling, Score, Step, Trace, Usage

__all__ = [
    "Accountant", "Budget", "BudgetExceeded", "Context", "GenRequest", "Generator", "Problem",
    "Result", "Sampling", "Score", "Step", "Strategy", "TTSError", "Trace", "Usage", "Verifier",
    "extract_boxed", "run_many", "run_many_sync", "run_sync", "solve", "solve_sync",
    "VLLMGenerator", "OpenAIGenerator",
]


def __getattr__(name: str):
    # Backends import heavy libraries (vLLM, openai); load them only when asked for.
    if name == "VLLMGenerator":
        from tts.backends.vllm import VLLMGenerator

        return VLLMGenerator
    if name == "OpenAIGenerator":
        from tts.backends.openai import OpenAIGenerator

        return OpenAIGenerator
    raise AttributeError(name)
