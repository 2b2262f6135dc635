"""Name -> class registries that the CLI and sweep layer look strategies, verifiers and tasks up
in. Packages register themselves on import; the core never imports them except through
`load_plugins`, called by the CLI."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, TypeVar

from tts.errors import TTSError

T = TypeVar("T")

STRATEGIES: dict[str, Callable[..., Any]] = {}
VERIFIERS: dict[str, Callable[..., Any]] = {}
TASKS: dict[str, Callable[..., Any]] = {}
JUDGES: dict[str, Callable[..., Any]] = {}  # equivalence judges (DeepPrune's trace clustering)

_KINDS = {"strategy": STRATEGIES, "verifier": VERIFIERS, "task": TASKS, "judge": JUDGES}


def register(kind: str, name: str) -> Callable[[T], T]:
    def deco(obj: T) -> T:
        _KINDS[kind][name] = obj  # type: ignore[assignment]
        return obj

    return deco


def lookup(kind: str, name: str) -> Callable[..., Any]:
    """The registered factory for `name`, or a TTSError listing the valid names."""
    load_plugins()
    table = _KINDS[kind]
    if name not in table:
        close = difflib.get_close_matches(name, table, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise TTSError(f"unknown {kind} '{name}'{hint}; valid: {', '.join(sorted(table))}")
    return table[name]


def load_plugins() -> None:
    """Import the packages that register strategies, verifiers and tasks."""
    import strategies  # noqa: F401
    import tasks  # noqa: F401
    import verifiers  # noqa: F401
