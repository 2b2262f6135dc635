"""The equivalence-judge role: are two pieces of reasoning the same? Judges are plugins (kind
"judge", `verifiers/equivalence.py` holds this project's); two methods ask them:

- DeepPrune (`strategies/deepprune.py`) about two truncated *traces*: will they reach the same
  final answer? Pruning the redundant one saves its generation.
- EquivPruner (`tts.search.prune`) about two candidate *steps* of one parent in a step-level
  search: do they say the same thing? Merging them saves scoring and exploring one of them.

A judge sees each side as a `Prefix` (a snapshot of the text, with `kind` saying which question
is asked) and returns P(equivalent) in [0, 1], which the caller compares with its threshold.
Every judge charges what it computes through the `Context`, so judging is never free.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from tts.context import Context
from tts.types import Trace

Kind = Literal["trace", "step"]


@dataclass(eq=False)
class Prefix:
    """What a judge sees of one side (a snapshot: a live trace grows on), and the judges'
    per-side cache. `kind`: "trace" (a truncated trace, DeepPrune) or "step" (one candidate
    step, its siblings sharing the text before it, EquivPruner)."""

    trace: Trace
    kind: Kind = "trace"
    memo: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, trace: Trace, kind: Kind = "trace") -> "Prefix":
        return cls(Trace(trace.text, trace.num_tokens, trace.finish_reason, prefix=trace.prefix), kind)

    @property
    def text(self) -> str:
        return self.trace.prefix + self.trace.text

    async def once(self, key: str, make: Callable[[], Awaitable[Any]]) -> Any:
        """`make()`'s result, computed once per prefix even when awaited concurrently (an
        exception is kept and raised to every caller, so a failed probe is not re-charged)."""
        if key not in self.memo:
            self.memo[key] = asyncio.ensure_future(make())
        return await asyncio.shield(self.memo[key])


class NoVerdict(Exception):
    """The judge answered, but its answer is no verdict (neither yes nor no): never a reason to
    prune, and not a fault. A judge that fails (a backend error) raises that error instead."""


class EquivalenceJudge(ABC):
    """P(two sides are equivalent). `default_tau`: the threshold a caller uses unless told
    otherwise (a similarity judge's scale differs from a probability's)."""

    name: str = ""
    default_tau: ClassVar[float] = 0.5

    @abstractmethod
    async def probability(self, ctx: Context, a: Prefix, b: Prefix) -> float:
        """In [0, 1]; charges everything it computes through `ctx`. Raises NoVerdict when its
        answer is no verdict, BudgetExceeded when the budget refuses the work, and any other
        error when it fails (which fails the problem)."""

    def config(self) -> dict[str, Any]:
        """What identifies this judge in a config hash."""
        return {"name": self.name, **{k: v for k, v in vars(self).items() if not k.startswith("_")}}

    async def close(self) -> None:
        """Release what the judge started (an engine)."""
