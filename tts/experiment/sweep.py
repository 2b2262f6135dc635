"""`tts sweep FILE`: one validated YAML file -> many `tts bench` runs -> one store -> `tts report`.

A sweep file (see `tts sweep schema`, and experiments/ for examples):

    model:    {name: MODEL, backend: vllm | openai | replay, bank: DIR, base_urls: [...]}
    tasks:    [{name: gsm8k, data: FILE.jsonl, limit: 20, slice: [0, 20]}]
    strategy: {name: best_of_n, n: 4, verifier: confidence, params: {select: max}}
    strategies: [...]            # or several strategy blocks, each with its own grid / zip
    sampling: {temperature: 0.7, top_p: 1.0, max_tokens: 512}
    grid:     {n: [1, 2, 4, 8], strategy: [best_of_n, self_consistency]}   # cartesian product
    zip:      {n: [4, 16], beam_width: [2, 4]}                             # i-th values together
    seeds:    [0, 1]
    budget:   {total_tokens: 20000}
    concurrency: 64
    output:   results/my_sweep

Axis keys are `strategy`, `n`, `verifier`, `verifier_model`, `temperature`, `top_p`,
`max_tokens`, or any parameter of the strategy. Runs = tasks x strategy blocks x (top grid x top
zip x block grid x block zip) x seeds. Paths are relative to the directory `tts` runs in.

Every run is a `tts.experiment.evaluate.bench()` call with a `BenchConfig`, so config hashes, resume and records
are exactly those of `tts bench`; all runs share one generator (one engine). The whole file is
validated (names, parameters, data files) before anything starts; errors are one line,
`FILE: field.path: problem`.

One generation for many N: runs of a sample-based strategy (best_of_n, self_consistency,
weighted_majority, or any strategy whose configured instance has `subsamplable` true) that differ only in `n` (and
seed) form a group; the group's problems are sampled once at the largest N into a trace bank in
`OUTPUT/banks/`, and every run of the group is replayed from that bank (`ReplayGenerator`: each
run draws its n samples without replacement, in an order its seed fixes), as search-and-learn
does. Such runs are recorded under the model name `replay:<model>@<bank>` (so never mixed with
live runs) and marked "subsampled" in the report. Their token counts are the recorded samples'
tokens; their wall time is replay time, not generation time. All seeds of a group share the one
recorded pool (seeds permute it; at n = N every seed sees the same samples). `subsample: false`
turns this off.
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import inspect
import itertools
import json
import sys
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tts.experiment.evaluate import BACKENDS, BenchConfig, DEFAULT_VERIFIER, build_budget, prepare
from tts.errors import TTSError
from tts.registry import lookup
from tts.experiment.store import ResultStore, record_key
from tts.types import Problem

RUN_AXES = ("strategy", "n", "verifier", "verifier_model")
SAMPLING_AXES = ("temperature", "top_p", "max_tokens")
SUBSAMPLABLE = {"best_of_n", "self_consistency", "weighted_majority"}
RESULTS = "results.jsonl"
PLAN = "plan.json"


# -- the file -----------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


Axes = dict[str, list[Any]]


class ModelSpec(_Strict):
    name: str | None = Field(None, description="model folder, hub id or embedded name (default: the embedded model)")
    backend: Literal["vllm", "openai", "replay"] = "vllm"
    base_urls: list[str] = Field(default_factory=list, description="--backend openai: server URLs")
    bank: str | None = Field(None, description="--backend replay: the trace bank folder")
    max_model_len: int = 4096
    enforce_eager: bool | None = None


class TaskSpec(_Strict):
    name: str
    data: str | None = Field(None, description="local JSONL file (default: the dataset hub)")
    limit: int | None = Field(None, ge=0, description="first N problems (after slice)")
    slice: tuple[int, int] | None = Field(None, description="[start, stop): problems start..stop-1")


class StrategySpec(_Strict):
    name: str | None = Field(None, description="registered strategy (or a grid/zip axis 'strategy')")
    n: int | None = Field(None, ge=1, description="the strategy's size (default 8)")
    params: dict[str, Any] = Field(default_factory=dict, description="other strategy parameters")
    verifier: str | None = None
    verifier_model: str | None = None
    grid: Axes | None = None
    zip_: Axes | None = Field(None, alias="zip")


class SamplingSpec(_Strict):
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)


class SweepFile(_Strict):
    """A sweep: tasks x strategy configurations x seeds, run with one model."""

    name: str | None = None
    model: ModelSpec = Field(default_factory=ModelSpec)
    tasks: list[TaskSpec] = Field(min_length=1)
    strategy: StrategySpec | None = None
    strategies: list[StrategySpec] | None = Field(None, min_length=1)
    sampling: SamplingSpec = Field(default_factory=SamplingSpec)
    grid: Axes | None = None
    zip_: Axes | None = Field(None, alias="zip")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    budget: dict[str, float] = Field(default_factory=dict)
    concurrency: int = Field(64, ge=1)
    subsample: bool = Field(True, description="one generation at the largest N for sample-based strategies")
    output: str | None = Field(None, description="output folder (default results/<file name>)")


def schema() -> dict[str, Any]:
    return SweepFile.model_json_schema(by_alias=True)


# -- validation ---------------------------------------------------------------------------------
class SweepError(TTSError):
    """One line: `FILE: field.path: problem`."""

    def __init__(self, file: str | Path, path: str, problem: str):
        super().__init__(f"{file}: {path + ': ' if path else ''}{' '.join(str(problem).split())}")


def _path(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _fields_at(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """The keys valid at `loc` (for did-you-mean on an unknown key)."""
    for part in loc:
        if isinstance(part, int):
            continue
        f = next((f for k, f in model.model_fields.items() if (f.alias or k) == part), None)
        if f is None:
            return []
        inner = _model_in(f.annotation)
        if inner is None:
            return []
        model = inner
    return [f.alias or k for k, f in model.model_fields.items()]


def _model_in(tp: Any) -> type[BaseModel] | None:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for arg in typing.get_args(tp):
        m = _model_in(arg)
        if m is not None:
            return m
    return None


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def parse_file(path: str | Path) -> SweepFile:
    """Read and validate the file's structure (names and parameters are checked by `plan`)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise TTSError(f"cannot read sweep file {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        raise SweepError(path, where, f"not valid YAML ({getattr(e, 'problem', None) or e})") from None
    if not isinstance(raw, dict):
        raise SweepError(path, "", f"a sweep file is a YAML mapping (model, tasks, strategy, grid, ...), "
                         f"got {type(raw).__name__}")
    try:
        return SweepFile.model_validate(raw)
    except ValidationError as e:
        errs = e.errors()
        err = errs[0]
        loc = list(err["loc"])
        if err["type"] == "extra_forbidden":
            key = str(loc[-1])
            valid = _fields_at(SweepFile, loc[:-1])
            problem = f"unknown key '{key}'{_did_you_mean(key, valid)}; valid: {', '.join(valid)}"
        else:
            problem = f"{err['msg']} (got {err.get('input')!r:.60})" if "input" in err else err["msg"]
        more = f" (and {len(errs) - 1} more problem{'s' * (len(errs) > 2)})" if len(errs) > 1 else ""
        raise SweepError(path, _path(loc), problem + more) from None


