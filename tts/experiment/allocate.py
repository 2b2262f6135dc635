"""A benchmark-wide budget: decide per problem what to run, so that the whole benchmark spends at
most `total` (tokens or FLOPs) and the compute goes where it pays.

Policies (`allocate(..., policy=...)`):
- `uniform`: every problem runs the same configuration, the most accurate candidate on the
  training split whose mean cost fits total / problems (today's behaviour, the baseline).
- `oracle`: Snell et al. (2024, "Scaling LLM Test-Time Compute Optimally") oracle difficulty:
  problems are put in `bins` quantile bins (default 5, Snell's five levels) of their true
  pass@1 (from a bank's recorded correctness), and each bin gets the candidate that maximises
  the expected number of correct answers under the total, learnt on the training split (an
  upper bound for research: pass@1 is not known at test time).
- `predicted`: Snell's model-predicted difficulty, with a cheap probe instead of 2048 samples:
  `probe_n` samples per problem, and the agreement of their answers (largest vote share) is the
  difficulty; bins are quantiles of the training split's agreement; the probe is charged. Its
  samples are not thrown away (`reuse_probe`, default on): the configuration a problem then gets
  is served the probe's samples first, for requests shaped like the probe's (`ProbeSamples`), so
  best-of-8 after a 2-sample probe draws 6 more; the candidates are profiled on the training
  split the same way (probe, then the candidate on it), so the knapsack plans with the cost each
  candidate adds after the probe, and a problem's record carries its probe's cost too. (Round 2
  measured that the discarded probe is why predicted lost to uniform on GSM8K.) For code,
  answers are programs, so agreement is agreement of program texts.
- `sequential`: spend in rounds of `batch` samples per unsettled problem; a problem is settled
  once adaptive-consistency's Beta rule says its leading answer is ahead with `confidence` (or
  after `max_samples`); freed budget goes to the unsettled ones. The answer is the majority.

The per-bin choice is an exact multiple-choice knapsack (a Pareto frontier over bins) on the
training split's mean accuracy and cost per problem.

Why one module of ~380 lines: the four policies share the pool, the profiling and the executor.

A total that cannot reach every problem (`least_total`: the plan, plus one sample's worst case
still free when the last problem starts) is an error naming that minimum, before anything runs.
The total is a hard cap by construction: problems draw per-problem caps from one `Pool`, each
cap reserved before the problem starts and returned (less what it used) when it ends, and the
accountant never lets a problem exceed its cap. A problem's cap leaves the planned cost of every
problem not yet started, so earlier savings flow to later problems.
"""

from __future__ import annotations

import asyncio
import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tts.answers.voting import beta_stop_probability, vote
from tts.types import Sampling
from tts.errors import TTSError
from tts.interfaces import Generator
from tts.context import Verifier
from tts.registry import lookup
from tts.runner import TaskLike, solve
from tts.types import Budget, GenRequest, Problem, Result, Trace, Usage

POLICIES = ("uniform", "oracle", "predicted", "sequential")
UNITS = ("total_tokens", "flops")


@dataclass(frozen=True)
class Candidate:
    """One configuration a problem may get: a registered strategy, its size n, its parameters
    and the verifier (by name, from `verifiers=`) it needs."""

    strategy: str
    n: int
    params: tuple[tuple[str, Any], ...] = ()
    verifier: str | None = None

    @property
    def label(self) -> str:
        extra = "".join(f" {k}={v}" for k, v in self.params) + (f" verifier={self.verifier}" if self.verifier else "")
        return f"{self.strategy} n={self.n}{extra}"

    def build(self) -> Any:
        return lookup("strategy", self.strategy)(n=self.n, **dict(self.params))


