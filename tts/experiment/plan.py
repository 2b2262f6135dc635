"""A sweep file expanded into runs and jobs (`plan`), its estimate and its printout.

Every `PlannedRun` (not a stream's `tts.search.streams.Run`) is one `BenchConfig` (the options
of a `tts bench` call) and the `RunSpec` it produces; a job is what one engine does in one go: a live run, or a subsample group (record
once at the largest n, replay every run of the group).
"""

from __future__ import annotations

import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tts.bank import Bank
from tts.errors import TTSError
from tts.experiment.build import build_generator
from tts.experiment.evaluate import prepare
from tts.experiment.schema import StrategySpec, SweepError, SweepFile, did_you_mean, parse_file
from tts.experiment.subsample import Job, group_jobs
from tts.interfaces import Generator
from tts.options import BenchConfig, SamplingOptions, StrategyOptions, one_line
from tts.registry import lookup
from tts.spec import RunSpec
from tts.types import Problem, Sampling

RUN_AXES = tuple(f for f in StrategyOptions.model_fields if f != "params")  # strategy, n, verifier, ...
SAMPLING_AXES = tuple(SamplingOptions.model_fields)
PLAN_FILE = "plan.json"
Axes = dict[str, list[Any]]


@dataclass
class PlannedRun:
    """One (task, strategy configuration, seed): one `bench()` call."""

    cfg: BenchConfig
    spec: RunSpec
    task_index: int
    label: str  # the configuration, for humans: "best_of_n n=4 select=max"
    curve: str  # the configuration without n: one curve of the report
    group: str | None = None  # the subsample group (bank folder name) when subsampled
    # a reasoning model's thinking budget (budget forcing's parameter, else the sampling field),
    # and the configuration without it (n included): one curve of the report's budget axis
    thinking_budget: int | None = None
    thinking_curve: str | None = None

    @property
    def config_hash(self) -> str:
        return self.spec.config_hash()


@dataclass
class Plan:
    file: Path
    sweep: SweepFile
    out: Path
    problems: list[list[Problem] | None]  # per task; None: on the dataset hub, not loaded (dry run)
    runs: list[PlannedRun]
    jobs: list[Job]

    def build_generator(self) -> Generator:
        """The generator the whole sweep shares (one engine), from its model block."""
        return build_generator(self.sweep.model, self.sweep.sampling, self.sweep.seeds[0])

    def shard(self, i: int, k: int) -> list[Job]:
        return self.jobs[i::k]

    def estimate(self) -> dict[str, int | None]:
        """Upper bound on generated tokens: problems x n x max_tokens per run (a subsample group
        counts once, at its largest n). Step-level searches may differ from n x max_tokens.
        None where a task's problem count is unknown (not loaded: a dry run of a hub task)."""
        sizes = [None if ps is None else len(ps) for ps in self.problems]
        if any(s is None for s in sizes):
            return {"runs": len(self.runs), "problem_runs": None, "tokens_upper_bound": None}
        tokens = 0
        for job in self.jobs:
            if job.bank is not None:
                r = job.runs[0]
                tokens += sizes[r.task_index] * job.record_n * (r.cfg.max_tokens or 0)
            else:
                tokens += sum(sizes[r.task_index] * r.cfg.n * (r.cfg.max_tokens or 0) for r in job.runs)
        return {"runs": len(self.runs), "problem_runs": sum(sizes[r.task_index] for r in self.runs),
                "tokens_upper_bound": tokens}


def _axes(spec: Axes | None, where: str, file: Path) -> list[list[tuple[str, Any, str]]]:
    """A grid's or zip's settings as a list of options, each [(key, value, path)]."""
    if spec is None:
        return [[]]
    if not spec:
        raise SweepError(file, where, "empty: give at least one axis with at least one value, or remove it")
    for k, vs in spec.items():
        if not vs:
            raise SweepError(file, f"{where}.{k}", "empty list: nothing to run")
    if where.endswith("zip"):
        lens = {k: len(v) for k, v in spec.items()}
        if len(set(lens.values())) > 1:
            raise SweepError(file, where, "zip lists must have equal lengths; got "
                             + ", ".join(f"{k}: {n}" for k, n in lens.items()))
        return [[(k, spec[k][i], f"{where}.{k}[{i}]") for k in spec] for i in range(next(iter(lens.values())))]
    keys = list(spec)
    return [[(k, v, f"{where}.{k}[{spec[k].index(v)}]") for k, v in zip(keys, combo)]
            for combo in itertools.product(*(spec[k] for k in keys))]


def _shown(value: Any) -> Any:
    """A label's value on one line: a string with line breaks or tabs (a step delimiter) quoted
    with its escapes, so report tables and listings keep one row per run."""
    return json.dumps(value) if isinstance(value, str) and any(c in value for c in "\n\r\t") else value


