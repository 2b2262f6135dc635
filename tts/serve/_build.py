"""The one place `tts serve` borrows the experiment layer's builders (generator, strategy,
verifier, budget, default verifier), so a refactor of that layer re-points imports here only."""

from __future__ import annotations

from typing import Any

from tts.experiment.build import (
    BACKENDS,
    BenchConfig,
    build_budget,
    build_generator,
    build_strategy,
    build_verifier,
    open_bank,
    resolve_sampling,
)

__all__ = ["BACKENDS", "build_budget", "build_generator", "build_strategy", "default_verifier",
           "generator_config", "make_verifier", "open_bank", "resolve_sampling"]


def default_verifier(strategy: str) -> str | None:
    """The verifier a strategy gets when none is named (as in `tts bench`)."""
    from tts.registry import lookup

    return getattr(lookup("strategy", strategy), "default_verifier", None)


def generator_config(**model_options: Any) -> BenchConfig:
    """The configuration `build_generator` reads (the model options of `tts bench`)."""
    return BenchConfig(task="serve", strategy="", **model_options)


def make_verifier(name: str, verifier_model: str | None, generator: Any) -> Any:
    return build_verifier(name, generator_config(verifier_model=verifier_model), generator)
