"""`RunSpec`: the one description of a run's configuration, and its hash (the record key).

The Python API (`tts.solve`, `tts.run_many`), `tts bench` and `tts sweep` all build a RunSpec
and key their results by `RunSpec.config_hash()`, so the same configuration gets the same key
whichever way it was run. The key of one result is (problem id, config hash, seed): the seed is
part of the spec but not of the config hash, so a report pools the seeds of one configuration.

Backend identity is the backend's kind (vllm, openai, replay, ...) and the model it serves;
a replayed run also names its bank (the folder), so a replay never shares a key with a live run
of the same model, nor with a replay of another bank.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict

from tts.context import Sampling
from tts.types import Budget


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BackendId(_Frozen):
    kind: str  # vllm | openai | replay | another Generator's kind
    model: str  # the served model (replay: the model the bank was recorded with)
    bank: str | None = None  # replay: the bank folder's name


class RunSpec(_Frozen):
    task: str | None
    strategy: str
    params: dict[str, Any]  # the strategy's constructor arguments, defaults filled in
    verifier: str | None = None
    verifier_model: str | None = None
    sampling: dict[str, Any]
    budget: dict[str, float] = {}  # the caps set (none: unlimited)
    seed: int = 0
    backend: BackendId

    def config_hash(self) -> str:
        """A short stable hash of everything but the seed."""
        blob = json.dumps(self.model_dump(exclude={"seed"}), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def budget_caps(budget: Budget | None) -> dict[str, float]:
    if budget is None:
        return {}
    return {k: getattr(budget, k) for k in Budget.__dataclass_fields__ if getattr(budget, k) is not None}


# Sampling fields added after results were keyed by the others: hashed only when set, so every
# configuration without them keeps its key.
OPTIONAL_SAMPLING = ("enable_thinking", "thinking_budget")


def sampling_fields(sampling: Sampling) -> dict[str, Any]:
    return {k: getattr(sampling, k) for k in Sampling.__dataclass_fields__
            if not (k in OPTIONAL_SAMPLING and getattr(sampling, k) is None)}


def backend_of(generator: Any) -> BackendId:
    """A generator's identity: its `kind` attribute, else its class name without `Generator`
    (VLLMGenerator -> vllm, OpenAIGenerator -> openai, ReplayGenerator -> replay); a generator
    serving a bank (replay) names the bank's model and folder. A wrapper that passes requests
    on (`inner`: the recorder) is the backend it wraps."""
    while getattr(generator, "inner", None) is not None:
        generator = generator.inner
    kind = getattr(generator, "kind", None) or type(generator).__name__.removesuffix("Generator").lower()
    bank = getattr(generator, "bank", None)
    if bank is not None and hasattr(bank, "path"):
        return BackendId(kind=kind, model=str(bank.model), bank=bank.path.name)
    return BackendId(kind=kind, model=str(generator.model))


def spec_of(strategy: Any, generator: Any, verifier: Any = None, budget: Budget | None = None,
            sampling: Sampling | None = None, task: Any = None, seed: int = 0) -> RunSpec:
    """The spec of a run given as objects (the Python API)."""
    vmodel = getattr(verifier, "model", None) if verifier is not None else None
    if vmodel == getattr(generator, "model", None):
        vmodel = None  # a judge that is the generator itself names no model of its own
    return RunSpec(
        task=None if task is None else task.name,
        strategy=strategy.name,
        params=strategy.config(),
        verifier=None if verifier is None else verifier.name,
        verifier_model=vmodel if isinstance(vmodel, str) else None,
        sampling=sampling_fields(sampling or Sampling()),
        budget=budget_caps(budget),
        seed=seed,
        backend=backend_of(generator),
    )
