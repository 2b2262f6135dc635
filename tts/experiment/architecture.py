"""Architecture search over inference pipelines (Archon's ITAS: Saad-Falcon et al. 2024,
arXiv 2409.15254, archon/itas): given a set of configurations (pipelines and single
strategies), a dev split and a per-problem budget, find the most accurate configuration whose
mean cost fits, and report it on the held-out split against the best single strategy at equal
cost.

    tts itas experiments/itas_gsm8k_cpu.yaml        # resumable; --dry-run validates and lists

The file is a sweep file (every sweep key: model, tasks, sampling, strategy blocks with grid
and zip axes, paths relative to the file's folder; `tts.experiment.schema`) plus a `search:` block (`SearchOptions`): the budget
per problem and its unit, the dev share, the method, and which strategies count as "single"
baselines. Each configuration is measured as a `tts bench` run of its own (same record, same
config hash), on the dev problems, into `OUTPUT/results.jsonl`; a rerun skips what is measured
and serves the samples recorded so far from `OUTPUT/samples.jsonl`.

How it chooses (`method`):
- "exhaustive": measure every configuration on the dev split, then choose by the allocation
  module's exact knapsack (`tts.experiment.allocate.knapsack`) with one bin: the most accurate
  configuration whose dev mean cost is within the budget (ties: the cheaper). This is Archon's
  grid search, and on a measured set it is the optimum Bayesian optimisation looks for: BO
  (Archon's default, `bayes_opt` over its five integer knobs) only matters when measuring every
  configuration is too costly. Here most of that cost is shared: configurations that begin
  alike (the same samples, critiqued alike) reuse the recorded samples of the first one
  measured (`tts.backends.memo.MemoGenerator`, keyed by the request), so the exhaustive search
  pays the engine for each distinct sub-pipeline once.
- "bayes": Bayesian optimisation over the set, as Archon: `init` configurations at random,
  then each next one the maximiser of expected improvement under a Gaussian-process model of
  dev accuracy over the configurations' features (strategy, n, each numeric parameter, and per
  pipeline operator its count and numeric fields, scaled to [0, 1]); a configuration over the
  budget scores -1 (Archon's infeasible value); `evaluations` configurations in all. Baselines
  are always measured (the comparison needs them).

The held-out report: the chosen configuration and the baseline at equal cost (the most accurate
baseline on dev whose dev cost is at most the chosen one's; of equals, the costlier) are
measured on the held-out split;
`test_all: true` measures every configuration there (the full table). Written to
`OUTPUT/search.json` and `OUTPUT/search.md`, and printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tts.backends.memo import MemoGenerator
from tts.errors import TTSError
from tts.experiment.allocate import cost, knapsack
from tts.experiment.evaluate import bench
from tts.experiment.inputs import load_yaml
from tts.experiment.plan import Plan, PlannedRun, plan
from tts.experiment.schema import SweepError, SweepFile, paths_from
from tts.experiment.store import ResultStore, is_failed
from tts.interfaces import Generator
from tts.options import Cap, Count, one_line
from tts.types import Problem, Usage

RESULTS = "results.jsonl"
SAMPLES = "samples.jsonl"  # the memo's recorded samples: a resumed search serves them again


class SearchOptions(BaseModel):
    """The `search:` block of a search file."""

    model_config = ConfigDict(extra="forbid")
    budget: Cap = Field(description="per problem: the dev split's mean cost a configuration may have, in `unit`")
    unit: Literal["total_tokens", "flops"] = "total_tokens"
    dev: Annotated[float, Field(gt=0, lt=1)] = Field(
        0.5, description="the share of the problems searched on (seeded); the rest is held out")
    method: Literal["exhaustive", "bayes"] = "exhaustive"
    evaluations: Count | None = Field(None, description="bayes: configurations measured (default: all)")
    init: Count = Field(3, description="bayes: configurations measured at random before the model guides")
    baselines: list[str] = Field(default_factory=lambda: ["self_consistency"],
                                 description="strategies that count as a single strategy (the comparison)")
    test_all: bool = Field(False, description="measure every configuration on the held-out split too")


@dataclass
class Measured:
    """A configuration's accuracy and mean cost on a split."""

    label: str
    config_hash: str
    problems: int
    accuracy: float
    cost: float


