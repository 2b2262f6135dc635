"""`tts bench`: run a strategy over a benchmark, append one record per problem, resume, report.

Everything cheap is validated before the engine starts (task, strategy, parameters, data), and
problems already in the output file for this configuration are skipped, so re-running the same
command after a crash or Ctrl-C finishes the job without redoing or duplicating anything.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tts.context import Sampling
from tts.errors import TTSError
from tts.registry import lookup
from tts.runner import config_hash, describe, run_many
from tts.experiment.store import ResultStore
from tts.types import Budget, Problem, Result

# Strategies that need scores get this verifier unless one is named: confidence from the
# model's own logprobs for selection, and the generator as its own step judge for search (so
# both run with no reward model installed).
DEFAULT_VERIFIER = {
    "best_of_n": "confidence",
    "weighted_majority": "confidence",
    **{s: "llm_judge" for s in ("beam_search", "dvts", "astar", "particle_filter")},
}


@dataclass
class BenchConfig:
    task: str
    strategy: str
    n: int = 8
    params: dict[str, Any] = field(default_factory=dict)
    verifier: str | None = None
    verifier_model: str | None = None  # the reward model a PRM verifier loads
    model: str | None = None  # None: the embedded default model
    name: str | None = None  # the model name results are recorded under (default: see model_name)
    backend: str = "vllm"  # vllm | openai | replay (of the trace bank `bank`)
    base_urls: list[str] = field(default_factory=list)
    bank: str | None = None  # --backend replay: the bank folder
    data: str | None = None
    limit: int | None = None
    out: str | None = None
    seed: int = 0
    # None: the bank's value under --backend replay, else tts.Sampling's default (0.7, 1.0, 1024)
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    budget: dict[str, float] = field(default_factory=dict)
    concurrency: int = 64
    max_model_len: int = 4096
    enforce_eager: bool | None = None  # None: eager on the CPU, compiled graphs on a GPU


def build_strategy(name: str, n: int, params: dict[str, Any]) -> Any:
    factory = lookup("strategy", name)
    accepted = inspect.signature(factory).parameters
    # -n sets the strategy's size: its `n`, else its first parameter (n_particles, k, ...).
    size = "n" if "n" in accepted else next(iter(accepted), None)
    kwargs = {size: n, **params} if size else dict(params)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TTSError(
            f"strategy '{name}' takes no parameter {', '.join(unknown)}; it takes: {', '.join(accepted)}"
        )
    try:
        return factory(**kwargs)
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


BACKENDS = ("openai", "replay", "vllm")


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
        return OpenAIGenerator(cfg.model, cfg.base_urls)
    if cfg.backend == "replay":
        from tts.backends.replay import ReplayGenerator

        bank = open_bank(cfg)
        # Checks the sampling against the bank's: a mismatch is a TTSError naming both values.
        return ReplayGenerator(bank, seed=cfg.seed, sampling=resolve_sampling(cfg, bank),
                               name=model_name(cfg, bank))
    raise TTSError(f"unknown backend '{cfg.backend}'; valid: {', '.join(BACKENDS)}")


def _default_model_name() -> str:
    from tts.models import DEFAULT_MODEL

    return DEFAULT_MODEL


async def grade_all(task: Any, problem: Problem, result: Result) -> dict[str, Any]:
    """pass@N (any sample right) and maj@N (the majority answer right) over the samples."""
    from tts.answers import mathverify
    from tts.answers.voting import vote

    answers = [t.answer for t in result.traces]
    if problem.answer is None or not answers:
        return {}
    with mathverify.count_failures() as failed:  # grading failures: "not equivalent", counted
        majority, _ = await vote(answers)
        distinct = {a for a in answers if a is not None}
        graded = {a: await task.grade(problem, a) for a in distinct}
    return {
        "n_samples": len(answers),
        "pass_at_n": any(graded.values()),
        "maj_at_n": graded.get(majority, False) if majority is not None else False,
        **({"grading_failures": sum(failed.values())} if failed else {}),
    }


@dataclass
class Prepared:
    """Everything `bench` settles before any engine starts (all cheap, all validated)."""

    task: Any
    strategy: Any
    verifier_name: str | None
    budget: Budget | None
    sampling: Sampling
    problems: list[Problem]
    model_name: str
    config_hash: str
    bank: Any = None  # the replayed bank (--backend replay)


def prepare(cfg: BenchConfig, problems: Sequence[Problem] | None = None) -> Prepared:
    """Validate `cfg` and compute its config hash; `problems` replaces loading the task's."""
    task = lookup("task", cfg.task)()
    strategy = build_strategy(cfg.strategy, cfg.n, cfg.params)
    if cfg.backend not in BACKENDS:
        raise TTSError(f"unknown backend '{cfg.backend}'; valid: {', '.join(BACKENDS)}")
    bank = open_bank(cfg) if cfg.backend == "replay" else None
    verifier_name = cfg.verifier or DEFAULT_VERIFIER.get(cfg.strategy)
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
    name = model_name(cfg, bank)
    described = describe(strategy, name, None, budget, sampling, task)
    described["verifier"] = verifier_name and {"name": verifier_name, "model": cfg.verifier_model}
    return Prepared(task, strategy, verifier_name, budget, sampling, list(problems), name,
                    config_hash(**described), bank)


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
    replaces loading the task's."""
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
    try:
        if owned_verifier:
            verifier = build_verifier(p.verifier_name, cfg, generator)
        if progress is not None:
            progress.ready()  # the engines are up: throughput is measured from here

        async def on_result(r: Result) -> None:
            problem = by_id[r.problem_id]
            r.config_hash = chash  # the bench's description is authoritative (model as named)
            rec = r.record()
            rec.update(await grade_all(task, problem, r))
            rec["gold"] = problem.answer
            rec["model"] = p.model_name
            rec["task"] = cfg.task
            if p.bank is not None:
                rec["replay"] = {"bank": str(p.bank.path), "model": p.bank.model}
            rec["finished_at"] = time.time()
            store.append(rec)
            if progress is not None:
                progress.advance(rec)

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
            concurrency=cfg.concurrency,
            on_result=on_result,
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
    this invocation (`fresh` records generated in `wall` seconds)."""
    k = len(records)
    if k == 0:
        return {"problems": 0}
    mean = lambda key: sum(r["usage"][key] for r in records) / k  # noqa: E731
    out: dict[str, Any] = {
        "problems": k,
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