@dataclass(frozen=True)
class AllocationSpec:
    """An allocation's settings as `tts bench --total-budget` and a sweep's `allocation:` give
    them: the policy, the benchmark-wide total and its unit, the candidates, the held-out share
    of the problems the policy learns on, and the policies' knobs (see `allocate`)."""

    policy: str
    total: float
    candidates: tuple[Candidate, ...] = ()
    unit: str = "total_tokens"
    train_fraction: float = 0.5
    bins: int = 5  # Snell et al.'s five difficulty levels (quantiles of pass@1)
    probe_n: int = 4
    batch: int = 2
    max_samples: int = 8
    confidence: float = 0.95
    reuse_probe: bool = True

    def __post_init__(self) -> None:
        _check(self.policy, self.unit, self.total)
        if not isinstance(self.reuse_probe, bool):
            raise TTSError(f"allocation parameter reuse_probe must be true or false, got {self.reuse_probe!r}")
        _check_options(self.bins, self.probe_n, self.batch, self.max_samples, self.confidence)
        if self.policy != "sequential" and not self.candidates:
            raise TTSError(f"the '{self.policy}' policy needs at least one candidate configuration")
        if isinstance(self.train_fraction, bool) or not isinstance(self.train_fraction, (int, float)) \
                or not 0 < self.train_fraction < 1:
            raise TTSError(f"the training fraction must be a number in (0, 1), got {self.train_fraction!r}")

    def split(self, problems: Sequence[Problem], seed: int) -> tuple[list[Problem], list[Problem]]:
        """(train, test): a seeded shuffle, `train_fraction` of it held out for the policy to
        learn on. Every policy solves the same test split (the sequential one learns nothing but
        is held to it too), so policies compare on the same problems. Test keeps input order."""
        if len(problems) < 2:
            raise TTSError(f"an allocation learns on held-out problems: it needs at least 2, got {len(problems)}")
        order = list(range(len(problems)))
        np.random.default_rng(seed).shuffle(order)
        k = max(1, min(len(problems) - 1, round(self.train_fraction * len(problems))))
        held = set(order[:k])
        return ([p for i, p in enumerate(problems) if i in held], [p for i, p in enumerate(problems) if i not in held])

    def params(self) -> dict[str, Any]:
        """What the run's hash covers (a RunSpec's params)."""
        out = asdict(self)
        out["candidates"] = [c.label for c in self.candidates]
        if self.policy != "predicted":
            del out["reuse_probe"]  # only the predicted policy probes: the others keep their keys
        return out

    def options(self) -> dict[str, Any]:
        """The keyword arguments of `allocate` these settings fix."""
        return {"policy": self.policy, "unit": self.unit, "bins": self.bins, "probe_n": self.probe_n,
                "batch": self.batch, "max_samples": self.max_samples, "confidence": self.confidence,
                "reuse_probe": self.reuse_probe}


@dataclass
class Allocation:
    """What an allocation did: one Result per problem (in input order), the configuration each
    got, the total spent, and the policy's telemetry (bins, choice per bin, probe cost)."""

    policy: str
    total: float
    unit: str
    results: list[Result]
    chosen: list[str]
    spent: float
    telemetry: dict[str, Any] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return sum(bool(r.correct) for r in self.results) / len(self.results) if self.results else float("nan")


def cost(usage: Usage, unit: str) -> float:
    return float(usage.total_tokens if unit == "total_tokens" else usage.flops)