@dataclass
class Search:
    """What a search found: every dev measurement, the choice, the baseline at equal cost, and
    held-out measurements."""

    budget: float
    unit: str
    method: str
    dev: list[Measured]
    chosen: str | None
    baseline: str | None
    baselines: list[str] = field(default_factory=list)  # the labels of the single-strategy configurations
    test: list[Measured] = field(default_factory=list)
    dev_problems: int = 0
    test_problems: int = 0
    reused_samples: int = 0
    generated_samples: int = 0

    def baseline_within(self, cost: float) -> Measured | None:
        """The baseline at equal cost: the most accurate baseline on dev whose dev cost is at most
        `cost` (ties: the costlier, the closest to equal), else the cheapest baseline; None when
        there is none."""
        bases = [m for m in self.dev if m.label in self.baselines]
        fits = [m for m in bases if m.cost <= cost + 1e-9]
        if fits:
            return max(fits, key=lambda m: (m.accuracy, m.cost))
        return min(bases, key=lambda m: m.cost, default=None)

    def table(self) -> str:
        """Markdown: every configuration measured, dev and held-out side by side, each with the
        baseline at its cost (held-out accuracy, where measured there)."""
        test = {m.label: m for m in self.test}
        rows = ["| configuration | dev acc | dev cost | held-out acc | held-out cost | baseline at equal cost "
                "(held-out acc) | |", "|---|---|---|---|---|---|---|"]
        for m in sorted(self.dev, key=lambda m: m.cost):
            t = test.get(m.label)
            mark = "chosen" if m.label == self.chosen else "baseline at equal cost" if m.label == self.baseline else \
                ("over budget" if m.cost > self.budget else "")
            held = ("", "") if t is None else (f"{t.accuracy:.3f}", f"{t.cost:,.0f}")
            b = None if m.label in self.baselines else self.baseline_within(m.cost)
            bt = None if b is None else test.get(b.label)
            base = "" if b is None else f"{b.label}{'' if bt is None else f' ({bt.accuracy:.3f})'}"
            rows.append(f"| {m.label} | {m.accuracy:.3f} | {m.cost:,.0f} | {held[0]} | {held[1]} | {base} | {mark} |")
        return "\n".join(rows)


def read_file(path: str | Path) -> tuple[SweepFile, SearchOptions]:
    """A search file: a sweep file and its `search:` block, each validated (one line per error)."""
    path = Path(path)
    raw = load_yaml(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("search"), dict):
        raise SweepError(path, "search", "a search file is a sweep file with a `search:` block "
                         "(budget, unit, dev, method, evaluations, baselines, test_all)")
    raw = dict(raw)
    try:
        options = SearchOptions.model_validate(raw.pop("search"))
    except ValidationError as e:
        raise SweepError(path, "search", one_line(e)) from None
    try:
        sweep = SweepFile.model_validate({**paths_from(path.parent, raw), "subsample": False})
    except ValidationError as e:
        raise SweepError(path, "", one_line(e)) from None
    if len(sweep.tasks) != 1 or len(sweep.seeds) != 1:
        raise SweepError(path, "tasks", "a search runs on one task with one seed (it splits that task's problems)")
    return sweep, options


def split(problems: Sequence[Problem], share: float, seed: int) -> tuple[list[Problem], list[Problem]]:
    """(dev, held out): a seeded shuffle, `share` of it to search on; each keeps input order."""
    if len(problems) < 2:
        raise TTSError(f"a search needs at least 2 problems (a dev and a held-out split), got {len(problems)}")
    order = list(range(len(problems)))
    random.Random(seed).shuffle(order)
    k = max(1, min(len(problems) - 1, round(share * len(problems))))
    dev = set(order[:k])
    return [p for i, p in enumerate(problems) if i in dev], [p for i, p in enumerate(problems) if i not in dev]


# -- Bayesian optimisation over a finite set ----------------------------------------------------------
def features(cfg: Any) -> dict[str, float]:
    """A configuration as numbers: its strategy (one-hot), n, each numeric or boolean parameter,
    a categorical one as `key=value`, and per pipeline operator its count and numeric fields."""
    out: dict[str, float] = {f"strategy={cfg.strategy}": 1.0, "n": float(cfg.n)}

    def add(prefix: str, value: Any) -> None:
        if isinstance(value, bool):
            out[prefix] = out.get(prefix, 0.0) + float(value)
        elif isinstance(value, (int, float)):
            out[prefix] = out.get(prefix, 0.0) + float(value)
        elif isinstance(value, str):
            out[f"{prefix}={value}"] = 1.0
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict) and "op" in item:
                    add(f"{prefix}.{item['op']}", 1)
                    for k, v in item.items():
                        if k != "op" and not isinstance(v, str):
                            add(f"{prefix}.{item['op']}.{k}", v)
        elif isinstance(value, dict):
            for k, v in value.items():
                add(f"{prefix}.{k}", v)

    for k, v in cfg.params.items():
        add(k, v)
    return out


