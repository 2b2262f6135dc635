"""Writing trace banks: `record_bank` (N independent samples per problem, what `tts record`
does), `record_run` (any sample-based strategy run live, its samples recorded as it draws them:
replaying the bank in recorded order reproduces that run's answers and token charges), and the
`tts record` command. Both go through `tts.run_many` with a `RecordingGenerator` in front of the
backend, so the engine batches across problems.

Names: a *bank record* (`BankRecord`) is one problem's recorded samples; a *result record* is
one line of a results JSONL (`tts.experiment.store`). Callbacks here are `on_bank_record`.

Each problem's bank record is written when the problem finishes (answers extracted and graded
by the task, PRM step scores added when a PRM is given), so an interrupted recording keeps
every finished problem and a re-run skips them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tts.answers import extract_boxed
from tts.backends.recording import RecordingGenerator
from tts.bank import Bank, BankRecord, BankWriter, RecordedTrace
from tts.context import Accountant, Context, Verifier
from tts.errors import TTSError
from tts.interfaces import Generator
from tts.options import DataFile, ModelOptions, OutPath, SamplingOptions, one_line, option_name
from tts.registry import lookup
from tts.runner import TaskLike, run_many
from tts.strategy import Strategy
from tts.types import DEFAULT_SYSTEM_PROMPT, Problem, Result, Sampling


class RecordOptions(BaseModel):
    """`tts record`'s options, checked before anything starts (one line per bad value)."""

    model_config = ConfigDict(extra="ignore")

    n: int = Field(8, ge=1)
    logprobs: int | None = Field(None, ge=0)
    data: DataFile = None
    limit: int | None = Field(None, ge=1)
    out: OutPath = None
    max_tokens: int = Field(1024, ge=1)
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int = Field(0, ge=0)
    concurrency: int = Field(64, ge=1)
    max_model_len: int = Field(4096, ge=1)
    import_math100: DataFile = None

    @classmethod
    def check(cls, args: Any) -> "RecordOptions":
        try:
            return cls(**vars(args))
        except ValidationError as e:
            raise TTSError(one_line(e, option_name)) from None


# -- recording runs ----------------------------------------------------------------------------
class _Sample(Strategy):
    """Draws n independent samples of a problem in one request (recording only)."""

    name = "record"

    def __init__(self, n: int, logprobs: int | None):
        self.n, self.logprobs = n, logprobs

    async def solve(self, problem: Problem, ctx: Context) -> Result:
        traces = await ctx.generate(ctx.request(self.n, logprobs=self.logprobs))
        return Result(problem.id, None, traces)


def bank_manifest(model: str, num_params: int | None, task: TaskLike | None, sampling: Sampling,
                  logprobs: int | None, seed: int | None, n: int | None = None, prm: str | None = None,
                  stop: Sequence[str] = (), **extra: Any) -> dict[str, Any]:
    return {
        "model": model, "num_params": num_params, "task": task.name if task is not None else "",
        "sampling": {"temperature": sampling.temperature, "top_p": sampling.top_p,
                     "max_tokens": sampling.max_tokens, "stop": list(stop)},
        "logprobs": logprobs, "seed": seed, "n": n, "prm": prm,
        "system_prompt": task.system_prompt if task is not None else DEFAULT_SYSTEM_PROMPT,
        "cached_tokens": "engine-reported prefix-cache hits per problem, summed over its requests",
        **extra,
    }


async def record_run(
    problems: Sequence[Problem],
    strategy: Strategy,
    generator: Generator,
    out: str | Path,
    *,
    task: TaskLike | None = None,
    sampling: Sampling | None = None,
    logprobs: int | None = None,
    seed: int | None = 0,
    verifier: Verifier | None = None,
    prm: Verifier | None = None,
    prm_name: str | None = None,
    concurrency: int = 64,
    on_bank_record: Any = None,
    manifest: dict[str, Any] | None = None,
) -> list[Result]:
    """Run `strategy` live over the problems not yet in the bank at `out`, recording every
    sample it draws; one record per problem, written as the problem finishes. Returns the live
    results of this invocation (problems already recorded are skipped).

    `prm`, when given, scores each recorded sample (per-step scores stored with the sample).
    `on_bank_record(record)` is called after each record is committed."""
    sampling = sampling or Sampling()
    writer = BankWriter(out, manifest or bank_manifest(
        generator.model, generator.num_params, task, sampling, logprobs, seed, prm=prm_name))
    todo = [p for p in problems if p.id not in writer]
    if not todo:
        return []
    rec_gen = RecordingGenerator(generator, logprobs, sampling)
    by_id = {p.id: p for p in todo}
    system = task.system_prompt if task is not None else None
    extract = task.extract if task is not None else extract_boxed

    async def on_result(r: Result) -> None:
        problem = by_id[r.problem_id]
        msgs = problem.messages(system) if system is not None else problem.messages()
        prompt_tokens, cached, got = rec_gen.take(msgs)
        traces = [t for t, _ in got]
        for t in traces:
            t.answer = extract(t.text)
        graded: dict[str, bool] = {}
        if task is not None and problem.answer is not None:
            for a in {t.answer for t in traces if t.answer is not None}:
                graded[a] = await task.grade(problem, a)
        prm_scores = None
        if prm is not None and traces:  # scored through a context of its own: the bank records its cost nowhere
            prm_scores = await prm.score(Context(problem, generator, Accountant(), verifier=prm), traces)
        samples = []
        gradable = task is not None and problem.answer is not None
        for i, (t, ends) in enumerate(got):
            correct = graded.get(t.answer, False) if gradable and t.answer is not None else (False if gradable else None)
            s = prm_scores[i] if prm_scores is not None else None
            samples.append(RecordedTrace.from_trace(
                t, correct=correct, char_ends=ends,
                step_scores=list(s.steps) if s is not None and s.steps else None,
                prm_score=s.value if s is not None else None,
            ))
        record = BankRecord(
            key=problem.id, question=problem.question, samples=samples, system=msgs[0]["content"]
            if msgs[0]["role"] == "system" else None, gold=problem.answer, prompt_tokens=prompt_tokens,
            cached_tokens=cached, extra=_jsonable(problem.meta),
        )
        writer.append(record)
        if on_bank_record is not None:
            on_bank_record(record)

    try:
        return await run_many(
            todo, strategy, generator=rec_gen, verifier=verifier, sampling=sampling, task=task,
            seed=seed or 0, concurrency=concurrency, on_result=on_result,
        )
    finally:
        writer.close()