def _label(strategy: str, n: int | None, params: dict[str, Any], verifier: str | None,
           sampling: dict[str, Any]) -> tuple[str, str]:
    extra = [f"{k}={_shown(v)}" for k, v in sorted(params.items())]
    extra += [f"{k}={_shown(v)}" for k, v in sampling.items() if v is not None]
    curve = " ".join([strategy, *([f"verifier={verifier}"] if verifier else []), *extra])
    label = " ".join([strategy, f"n={n}", *([f"verifier={verifier}"] if verifier else []), *extra])
    return label, curve


def _load_problems(file: Path, sw: SweepFile, load: bool, offline: bool) -> list[list[Problem] | None]:
    """Each task's problems: from its data file or the bank; from the hub unless `offline`
    (then None: the count is unknown without a download)."""
    m = sw.model
    problems: list[list[Problem] | None] = []
    for i, t in enumerate(sw.tasks):
        try:
            task = lookup("task", t.task)()
        except TTSError as e:
            raise SweepError(file, f"tasks[{i}].name", str(e)) from None
        if not load or (offline and t.data is None and m.backend != "replay"):
            problems.append([] if not load else None)
            continue
        try:
            if m.backend == "replay" and t.data is None:
                ps = Bank(m.bank).problems()  # type: ignore[arg-type]
            else:
                ps = task.load(t.data)
        except TTSError as e:
            raise SweepError(file, f"tasks[{i}].data", str(e)) from None
        if t.slice is not None:
            ps = ps[t.slice[0] : t.slice[1]]
        problems.append(ps[: t.limit])
    return problems


def plan(path: str | Path, sweep: SweepFile | None = None, out: str | Path | None = None, load: bool = True,
         offline: bool = False) -> Plan:
    """Validate everything (names, parameters, data) and expand the sweep into runs and jobs.
    `load=False` skips loading the problems (validates a file for a machine with other data);
    `offline=True` loads local files and banks but nothing from the dataset hub (a dry run)."""
    file = Path(path)
    sw = sweep or parse_file(file)
    m = sw.model
    if m.backend == "replay" and not m.bank:
        raise SweepError(file, "model.bank", "backend replay needs a bank folder (from `tts record`)")
    if m.backend == "replay":
        try:
            Bank(m.bank)  # type: ignore[arg-type]
        except TTSError as e:
            raise SweepError(file, "model.bank", str(e)) from None
    if m.backend == "openai" and (not m.model or not m.base_urls):
        raise SweepError(file, "model", "backend openai needs name (as the server knows it) and base_urls")
    if sw.strategy is not None and sw.strategies is not None:
        raise SweepError(file, "strategies", "give either strategy (one block) or strategies (a list), not both")
    blocks = [(sw.strategy, "strategy")] if sw.strategy is not None else (
        [(b, f"strategies[{i}]") for i, b in enumerate(sw.strategies)] if sw.strategies else [(StrategySpec(), "strategy")])
    top = [_axes(sw.grid, "grid", file), _axes(sw.zip_, "zip", file)]
    problems = _load_problems(file, sw, load, offline)

    runs: list[PlannedRun] = []
    seen: set[tuple[str, int, int]] = set()
    for block, bpath in blocks:
        axes = top + [_axes(block.grid, f"{bpath}.grid", file), _axes(block.zip_, f"{bpath}.zip", file)]
        for combo in itertools.product(*axes):
            settings: dict[str, tuple[Any, str]] = {}
            for k, v, where in itertools.chain.from_iterable(combo):
                if k in settings:
                    raise SweepError(file, where, f"'{k}' is also set by {settings[k][1].split('[')[0]}; "
                                     "an axis may appear in one grid or zip only")
                settings[k] = (v, where)
            for ti in range(len(sw.tasks)):
                for seed in sw.seeds:
                    run = _run(file, sw, block, bpath, settings, ti, seed)
                    key = (run.config_hash, seed, ti)
                    if key not in seen:  # the same configuration twice in a grid runs once
                        seen.add(key)
                        runs.append(run)
    out_dir = Path(out or sw.output or Path("results") / file.stem)
    return Plan(file, sw, out_dir, problems, runs, group_jobs(sw, runs, out_dir))


