"""Where scaling saturates: the Test-Time Scaling Performance Model (TTSPM) of "Scaling over
Scaling: Exploring Test-Time Scaling Pareto in Large Reasoning Models" (Wang et al. 2025,
arXiv 2505.20522), fitted to a sweep's measured points.

The model: with budget x (parallel: N samples; sequential: rounds of thinking, here thinking
budget / `unit` tokens) the accuracy is

    F(x) = F_max * (1 - (1 - p)^x)

(parallel: at least one of N independent samples right, each with probability p; sequential: a
two-state chain that reaches its absorbing "correct" state with probability p per round: the
same form). The saturation point is the smallest budget past which one more unit gains less than
`epsilon` accuracy: the smallest integer x >= 1 with F(x + 1) - F(x) = F_max * p * (1 - p)^x
< epsilon, i.e. x* = floor(ln(epsilon / (F_max p)) / ln(1 - p)) + 1 (1 when the first step
already gains less).

Fitting: least squares over the measured (x, accuracy) points of one curve. For a fixed p the
best F_max is closed form (a one-variable linear fit, clipped to [0, 1]), so the fit is a
one-dimensional search over p: a log-odds grid, then golden-section refinement around the best
grid point. Deterministic and dependency free. The paper states the model per problem with the
selected answer's accuracy; over a benchmark the fitted p is an effective rate (a mixture of
per-problem rates is not exactly of this form), which is how the figures here are to be read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tts.errors import TTSError

_GRID = [1 / (1 + math.exp(-z / 40)) for z in range(-400, 401)]  # p from 4.5e-5 to 1 - 4.5e-5


@dataclass(frozen=True)
class Fit:
    f_max: float
    p: float
    rmse: float  # of the fit over its points (accuracy units)

    def accuracy(self, x: float) -> float:
        return self.f_max * (1 - (1 - self.p) ** x)

    def gain(self, x: float) -> float:
        """F(x + 1) - F(x): what one more unit of budget buys at x."""
        return self.f_max * self.p * (1 - self.p) ** x

    def saturation(self, epsilon: float) -> int:
        """The smallest integer x >= 1 whose next unit gains less than `epsilon`."""
        if epsilon <= 0:
            raise TTSError(f"the saturation threshold epsilon must be > 0, got {epsilon}")
        first = self.f_max * self.p
        if first * (1 - self.p) < epsilon:
            return 1
        return math.floor(math.log(epsilon / first) / math.log(1 - self.p)) + 1


def _best_f_max(xs: Sequence[float], ys: Sequence[float], p: float) -> tuple[float, float]:
    g = [1 - (1 - p) ** x for x in xs]
    gg = sum(v * v for v in g)
    f = 0.0 if gg == 0 else min(1.0, max(0.0, sum(v * y for v, y in zip(g, ys)) / gg))
    return f, sum((y - f * v) ** 2 for v, y in zip(g, ys))


def fit(xs: Sequence[float], ys: Sequence[float]) -> Fit:
    """Least-squares TTSPM fit of accuracies `ys` measured at budgets `xs` (> 0)."""
    if len(xs) != len(ys) or len(set(xs)) < 2:
        raise TTSError(f"a TTSPM fit needs at least 2 distinct budgets, got {sorted(set(xs))}")
    if min(xs) <= 0:
        raise TTSError(f"TTSPM budgets must be > 0, got {min(xs)}")
    sse = lambda p: _best_f_max(xs, ys, p)[1]  # noqa: E731
    i = min(range(len(_GRID)), key=lambda k: (sse(_GRID[k]), k))
    lo, hi = _GRID[max(0, i - 1)], _GRID[min(len(_GRID) - 1, i + 1)]
    r = (math.sqrt(5) - 1) / 2
    a, b = hi - r * (hi - lo), lo + r * (hi - lo)
    fa, fb = sse(a), sse(b)
    for _ in range(60):  # golden section on the bracket around the best grid point
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - r * (hi - lo)
            fa = sse(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + r * (hi - lo)
            fb = sse(b)
    p = min((lo + hi) / 2, _GRID[i], key=sse)
    f, err = _best_f_max(xs, ys, p)
    return Fit(f, p, math.sqrt(err / len(xs)))


MIN_POINTS = 3  # two free parameters: two points fit exactly and test nothing


def saturation_points(table: Sequence[dict], epsilon: float = 0.01, unit: int | None = None) -> list[dict]:
    """The saturation points of a report's rows (`tts.experiment.report.rows`), per axis:

    - "n": each curve (task, configuration without n) measured at >= MIN_POINTS values of n:
      N* samples;
    - "thinking_budget": each (task, configuration without the budget, n included) measured at
      >= MIN_POINTS thinking budgets: the budget in units of `unit` tokens (default: the curve's
      smallest budget), B* = x* * unit tokens.

    Each: the fit (f_max, p, rmse), the saturation point in samples or tokens, the largest value
    measured and whether the point lies beyond it (`extrapolated`: the sweep stopped before the
    curve saturated). Rows with nothing answered are left out."""
    rows = [r for r in table if r["records"]]
    out: list[dict] = []
    for axis, key in (("n", lambda r: r["config"]), ("thinking_budget", lambda r: r.get("thinking_curve"))):
        curves: dict[tuple[str, str], list[dict]] = {}
        for r in rows:
            if r.get(axis) is not None and key(r) is not None:
                curves.setdefault((r["task"], key(r)), []).append(r)
        for (task, curve), rs in curves.items():
            values = sorted({r[axis] for r in rs})
            if len(values) < MIN_POINTS:
                continue
            u = 1 if axis == "n" else (unit or values[0])
            f = fit([r[axis] / u for r in rs], [r["accuracy"] for r in rs])
            at = f.saturation(epsilon) * u
            out.append({"task": task, "axis": axis, "curve": curve, "points": len(rs), "f_max": f.f_max, "p": f.p,
                        "rmse": f.rmse, "epsilon": epsilon, "unit": u, "saturation": at,
                        "measured_up_to": values[-1], "extrapolated": at > values[-1], "fit": f})
    return out
