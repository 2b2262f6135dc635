"""Running a sweep plan: each job on one shared generator through THE pipeline,
`tts.experiment.evaluate.bench` (exactly what `tts bench` runs), locally or on Ray actors.

Callbacks are named `on_result`: they get each fresh result record (a dict) as it is stored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from tts.backends.replay import ReplayGenerator
from tts.errors import TTSError
from tts.experiment.build import build_verifier
from tts.experiment.evaluate import bench, prepare, release
from tts.experiment.plan import PLAN_FILE, Job, Plan, PlannedRun
from tts.experiment.record import record_bank
from tts.experiment.store import RESULTS, SweepStore
from tts.registry import lookup
from tts.types import Sampling

OnResult = Callable[[dict[str, Any]], None]


def write_plan(plan: Plan) -> None:
    """plan.json: what the report reads (the runs of the current file; other hashes are ignored)."""
    plan.out.mkdir(parents=True, exist_ok=True)
    data = {
        "file": str(plan.file),
        "name": plan.sweep.name or plan.file.stem,
        "tasks": [{"name": t.task, "problems": [p.id for p in ps or []]}
                  for t, ps in zip(plan.sweep.tasks, plan.problems)],
        "runs": [{
            "config_hash": r.config_hash, "seed": r.cfg.seed, "task_index": r.task_index, "task": r.cfg.task,
            "strategy": r.cfg.strategy, "n": r.cfg.n, "label": r.label, "curve": r.curve,
            "thinking_budget": r.thinking_budget, "thinking_curve": r.thinking_curve,
            "source": f"subsampled from n={j.record_n} ({j.bank.name})" if j.bank is not None else (
                "replay" if r.cfg.backend == "replay" else "live"),
        } for j in plan.jobs for r in j.runs],
    }
    tmp = plan.out / (PLAN_FILE + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(plan.out / PLAN_FILE)


async def execute(jobs: Sequence[Job], plan: Plan, store: Any, on_result: OnResult | None = None,
                  generator: Any = None) -> None:
    """Run `jobs` one after another on one generator (built from the plan when not given);
    records go to `store` (`done(key)`, `append(record)`). Used by the local executor and by
    each Ray actor."""
    if any(ps is None for ps in plan.problems):
        raise TTSError("internal: a plan made offline (a dry run) cannot be run")
    owned = generator is None
    verifiers: dict[tuple[Any, ...], Any] = {}

    class _Sink:  # the store plus a callback per fresh record
        def done(self, key: tuple[str, str, int]) -> bool:
            return store.done(key)

        def append(self, rec: dict[str, Any]) -> None:
            store.append(rec)
            if on_result is not None:
                on_result(rec)

    sink = _Sink()

    def todo(run: PlannedRun) -> bool:
        return any(not store.done((p.id, run.config_hash, run.cfg.seed)) for p in plan.problems[run.task_index])

    async def verifier_for(run: PlannedRun, gen: Any) -> Any:
        name = prepare(run.cfg, problems=[]).spec.verifier
        if name is None:
            return None
        key = (name, run.cfg.verifier_model, id(gen))  # a judge verifier uses the generator
        if key not in verifiers:
            verifiers[key] = build_verifier(name, run.cfg.verifier_model, gen)
        return verifiers[key]

    try:
        for job in jobs:
            runs = [r for r in job.runs if todo(r)]
            if not runs:
                continue
            if generator is None:
                generator = plan.build_generator()
            gen = generator
            if job.bank is not None:
                first = runs[0].cfg
                problems = plan.problems[runs[0].task_index]
                sampling = Sampling(first.temperature, first.top_p, first.max_tokens)  # type: ignore[arg-type]
                await record_bank(problems, generator, job.bank, n=job.record_n, task=lookup("task", first.task)(),
                                  sampling=sampling, logprobs=job.logprobs, seed=0, concurrency=first.concurrency)
                gen = ReplayGenerator(job.bank, sampling=sampling)
            for run in runs:
                _, chash, _ = await bench(run.cfg, generator=gen, verifier=await verifier_for(run, gen), store=sink,
                                          problems=plan.problems[run.task_index])
                if chash != run.config_hash:  # the plan and bench must agree, or resume would break
                    raise TTSError(f"internal: run {run.label} hashed {chash}, planned {run.config_hash}")
    finally:
        for v in verifiers.values():
            await release(v)
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


async def run_local(plan: Plan, shard: tuple[int, int] = (0, 1), on_result: OnResult | None = None,
                    generator: Any = None) -> SweepStore:
    """The local executor: this shard's jobs in turn on one generator, in this event loop."""
    write_plan(plan)
    store = store_for(plan, shard)
    await execute(plan.shard(*shard), plan, store, on_result, generator)
    return store
