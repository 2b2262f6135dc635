"""`RunSpec`: the one description of a run's configuration, and its hash (the record key).

The Python API (`tts.solve`, `tts.run_many`), `tts bench`, `tts sweep` and `tts serve` all build
their RunSpec with `spec_of` and key results by `RunSpec.config_hash()`, so the same
configuration gets the same key whichever way it was run. The key of one result is (problem id,
config hash, seed): the seed is part of the spec but not of the config hash, so a report pools
the seeds of one configuration.

Backend identity (`BackendId`) is the backend's kind (vllm, openai, replay, ...) and the model
it serves; a replayed run also names its bank (the folder), so a replay never shares a key with
a live run of the same model, nor with a replay of another bank. A generator knows its own
(`Generator.identity`); before one is built, its backend class derives it from the options
(`Generator.identity_of`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict

from tts.types import Budget, Sampling


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BackendId(_Frozen):
    kind: str  # vllm | openai | replay | another Generator's kind
    model: str  # the served model (replay: the model the bank was recorded with)
    bank: str | None = None  # replay: the bank folder's name

    @property
    def label(self) -> str:
        """The model name records carry: the model, or `replay:<model>@<bank>` for a replay
        (replay serves a fixed pool of recorded samples: not the same experiment as sampling
        the model afresh)."""
        return f"replay:{self.model}@{self.bank}" if self.bank is not None else self.model


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


def spec_of(strategy: Any, backend: BackendId, *, verifier: str | None = None, verifier_model: str | None = None,
            budget: Budget | None = None, sampling: Sampling | None = None, task: str | None = None,
            seed: int = 0) -> RunSpec:
    """The spec of a run: the strategy object (its name and configuration), the backend's
    identity, the verifier's registered name and reward model, and the rest by value."""
    return RunSpec(
        task=task,
        strategy=strategy.name,
        params=strategy.config(),
        verifier=verifier,
        verifier_model=verifier_model,
        sampling=sampling_fields(sampling or Sampling()),
        budget=budget_caps(budget),
        seed=seed,
        backend=backend,
    )
