"""`tts bench`: run a strategy over a benchmark, append one record per problem, resume, report.

Everything cheap is validated before the engine starts (task, strategy, parameters, data), and
problems already in the output file for this configuration are skipped, so re-running the same
command after a crash or Ctrl-C finishes the job without redoing or duplicating anything.
"""

from __future__ import annotations

import inspect
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from tts.context import Sampling
from tts.errors import TTSError
from tts.experiment.inputs import BudgetCaps, DataFile, OutPath, Retries, Timeout, one_line, option_name
from tts.experiment.spec import BackendId, RunSpec, budget_caps, sampling_fields
from tts.experiment.store import ResultStore, is_failed
from tts.registry import lookup
from tts.runner import run_many
from tts.types import Budget, Problem, Result



BACKENDS = ("openai", "replay", "vllm")


def _check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend '{name}'; valid: {', '.join(BACKENDS)}")
    return name


class BenchConfig(BaseModel):
    """The options of one `tts bench` run (the CLI's, or one run of a sweep), validated when
    built: a bad value is a ValidationError naming the option, before anything starts."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    task: str
    strategy: str
    n: int = Field(8, ge=1)
    params: dict[str, Any] = Field(default_factory=dict)
    verifier: str | None = None
    verifier_model: str | None = None  # the reward model a PRM verifier loads
    model: str | None = None  # None: the embedded default model
    name: str | None = None  # the model name results are recorded under (default: see model_name)
    backend: Annotated[str, AfterValidator(_check_backend)] = "vllm"  # replay: of the trace bank `bank`
    base_urls: list[str] = Field(default_factory=list)
    bank: str | None = None  # --backend replay: the bank folder
    data: DataFile = None
    limit: int | None = Field(None, ge=1)
    out: OutPath = None
    seed: int = Field(0, ge=0)
    # None: the bank's value under --backend replay, else tts.Sampling's default (0.7, 1.0, 1024)
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    budget: BudgetCaps = Field(default_factory=dict)
    concurrency: int = Field(64, ge=1)
    max_model_len: int = Field(4096, ge=1)
    enforce_eager: bool | None = None  # None: eager on the CPU, compiled graphs on a GPU
    timeout: Timeout = None
    retries: Retries = None

    @classmethod
    def from_options(cls, **options: Any) -> "BenchConfig":
        """Validate CLI options: a bad one is one TTSError line naming the option."""
        try:
            return cls(**options)
        except ValidationError as e:
            raise TTSError(one_line(e, option_name)) from None


def build_strategy(name: str, n: int | None, params: dict[str, Any]) -> Any:
    """The named strategy with `n` as its size and `params` validated by its parameter model."""
    factory = lookup("strategy", name)
    model = factory.params_model()
    size = factory.size_param()
    kwargs = dict(params)
    if n is not None and size is not None and not any(k in kwargs for k in (size, *factory.aliases)):
        kwargs[size] = n
    accepted = [*model.model_fields, *factory.aliases]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], accepted, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise TTSError(f"strategy '{name}' takes no parameter {', '.join(unknown)}{hint}; "
                       f"it takes: {', '.join(accepted)}")
    try:
        checked = model.model_validate(kwargs)
        return factory(**{k: getattr(checked, k) for k in model.model_fields})
    except ValidationError as e:
        raise TTSError(f"strategy '{name}': {one_line(e)}") from None
    except (TypeError, ValueError) as e:
        raise TTSError(f"strategy '{name}': {e}") from None


def build_verifier(name: str | None, cfg: BenchConfig, generator: Any) -> Any:
    """The named verifier; a reward model gets `cfg.verifier_model`, a judge the generator."""
    if name is None:
        return None
    factory = lookup("verifier", name)
    accepted = inspect.signature(factory).parameters
    kwargs = {k: v for k, v in (("model", cfg.verifier_model), ("generator", generator)) if k in accepted}
    return factory(**kwargs)


def build_budget(caps: dict[str, float]) -> Budget | None:
    if not caps:
        return None
    valid = set(Budget.__dataclass_fields__)
    bad = sorted(set(caps) - valid)
    if bad:
        raise TTSError(f"unknown budget cap {', '.join(bad)}; valid: {', '.join(sorted(valid))}")
    return Budget(**caps)  # type: ignore[arg-type]



def open_bank(cfg: BenchConfig) -> Any:
    """The trace bank `--backend replay` serves from (TTSError when missing or unreadable)."""
    from tts.bank import Bank

    if not cfg.bank:
        raise TTSError("--backend replay needs --bank DIR (a bank from `tts record`)")
    return Bank(cfg.bank)


def model_name(cfg: BenchConfig, bank: Any = None) -> str:
    """The model results are recorded under. Replayed results get `replay:<model>@<bank folder>`
    so their config hash never equals a live run's: replay serves a fixed pool of recorded
    samples, which is not the same experiment as sampling the model afresh."""
    if cfg.name:
        return cfg.name
    if cfg.backend == "replay":
        bank = bank or open_bank(cfg)
        return f"replay:{bank.model}@{bank.path.name}"
    return cfg.model or _default_model_name()


def resolve_sampling(cfg: BenchConfig, bank: Any = None) -> Sampling:
    """The options given, else (replay) what the bank was recorded with, else the defaults."""
    recorded = (bank or open_bank(cfg)).sampling if cfg.backend == "replay" else {}
    d = Sampling()
    pick = lambda f: next(v for v in (getattr(cfg, f), recorded.get(f), getattr(d, f)) if v is not None)  # noqa: E731
    return Sampling(pick("temperature"), pick("top_p"), pick("max_tokens"))


def build_generator(cfg: BenchConfig) -> Any:
    if cfg.backend == "vllm":
        from tts.models import resolve_model
        from tts.backends.vllm import VLLMGenerator

        path = resolve_model(cfg.model)
        return VLLMGenerator(
            path,
            name=cfg.model or _default_model_name(),
            seed=cfg.seed,
            max_model_len=cfg.max_model_len,
            enforce_eager=cfg.enforce_eager,
        )
    if cfg.backend == "openai":
        from tts.backends.openai import OpenAIGenerator

        if not cfg.model or not cfg.base_urls:
            raise TTSError("--backend openai needs --model NAME (as the server knows it) and --base-url URL")
        return OpenAIGenerator(cfg.model, cfg.base_urls, **request_policy(OpenAIGenerator, cfg))
    if cfg.backend == "replay":
        from tts.backends.replay import ReplayGenerator

        bank = open_bank(cfg)
        # Checks the sampling against the bank's: a mismatch is a TTSError naming both values.
        return ReplayGenerator(bank, seed=cfg.seed, sampling=resolve_sampling(cfg, bank),
                               name=model_name(cfg, bank))
    raise TTSError(f"unknown backend '{cfg.backend}'; valid: {', '.join(BACKENDS)}")


def request_policy(cls: Any, cfg: BenchConfig) -> dict[str, Any]:
    """--timeout / --retries as the OpenAI generator's constructor takes them (given ones only)."""
    accepted = inspect.signature(cls).parameters
    out: dict[str, Any] = {}
    if cfg.timeout is not None:
        out["timeout"] = cfg.timeout
    if cfg.retries is not None:
        out["retries" if "retries" in accepted else "max_retries"] = cfg.retries
    return out


