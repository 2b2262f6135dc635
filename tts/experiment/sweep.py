"""`tts sweep FILE`: one validated YAML file -> many `tts bench` runs -> one store -> `tts report`.

A sweep file (see `tts sweep schema`, and experiments/ for examples):

    model:    {name: MODEL, backend: vllm | openai | replay, bank: DIR, base_urls: [...],
               timeout: SECONDS, retries: N}
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

Every run is a `tts.experiment.evaluate.bench()` call with a `BenchConfig`, keyed by the
`RunSpec` it produces, so config hashes, resume and records are exactly those of `tts bench`;
all runs share one generator (one engine). The whole file is validated (names, parameters,
data files) before anything starts; errors are one line, `FILE: field.path: problem`.

One generation for many N (`tts.experiment.subsample`): runs of a strategy that declares itself
`subsamplable` that differ only in `n` (and seed) are sampled once at the largest N into a bank
in `OUTPUT/banks/` and every run of the group is replayed from it (`ReplayGenerator`: each run
draws its n samples without replacement, in an order its seed fixes), as search-and-learn does.
Such runs are keyed as replays of that bank, recorded under the model `replay:<model>@<bank>`
and marked "subsampled" in the report; their token counts are the recorded samples' tokens,
their wall time replay time. All seeds of a group share the one recorded pool (seeds permute
it; at n = N every seed sees the same samples). `subsample: false` turns this off.

The pieces: `schema` (the file), `plan` (runs and jobs), `subsample` (groups), `execute`
(running), `store` (the folder's JSONL files). This module is their one import for callers.
"""

import asyncio
from typing import Any

from tts.errors import TTSError
from tts.experiment.execute import OnResult, execute, parse_shard, run_local, store_for, write_plan
from tts.experiment.plan import PLAN_FILE as PLAN
from tts.experiment.plan import Job, Plan, PlannedRun, plan, print_plan
from tts.experiment.ray import run_ray
from tts.experiment.schema import SweepError, SweepFile, parse_file, schema
from tts.experiment.store import RESULTS, SweepStore, load_records
from tts.experiment.subsample import subsamplable

__all__ = ["PLAN", "RESULTS", "Job", "OnResult", "Plan", "PlannedRun", "SweepError", "SweepFile",
           "SweepStore", "execute", "load_records", "parse_file", "parse_shard", "plan", "print_plan", "run_local",
           "run_sweep", "schema", "store_for", "subsamplable", "write_plan"]


def run_sweep(plan: Plan, shard: tuple[int, int] = (0, 1), executor: str = "local", actors: int | None = None,
              on_result: OnResult | None = None, generator: Any = None) -> SweepStore:
    """Run (or resume) the plan's jobs of this shard; returns the store."""
    if executor == "local":
        return asyncio.run(run_local(plan, shard, on_result, generator))
    write_plan(plan)
    store = store_for(plan, shard)
    jobs = plan.shard(*shard)
    if executor == "ray":
        run_ray(jobs, plan, store, actors=actors, on_result=on_result)
    else:
        raise TTSError(f"unknown executor '{executor}'; valid: local, ray")
    return store
