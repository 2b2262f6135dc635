"""One generation for many N: a sweep's runs of a subsamplable strategy (one that declares
`subsamplable`: it only selects among independent samples) that differ only in `n` (and seed)
form a group, sampled once at the largest n into a bank and replayed for every run. Groups
whose samples would be the same (same model, task, sampling, largest n and logprobs: they
differ in strategy or verifier) share one bank and one job, so the samples are drawn once.

A replayed run's spec names the replay backend and the bank's folder (so it never shares a
key with a live run), and its records the model `replay:<model>@<bank>`.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tts.experiment.build import backend_id, build_strategy
from tts.options import BenchConfig, ModelOptions, SamplingOptions, TaskOptions
from tts.registry import lookup
from tts.spec import BackendId


@dataclass
class Job:
    """What one engine does in one go: a live run, or a subsample group (record once, replay
    every run). Shards and Ray actors split the plan by jobs."""

    runs: list[Any]  # the group's PlannedRuns (tts.experiment.plan)
    bank: Path | None = None  # subsample group: the bank recorded at the largest n
    record_n: int = 0
    logprobs: int | None = None


def subsamplable(cfg: BenchConfig) -> bool:
    """Asked of the configured strategy, not its class: DeepConf is subsamplable offline only.
    A thinking budget continues each sample from its prefix, which a bank cannot hold: live."""
    if cfg.thinking_budget is not None or cfg.enable_thinking is not None:
        return False
    return bool(build_strategy(cfg.strategy, cfg.n, cfg.params).subsamplable)


def group_jobs(sw: Any, runs: list[Any], out: Path) -> list[Any]:
    """Group runs that differ only in n (and seed) into subsample jobs; the rest run alone."""
    if not sw.subsample or sw.model.backend == "replay":
        return [Job([r]) for r in runs]
    groups: dict[str, list[Any]] = {}
    for r in runs:
        if subsamplable(r.cfg):
            key = json.dumps({**r.cfg.model_dump(exclude={"n", "seed"}), "task_index": r.task_index},
                             sort_keys=True, default=str)
            groups.setdefault(hashlib.sha256(key.encode()).hexdigest()[:12], []).append(r)
    # Groups drawing the same samples share a bank, recorded at the largest n any of them needs.
    keys = {gid: _samples_key(ms[0], logprobs_needed(ms[0].cfg)) for gid, ms in groups.items()
            if len({x.cfg.n for x in ms}) >= 2}
    tops: dict[str, int] = {}
    for gid, key in keys.items():
        tops[key] = max(tops.get(key, 0), *(x.cfg.n for x in groups[gid]))
    member_of = {id(r): gid for gid in keys for r in groups[gid]}
    jobs: list[Any] = []
    shared: dict[str, Job] = {}  # samples key -> the job recording its bank
    for r in runs:
        gid = member_of.get(id(r))
        if gid is None:
            jobs.append(Job([r]))
            continue
        key = keys[gid]
        bank = out / "banks" / f"{key}-n{tops[key]}"
        model = backend_id(r.cfg).model  # the model the bank will be recorded with
        # Keyed as a replay of this bank (which does not exist yet: named here).
        r.spec = r.spec.model_copy(update={"backend": BackendId(kind="replay", model=model, bank=bank.name)})
        r.cfg = r.cfg.model_copy(update={"backend": "replay", "bank": str(bank)})
        r.group = bank.name
        if key in shared:
            shared[key].runs.append(r)
        else:
            shared[key] = Job([r], bank, tops[key], logprobs_needed(r.cfg))
            jobs.append(shared[key])
    return jobs


_SAMPLES = (*ModelOptions.model_fields, *SamplingOptions.model_fields, *TaskOptions.model_fields)


def _samples_key(run: Any, logprobs: int | None) -> str:
    """What a group's recorded samples depend on (not its strategy, verifier, n or seed)."""
    key = json.dumps({**run.cfg.model_dump(include=set(_SAMPLES)), "task_index": run.task_index,
                      "logprobs": logprobs}, sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def logprobs_needed(cfg: BenchConfig) -> int | None:
    """The top-k logprobs to record so the group's verifier (and strategy) can run on replay."""
    strategy = build_strategy(cfg.strategy, cfg.n, cfg.params)
    ks = [strategy.logprobs]
    name = cfg.verifier or type(strategy).default_verifier
    if name is not None:
        factory = lookup("verifier", name)
        sig = inspect.signature(factory).parameters
        if not any(p.default is inspect.Parameter.empty for p in sig.values()):
            ks.append(getattr(factory(), "logprobs", None))  # cheap verifiers only (confidence, recorded)
    ks = [k for k in ks if isinstance(k, int)]
    return max(ks) if ks else None