def _default_model_name() -> str:
    from tts.models import DEFAULT_MODEL

    return DEFAULT_MODEL


async def grade_all(task: Any, problem: Problem, result: Result) -> dict[str, Any]:
    """pass@N (any sample right) and maj@N (the majority answer right) over the samples."""
    from tts.answers.voting import vote

    answers = [t.answer for t in result.traces]
    if problem.answer is None or not answers:
        return {}
    majority, _ = await vote(answers)
    distinct = {a for a in answers if a is not None}
    graded = {a: await task.grade(problem, a) for a in distinct}
    return {
        "n_samples": len(answers),
        "pass_at_n": any(graded.values()),
        "maj_at_n": graded.get(majority, False) if majority is not None else False,
    }


@dataclass
class Prepared:
    """Everything `bench` settles before any engine starts (all cheap, all validated)."""

    task: Any
    strategy: Any
    spec: RunSpec
    budget: Budget | None
    sampling: Sampling
    problems: list[Problem]
    model_name: str  # what records name as their model
    bank: Any = None  # the replayed bank (--backend replay)

    @property
    def config_hash(self) -> str:
        return self.spec.config_hash()

    @property
    def verifier_name(self) -> str | None:
        return self.spec.verifier


def prepare(cfg: BenchConfig, problems: Sequence[Problem] | None = None) -> Prepared:
    """Validate `cfg` and build its RunSpec; `problems` replaces loading the task's."""
    task = lookup("task", cfg.task)()
    strategy = build_strategy(cfg.strategy, cfg.n, cfg.params)
    bank = open_bank(cfg) if cfg.backend == "replay" else None
    verifier_name = cfg.verifier or type(strategy).default_verifier
    if bank is not None and not cfg.verifier and verifier_name == "confidence" and bank.manifest.get("outcome"):
        verifier_name = "recorded"  # a bank with outcome scores (math100) selects by them
    if verifier_name is not None:
        lookup("verifier", verifier_name)  # an unknown name fails now, before the engine starts
    budget = build_budget(cfg.budget)
    sampling = resolve_sampling(cfg, bank)
    if bank is not None:
        from tts.backends.replay import ReplayGenerator

        ReplayGenerator(bank, sampling=sampling)  # a sampling mismatch fails now (cheap: no decoding)
    if problems is None:
        if bank is not None and cfg.data is None:
            problems = bank.problems()[: cfg.limit]  # the recorded problems, in recording order
        else:
            problems = task.load(cfg.data, limit=cfg.limit)
    if bank is not None:
        backend = BackendId(kind="replay", model=str(bank.model), bank=bank.path.name)
    else:
        backend = BackendId(kind=cfg.backend, model=cfg.name or cfg.model or _default_model_name())
    spec = RunSpec(task=task.name, strategy=strategy.name, params=strategy.config(), verifier=verifier_name,
                   verifier_model=cfg.verifier_model, sampling=sampling_fields(sampling),
                   budget=budget_caps(budget), seed=cfg.seed, backend=backend)
    return Prepared(task, strategy, spec, budget, sampling, list(problems), model_name(cfg, bank), bank)