# -- the plan -----------------------------------------------------------------------------------
@dataclass
class Run:
    """One (task, strategy configuration, seed): one `bench()` call."""

    cfg: BenchConfig
    task_index: int
    label: str  # the configuration, for humans: "best_of_n n=4 select=max"
    curve: str  # the configuration without n: one curve of the report
    config_hash: str = ""
    group: str | None = None  # the subsample group (bank folder name) when subsampled


@dataclass
class Job:
    """What one engine does in one go: a live run, or a subsample group (record once, replay
    every run). Shards and Ray actors split the plan by jobs."""

    runs: list[Run]
    bank: Path | None = None  # subsample group: the bank recorded at the largest n
    record_n: int = 0
    logprobs: int | None = None


@dataclass
class Plan:
    file: Path
    sweep: SweepFile
    out: Path
    problems: list[list[Problem]]  # per task
    runs: list[Run]
    jobs: list[Job]

    def base_config(self) -> BenchConfig:
        """The generator the whole sweep shares (one engine)."""
        m = self.sweep.model
        return BenchConfig(task=self.sweep.tasks[0].name, strategy="", model=m.name, backend=m.backend,
                           base_urls=m.base_urls, bank=m.bank, seed=self.sweep.seeds[0],
                           max_model_len=m.max_model_len, enforce_eager=m.enforce_eager)

    def shard(self, i: int, k: int) -> list[Job]:
        return self.jobs[i::k]

    def estimate(self) -> dict[str, int]:
        """Upper bound on generated tokens: problems x n x max_tokens per run (a subsample group
        counts once, at its largest n). Step-level searches may differ from n x max_tokens."""
        tokens = 0
        for job in self.jobs:
            if job.bank is not None:
                r = job.runs[0]
                tokens += len(self.problems[r.task_index]) * job.record_n * (r.cfg.max_tokens or 0)
            else:
                for r in job.runs:
                    tokens += len(self.problems[r.task_index]) * r.cfg.n * (r.cfg.max_tokens or 0)
        return {"runs": len(self.runs), "problem_runs": sum(len(self.problems[r.task_index]) for r in self.runs),
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


def _label(strategy: str, n: int | None, params: dict[str, Any], verifier: str | None,
           sampling: dict[str, Any]) -> tuple[str, str]:
    extra = [f"{k}={v}" for k, v in sorted(params.items())]
    extra += [f"{k}={v}" for k, v in sampling.items() if v is not None]
    curve = " ".join([strategy, *([f"verifier={verifier}"] if verifier else []), *extra])
    label = " ".join([strategy, f"n={n}", *([f"verifier={verifier}"] if verifier else []), *extra])
    return label, curve


def plan(path: str | Path, sweep: SweepFile | None = None, out: str | Path | None = None, load: bool = True) -> Plan:
    """Validate everything (names, parameters, data) and expand the sweep into runs and jobs.
    `load=False` skips loading the problems (validates a file for a machine with other data)."""
    file = Path(path)
    sw = sweep or parse_file(file)
    m = sw.model
    if m.backend == "replay" and not m.bank:
        raise SweepError(file, "model.bank", "backend replay needs a bank folder (from `tts record`)")
    if m.backend == "replay":
        from tts.bank import Bank

        try:
            Bank(m.bank)  # type: ignore[arg-type]
        except TTSError as e:
            raise SweepError(file, "model.bank", str(e)) from None
    if m.backend == "openai" and (not m.name or not m.base_urls):
        raise SweepError(file, "model", "backend openai needs name (as the server knows it) and base_urls")
    try:
        build_budget(sw.budget)
    except TTSError as e:
        raise SweepError(file, "budget", str(e)) from None

    if sw.strategy is not None and sw.strategies is not None:
        raise SweepError(file, "strategies", "give either strategy (one block) or strategies (a list), not both")
    blocks = [(sw.strategy, "strategy")] if sw.strategy is not None else (
        [(b, f"strategies[{i}]") for i, b in enumerate(sw.strategies)] if sw.strategies else [(StrategySpec(), "strategy")])
    top = [_axes(sw.grid, "grid", file), _axes(sw.zip_, "zip", file)]

    problems: list[list[Problem]] = []
    for i, t in enumerate(sw.tasks):
        try:
            task = lookup("task", t.name)()
        except TTSError as e:
            raise SweepError(file, f"tasks[{i}].name", str(e)) from None
        if not load:
            problems.append([])
            continue
        try:
            if m.backend == "replay" and t.data is None:
                from tts.bank import Bank

                ps = Bank(m.bank).problems()  # type: ignore[arg-type]
            else:
                ps = task.load(t.data)
        except TTSError as e:
            raise SweepError(file, f"tasks[{i}].data", str(e)) from None
        if t.slice is not None:
            ps = ps[t.slice[0] : t.slice[1]]
        problems.append(ps[: t.limit])

    runs: list[Run] = []
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
    jobs = _jobs(sw, runs, out_dir, problems, file)
    return Plan(file, sw, out_dir, problems, runs, jobs)


def _run(file: Path, sw: SweepFile, block: StrategySpec, bpath: str, settings: dict[str, tuple[Any, str]],
         ti: int, seed: int) -> Run:
    get = lambda k, default: settings[k][0] if k in settings else default  # noqa: E731
    where = lambda k, default: settings[k][1] if k in settings else default  # noqa: E731
    name = get("strategy", block.name)
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
    accepted = inspect.signature(factory).parameters
    for k, (_, p) in params.items():
        if k not in accepted:
            raise SweepError(file, p, f"strategy '{name}' takes no parameter '{k}'{_did_you_mean(k, list(accepted))}; "
                             f"it takes: {', '.join(accepted)}")
    n = get("n", block.n)
    if n is not None and (not isinstance(n, int) or n < 1):
        raise SweepError(file, where("n", f"{bpath}.n"), f"n must be an integer >= 1, got {n!r}")
    verifier = get("verifier", block.verifier)
    if verifier is not None:
        try:
            lookup("verifier", verifier)
        except TTSError as e:
            raise SweepError(file, where("verifier", f"{bpath}.verifier"), str(e)) from None
    sampling = {k: get(k, getattr(sw.sampling, k)) for k in SAMPLING_AXES}
    if sw.model.backend != "replay":  # live: fill the defaults so the hash never depends on a bank
        sampling = {k: v if v is not None else getattr(_default_sampling(), k) for k, v in sampling.items()}
    m = sw.model
    cfg = BenchConfig(
        task=sw.tasks[ti].name, strategy=name, n=n or 8, params={k: v for k, (v, _) in params.items()},
        verifier=verifier, verifier_model=get("verifier_model", block.verifier_model), model=m.name,
        backend=m.backend, base_urls=m.base_urls, bank=m.bank, seed=seed, budget=dict(sw.budget),
        concurrency=sw.concurrency, max_model_len=m.max_model_len, enforce_eager=m.enforce_eager, **sampling,
    )
    label, curve = _label(name, cfg.n, cfg.params, verifier, {k: v for k, v in sampling.items() if k in settings})
    run = Run(cfg, ti, label, curve)
    try:
        run.config_hash = prepare(cfg, problems=[]).config_hash
    except TTSError as e:  # a parameter value the strategy refuses, a sampling mismatch with the bank, ...
        raise SweepError(file, bpath, str(e)) from None
    return run


def _default_sampling() -> Any:
    from tts.context import Sampling

    return Sampling()


def subsamplable(cfg: BenchConfig) -> bool:
    """Whether the strategy only selects among independent samples. Asked of the configured
    strategy, not its class: DeepConf is subsamplable offline, not online."""
    from tts.experiment.evaluate import build_strategy

    if cfg.strategy in SUBSAMPLABLE:
        return True
    return bool(getattr(build_strategy(cfg.strategy, cfg.n, cfg.params), "subsamplable", False))


def _jobs(sw: SweepFile, runs: list[Run], out: Path, problems: list[list[Problem]], file: Path) -> list[Job]:
    """Group runs that differ only in n (and seed) into subsample jobs; the rest run alone."""
    if not sw.subsample or sw.model.backend == "replay":
        return [Job([r]) for r in runs]
    groups: dict[str, list[Run]] = {}
    for r in runs:
        if subsamplable(r.cfg):
            key = json.dumps({**vars(replace(r.cfg, n=0, seed=0)), "task_index": r.task_index},
                             sort_keys=True, default=str)
            groups.setdefault(hashlib.sha256(key.encode()).hexdigest()[:12], []).append(r)
    jobs: list[Job] = []
    placed: set[int] = set()
    for r in runs:
        if id(r) in placed:
            continue
        group = next((g for g in groups.items() if any(x is r for x in g[1])), None)
        if group is None or len({x.cfg.n for x in group[1]}) < 2:
            jobs.append(Job([r]))
            placed.add(id(r))
            continue
        gid, members = group
        top = max(x.cfg.n for x in members)
        bank = out / "banks" / f"{gid}-n{top}"
        replayed = []
        for x in members:
            # Recorded under replay:<model>@<bank>, named here: the bank does not exist yet.
            name = _replay_name(x.cfg, bank)
            x.config_hash = prepare(replace(x.cfg, name=name), problems=[]).config_hash
            x.cfg, x.group = replace(x.cfg, backend="replay", bank=str(bank), name=name), bank.name
            replayed.append(x)
            placed.add(id(x))
        jobs.append(Job(replayed, bank, top, _logprobs_needed(members[0].cfg)))
    return jobs


def _replay_name(cfg: BenchConfig, bank: Path) -> str:
    from tts.experiment.evaluate import _default_model_name

    return f"replay:{cfg.model or _default_model_name()}@{bank.name}"


def _logprobs_needed(cfg: BenchConfig) -> int | None:
    """The top-k logprobs to record so the group's verifier (and strategy) can run on replay."""
    from tts.experiment.evaluate import build_strategy

    ks = [getattr(build_strategy(cfg.strategy, cfg.n, cfg.params), "logprobs", None)]
    name = cfg.verifier or DEFAULT_VERIFIER.get(cfg.strategy)
    if name is not None:
        factory = lookup("verifier", name)
        sig = inspect.signature(factory).parameters
        if not any(p.default is inspect.Parameter.empty for p in sig.values()):
            ks.append(getattr(factory(), "logprobs", None))  # cheap verifiers only (confidence, recorded)
    ks = [k for k in ks if isinstance(k, int)]
    return max(ks) if ks else None


# -- the store ----------------------------------------------------------------------------------
class SweepStore(ResultStore):
    """The sweep's store: its own append-only JSONL file (see tts.experiment.store: one write + fsync per
    record, a torn last line dropped on open, a key never written twice), plus read-only the
    other shards' files in the same folder, so no shard redoes what another finished.

    Why JSONL and not SQLite in WAL mode: a record is one line written with one write() and
    fsync'ed, so SIGKILL loses at most the problems in flight and leaves at most one torn last
    line, which opening drops; the files are greppable, diffable and concatenable (shards each
    write their own file, so there is never a second writer on one file and no locking), and
    nothing else is needed."""

    def __init__(self, out: Path, name: str = RESULTS):
        super().__init__(out / name)
        self.others: set[tuple[str, str, int]] = set()
        for f in sorted(out.glob("results*.jsonl")):
            if f != self.path:
                self.others.update(ResultStore(f).records)

    def done(self, key: tuple[str, str, int]) -> bool:
        return key in self.records or key in self.others


def load_records(out: Path) -> list[dict[str, Any]]:
    """Every record in a sweep folder (all shards), each key once."""
    seen: dict[tuple[str, str, int], dict[str, Any]] = {}
    for f in sorted(Path(out).glob("results*.jsonl")):
        for k, r in ResultStore(f).records.items():
            seen.setdefault(k, r)
    return list(seen.values())


def write_plan(plan: Plan) -> None:
    """plan.json: what the report reads (the runs of the current file; other hashes are ignored)."""
    plan.out.mkdir(parents=True, exist_ok=True)
    data = {
        "file": str(plan.file),
        "name": plan.sweep.name or plan.file.stem,
        "tasks": [{"name": t.name, "problems": [p.id for p in ps]} for t, ps in zip(plan.sweep.tasks, plan.problems)],
        "runs": [{
            "config_hash": r.config_hash, "seed": r.cfg.seed, "task_index": r.task_index, "task": r.cfg.task,
            "strategy": r.cfg.strategy, "n": r.cfg.n, "label": r.label, "curve": r.curve,
            "source": f"subsampled from n={j.record_n} ({j.bank.name})" if j.bank is not None else (
                "replay" if r.cfg.backend == "replay" else "live"),
        } for j in plan.jobs for r in j.runs],
    }
    tmp = plan.out / (PLAN + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(plan.out / PLAN)


# -- running ------------------------------------------------------------------------------------
OnRecord = Callable[[dict[str, Any]], None]


async def execute(jobs: Sequence[Job], plan: Plan, store: Any, on_record: OnRecord | None = None,
                  generator: Any = None) -> None:
    """Run `jobs` one after another on one generator (built from the plan when not given);
    records go to `store` (`done(key)`, `append(record)`). Used by the local executor and by
    each Ray actor."""
    from tts.experiment.evaluate import bench, build_generator, build_verifier
    from tts.backends.recording import record
    from tts.backends.replay import ReplayGenerator

    owned = generator is None
    verifiers: dict[tuple[Any, ...], Any] = {}

    class _Sink:  # the store plus a callback per fresh record
        def done(self, key: tuple[str, str, int]) -> bool:
            return store.done(key)

        def append(self, rec: dict[str, Any]) -> None:
            store.append(rec)
            if on_record is not None:
                on_record(rec)

    sink = _Sink()

    def todo(run: Run) -> bool:
        return any(not store.done((p.id, run.config_hash, run.cfg.seed)) for p in plan.problems[run.task_index])

    async def verifier_for(run: Run, gen: Any) -> Any:
        p = prepare(run.cfg, problems=[])
        if p.verifier_name is None:
            return None
        key = (p.verifier_name, run.cfg.verifier_model, id(gen))  # a judge verifier uses the generator
        if key not in verifiers:
            verifiers[key] = build_verifier(p.verifier_name, run.cfg, gen)
        return verifiers[key]

    try:
        for job in jobs:
            runs = [r for r in job.runs if todo(r)]
            if not runs:
                continue
            if generator is None:
                generator = build_generator(plan.base_config())
            gen = generator
            if job.bank is not None:
                first = runs[0].cfg
                problems = plan.problems[runs[0].task_index]
                from tts.context import Sampling

                sampling = Sampling(first.temperature, first.top_p, first.max_tokens)  # type: ignore[arg-type]
                await record(problems, generator, job.bank, n=job.record_n, task=lookup("task", first.task)(),
                             sampling=sampling, logprobs=job.logprobs, seed=0, concurrency=first.concurrency)
                gen = ReplayGenerator(job.bank, sampling=sampling)
            for run in runs:
                _, chash, _ = await bench(run.cfg, generator=gen, verifier=await verifier_for(run, gen), store=sink,
                                          problems=plan.problems[run.task_index])
                if chash != run.config_hash:  # the plan and bench must agree, or resume would break
                    raise TTSError(f"internal: run {run.label} hashed {chash}, planned {run.config_hash}")
    finally:
        from tts.experiment.evaluate import _close

        for v in verifiers.values():
            await _close(v)
        if owned and generator is not None:
            await generator.close()


def parse_shard(text: str | None) -> tuple[int, int]:
    if not text:
        return 0, 1
    try:
        i, k = (int(x) for x in text.split("/"))
    except ValueError:
        raise TTSError(f"--shard must look like i/k (0 <= i < k), got '{text}'") from None
    if not 0 <= i < k:
        raise TTSError(f"--shard i/k needs 0 <= i < k, got '{text}'")
    return i, k


def store_for(plan: Plan, shard: tuple[int, int]) -> SweepStore:
    i, k = shard
    return SweepStore(plan.out, RESULTS if k == 1 else f"results.shard{i}of{k}.jsonl")


def run_sweep(plan: Plan, shard: tuple[int, int] = (0, 1), executor: str = "local", actors: int | None = None,
              on_record: OnRecord | None = None, generator: Any = None) -> SweepStore:
    """Run (or resume) the plan's jobs of this shard; returns the store."""
    if executor == "local":
        return asyncio.run(run_local(plan, shard, on_record, generator))
    write_plan(plan)
    store = store_for(plan, shard)
    jobs = plan.shard(*shard)
    if executor == "ray":
        from tts.experiment.ray import run_ray

        run_ray(jobs, plan, store, actors=actors, on_record=on_record)
    else:
        raise TTSError(f"unknown executor '{executor}'; valid: local, ray")
    return store


async def run_local(plan: Plan, shard: tuple[int, int] = (0, 1), on_record: OnRecord | None = None,
                    generator: Any = None) -> SweepStore:
    """The local executor: this shard's jobs in turn on one generator, in this event loop."""
    write_plan(plan)
    store = store_for(plan, shard)
    await execute(plan.shard(*shard), plan, store, on_record, generator)
    return store


def print_plan(plan: Plan, shard: tuple[int, int] = (0, 1), file: Any = None) -> None:
    file = file or sys.stdout
    est = plan.estimate()
    jobs = plan.shard(*shard)
    print(f"sweep {plan.file}: {est['runs']} runs, {est['problem_runs']} run x problem pairs, "
          f"output {plan.out}", file=file)
    if shard != (0, 1):
        print(f"shard {shard[0]}/{shard[1]}: {len(jobs)} of {len(plan.jobs)} jobs", file=file)
    for ti, (t, ps) in enumerate(zip(plan.sweep.tasks, plan.problems)):
        print(f"  task {t.name}: {len(ps)} problems", file=file)
    for job in jobs:
        if job.bank is not None:
            print(f"  record {job.bank} at n={job.record_n}, then replay:", file=file)
        for r in job.runs:
            print(f"  {'  ' if job.bank is not None else ''}{plan.sweep.tasks[r.task_index].name:8} "
                  f"{r.label}  seed={r.cfg.seed}  [{r.config_hash}]", file=file)
    if plan.sweep.model.backend == "replay":
        print("generated tokens: none (replayed from the bank)", file=file)
    else:
        print(f"generated tokens: at most {est['tokens_upper_bound']:,} (problems x n x max_tokens per run; "
              "a subsample group counts once, at its largest n; step-level searches can differ)", file=file)