class Pool:
    """The benchmark's budget: caps are reserved from it before a problem starts, and what a
    problem did not use comes back when it ends. Never hands out more than is left.

    `in_flight` counts the caps granted and not yet settled: callers wait for a return only
    while it is > 0. (Waiting on `reserved > 0` hung: float caps granted and settled in another
    order left a remainder such as 6e-12 reserved with nothing in flight, so no return ever
    came; the reserve is re-zeroed exactly when the last cap comes back.)"""

    def __init__(self, total: float):
        self.total, self.spent, self.reserved = float(total), 0.0, 0.0
        self.in_flight = 0
        self._settled = asyncio.Event()

    @property
    def free(self) -> float:
        return self.total - self.spent - self.reserved

    def grant(self, keep: float = 0.0, most: float = math.inf, least: float = 0.0) -> float:
        """Reserve a cap: everything free except `keep` (what problems not yet started need),
        at most `most`; but at least `least` while that much is free (one sample's worst case:
        a cap below it buys nothing, so a total too small for every problem serves the first
        ones rather than none)."""
        cap = min(most, max(self.free - keep, min(self.free, least), 0.0))
        self.reserved += cap
        self.in_flight += 1
        return cap

    def settle(self, cap: float, used: float) -> None:
        if used > cap + 1e-6:  # the accountant enforces the cap; this would be a bug there
            raise AssertionError(f"a problem spent {used} over its cap {cap}")
        self.in_flight -= 1
        self.reserved = self.reserved - cap if self.in_flight else 0.0
        self.spent += used
        self._settled.set()

    async def returned(self) -> None:
        """Wait until a problem in flight settles (and gives back what it did not use)."""
        self._settled.clear()
        await self._settled.wait()


class ProbeSamples(Generator):
    """One problem's generator around the shared one: while it probes (`serving` False) it keeps
    the probe's samples and the shape of its request; then (`serving` True) it serves those
    samples back to requests of the same shape (same messages and sampling, any n) before asking
    the generator for the rest. Served samples cost nothing: the probe paid for them. Streams
    and other requests go to the generator as they are."""

    def __init__(self, inner: Generator):
        self.inner = inner
        self.model, self.num_params, self.markers = inner.model, inner.num_params, inner.markers
        self.realtime, self.plans_streams = inner.realtime, inner.plans_streams
        self.kept: list[Trace] = []
        self.shape: GenRequest | None = None
        self.serving = False
        self.served = 0

    @property
    def identity(self) -> Any:
        return self.inner.identity

    async def count_prompt_tokens(self, req: GenRequest) -> int:
        return await self.inner.count_prompt_tokens(req)

    async def generate(self, req: GenRequest) -> tuple[list[Trace], Usage]:
        if not self.serving:
            traces, usage = await self.inner.generate(req)
            self.shape = self.shape or req.replace(n=1)
            self.kept += [copy.copy(t) for t in traces]
            return traces, usage
        if not self.kept or req.replace(n=1) != self.shape:
            return await self.inner.generate(req)
        k = min(req.n, len(self.kept))
        mine, self.kept = [copy.copy(t) for t in self.kept[:k]], self.kept[k:]
        self.served += k
        traces, usage = await self.inner.generate(req.replace(n=req.n - k)) if req.n > k else ([], Usage())
        return mine + traces, usage

    def stream(self, req: GenRequest) -> Any:
        return self.inner.stream(req)

    def stream_plan(self, req: GenRequest) -> Any:
        return self.inner.stream_plan(req)


@dataclass
class _Run:
    """What the solver needs besides the problem: one place for the solve call's arguments."""

    generator: Generator
    task: TaskLike | None
    verifiers: Mapping[str, Verifier]
    sampling: Sampling | None
    unit: str
    seed: int
    # One sample's worst case (prompt + max_tokens) in `unit`, from the profile: the headroom a
    # cap needs above a problem's expected cost, since the accountant reserves the worst case
    # of a call before sending it.
    sample_worst: float = 0.0
    sample_mean: float = 0.0  # one sample's mean cost, from the profile

    async def solve(self, problem: Problem, cand: Candidate, cap: float | None,
                    generator: Generator | None = None) -> Result:
        budget = None if cap is None else Budget(**{self.unit: cap if self.unit == "flops" else int(cap)})
        if cap is not None and cap < 1:
            return Result(problem.id, None, stopped_by="budget", strategy=cand.strategy)
        verifier = self.verifiers.get(cand.verifier) if cand.verifier else None
        if cand.verifier and verifier is None:
            raise TTSError(f"candidate '{cand.label}' needs verifier '{cand.verifier}'; pass it in verifiers=")
        return await solve(problem, cand.build(), generator=generator or self.generator, verifier=verifier,
                           budget=budget, sampling=self.sampling, task=self.task, seed=self.seed)

    def fresh(self) -> None:
        """A new run of the generator: a replayed bank serves every problem's samples again."""
        reset = getattr(self.generator, "reset", None)
        if reset is not None:
            reset()


