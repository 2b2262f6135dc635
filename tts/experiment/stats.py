"""Statistics a reviewer trusts, and what a correct answer costs.

- Intervals resample *problems* (a cluster bootstrap): the records of one problem (its seeds)
  are not independent draws, so five seeds of one configuration must not count as five times
  the evidence. Accuracy is the pooled ratio (correct records / records) of each resample.
- `paired`: two configurations on the problems both answered — the accuracy difference with a
  paired cluster-bootstrap interval, and McNemar's exact test over the (problem, seed) pairs
  whose outcomes differ.
- Cost-of-pass (Erol et al., 2025, "Cost-of-Pass: An Economic Framework for Evaluating
  Language Models"): the expected cost of one correct answer, mean cost per problem divided by
  accuracy (infinite at accuracy 0), in tokens, FLOPs and, with a prices table, money. The
  frontier cost-of-pass of a task is the least over its configurations.
- pass@k (Chen et al., 2021, "Evaluating Large Language Models Trained on Code"): the chance
  that at least one of k samples is right, estimated without bias from n >= k graded samples.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tts.errors import TTSError


def _by_problem(records: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per problem (sorted ids): correct records and record count."""
    tally: dict[str, list[int]] = {}
    for r in records:
        t = tally.setdefault(str(r["problem_id"]), [0, 0])
        t[0] += bool(r.get("correct"))
        t[1] += 1
    ids = sorted(tally)
    return (np.array([tally[i][0] for i in ids], float), np.array([tally[i][1] for i in ids], float), ids)


def cluster_ci(records: Sequence[Mapping[str, Any]], reps: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of accuracy, resampling problems with replacement (seeded, and
    independent of record order: reports are reproducible)."""
    correct, count, _ = _by_problem(records)
    if count.size == 0:
        return float("nan"), float("nan")
    pick = np.random.default_rng(seed).integers(0, count.size, (reps, count.size))
    acc = correct[pick].sum(axis=1) / count[pick].sum(axis=1)
    lo, hi = np.percentile(acc, [2.5, 97.5])
    return float(lo), float(hi)


def mcnemar_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (b: only A right, c: only B)."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]], reps: int = 2000,
           seed: int = 0) -> dict[str, Any]:
    """Configuration A against B on the (problem, seed) pairs both have records for."""
    key = lambda r: (str(r["problem_id"]), int(r["seed"]))  # noqa: E731
    ra, rb = {key(r): bool(r.get("correct")) for r in a}, {key(r): bool(r.get("correct")) for r in b}
    common = sorted(set(ra) & set(rb))
    if not common:
        raise TTSError("the two configurations share no (problem, seed) records; run both on the same problems")
    problems = sorted({p for p, _ in common})
    index = {p: i for i, p in enumerate(problems)}
    diff = np.zeros(len(problems))  # per problem: (A correct - B correct) summed over its seeds
    count = np.zeros(len(problems))
    for k in common:
        diff[index[k[0]]] += ra[k] - rb[k]
        count[index[k[0]]] += 1
    pick = np.random.default_rng(seed).integers(0, len(problems), (reps, len(problems)))
    boot = diff[pick].sum(axis=1) / count[pick].sum(axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    only_a = sum(ra[k] and not rb[k] for k in common)
    only_b = sum(rb[k] and not ra[k] for k in common)
    return {
        "problems": len(problems), "pairs": len(common),
        "accuracy_a": sum(ra[k] for k in common) / len(common),
        "accuracy_b": sum(rb[k] for k in common) / len(common),
        "difference": float(diff.sum() / count.sum()), "ci_low": float(lo), "ci_high": float(hi),
        "only_a": only_a, "only_b": only_b, "mcnemar_p": mcnemar_p(only_a, only_b),
    }


# -- cost-of-pass -----------------------------------------------------------------------------
class Price(BaseModel):
    """US dollars per million tokens. Cached input defaults to the input price (no discount)."""

    model_config = ConfigDict(extra="forbid")
    input: float = Field(ge=0)
    output: float = Field(0.0, ge=0)
    cached_input: float | None = Field(None, ge=0)


def load_prices(path: str | Path) -> dict[str, Price]:
    """A YAML or JSON table `{model: {input, cached_input, output}}` in $ per million tokens."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) if p.suffix != ".json" else json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError) as e:
        raise TTSError(f"{p}: cannot read the prices table ({type(e).__name__}: {e})") from None
    if not isinstance(raw, dict) or not raw:
        raise TTSError(f"{p}: the prices table must map model names to "
                       "{input: $/M, cached_input: $/M, output: $/M}")
    out = {}
    for m, v in raw.items():
        try:
            out[str(m)] = Price.model_validate(v)
        except ValidationError as e:
            err = e.errors()[0]
            raise TTSError(f"{p}: {'.'.join(map(str, (m, *err['loc'])))}: {err['msg']}") from None
    return out


def price_of(prices: Mapping[str, Price], model: str, where: str) -> Price:
    if model not in prices:
        raise TTSError(f"{where}: the prices table has no entry for model '{model}'; add "
                       f"'{model}: {{input: ..., cached_input: ..., output: ...}}' ($ per million tokens)")
    return prices[model]


def dollars(usage: Mapping[str, float], gen: Price, ver: Price) -> float:
    """What one record cost: uncached and cached prompt tokens, completion tokens at the
    generator's prices; verifier tokens (read by a PRM or a judge) at the verifier's input price."""
    cached = usage.get("cached_tokens", 0)
    cached_price = gen.input if gen.cached_input is None else gen.cached_input
    return ((usage["prompt_tokens"] - cached) * gen.input + cached * cached_price
            + usage["completion_tokens"] * gen.output + usage.get("verifier_tokens", 0) * ver.input) / 1e6


def cost_of_pass(mean_cost: float, accuracy: float) -> float:
    return mean_cost / accuracy if accuracy > 0 else math.inf


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimate from `n` samples of which `c` are correct: 1 - C(n-c, k) / C(n, k),
    computed as the paper's numpy code does, as a product that neither overflows nor cancels:
    1 - prod_{i=n-c+1..n} (1 - k/i)."""
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:  # every k-subset holds a correct sample
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def pass_at_k_table(n: int, c: int) -> dict[str, float]:
    """pass@k of one problem for k = 1, 2, 4, ... below n, and n (keys are strings: records are JSON)."""
    ks = [1 << i for i in range(n.bit_length()) if 1 << i < n] + [n] if n > 0 else []
    return {str(k): pass_at_k(n, c, k) for k in ks}
