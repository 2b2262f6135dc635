"""Building a run's parts from its options (`tts.options.BenchConfig`): strategy (validated by
its parameter model), verifier, generator (the registered backend's `from_options`), budget.
Everything here is cheap except `build_generator`; `tts bench`, sweeps and `tts serve` share it."""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from tts.errors import TTSError
from tts.interfaces import Generator
from tts.options import ModelOptions, SamplingOptions
from tts.registry import lookup
from tts.spec import BackendId


def build_strategy(name: str, n: int | None, params: dict[str, Any]) -> Any:
    """The named strategy with `n` as its size and `params` validated by its parameter model."""
    factory = lookup("strategy", name)
    model = factory.params_model()
    size = factory.size_param()
    kwargs = dict(params)
    spelled = [size, *(a for a, target in factory.aliases.items() if target == size)]
    if n is not None and size is not None and not any(k in kwargs for k in spelled):
        kwargs[size] = n
    accepted = [*model.model_fields, *factory.aliases]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        close = difflib.get_close_matches(unknown[0], accepted, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise TTSError(f"strategy '{name}' takes no parameter {', '.join(unknown)}{hint}; "
                       f"it takes: {', '.join(accepted)}")
    checked = factory.validate(kwargs)
    try:
        return factory(**{k: getattr(checked, k) for k in model.model_fields})
    except (TypeError, ValueError) as e:
        raise TTSError(f"strategy '{name}': {e}") from None


def check_verifier(name: str, verifier_model: str | None) -> Any:
    """The named verifier's factory, refused now (cheap) when it loads a reward model and none
    is named (a default hub model would be fetched, or retried for a minute offline)."""
    factory = lookup("verifier", name)
    model = inspect.signature(factory).parameters.get("model")
    if model is not None and model.default is inspect.Parameter.empty and not verifier_model:
        raise TTSError(f"the {name} verifier loads a reward model: pass --verifier-model (a folder or hub id)")
    return factory


def build_verifier(name: str | None, verifier_model: str | None, generator: Generator) -> Any:
    """The named verifier; a reward model gets `verifier_model`, a judge the generator."""
    if name is None:
        return None
    factory = check_verifier(name, verifier_model)
    accepted = inspect.signature(factory).parameters
    kwargs = {k: v for k, v in (("model", verifier_model), ("generator", generator)) if k in accepted}
    return factory(**kwargs)


def backend(options: ModelOptions) -> Any:
    """The registered backend class `options.backend` names (TTSError listing them if none)."""
    return lookup("backend", options.backend)


def backend_id(options: ModelOptions) -> BackendId:
    """What runs of these options are keyed by, before any engine starts."""
    return backend(options).identity_of(options)


def build_generator(options: ModelOptions, sampling: SamplingOptions, seed: int) -> Generator:
    return backend(options).from_options(options, sampling, seed)