async def profile(run: _Run, problems: Sequence[Problem], cands: Sequence[Candidate],
                  concurrency: int, probe: Candidate | None = None) -> dict[Candidate, tuple[np.ndarray, np.ndarray]]:
    """Per candidate, per problem: correct (0/1) and cost, measured without a budget. With
    `probe`, each problem is probed first and the candidate served the probe's samples
    (`ProbeSamples`): its cost is what it adds after the probe."""
    sem = asyncio.Semaphore(concurrency)
    out = {}
    for c in cands:
        run.fresh()

        async def one(p: Problem, c: Candidate = c) -> Result:
            async with sem:
                if probe is None:
                    return await run.solve(p, c, None)
                reused = ProbeSamples(run.generator)
                await run.solve(p, probe, None, reused)
                reused.serving = True
                r = await run.solve(p, c, None, reused)
                r.telemetry["probe_samples_reused"] = reused.served
                return r

        rs = await asyncio.gather(*(one(p) for p in problems))
        out[c] = (np.array([float(bool(r.correct)) for r in rs]), np.array([cost(r.usage, run.unit) for r in rs]))
        max_tokens = (run.sampling or Sampling()).max_tokens
        drawn = sum(len(r.traces) - r.telemetry.get("probe_samples_reused", 0) for r in rs)
        if drawn:
            run.sample_mean = max(run.sample_mean, float(out[c][1].sum()) / drawn)
        for r in rs:
            drawn = len(r.traces) - r.telemetry.get("probe_samples_reused", 0)  # the probe's cost none here
            if drawn > 0 and r.usage.total_tokens:
                per_token = cost(r.usage, run.unit) / r.usage.total_tokens
                sample = max_tokens + r.usage.prompt_tokens / drawn
                run.sample_worst = max(run.sample_worst, per_token * sample)
    run.fresh()
    return out