def failed_record(problem: Problem, spec: RunSpec, error: BaseException) -> dict[str, Any]:
    """What a problem whose solving failed (a backend fault) leaves: status failed and the
    error, never an answer; a resume retries it."""
    return {
        "problem_id": problem.id, "config_hash": spec.config_hash(), "seed": spec.seed,
        "strategy": spec.strategy, "status": "failed", "answer": None, "correct": None,
        "error": f"{type(error).__name__}: {error}",
    }


async def bench(
    cfg: BenchConfig,
    progress: Any = None,
    generator: Any = None,
    verifier: Any = None,
    *,
    store: Any = None,
    problems: Sequence[Problem] | None = None,
) -> tuple[Any, str, list[Problem]]:
    """Run (or resume) a benchmark; returns the store, the config hash and the problems.

    A `generator` or `verifier` passed in is used as is and left open (else they are built
    from `cfg`, and closed at the end); a ReplayGenerator passed in is reset (a run draws each
    problem's samples without replacement, in the order `cfg.seed` gives). `store` (anything
    with `done(key)` and `append(record)`) replaces the JSONL file `cfg.out`; `problems`
    replaces loading the task's. A problem that fails (a backend fault) is stored as a failed
    record, which the next run retries; a user error (TTSError) stops the run."""
    from tts.backends.replay import ReplayGenerator

    p = prepare(cfg, problems)
    task, strategy, chash = p.task, p.strategy, p.config_hash
    problems = p.problems
    if store is None:
        store = ResultStore(cfg.out or f"results/{cfg.task}_{cfg.strategy}.jsonl")
    todo = [q for q in problems if not store.done((q.id, chash, cfg.seed))]
    if progress is not None:
        progress.start(len(problems), len(problems) - len(todo))
    if not todo:
        return store, chash, problems

    owned = generator is None
    generator = generator or build_generator(cfg)
    if isinstance(generator, ReplayGenerator):
        generator.reset(cfg.seed)
    owned_verifier = verifier is None

    def finish(rec: dict[str, Any], problem: Problem) -> None:
        rec["gold"] = problem.answer
        rec["model"] = p.model_name
        rec["task"] = cfg.task
        if p.bank is not None:
            rec["replay"] = {"bank": str(p.bank.path), "model": p.bank.model}
        rec["finished_at"] = time.time()
        store.append(rec)
        if progress is not None:
            progress.advance(rec)

    try:
        if owned_verifier:
            verifier = build_verifier(p.verifier_name, cfg, generator)
        if progress is not None:
            progress.ready()  # the engines are up: throughput is measured from here

        async def on_result(r: Result) -> None:
            problem = by_id[r.problem_id]
            rec = r.record()
            if rec.get("error"):  # a finished record never carries an error
                finish(failed_record(problem, p.spec, RuntimeError(rec["error"])), problem)
                return
            rec["status"] = "finished"
            rec.update(await grade_all(task, problem, r))
            finish(rec, problem)

        async def on_error(problem: Problem, e: Exception) -> None:
            if not isinstance(e, TTSError):  # unexpected: keep the traceback for whoever debugs it
                traceback.print_exception(e, limit=-3)
            finish(failed_record(problem, p.spec, e), problem)

        by_id = {q.id: q for q in todo}
        await run_many(
            todo,
            strategy,
            generator=generator,
            verifier=verifier,
            budget=p.budget,
            sampling=p.sampling,
            task=task,
            seed=cfg.seed,
            spec=p.spec,
            concurrency=cfg.concurrency,
            on_result=on_result,
            on_error=on_error,
        )
    finally:
        await _close(strategy)  # a strategy may hold a model of its own (DeepPrune's judge)
        if owned_verifier and verifier is not None:
            await _close(verifier)
        if owned:
            await generator.close()
    return store, chash, problems