def expected_improvement(x: np.ndarray, y: np.ndarray, cand: np.ndarray, noise: float = 1e-4) -> np.ndarray:
    """EI of each candidate row under a GP (RBF kernel, unit signal variance, length scale
    0.5 * sqrt(dims) on features in [0, 1]) fitted to the measured rows `x` with values `y`."""
    scale = 0.5 * math.sqrt(max(x.shape[1], 1))

    def k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return np.exp(-0.5 * d / scale**2)

    mean = y.mean()
    kxx = k(x, x) + noise * np.eye(len(x))
    kcx = k(cand, x)
    alpha = np.linalg.solve(kxx, y - mean)
    mu = mean + kcx @ alpha
    var = np.clip(1.0 - np.einsum("ij,ji->i", kcx, np.linalg.solve(kxx, kcx.T)), 1e-12, None)
    sd = np.sqrt(var)
    z = (mu - y.max()) / sd
    pdf = np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))
    return (mu - y.max()) * cdf + sd * pdf


class Searcher:
    """Measures configurations with one shared (memo) generator into one store."""

    def __init__(self, p: Plan, options: SearchOptions, store: ResultStore, generator: MemoGenerator):
        self.plan, self.options, self.store, self.gen = p, options, store, generator

    async def measure(self, run: PlannedRun, problems: Sequence[Problem]) -> Measured:
        self.gen.reset()  # every configuration draws the shared samples from the first
        await bench(run.cfg, generator=self.gen, store=self.store, problems=problems)
        ids = {q.id for q in problems}
        recs = [r for r in self.store.for_config(run.config_hash, run.cfg.seed) if r["problem_id"] in ids]
        failed = [r for r in recs if is_failed(r)]
        if failed:  # a fault (a dead engine) must not become a measurement: stop, a rerun retries them
            raise TTSError(f"{len(failed)} of {len(recs)} problems of '{run.label}' failed ({failed[0].get('error')}); "
                           "run the same command again to retry them (the measured ones are kept)")
        acc = sum(bool(r.get("correct")) for r in recs) / len(recs) if recs else 0.0
        mean = sum(cost(Usage.from_dict(r["usage"]), self.options.unit) for r in recs) / len(recs) if recs else math.inf
        return Measured(run.label, run.config_hash, len(recs), acc, mean)

    async def dev(self, runs: Sequence[PlannedRun], dev: Sequence[Problem], progress: Any) -> dict[str, Measured]:
        o = self.options
        out: dict[str, Measured] = {}
        baselines = [r for r in runs if r.cfg.strategy in o.baselines]
        if o.method == "exhaustive" or (o.evaluations or len(runs)) >= len(runs):
            for r in runs:
                out[r.label] = await self.measure(r, dev)
                progress(out[r.label])
            return out
        # Bayesian optimisation: baselines (needed for the comparison), `init` at random, then EI.
        for r in baselines:
            out[r.label] = await self.measure(r, dev)
            progress(out[r.label])
        rest = [r for r in runs if r not in baselines]
        rng = random.Random(self.plan.sweep.seeds[0])
        feats = [features(r.cfg) for r in runs]
        keys = sorted({k for f in feats for k in f})
        mat = np.array([[f.get(k, 0.0) for k in keys] for f in feats])
        lo, hi = mat.min(0), mat.max(0)
        mat = (mat - lo) / np.where(hi > lo, hi - lo, 1.0)
        row = {r.label: mat[i] for i, r in enumerate(runs)}
        budget_left = (o.evaluations or len(runs)) - len(baselines)
        first = rng.sample(rest, min(o.init, len(rest), max(budget_left, 0)))
        for r in first:
            out[r.label] = await self.measure(r, dev)
            progress(out[r.label])
        budget_left -= len(first)
        while budget_left > 0:
            todo = [r for r in rest if r.label not in out]
            if not todo:
                break
            seen = list(out)
            y = np.array([self._objective(out[s]) for s in seen])
            ei = expected_improvement(np.array([row[s] for s in seen]), y, np.array([row[r.label] for r in todo]))
            nxt = todo[int(np.argmax(ei))]
            out[nxt.label] = await self.measure(nxt, dev)
            progress(out[nxt.label])
            budget_left -= 1
        return out

    def _objective(self, m: Measured) -> float:
        return m.accuracy if m.cost <= self.options.budget else -1.0  # Archon: -1 for an infeasible config

    def baselines(self, runs: Sequence[PlannedRun]) -> list[str]:
        return [r.label for r in runs if r.cfg.strategy in self.options.baselines]

    def choose(self, measured: dict[str, Measured]) -> str | None:
        """The knapsack's choice: the most accurate configuration within the budget."""
        labels = list(measured)
        pick = knapsack([1], [[measured[k].accuracy for k in labels]], [[measured[k].cost for k in labels]],
                        self.options.budget)
        return None if pick is None else labels[pick[0]]


