"""The nodes of a step-level search tree and the small rules the searches share: when a step
ends its path, how nodes are ranked and their step rewards aggregated, how samples are shared
over beams, the particle weights' logit and softmax, and the checks of the searches'
parameters. The search state and its calls are in `tts.search.tree`, which re-exports these.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

from tts.types import FinishReason, Trace

DEFAULT_DELIMITER = "\n\n"
Select = Literal["max", "weighted"]
SELECT = get_args(Select)
Aggregate = Literal["last", "min", "prod"]  # search-and-learn's agg_strategy
AGGREGATES = get_args(Aggregate)
# A path's max_steps-th step: generated to the end of sequence (search-and-learn's last
# iteration) or delimited as any other, the path ending there unfinished (its_hub).
LastStep = Literal["to_end", "delimited"]


@dataclass(eq=False, slots=True)
class Node:
    """A partial solution: the root (empty) or a parent plus one step."""

    id: int
    parent: Node | None
    text: str  # this step's text ("" for the root)
    solution: str  # the whole assistant text so far
    prefix: str  # what to continue from: solution + delimiter ("" for the root)
    depth: int  # number of steps
    tokens: int  # tokens of this step
    path_tokens: int  # tokens of all steps so far
    finish_reason: FinishReason | None = None  # None while the path can be extended
    reward: float | None = None  # verifier reward of the latest step
    value: float | None = None  # verifier aggregate over the steps
    rewards: tuple[float, ...] = ()
    trace: Trace | None = None  # the sampled step, logprobs included
    merged: list[Node] = field(default_factory=list)  # equivalent siblings merged into this one
    equivalent_to: Node | None = None  # the sibling this one was merged into (then out of the search)

    @property
    def complete(self) -> bool:
        return self.finish_reason is not None

    def path(self) -> list[Node]:
        """The nodes from the first step to this one (the root excluded)."""
        out, n = [], self
        while n.parent is not None:
            out.append(n)
            n = n.parent
        return out[::-1]

    def ancestor(self, depth: int) -> Node:
        """This node's ancestor at `depth` (itself when it is not deeper than that)."""
        n = self
        while n.depth > depth and n.parent is not None:
            n = n.parent
        return n


def step_finish(trace: Trace, extract, *, cut: bool = False, delimited: bool = True,
                after_cut: bool = False) -> FinishReason | None:
    """Whether a sampled step ends its path (see `tts.search.tree`'s docstring), and how. `cut`:
    the step was asked for at most `tokens_per_step` tokens, so running to that limit ends the
    step, not the path; `delimited`: the request stopped at a delimiter, so "stop" may be that
    (without one, "stop" is the end of sequence and ends the path); `after_cut`: the step
    continues one cut at `tokens_per_step`, so an empty step there is the delimiter coming at
    once (the path goes on after it), not the model stopping."""
    reason = trace.finish_reason
    if reason in ("abort", "error") or (reason == "length" and not cut):
        return reason
    if extract(trace.text) is not None:
        return "stop"
    if not trace.text.strip():
        return None if after_cut and delimited and reason == "stop" else "stop"
    if reason == "stop" and not delimited:
        return "stop"
    return None


def rank_key(x: float | None) -> float:
    """Scores for ranking: an unscored node ranks last."""
    return -math.inf if x is None or math.isnan(x) else x


def aggregate(node: Node, how: str = "last") -> float:
    """search-and-learn's `aggregate_scores(all_scores, agg_strategy)` over the node's step
    rewards; the verifier's value when it gave no step rewards; -inf when unscored."""
    r = node.rewards
    if not r:
        return rank_key(node.value)
    if how == "min":
        return min(r)
    if how == "prod":
        return math.prod(r)
    return r[-1]


def size_alias(n: int | None, alias: int | None, alias_name: str, default: int) -> int:
    """A strategy's size `n`, also accepted under its former name (`n_particles=`, `k=`)."""
    if alias is not None and n is not None and alias != n:
        raise ValueError(f"give n or {alias_name} (its alias), not both ({n} != {alias})")
    return n if n is not None else alias if alias is not None else default


def validate_steps(max_steps: int, delimiter: str | None, tokens_per_step: int | None) -> None:
    """The parameters every step-level search takes (checked when the strategy is built)."""
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if delimiter is not None and (not isinstance(delimiter, str) or not delimiter):
        raise ValueError("the step delimiter must be a non-empty string, or None (steps of tokens_per_step tokens)")
    if tokens_per_step is not None and tokens_per_step < 1:
        raise ValueError(f"tokens_per_step must be >= 1 or None, got {tokens_per_step}")
    if delimiter is None and tokens_per_step is None:
        raise ValueError("steps need an end: give a delimiter, or tokens_per_step for steps without one")


def spread(nodes: Sequence[Node], n: int) -> list[tuple[Node, int]]:
    """Share n samples over `nodes` as search-and-learn does (the kept beams repeated until
    there are n): the first n % len(nodes) get one more."""
    m = len(nodes)
    return [(node, n // m + (1 if i < n % m else 0)) for i, node in enumerate(nodes)]


def logit(p: float) -> float:
    """log(p / (1 - p)) with p clipped to [eps, 1 - eps], as the particle-filtering reference."""
    eps = sys.float_info.epsilon
    p = min(max(p, eps), 1.0 - eps)
    return math.log(p) - math.log(1.0 - p)


def softmax(xs: Sequence[float], temperature: float = 1.0) -> list[float]:
    z = [x / temperature for x in xs]
    m = max(z)
    e = [math.exp(x - m) for x in z]
    s = sum(e)
    return [x / s for x in e]
