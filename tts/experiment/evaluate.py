"""THE pipeline (`tts bench`, and every run of a sweep): run a strategy over a benchmark, append
one result record per problem keyed by the run's `RunSpec`, resume, summarize.

Everything cheap is validated before the engine starts (task, strategy, parameters, data), and
problems already in the output file for this configuration are skipped, so re-running the same
command after a crash or Ctrl-C finishes the job without redoing or duplicating anything.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tts.answers import mathverify
from tts.answers.voting import vote
from tts.backends.replay import ReplayGenerator
from tts.errors import TTSError
from tts.experiment.build import backend_id, build_generator, build_strategy, build_verifier, check_verifier
from tts.experiment.details import DETAILS, details_of
from tts.experiment.stats import pass_at_k_table
from tts.experiment.store import ResultStore, is_failed
from tts.options import BenchConfig
from tts.registry import lookup
from tts.runner import run_many
from tts.spec import RunSpec, spec_of
from tts.types import Budget, Problem, Result, Sampling, Usage



async def grade_all(task: Any, problem: Problem, result: Result) -> dict[str, Any]:
    """pass@N (any sample right), maj@N (the majority answer right), the samples right
    (`n_correct`) and the unbiased pass@k (Chen et al., 2021) for k = 1, 2, 4, ... N; plus what a
    task with a `grade_detail(problem, result)` hook adds (a code task: the program run and its
    test outcomes)."""
    answers = [t.answer for t in result.traces]
    out: dict[str, Any] = {}
    if problem.answer is not None and answers:
        with mathverify.count_failures() as failed:  # grading failures: "not equivalent", counted
            majority, _ = await vote(answers)
            distinct = list(dict.fromkeys(a for a in answers if a is not None))
            # concurrently: a code task runs each distinct program in its sandbox pool
            graded = dict(zip(distinct, await asyncio.gather(*(task.grade(problem, a) for a in distinct))))
        n_correct = sum(graded.get(a, False) for a in answers if a is not None)
        out = {
            "n_samples": len(answers),
            "pass_at_n": any(graded.values()),
            "maj_at_n": graded.get(majority, False) if majority is not None else False,
            "n_correct": n_correct,
            "pass_at_k": pass_at_k_table(len(answers), n_correct),
            **({"grading_failures": sum(failed.values())} if failed else {}),
        }
    detail = getattr(task, "grade_detail", None)  # the task's own record fields (graded runs are cached)
    if detail is not None and problem.answer is not None:
        out.update(await detail(problem, result))
    return out


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
    bank = ReplayGenerator.open_bank(cfg) if cfg.backend == "replay" else None
    verifier_name = cfg.verifier or type(strategy).default_verifier
    if bank is not None and not cfg.verifier and verifier_name == "confidence" and bank.manifest.get("outcome"):
        verifier_name = "recorded"  # a bank with outcome scores (math100) selects by them
    if verifier_name is not None:  # an unknown name, or a reward model not named, fails now
        check_verifier(verifier_name, cfg.verifier_model)
    budget = cfg.caps()
    sampling = cfg.resolve(bank.sampling if bank is not None else None)
    if bank is not None:
        ReplayGenerator(bank, sampling=sampling)  # a sampling mismatch fails now (cheap: no decoding)
        if sampling.thinking_budget is not None or getattr(strategy, "forcing", None) is not None:
            raise TTSError("a thinking budget (budget forcing) continues each sample from its own prefix, which "
                           "a replayed bank cannot: run it on a live backend (--backend vllm or openai)")
    for cap in ("completion_tokens", "total_tokens"):
        value = getattr(budget, cap) if budget is not None else None
        if value is not None and value < sampling.max_tokens:  # it could never send one sample
            why = "replay's max_tokens is the bank's longest sample" if bank is not None else "see --max-tokens"
            need = f"{sampling.max_tokens}{' plus the prompt' if cap == 'total_tokens' else ''}"
            raise TTSError(f"--budget {cap}={value:g} cannot buy one sample of max_tokens {sampling.max_tokens} "
                           f"(a sample's worst case is reserved before it is sent; {why}): raise the cap to at "
                           f"least {need}, or lower --max-tokens")
    if problems is None:
        if bank is not None and cfg.data is None:
            problems = bank.problems()[: cfg.limit]  # the recorded problems, in recording order
        else:
            problems = task.load(cfg.data, limit=cfg.limit)
    backend = backend_id(cfg)
    spec = spec_of(strategy, backend, verifier=verifier_name, verifier_model=cfg.verifier_model, budget=budget,
                   sampling=sampling, task=task.name, seed=cfg.seed)
    return Prepared(task, strategy, spec, budget, sampling, list(problems), backend.label, bank)


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
    with `done(key)` and `append(record)`; a finished record carries its details under
    `DETAILS`, which a ResultStore writes beside it) replaces the JSONL file `cfg.out`; `problems`
    replaces loading the task's. A problem that fails (a backend fault) is stored as a failed
    record, which the next run retries; a user error (TTSError) stops the run."""
    p = prepare(cfg, problems)
    task, strategy, chash = p.task, p.strategy, p.config_hash
    problems = p.problems
    store, todo = _unfinished(store, cfg.out or f"results/{cfg.task}_{cfg.strategy}.jsonl", problems, chash,
                              cfg.seed, progress)
    if not todo:
        return store, chash, problems

    owned = generator is None
    generator = generator or build_generator(cfg, cfg, cfg.seed)
    if isinstance(generator, ReplayGenerator):
        generator.reset(cfg.seed)
    owned_verifier = verifier is None

    def finish(rec: dict[str, Any], problem: Problem) -> None:
        _store(rec, problem, p, store, progress)

    try:
        if owned_verifier:
            verifier = build_verifier(p.verifier_name, cfg.verifier_model, generator)
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
            rec[DETAILS] = details_of(r, problem, spec_json)
            finish(rec, problem)

        async def on_error(problem: Problem, e: Exception) -> None:
            if not isinstance(e, TTSError):  # unexpected: keep the traceback for whoever debugs it
                traceback.print_exception(e, limit=-3)
            finish(failed_record(problem, p.spec, e), problem)

        by_id = {q.id: q for q in todo}
        spec_json = p.spec.model_dump(mode="json")  # written once per configuration with the details
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
        await release(strategy)  # a strategy may hold a model of its own (DeepPrune's judge)
        if owned_verifier and verifier is not None:
            await release(verifier)
        if owned:
            await generator.close()
    return store, chash, problems


