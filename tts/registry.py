"""Names -> plugin classes: strategies, verifiers, equivalence judges, tasks and backends.

Plugins declare themselves as Python entry points, one group per kind, in their package's
pyproject.toml (this project's own are declared the same way):

    [project.entry-points."ttscale.strategies"]
    best_of_n = "strategies.best_of_n:BestOfN"

A name is loaded the first time it is looked up (importing that plugin's module only), so a
third-party package adds a strategy by declaring one, without touching this repository. The
core never imports a plugin package: it reads entry points from the installed packages'
metadata. `register` adds a plugin in process (a notebook, a test) and wins over an entry point
of the same name.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from tts.errors import TTSError

GROUPS = {
    "strategy": "ttscale.strategies",
    "verifier": "ttscale.verifiers",
    "judge": "ttscale.judges",  # equivalence judges (DeepPrune's trace clustering)
    "task": "ttscale.tasks",
    "backend": "ttscale.backends",
}

_loaded: dict[str, dict[str, Any]] = {kind: {} for kind in GROUPS}


def _declared(kind: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUPS[kind])}


def register(kind: str, name: str, obj: Any) -> Any:
    """Add `obj` under `name` in process; returns it."""
    _loaded[_kind(kind)][name] = obj
    return obj


def names(kind: str) -> list[str]:
    """Every name of `kind`: declared by an installed package or registered in process."""
    return sorted({*_declared(_kind(kind)), *_loaded[kind]})


def lookup(kind: str, name: str) -> Callable[..., Any]:
    """The plugin called `name`, or a TTSError listing the valid names."""
    table = _loaded[_kind(kind)]
    if name in table:
        return table[name]
    ep = _declared(kind).get(name)
    if ep is None:
        valid = names(kind)
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise TTSError(f"unknown {kind} '{name}'{hint}; valid: {', '.join(valid)}")
    try:
        obj = ep.load()
    except Exception as e:
        raise TTSError(f"the {kind} '{name}' ({ep.value}, from package {_dist(ep)}) failed to load: "
                       f"{type(e).__name__}: {e}") from e
    declared = getattr(obj, "name", None)
    if isinstance(declared, str) and declared and declared != name:
        raise TTSError(f"the {kind} entry point '{name}' ({ep.value}) loads a class named '{declared}': "
                       "the entry point's name must be the class's `name`")
    table[name] = obj
    return obj


def load_all(kind: str) -> dict[str, Any]:
    """Every plugin of `kind`, loaded (the sweep schema and /v1/models list them all)."""
    return {name: lookup(kind, name) for name in names(kind)}


def _kind(kind: str) -> str:
    if kind not in GROUPS:
        raise ValueError(f"unknown plugin kind '{kind}'; valid: {', '.join(GROUPS)}")
    return kind


def _dist(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else "?"