def _run(file: Path, sw: SweepFile, block: StrategySpec, bpath: str, settings: dict[str, tuple[Any, str]],
         ti: int, seed: int) -> PlannedRun:
    get = lambda k, default: settings[k][0] if k in settings else default  # noqa: E731
    where = lambda k, default: settings[k][1] if k in settings else default  # noqa: E731
    name = get("strategy", block.strategy)
    if name is None:
        raise SweepError(file, f"{bpath}.name", "no strategy given (set name, or a grid/zip axis 'strategy')")
    if not isinstance(name, str):
        raise SweepError(file, where("strategy", f"{bpath}.name"), f"a strategy name is a string, got {name!r}")
    try:
        factory = lookup("strategy", name)
    except TTSError as e:
        raise SweepError(file, where("strategy", f"{bpath}.name"), str(e)) from None
    params = {k: (v, f"{bpath}.params.{k}") for k, v in block.params.items()}
    params.update({k: v for k, v in settings.items() if k not in (*RUN_AXES, *SAMPLING_AXES)})
    accepted = [*factory.params_model().model_fields, *factory.aliases]
    for k, (_, p) in params.items():
        if k not in accepted:
            raise SweepError(file, p, f"strategy '{name}' takes no parameter '{k}'{did_you_mean(k, accepted)}; "
                             f"it takes: {', '.join(accepted)}")
    n = get("n", block.n)
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise SweepError(file, where("n", f"{bpath}.n"), f"n must be an integer >= 1, got {n!r}")
    verifier = get("verifier", block.verifier)
    if verifier is not None:
        try:
            lookup("verifier", verifier)
        except TTSError as e:
            raise SweepError(file, where("verifier", f"{bpath}.verifier"), str(e)) from None
    sampling = {k: get(k, getattr(sw.sampling, k)) for k in SAMPLING_AXES}
    if sw.model.backend != "replay":  # live: fill the defaults so the hash never depends on a bank
        sampling = {k: v if v is not None else getattr(Sampling(), k) for k, v in sampling.items()}
    try:
        cfg = BenchConfig(
            task=sw.tasks[ti].task, strategy=name, n=n or 8, params={k: v for k, (v, _) in params.items()},
            verifier=verifier, verifier_model=get("verifier_model", block.verifier_model), seed=seed,
            budget=dict(sw.budget), concurrency=sw.concurrency, **sw.model.model_dump(), **sampling,
        )
    except ValidationError as e:  # an axis value out of range (a grid's temperature: -1, ...)
        raise SweepError(file, bpath, one_line(e)) from None
    swept = {k: v for k, v in sampling.items() if k in settings}
    label, curve = _label(name, cfg.n, cfg.params, verifier, swept)
    try:
        prepared = prepare(cfg, problems=[])
    except TTSError as e:  # a parameter value the strategy refuses, a sampling mismatch with the bank, ...
        raise SweepError(file, bpath, str(e)) from None
    forcing = getattr(prepared.strategy, "forcing", None)  # budget forcing: its thinking_budget parameter
    budget = forcing.thinking_budget if forcing is not None else cfg.thinking_budget
    thinking_curve = None
    if budget is not None:
        spelled = {"thinking_budget", *(a for a, t in factory.aliases.items() if t == "thinking_budget")}
        thinking_curve = _label(name, cfg.n, {k: v for k, v in cfg.params.items() if forcing is None or k not in spelled},
                                verifier, {k: v for k, v in swept.items() if k != "thinking_budget"})[0]
    return PlannedRun(cfg, prepared.spec, ti, label, curve, thinking_budget=budget, thinking_curve=thinking_curve)


def print_plan(plan: Plan, shard: tuple[int, int] = (0, 1), file: Any = None) -> None:
    file = file or sys.stdout
    est = plan.estimate()
    jobs = plan.shard(*shard)
    pairs = "?" if est["problem_runs"] is None else est["problem_runs"]
    print(f"sweep {plan.file}: {est['runs']} runs, {pairs} run x problem pairs, output {plan.out}", file=file)
    if shard != (0, 1):
        print(f"shard {shard[0]}/{shard[1]}: {len(jobs)} of {len(plan.jobs)} jobs", file=file)
    for t, ps in zip(plan.sweep.tasks, plan.problems):
        count = "? (on the dataset hub; not downloaded for a dry run)" if ps is None else str(len(ps))
        print(f"  task {t.task}: {count} problems", file=file)
    for job in jobs:
        if job.bank is not None:
            print(f"  record {job.bank} at n={job.record_n}, then replay:", file=file)
        for r in job.runs:
            print(f"  {'  ' if job.bank is not None else ''}{plan.sweep.tasks[r.task_index].task:8} "
                  f"{r.label}  seed={r.cfg.seed}  [{r.config_hash}]", file=file)
    if plan.sweep.model.backend == "replay":
        print("generated tokens: none (replayed from the bank)", file=file)
    elif est["tokens_upper_bound"] is None:
        print("generated tokens: ? (problem counts unknown until the hub tasks are downloaded)", file=file)
    else:
        print(f"generated tokens: at most {est['tokens_upper_bound']:,} (problems x n x max_tokens per run; "
              "a subsample group counts once, at its largest n; step-level searches can differ)", file=file)