def _unfinished(store: Any, out: str, problems: Sequence[Problem], chash: str, seed: int,
                progress: Any) -> tuple[Any, list[Problem]]:
    """The store (the JSONL file `out` when none is given) and the problems it has no record of
    for this configuration and seed; the progress bar starts counting the others as done."""
    if store is None:
        store = ResultStore(out, writer=True)
    todo = [q for q in problems if not store.done((q.id, chash, seed))]
    if progress is not None:
        progress.start(len(problems), len(problems) - len(todo))
    return store, todo


def _store(rec: dict[str, Any], problem: Problem, p: Prepared, store: Any, progress: Any) -> None:
    """Complete a record with what every record names (gold, model, task, bank) and append it."""
    rec["gold"] = problem.answer
    rec["model"] = p.model_name
    rec["task"] = p.task.name
    if p.bank is not None:
        rec["replay"] = {"bank": str(p.bank.path), "model": p.bank.model}
    rec["finished_at"] = time.time()
    store.append(rec)
    if progress is not None:
        progress.advance(rec)


async def bench_allocated(
    cfg: BenchConfig,
    alloc: Any,
    progress: Any = None,
    generator: Any = None,
    *,
    store: Any = None,
    problems: Sequence[Problem] | None = None,
) -> tuple[Any, str, list[Problem]]:
    """`tts bench --total-budget`: the benchmark under one total budget, allocated per problem by
    `alloc` (a `tts.experiment.allocate.AllocationSpec`); returns the store, the run's hash and
    the problems solved (the test split).

    The policy learns on a seeded held-out split (`alloc.train_fraction`), which is profiled and
    not recorded; each test problem's record lands as it finishes, keyed by one RunSpec whose
    strategy is `allocate:<policy>` and whose params are the allocation's settings. A resume
    keeps the finished problems and re-plans the rest with what is left of the total, so the
    total holds across interruptions. Per-problem caps (`cfg.budget`) do not combine with it:
    the allocation sets each problem's cap."""
    from tts.experiment.allocate import Candidate, allocate, bank_pass1, cost

    p = prepare(cfg, problems)
    if p.budget is not None:
        raise TTSError("--budget (per-problem caps) cannot be combined with --total-budget: the allocation "
                       "sets each problem's cap from the total; drop one of them")
    candidates = []
    for c in alloc.candidates:  # each validated as its own `tts bench` run would be
        q = prepare(cfg.model_copy(update={"strategy": c.strategy, "n": c.n, "params": dict(c.params)}), p.problems)
        candidates.append(Candidate(c.strategy, c.n, c.params, verifier=c.verifier or q.verifier_name))
    if alloc.policy == "oracle" and p.bank is None:
        raise TTSError("the oracle policy reads each problem's pass@1 from a bank's graded samples: "
                       "use --backend replay --bank DIR")
    spec = p.spec.model_copy(update={"strategy": f"allocate:{alloc.policy}", "params": alloc.params(),
                                     "verifier": None, "verifier_model": None})
    chash = spec.config_hash()
    train, test = alloc.split(p.problems, cfg.seed)
    store, todo = _unfinished(store, cfg.out or f"results/{cfg.task}_allocate_{alloc.policy}.jsonl", test, chash,
                              cfg.seed, progress)
    if not todo:
        return store, chash, test
    ids = {q.id for q in test}
    spent = sum(cost(Usage.from_dict(r["usage"]), alloc.unit) for r in store.for_config(chash, cfg.seed)
                if r["problem_id"] in ids and not is_failed(r))
    left = alloc.total - spent
    if left <= 0:
        raise TTSError(f"the total {alloc.total:.6g} {alloc.unit} is spent by the {len(test) - len(todo)} problems "
                       f"already solved; {len(todo)} are left: raise --total-budget to go on")
    owned = generator is None
    generator = generator or build_generator(cfg, cfg, cfg.seed)
    verifiers: dict[str, Any] = {}
    try:
        for c in candidates:
            if c.verifier is not None and c.verifier not in verifiers:
                verifiers[c.verifier] = build_verifier(c.verifier, cfg.verifier_model, generator)
        if progress is not None:
            progress.ready()

        async def on_result(i: int, r: Result, label: str) -> None:
            rec = r.record()
            rec.update(config_hash=chash, seed=cfg.seed, status="finished",
                       allocation={"policy": alloc.policy, "config": label})
            rec.update(await grade_all(p.task, todo[i], r))
            rec[DETAILS] = details_of(r, todo[i], spec.model_dump(mode="json"))
            _store(rec, todo[i], p, store, progress)

        await allocate(todo, candidates, total=left, generator=generator, task=p.task, train=train,
                       verifiers=verifiers, sampling=p.sampling, seed=cfg.seed, concurrency=cfg.concurrency,
                       oracle_pass1=bank_pass1(p.bank) if alloc.policy == "oracle" else None,
                       on_result=on_result, **alloc.options())
    finally:
        for v in verifiers.values():
            await release(v)
        if owned:
            await generator.close()
    return store, chash, test


async def release(obj: Any) -> None:
    """Close `obj` if it holds something (an engine, a connection); a no-op otherwise."""
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
    if any("thinking_tokens" in r["usage"] for r in records):  # a reasoning model's split
        out["mean_thinking_tokens"] = sum(r["usage"].get("thinking_tokens", 0) for r in records) / k
        out["mean_answer_tokens"] = out["mean_completion_tokens"] - out["mean_thinking_tokens"]
    if all("pass_at_n" in r for r in records):
        out["pass_at_n"] = sum(r["pass_at_n"] for r in records) / k
        out["maj_at_n"] = sum(r["maj_at_n"] for r in records) / k
    ks = set.intersection(*(set(r.get("pass_at_k") or ()) for r in records))  # the k every record has
    for key in sorted(ks, key=int):
        out[f"pass_at_{key}"] = sum(r["pass_at_k"][key] for r in records) / k
    if wall:
        out["solving_seconds"] = wall
        out["tokens_per_second"] = sum(r["usage"]["completion_tokens"] for r in fresh) / wall
    return out
