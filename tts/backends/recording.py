"""Recording trace banks (`tts record`): generation once, replay (tts.backends.replay) ever after.

`RecordingGenerator` wraps any generator and keeps a copy of every finished sample that passes
through it, per prompt, in request order, with the logprobs of a fixed top-k requested from the
backend whatever the strategy asked (the strategy still sees only what it asked for). So a
bank can be recorded two ways, both through `record_run`:

- `record(...)`: N independent samples per problem (what `tts record` does), sent through
  `tts.run_many` so the engine batches across problems;
- `record_run(problems, strategy, ...)`: any sample-based strategy run live, its samples
  recorded as it draws them; replaying the bank in recorded order (`ReplayGenerator(bank,
  shuffle=False)`) reproduces that run's answers and token charges.

Each problem's record is written when the problem finishes (answers extracted and graded by the
task, PRM step scores added when a PRM is given), so an interrupted recording keeps every
finished problem and a re-run skips them. Streams abandoned before they finish are not recorded
(a bank holds whole samples); requests with a prefix (step-level continuation) are refused.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tts.answers import extract_boxed
from tts.bank import Bank, BankRecord, BankWriter, RecordedTrace
from tts.context import Context, Sampling
from tts.errors import TTSError
from tts.interfaces import Generator, Strategy, Verifier
from tts.runner import TaskLike, run_many
from tts.types import DEFAULT_SYSTEM_PROMPT, GenRequest, Problem, Result, Trace, Usage


@dataclass
class _Slot:
    trace: Trace | None = None
    char_ends: list[int] | None = None


@dataclass
class _Prompt:
    prompt_tokens: int = 0
    cached_tokens: int = 0
    slots: list[_Slot] = field(default_factory=list)


class RecordingGenerator(Generator):
    """Passes requests to `inner` and records every finished sample, per prompt.

    `logprobs`: the top-k logprobs recorded for every sample (requested from `inner` whatever
    a request asks; None records none). `sampling`, when given, is the one sampling
    configuration the bank holds: a request with other temperature / top_p / max_tokens / stop
    is a TTSError (a bank mixing them could not be replayed faithfully).
    """

    def __init__(self, inner: Generator, logprobs: int | None = None, sampling: Sampling | None = None,
                 stop: Sequence[str] = ()):
        self.inner = inner
        self.model = inner.model
        self.num_params = inner.num_params
        self.logprobs = logprobs
        self.sampling = sampling
        self.stop = tuple(stop)
        self._prompts: dict[str, _Prompt] = {}

    @staticmethod
    def prompt_key(messages: list[dict[str, str]]) -> str:
        return json.dumps(messages, sort_keys=True, ensure_ascii=False)

    def take(self, messages: list[dict[str, str]]) -> tuple[int, int, list[tuple[Trace, list[int] | None]]]:
        """Remove and return what was recorded for a prompt: (prompt tokens per sample, cached
        tokens reported, [(trace, char ends or None)] in request order)."""
        p = self._prompts.pop(self.prompt_key(messages), None)
        if p is None:
            return 0, 0, []
        return p.prompt_tokens, p.cached_tokens, [(s.trace, s.char_ends) for s in p.slots if s.trace is not None]

    def _inner(self, req: GenRequest) -> GenRequest:
        if req.prefix:
            raise TTSError("step-level continuation (a request with a prefix) cannot be recorded into a bank: "
                           "a bank holds whole samples")
        if self.sampling is not None:
            for f in ("temperature", "top_p", "max_tokens"):
                if getattr(req, f) != getattr(self.sampling, f):
                    raise TTSError(f"this bank records {f}={getattr(self.sampling, f)}; a request asked "
                                   f"{f}={getattr(req, f)} (one sampling configuration per bank)")
            if tuple(req.stop) != self.stop:
                raise TTSError(f"this bank records stop={list(self.stop)}; a request asked stop={list(req.stop)}")
        if req.logprobs is not None and (self.logprobs is None or req.logprobs > self.logprobs):
            raise TTSError(f"the strategy asks logprobs={req.logprobs}; record with --logprobs {req.logprobs} "
                           f"or more (now {self.logprobs})")
        return req.replace(logprobs=self.logprobs) if self.logprobs is not None else req

    def _reserve(self, req: GenRequest, n: int) -> tuple[_Prompt, list[_Slot]]:
        p = self._prompts.setdefault(self.prompt_key(req.messages), _Prompt())
        slots = [_Slot() for _ in range(n)]
        p.slots.extend(slots)  # reserved at request time: the bank keeps request order
        return p, slots

    def _release(self, p: _Prompt, slots: list[_Slot]) -> None:
        for s in slots:
            if s.trace is None and s in p.slots:
                p.slots.remove(s)

    async def count_prompt_tokens(self, req: GenRequest) -> int:
        return await self.inner.count_prompt_tokens(req)

    async def generate(self, req: GenRequest) -> tuple[list[Trace], Usage]:
        ireq = self._inner(req)
        p, slots = self._reserve(req, req.n)
        try:
            traces, usage = await self.inner.generate(ireq)
        except BaseException:
            self._release(p, slots)
            raise
        p.prompt_tokens = usage.prompt_tokens // max(req.n, 1)
        p.cached_tokens += usage.cached_tokens
        for s, t in zip(slots, traces):
            if t.finish_reason in ("stop", "length"):
                s.trace = _copy(t)
        self._release(p, slots)
        return [_view(t, req.logprobs) for t in traces], usage

    async def stream(self, req: GenRequest) -> AsyncIterator[tuple[Trace, Usage]]:
        ireq = self._inner(req)
        p, slots = self._reserve(req, 1)
        ends: list[int] = []
        view: Trace | None = None
        agen = self.inner.stream(ireq)
        try:
            async for t, usage in agen:
                ends.extend(_spread(len(ends), t.num_tokens, ends[-1] if ends else 0, len(t.text)))
                p.prompt_tokens = usage.prompt_tokens
                if t.finished:
                    p.cached_tokens += usage.cached_tokens
                    if t.finish_reason in ("stop", "length"):
                        slots[0].trace, slots[0].char_ends = _copy(t), list(ends)
                if ireq.logprobs == req.logprobs:
                    yield t, usage
                else:
                    view = _grow(view, t, req.logprobs)
                    yield view, usage
        finally:
            self._release(p, slots)
            await agen.aclose()

    async def close(self) -> None:
        await self.inner.close()


def _copy(t: Trace) -> Trace:
    return Trace(t.text, t.num_tokens, t.finish_reason, list(t.logprobs), [list(r) for r in t.top_logprobs],
                 prefix=t.prefix, token_ids=list(t.token_ids))


def _view(t: Trace, k: int | None) -> Trace:
    """`t` as a request for logprobs=k would have returned it."""
    if k is None:
        t.logprobs, t.top_logprobs, t.top_tokens = [], [], []
    elif k == 0:
        t.top_logprobs, t.top_tokens = [], []
    else:
        t.top_logprobs = [r[:k] for r in t.top_logprobs]
        t.top_tokens = [r[:k] for r in t.top_tokens]
    return t


def _grow(view: Trace | None, t: Trace, k: int | None) -> Trace:
    if view is None:
        view = Trace("", 0, prefix=t.prefix)
    n0 = view.num_tokens
    view.text, view.num_tokens, view.finish_reason = t.text, t.num_tokens, t.finish_reason
    view.token_ids.extend(t.token_ids[n0:])
    if k is not None:
        view.logprobs.extend(t.logprobs[n0:])
        if k > 0:
            view.top_logprobs.extend(r[:k] for r in t.top_logprobs[n0:])
            view.top_tokens.extend(r[:k] for r in t.top_tokens[n0:])
    return view


def _spread(n0: int, n1: int, c0: int, c1: int) -> list[int]:
    """Char ends for tokens n0..n1 revealed together with text c0..c1 (the last token of a chunk
    ends where the chunk's text does; tokens inside it are interpolated)."""
    k = n1 - n0
    return [c0 + (c1 - c0) * (i + 1) // k for i in range(k)] if k > 0 else []


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
    on_record: Any = None,
    manifest: dict[str, Any] | None = None,
) -> list[Result]:
    """Run `strategy` live over the problems not yet in the bank at `out`, recording every
    sample it draws; one record per problem, written as the problem finishes. Returns the live
    results of this invocation (problems already recorded are skipped).

    `prm`, when given, scores each recorded sample (per-step scores stored with the sample).
    `on_record(record)` is called after each record is committed."""
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
        prm_scores = await prm.score(problem, traces) if prm is not None and traces else None
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
        if on_record is not None:
            on_record(record)

    return await run_many(
        todo, strategy, generator=rec_gen, verifier=verifier, sampling=sampling, task=task,
        seed=seed or 0, concurrency=concurrency, on_result=on_result,
    )


async def record(
    problems: Sequence[Problem],
    generator: Generator,
    out: str | Path,
    *,
    n: int,
    task: TaskLike | None = None,
    sampling: Sampling | None = None,
    logprobs: int | None = None,
    seed: int | None = 0,
    prm: Verifier | None = None,
    prm_name: str | None = None,
    concurrency: int = 64,
    on_record: Any = None,
) -> Bank:
    """Record `n` independent samples of each problem into the bank at `out` (resumable)."""
    if n < 1:
        raise TTSError(f"-n must be >= 1, got {n}")
    sampling = sampling or Sampling()
    manifest = bank_manifest(generator.model, generator.num_params, task, sampling, logprobs, seed, n=n,
                             prm=prm_name)
    await record_run(problems, _Sample(n, logprobs), generator, out, task=task, sampling=sampling,
                     logprobs=logprobs, seed=seed, prm=prm, prm_name=prm_name, concurrency=concurrency,
                     on_record=on_record, manifest=manifest)
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
def prm_class() -> Any:
    """`verifiers.prm.QwenPRM`, or a TTSError when this installation has no PRM."""
    import importlib
    import importlib.util

    if importlib.util.find_spec("verifiers.prm") is None:
        raise TTSError("--prm needs verifiers/prm.py (QwenPRM), which this installation does not have; "
                       "record without --prm")
    cls = getattr(importlib.import_module("verifiers.prm"), "QwenPRM", None)
    if cls is None:
        raise TTSError("--prm needs verifiers.prm.QwenPRM, which verifiers/prm.py does not define")
    return cls


def load_prm(name: str) -> Verifier:
    """`QwenPRM(name)` (it starts its own engine), errors folded into one line."""
    cls = prm_class()
    try:
        return cls(name)
    except TTSError as e:
        raise TTSError(f"--prm {name}: " + " ".join(str(e).split())) from None
    except TypeError as e:
        raise TTSError(f"cannot build QwenPRM({name!r}): {e}") from None


def run_record_command(args: Any) -> int:
    """`tts record ...` (see tts.cli): validate everything cheap, then start the engine."""
    import asyncio
    import os
    import sys
    import time

    from tts.bank import import_math100
    from tts.models import DEFAULT_MODEL, resolve_model

    if args.import_math100:
        tok = resolve_model(args.model) if args.model else "auto"
        t0 = time.perf_counter()
        bank = import_math100(args.import_math100, args.out, tokenizer=tok, limit=args.limit)
        _print_stats(bank, time.perf_counter() - t0)
        return 0
    if not args.task:
        raise TTSError("tts record needs --task (gsm8k | math500 | aime24 | aime25), or --import-math100 FILE")
    if args.n < 1:
        raise TTSError(f"-n must be >= 1, got {args.n}")
    if args.logprobs is not None and args.logprobs < 0:
        raise TTSError(f"--logprobs must be >= 0, got {args.logprobs}")
    if args.prm:
        prm_class()  # before anything slow: is there a PRM at all?

    from tts.experiment.evaluate import BenchConfig, build_generator
    from tts.registry import lookup
    from tts.backends.vllm import model_parameters

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
        cfg = BenchConfig(task=args.task, strategy="record", n=args.n, model=args.model, seed=args.seed,
                          max_model_len=args.max_model_len)
        done: list[int] = []
        t0 = [time.perf_counter()]  # reset once the engine is up: throughput is measured from there

        def on_record(rec: BankRecord) -> None:
            done.append(rec.tokens)
            el = time.perf_counter() - t0[0]
            print(f"\r{len(done)}/{len(todo)} problems, {sum(done)} tokens, {el:.0f} s", end="", file=sys.stderr)

        async def go() -> None:
            generator = build_generator(cfg)
            t0[0] = time.perf_counter()
            try:
                await record(todo, generator, args.out, n=args.n, task=task, sampling=sampling,
                             logprobs=args.logprobs, seed=args.seed, prm=prm, prm_name=args.prm,
                             concurrency=args.concurrency, on_record=on_record)
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