async def run_search(path: str | Path, out: str | Path | None = None, progress: Any = None,
                     generator: Generator | None = None) -> Search:
    """The whole search of a file (see the module docstring); resumable. `generator`: the model
    to search with, used as is and left open (default: the file's model block's, closed after)."""
    sweep, options = read_file(path)
    p = plan(path, sweep=sweep, out=out)
    problems = p.problems[0] or []
    seed = sweep.seeds[0]
    dev, test = split(problems, options.dev, seed)
    p.out.mkdir(parents=True, exist_ok=True)
    store = ResultStore(p.out / RESULTS, writer=True)
    gen = MemoGenerator(generator or p.build_generator(), p.out / SAMPLES)
    say = progress or (lambda m: None)
    try:
        s = Searcher(p, options, store, gen)
        measured = await s.dev(p.runs, dev, say)
        result = Search(options.budget, options.unit, options.method, list(measured.values()), s.choose(measured),
                        None, s.baselines(p.runs), dev_problems=len(dev), test_problems=len(test))
        if result.chosen is not None:
            base = result.baseline_within(measured[result.chosen].cost)
            result.baseline = None if base is None else base.label
        by_label = {r.label: r for r in p.runs}
        held = [by_label[k] for k in measured] if options.test_all else \
            [by_label[k] for k in dict.fromkeys(x for x in (result.chosen, result.baseline) if x is not None)]
        for r in held:
            result.test.append(await s.measure(r, test))
            say(result.test[-1])
        result.reused_samples, result.generated_samples = gen.served, gen.generated
    finally:
        if generator is None:
            await gen.close()
        store.close()
    (p.out / "search.json").write_text(json.dumps(asdict(result), indent=1, default=float))
    (p.out / "search.md").write_text(report(result, p))
    return result


def report(s: Search, p: Plan) -> str:
    lines = [f"# Architecture search: {p.file}", "",
             f"{s.method} search, budget {s.budget:,.0f} {s.unit} per problem; {s.dev_problems} dev problems, "
             f"{s.test_problems} held out; samples reused {s.reused_samples}, generated {s.generated_samples}.", ""]
    if s.chosen is None:
        lines.append(f"No configuration fits the budget on the dev split (cheapest: "
                     f"{min(m.cost for m in s.dev):,.0f}).")
    else:
        test = {m.label: m for m in s.test}
        c, b = test.get(s.chosen), test.get(s.baseline) if s.baseline else None
        lines.append(f"Chosen: **{s.chosen}**: held-out accuracy {c.accuracy:.3f} at {c.cost:,.0f} {s.unit}"
                     if c else f"Chosen: **{s.chosen}**")
        if b is not None:
            lines.append(f"Best single strategy at equal cost: **{s.baseline}**: held-out accuracy "
                         f"{b.accuracy:.3f} at {b.cost:,.0f} {s.unit}")
    lines += ["", s.table(), ""]
    return "\n".join(lines)


# -- `tts itas` -----------------------------------------------------------------------------------
def main(args: argparse.Namespace) -> int:
    sweep, options = read_file(args.file)
    p = plan(args.file, sweep=sweep, out=args.out, offline=args.dry_run)
    n = len(p.problems[0]) if p.problems[0] is not None else None
    print(f"search {args.file}: {len(p.runs)} configurations, {n if n is not None else '?'} problems "
          f"({options.dev:.0%} dev), budget {options.budget:,.0f} {options.unit} per problem, {options.method}",
          file=sys.stderr)
    for r in p.runs:
        print(f"  {r.label}  [{r.config_hash}]", file=sys.stderr)
    if args.dry_run:
        return 0

    def progress(m: Measured) -> None:
        print(f"  measured {m.label}: accuracy {m.accuracy:.3f}, {m.cost:,.0f} {options.unit} per problem "
              f"({m.problems} problems)", file=sys.stderr)

    result = asyncio.run(run_search(args.file, args.out, progress))
    print(report(result, p))
    return 0