async def record_bank(problems: Sequence[Problem], generator: Generator, out: str | Path, *, n: int,
                      **options: Any) -> Bank:
    """Record `n` independent samples of each problem into the bank at `out` (resumable);
    `options` are `record_run`'s (task, sampling, logprobs, seed, prm, prm_name, concurrency,
    on_bank_record)."""
    if n < 1:
        raise TTSError(f"-n must be >= 1, got {n}")
    sampling = options.setdefault("sampling", Sampling())
    logprobs = options.get("logprobs")
    manifest = bank_manifest(generator.model, generator.num_params, options.get("task"), sampling, logprobs,
                             options.get("seed", 0), n=n, prm=options.get("prm_name"))
    await record_run(problems, _Sample(n, logprobs), generator, out, manifest=manifest, **options)
    return Bank(out)


def _jsonable(meta: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in meta.items():
        try:
            json.dumps(v)
            out[k] = v
        except (TypeError, ValueError):
            pass
    return out


# -- the `tts record` command ------------------------------------------------------------------
def load_prm(name: str) -> Verifier:
    """The `qwen_prm` verifier on the reward model `name` (it starts its own engine), errors
    folded into one line."""
    try:
        return lookup("verifier", "qwen_prm")(model=name)
    except TTSError as e:
        raise TTSError(f"--prm {name}: " + " ".join(str(e).split())) from None


def run_record_command(args: Any) -> int:
    """`tts record ...` (see tts.cli): validate everything cheap, then start the engine."""
    import asyncio
    import os
    import sys
    import time

    from tts.bank import import_math100
    from tts.models import DEFAULT_MODEL, resolve_model

    RecordOptions.check(args)
    if args.import_math100:
        tok = resolve_model(args.model) if args.model else "auto"
        t0 = time.perf_counter()
        bank = import_math100(args.import_math100, args.out, tokenizer=tok, limit=args.limit)
        _print_stats(bank, time.perf_counter() - t0)
        return 0
    if not args.task:
        raise TTSError("tts record needs --task (a registered task), or --import-math100 FILE")
    if args.prm:
        lookup("verifier", "qwen_prm")  # before anything slow: is there a PRM at all?

    from tts.backends.vllm import model_parameters
    from tts.experiment.build import build_generator

    task = lookup("task", args.task)()
    problems = task.load(args.data, limit=args.limit)
    sampling = Sampling(args.temperature, args.top_p, args.max_tokens)
    name = args.model or DEFAULT_MODEL
    path = resolve_model(args.model)
    manifest = bank_manifest(name, model_parameters(path), task, sampling, args.logprobs, args.seed,
                             n=args.n, prm=args.prm)
    writer = BankWriter(args.out, manifest)  # checks a resumed bank's configuration before the engine starts
    todo = [p for p in problems if p.id not in writer]
    prm = load_prm(args.prm) if args.prm and todo else None
    print(f"{len(problems) - len(todo)} of {len(problems)} problems already in {args.out}; recording {len(todo)}",
          file=sys.stderr)
    if todo:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        model = ModelOptions(model=args.model, max_model_len=args.max_model_len)
        done: list[int] = []
        t0 = [time.perf_counter()]  # reset once the engine is up: throughput is measured from there

        def on_bank_record(rec: BankRecord) -> None:
            done.append(rec.tokens)
            el = time.perf_counter() - t0[0]
            print(f"\r{len(done)}/{len(todo)} problems, {sum(done)} tokens, {el:.0f} s", end="", file=sys.stderr)

        async def go() -> None:
            generator = build_generator(model, SamplingOptions(), args.seed)
            t0[0] = time.perf_counter()
            try:
                await record_bank(todo, generator, args.out, n=args.n, task=task, sampling=sampling,
                             logprobs=args.logprobs, seed=args.seed, prm=prm, prm_name=args.prm,
                             concurrency=args.concurrency, on_bank_record=on_bank_record)
            finally:
                await generator.close()

        try:
            asyncio.run(go())
        except KeyboardInterrupt:
            print(f"\ninterrupted: {len(done)} new problems kept in {args.out}; run the same command again to resume",
                  file=sys.stderr)
            return 130
        print(file=sys.stderr)
        _print_stats(Bank(args.out), time.perf_counter() - t0[0], sum(done))
    else:
        _print_stats(Bank(args.out), None)
    return 0


def _print_stats(bank: Bank, wall: float | None, new_tokens: int | None = None) -> None:
    s = bank.stats()
    line = (f"{bank.path}: {s['problems']} problems, {s['samples']} samples, {s['tokens']} tokens, "
            f"{s['bytes']} bytes ({s['bytes_per_token']:.2f} bytes/token)")
    if wall is not None:
        line += f"; {wall:.1f} s"
        if new_tokens:
            line += f" ({new_tokens / wall:.1f} generated tokens/s)"
    print(line)