def quantile_bins(train: np.ndarray, test: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Bin indices (0 = hardest) of train and test values by the train values' quantiles."""
    edges = list(np.unique(np.quantile(train, np.linspace(0, 1, bins + 1)[1:-1]))) if len(train) else []
    return np.searchsorted(edges, train, side="right"), np.searchsorted(edges, test, side="right"), edges


def knapsack(sizes: Sequence[int], acc: Sequence[Sequence[float]], costs: Sequence[Sequence[float]],
             total: float) -> tuple[int, ...] | None:
    """Choose one candidate per bin maximising sum_b sizes[b] * acc[b][k] subject to
    sum_b sizes[b] * costs[b][k] <= total: an exact multiple-choice knapsack over the Pareto
    frontier of partial choices. None when even the cheapest choice does not fit."""
    front: list[tuple[float, float, tuple[int, ...]]] = [(0.0, 0.0, ())]
    for m, a, c in zip(sizes, acc, costs):
        cand = sorted((fc + m * c[k], fv + m * a[k], ch + (k,)) for fc, fv, ch in front for k in range(len(a))
                      if fc + m * c[k] <= total + 1e-9)
        front, best = [], -math.inf
        for item in cand:  # keep only choices that buy accuracy for their extra cost
            if item[1] > best + 1e-12:
                front.append(item)
                best = item[1]
        if not front:
            return None
    return max(front, key=lambda x: (x[1], -x[0]))[2]


def _check(policy: str, unit: str, total: float) -> None:
    if policy not in POLICIES:
        raise TTSError(f"unknown allocation policy '{policy}'; valid: {', '.join(POLICIES)}")
    if unit not in UNITS:
        raise TTSError(f"allocation unit must be one of {', '.join(UNITS)}, not '{unit}'")
    if isinstance(total, bool) or not isinstance(total, (int, float)) or not 0 < total < math.inf:
        raise TTSError(f"the total budget must be a finite number > 0, got {total!r}")


def _check_options(bins: Any, probe_n: Any, batch: Any, max_samples: Any, confidence: Any) -> None:
    """The policies' knobs, as a user may have typed them (`--allocation-param K=V`)."""
    for name, v in (("bins", bins), ("probe_n", probe_n), ("batch", batch), ("max_samples", max_samples)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise TTSError(f"allocation parameter {name} must be a whole number >= 1, got {v!r}")
    if max_samples < batch:
        raise TTSError(f"allocation parameter max_samples ({max_samples}) must be at least batch ({batch})")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise TTSError(f"allocation parameter confidence must be a number in (0, 1), got {confidence!r}")


def least_total(planned: Sequence[float], sample_worst: float) -> float:
    """The least total that reaches every problem of a plan: each spends its planned cost, and
    the last to start still needs one sample's worst case free (prompt + max_tokens: the
    accountant reserves it before sending), or a cap that buys nothing."""
    return sum(planned) + max(0.0, sample_worst - min(planned, default=0.0))


OnResult = Callable[[int, Result, str], Any]  # (index in problems, result, the configuration it got)


async def _execute(run: _Run, problems: Sequence[Problem], plan: Sequence[Candidate], planned: Sequence[float],
                   pool: Pool, concurrency: int, on_result: OnResult | None,
                   probed: Sequence[tuple[ProbeSamples, Result]] | None = None, reuse: bool = False) -> list[Result]:
    """Solve each problem with its planned candidate, caps drawn from the pool in input order.
    With `probed` (each problem's probe generator and result), a record carries its probe's
    cost too (the pool paid it when the probe ran); with `reuse`, the candidate is served the
    probe's samples and the pool is charged only what it adds."""
    rest = [sum(planned[i + 1:]) for i in range(len(planned))]  # planned cost of those after i
    sem = asyncio.Semaphore(concurrency)
    turn = asyncio.Lock()

    async def one(i: int) -> Result:
        async with sem:
            async with turn:  # caps are granted in input order, so `rest` is what is still to start
                # A cap is the plan plus one sample's worst case, so the last call can be sent;
                # when the pool cannot give that yet, wait for problems in flight to return
                # what they did not use rather than start one that would be stopped at once.
                need = planned[i] + run.sample_worst
                while pool.free - rest[i] < need and pool.in_flight:
                    await pool.returned()
                cap = pool.grant(keep=rest[i], most=need, least=run.sample_worst)
            reused, probe_result = probed[i] if probed is not None else (None, None)
            if reused is not None:
                reused.serving = reuse
            r = await run.solve(problems[i], plan[i], cap, reused if reuse else None)
            pool.settle(cap, cost(r.usage, run.unit))
        if probe_result is not None:  # the probe was paid from the pool when it ran; the record shows both
            r.usage = r.usage + probe_result.usage
            if reuse:
                r.telemetry["probe_samples_reused"] = reused.served
        if on_result is not None:
            await _maybe_await(on_result(i, r, plan[i].label))
        return r

    return list(await asyncio.gather(*(one(i) for i in range(len(problems)))))


async def _sequential(run: _Run, problems: Sequence[Problem], pool: Pool, batch: int, max_samples: int,
                      confidence: float, concurrency: int) -> tuple[list[Result], list[int]]:
    traces: list[list[Trace]] = [[] for _ in problems]
    answers: list[list[str | None]] = [[] for _ in problems]
    usage = [Usage() for _ in problems]
    open_ = set(range(len(problems)))
    sem = asyncio.Semaphore(concurrency)
    turn = asyncio.Lock()
    rounds = 0
    while open_:
        rounds += 1
        order = sorted(open_)
        left = {"n": len(order)}

        # A round of `batch` samples for every open problem, or as many as the pool affords them
        # all at the mean sample cost (at least one), so a tight total reaches every problem.
        size = batch if not run.sample_mean else max(1, min(batch, int(pool.free / (len(order) * run.sample_mean))))

        async def one(i: int) -> None:
            async with sem:
                k = min(size, max_samples - len(answers[i]))
                async with turn:  # enough for this batch at its worst, keeping a mean sample's
                    left["n"] -= 1  # worth for each problem of the round still to start
                    keep = left["n"] * run.sample_mean
                    while pool.free - keep < run.sample_worst and pool.in_flight:
                        await pool.returned()
                    if run.sample_worst:
                        cap = pool.grant(keep=keep, most=k * run.sample_worst, least=run.sample_worst)
                    else:  # nothing measured (no training split): a fair share of what is free
                        cap = pool.grant(keep=pool.free * left["n"] / (left["n"] + 1))
                r = await run.solve(problems[i], Candidate("self_consistency", k), cap)
                pool.settle(cap, cost(r.usage, run.unit))
            usage[i] = usage[i] + r.usage
            traces[i] += r.traces
            got = [t.answer for t in r.traces]
            answers[i] += got
            _, tally = await vote(answers[i])
            counts = sorted(tally.values(), reverse=True)
            lead = beta_stop_probability(int(counts[0]) if counts else 0, int(counts[1]) if len(counts) > 1 else 0)
            if not got or lead >= confidence or len(answers[i]) >= max_samples:
                open_.discard(i)  # settled, out of samples, or the budget gave it nothing

        await asyncio.gather(*(one(i) for i in order))
    results = []
    for i, p in enumerate(problems):
        answer, tally = await vote(answers[i])
        r = Result(p.id, answer, traces=traces[i], stopped_by="done", usage=usage[i], strategy="sequential",
                   telemetry={"samples": len(answers[i]), "votes": tally})
        if run.task is not None and p.answer is not None:
            r.correct = await run.task.grade(p, answer)
        results.append(r)
    return results, [len(a) for a in answers]


async def allocate(
    problems: Sequence[Problem],
    candidates: Sequence[Candidate],
    *,
    total: float,
    generator: Generator,
    policy: str = "uniform",
    unit: str = "total_tokens",
    task: TaskLike | None = None,
    train: Sequence[Problem] = (),
    verifiers: Mapping[str, Verifier] | None = None,
    sampling: Sampling | None = None,
    oracle_pass1: Mapping[str, float] | None = None,
    bins: int = 5,
    probe_n: int = 4,
    batch: int = 2,
    max_samples: int = 8,
    confidence: float = 0.95,
    reuse_probe: bool = True,
    seed: int = 0,
    concurrency: int = 8,
    on_result: OnResult | None = None,
) -> Allocation:
    """Solve `problems` under a benchmark-wide budget `total` (in `unit`) with `policy`; the
    oracle and predicted policies learn their per-bin choice on `train` (held out), and uniform
    picks its configuration there. See the module docstring. `on_result(i, result, label)` is
    called as each problem finishes (the sequential policy: all at the end), so a caller can
    store results as they land."""
    _check(policy, unit, total)
    _check_options(bins, probe_n, batch, max_samples, confidence)
    if not problems:
        raise TTSError("allocation needs at least one problem")
    if unit == "flops" and not getattr(generator, "num_params", None):
        raise TTSError(f"a total in flops needs the generator's parameter count (FLOPs = 2 x parameters x tokens), "
                       f"and {getattr(generator, 'model', 'this model')!r} has none (an imported bank records none): "
                       "give the total in total_tokens (--total-unit total_tokens)")
    run = _Run(generator, task, verifiers or {}, sampling, unit, seed)
    run.fresh()
    pool = Pool(total)
    per_problem = total / len(problems)
    if policy == "sequential":
        if train:  # the sample's cost, measured off the books, sizes each round's caps
            await profile(run, train, [Candidate("self_consistency", batch)], concurrency)
            least = least_total([run.sample_mean] * len(problems), run.sample_worst)
            if total < least:
                raise TTSError(
                    f"the total {total:.6g} {unit} cannot reach all {len(problems)} problems: one sample costs "
                    f"{run.sample_mean:.4g} on average and {run.sample_worst:.4g} at its worst (prompt + max_tokens, "
                    f"reserved before it is sent), so one sample per problem needs at least {least:.6g}: raise the "
                    "total (or lower max_tokens)")
        results, samples = await _sequential(run, problems, pool, batch, max_samples, confidence, concurrency)
        for i, (r, k) in enumerate(zip(results, samples)):
            if on_result is not None:
                await _maybe_await(on_result(i, r, f"{k} samples"))
        return Allocation(policy, total, unit, results, [f"{s} samples" for s in samples], pool.spent,
                          {"mean_samples": sum(samples) / len(samples)})
    if not candidates:
        raise TTSError("allocation needs at least one candidate configuration")
    if not train:
        raise TTSError(f"the '{policy}' policy learns its choice on a held-out split: pass train=[...] problems")
    probe = Candidate("self_consistency", probe_n)
    reuse = policy == "predicted" and reuse_probe
    stats = await profile(run, train, candidates, concurrency, probe if reuse else None)
    mean_acc = {c: float(stats[c][0].mean()) for c in candidates}
    mean_cost = {c: float(stats[c][1].mean()) for c in candidates}
    cheapest = min(candidates, key=lambda c: mean_cost[c])
    telemetry: dict[str, Any] = {"train_accuracy": {c.label: mean_acc[c] for c in candidates},
                                 "train_cost": {c.label: mean_cost[c] for c in candidates}}

    def least(c: Candidate) -> float:
        return least_total([mean_cost[c]] * len(problems), run.sample_worst)

    if policy == "uniform":
        fits = [c for c in candidates if least(c) <= total]
        if not fits:
            raise TTSError(f"no candidate fits {per_problem:.4g} {unit} per problem (total {total:.4g} over "
                           f"{len(problems)} problems); the cheapest, '{cheapest.label}', costs {mean_cost[cheapest]:.4g} "
                           f"per problem and one sample {run.sample_worst:.4g} at its worst (reserved before it is "
                           f"sent): raise the total to at least {least(cheapest):.6g}")
        best = max(fits, key=lambda c: (mean_acc[c], -mean_cost[c]))
        plan, planned = [best] * len(problems), [mean_cost[best]] * len(problems)
    else:
        if policy == "oracle":
            if oracle_pass1 is None:
                raise TTSError("the oracle policy needs oracle_pass1={problem id: pass@1} (e.g. from a bank)")
            missing = [p.id for p in (*train, *problems) if p.id not in oracle_pass1]
            if missing:
                raise TTSError(f"oracle_pass1 has no pass@1 for problem '{missing[0]}' ({len(missing)} missing)")
            d_train = np.array([oracle_pass1[p.id] for p in train])
            d_test = np.array([oracle_pass1[p.id] for p in problems])
        else:
            p_stats = await profile(run, train, [probe], concurrency)
            probe_cost = float(p_stats[probe][1].mean())
            if probe_cost * len(problems) > total:
                raise TTSError(f"the total {total:.4g} {unit} is less than one probe per problem: the probe "
                               f"('{probe.label}') costs {probe_cost:.4g} per problem, at least "
                               f"{probe_cost * len(problems):.4g} in all")
            d_train, _ = await _agreement(run, train, probe, None, concurrency)
            d_test, probed = await _agreement(run, problems, probe, pool, concurrency, keep=reuse)
            telemetry["probe_spent"] = pool.spent
        b_train, b_test, edges = quantile_bins(d_train, d_test, bins)
        nbins = len(edges) + 1
        sizes = [int((b_test == b).sum()) for b in range(nbins)]
        acc_b, cost_b = [], []
        for b in range(nbins):
            idx = np.flatnonzero(b_train == b)
            if idx.size == 0:  # no training problem in this bin: use the whole training split
                idx = np.arange(len(train))
            acc_b.append([float(stats[c][0][idx].mean()) for c in candidates])
            cost_b.append([float(stats[c][1][idx].mean()) for c in candidates])
        # The last problem to start needs one sample's worst case free: room kept beside the plan.
        headroom = max(0.0, run.sample_worst - min(min(c) for c in cost_b))
        choice = knapsack(sizes, acc_b, cost_b, pool.free - headroom)
        if choice is None:
            cheapest_plan = [min(cost_b[b]) for b in b_test]
            raise TTSError(f"no candidate fits the {pool.free:.4g} {unit} left for {len(problems)} problems; the "
                           f"cheapest, '{cheapest.label}', costs {mean_cost[cheapest]:.4g} per problem on the training "
                           f"split and one sample {run.sample_worst:.4g} at its worst: raise the total to at least "
                           f"{total - pool.free + least_total(cheapest_plan, run.sample_worst):.6g}")
        plan = [candidates[choice[b]] for b in b_test]
        planned = [cost_b[b][choice[b]] for b in b_test]
        telemetry.update({"edges": [float(e) for e in edges], "bin_sizes": sizes,
                          "per_bin": [candidates[k].label for k in choice]})
    results = await _execute(run, problems, plan, planned, pool, concurrency, on_result,
                             probed if policy == "predicted" else None, reuse)
    if policy == "predicted" and reuse:
        telemetry["probe_samples_reused"] = sum(r.telemetry.get("probe_samples_reused", 0) for r in results)
    return Allocation(policy, total, unit, results, [c.label for c in plan], pool.spent, telemetry)


async def _agreement(run: _Run, problems: Sequence[Problem], probe: Candidate, pool: Pool | None,
                     concurrency: int, keep: bool = False) -> tuple[np.ndarray, list[tuple[ProbeSamples, Result]]]:
    """The probe's largest vote share per problem (1 = all samples agree: an easy problem), and
    each problem's probe generator and result. `keep`: the probes' samples will be reused, so a
    replayed bank is not reset after them (the configuration then draws the samples after the
    probe's, never the probe's again)."""
    sem = asyncio.Semaphore(concurrency)
    run.fresh()

    async def one(i: int) -> tuple[float, ProbeSamples, Result]:
        async with sem:
            cap = pool.grant(keep=pool.free * (len(problems) - 1 - i) / max(1, len(problems) - i)) if pool else None
            reused = ProbeSamples(run.generator)
            r = await run.solve(problems[i], probe, cap, reused)
            if pool is not None:
                pool.settle(cap, cost(r.usage, run.unit))
        votes = r.telemetry.get("votes") or {}
        return (max(votes.values()) / probe.n if votes else 0.0), reused, r

    got = await asyncio.gather(*(one(i) for i in range(len(problems))))
    if not keep:
        run.fresh()
    return np.array([a for a, _, _ in got]), [(g, r) for _, g, r in got]


async def _maybe_await(x: Any) -> None:
    if asyncio.iscoroutine(x):
        await x


def bank_pass1(bank: Any) -> dict[str, float]:
    """Each problem's pass@1 from a bank's recorded correctness (the oracle difficulty)."""
    out = {}
    for rec in bank.records():
        graded = [t.correct for t in rec.samples if t.correct is not None]
        if graded:
            out[rec.key] = sum(graded) / len(graded)
    return out