async def _close(obj: Any) -> None:
    close = getattr(obj, "close", None)
    if close is not None:
        maybe = close()
        if inspect.isawaitable(maybe):
            await maybe


def summarize(
    records: Sequence[dict[str, Any]], wall: float | None = None, fresh: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    """Accuracy, pass@N / maj@N where defined, mean tokens per problem, and the throughput of
    this invocation (`fresh` records generated in `wall` seconds). Failed records (a backend
    fault; a resume retries them) are counted as `failed` and nowhere else: the means are over
    the answered problems."""
    failed = sum(map(is_failed, records))
    records = [r for r in records if not is_failed(r)]
    fresh = [r for r in fresh if not is_failed(r)]
    k = len(records)
    if k == 0:
        return {"problems": failed, "failed": failed}
    mean = lambda key: sum(r["usage"][key] for r in records) / k  # noqa: E731
    out: dict[str, Any] = {
        "problems": k + failed,
        "failed": failed,
        "accuracy": sum(bool(r.get("correct")) for r in records) / k,
        "mean_completion_tokens": mean("completion_tokens"),
        "mean_total_tokens": mean("total_tokens"),
        "mean_wall_seconds": mean("wall_seconds"),
        "stopped_by_budget": sum(r.get("stopped_by") == "budget" for r in records),
    }
    if all("pass_at_n" in r for r in records):
        out["pass_at_n"] = sum(r["pass_at_n"] for r in records) / k
        out["maj_at_n"] = sum(r["maj_at_n"] for r in records) / k
    if wall:
        out["solving_seconds"] = wall
        out["tokens_per_second"] = sum(r["usage"]["completion_tokens"] for r in fresh) / wall
    return out
