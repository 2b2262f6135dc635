"""Composed pipelines on the real CPU engine (the session's tiny model): a three-operator
pipeline's usage is the sum of its stages' and equals the engine's own counters; Mind
Evolution and the architecture search run end to end; `tts bench --strategy <preset>` and a
sweep file that varies a layer run as a user runs them."""

from __future__ import annotations

import asyncio
import json

import pytest
import yaml
from servers import engine_counters

import tts
from strategies import MindEvolution, Pipeline, SelfConsistency
from tts.pipeline import Critique, Fuse, Generate
from tts.types import Problem

pytestmark = pytest.mark.engine

COUNTERS = {"prompt_tokens": "vllm:prompt_tokens_total", "completion_tokens": "vllm:generation_tokens_total",
            "cached_tokens": "vllm:prompt_tokens_cached_total"}


def delta(before, after, name):
    return after.get(name, 0.0) - before.get(name, 0.0)


async def test_a_three_operator_pipeline_costs_what_the_engine_counted(vllm_generator):
    problems = [Problem(f"p{i}", f"Compute {i} + {i} and explain. " * 4) for i in range(3)]
    pipe = Pipeline([Generate(SelfConsistency(3)), Critique(max_tokens=12), Fuse(top=2, samples=2)])
    before = engine_counters(vllm_generator)
    rs = await tts.run_many(problems, pipe, generator=vllm_generator,
                            sampling=tts.Sampling(max_tokens=16, temperature=1.0))
    await asyncio.sleep(1.0)  # let the engine publish its counters
    after = engine_counters(vllm_generator)
    total = sum((r.usage for r in rs), tts.Usage())
    for ours, theirs in COUNTERS.items():
        assert getattr(total, ours) == delta(before, after, theirs), ours
    assert total.cached_tokens > 0  # n samples of one prompt: the engine served the rest from its cache
    for r in rs:
        stages = r.telemetry["stages"]
        assert [s["op"] for s in stages] == ["generate", "critique", "fuse"]
        # the run's usage is exactly the sum of its operators' engine calls
        for k in ("prompt_tokens", "cached_tokens", "completion_tokens", "generator_calls"):
            assert sum(s[k] for s in stages) == getattr(r.usage, k), k
        assert [s["generator_calls"] for s in stages] == [1, 3, 1]  # 3 samples, 3 critiques, 1 fuse request
        assert len(r.traces) == 3 + 2 and r.stopped_by == "done"


async def test_mind_evolution_runs_on_the_engine_within_its_counters(vllm_generator):
    p = Problem("me", "What is 6 * 7? Explain briefly.")
    me = MindEvolution(n=2, islands=2, conversations=1, turns=2, emigrants=1)
    before = engine_counters(vllm_generator)
    r = await tts.solve(p, me, generator=vllm_generator, sampling=tts.Sampling(max_tokens=12, temperature=1.0))
    await asyncio.sleep(1.0)
    after = engine_counters(vllm_generator)
    assert r.usage.completion_tokens == delta(before, after, COUNTERS["completion_tokens"])
    assert r.usage.prompt_tokens == delta(before, after, COUNTERS["prompt_tokens"])
    assert [g["generation"] for g in r.telemetry["generations"]] == [0, 1]
    assert r.usage.generator_calls == 2 * 2 * 3 and r.telemetry["solutions"] == 2 * 2 * 2


async def test_architecture_search_runs_end_to_end_on_the_engine(vllm_generator, shared_data, tmp_path):
    from tts.experiment.architecture import run_search

    f = tmp_path / "search.yaml"
    f.write_text(yaml.safe_dump({
        "tasks": [{"name": "gsm8k", "data": str(shared_data / "gsm8k_test.jsonl"), "limit": 4}],
        "sampling": {"temperature": 1.0, "max_tokens": 12},
        "strategies": [{"name": "self_consistency", "grid": {"n": [1, 2]}},
                       {"name": "archon", "n": 2}],
        "output": str(tmp_path / "out"),
        "search": {"budget": 100_000, "test_all": True},
    }))
    s = await run_search(f, generator=vllm_generator)
    assert {m.label for m in s.dev} == {"self_consistency n=1", "self_consistency n=2", "archon n=2"}
    assert all(m.problems == 2 and m.cost > 0 for m in s.dev + s.test)
    assert s.chosen is not None and s.baseline is not None and len(s.test) == 3
    assert s.reused_samples >= 2 * 2  # archon's 2 samples per dev problem are self-consistency's
    records = [json.loads(x) for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert len(records) == 3 * 4 and all(r["status"] == "finished" for r in records)


def test_cli_bench_a_preset_and_sweep_a_layer_on_the_engine(tiny_model_dir, shared_data, tmp_path):
    """`tts bench --strategy mixture_of_agents` and `tts sweep` over a pipeline whose critique
    layer is a grid axis, as a user runs them (subprocesses, each its own engine)."""
    from test_cli import tts_cli

    data = shared_data / "gsm8k_test.jsonl"
    out = tmp_path / "moa.jsonl"
    bench = tts_cli("bench", "--task", "gsm8k", "--data", str(data), "--limit", "2", "--strategy",
                    "mixture_of_agents", "-n", "2", "--param", "layers=2", "--max-tokens", "12",
                    "--temperature", "1.0", "--model", str(tiny_model_dir), "--max-model-len", "2048",
                    "--enforce-eager", "--out", str(out))
    assert bench.returncode == 0, bench.stderr[-3000:]
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(recs) == 2 and all(r["status"] == "finished" for r in recs)
    assert [s["op"] for s in recs[0]["telemetry"]["stages"]] == ["generate", "fuse"]
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text("""
model: {name: MODEL, max_model_len: 2048, enforce_eager: true}
tasks: [{name: gsm8k, data: DATA, limit: 2}]
sampling: {temperature: 1.0, max_tokens: 12}
strategy:
  name: pipeline
  grid:
    stages:
      - [&samples {op: generate, n: 2}, &fuse {op: fuse}]
      - [*samples, {op: critique, joint: true}, *fuse]
output: OUT
""".replace("MODEL", str(tiny_model_dir)).replace("DATA", str(data)).replace("OUT", str(tmp_path / "sweep")))
    sweep = tts_cli("sweep", str(sweep_file))
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    recs = [json.loads(x) for x in (tmp_path / "sweep" / "results.jsonl").read_text().splitlines()]
    assert len(recs) == 4 and len({r["config_hash"] for r in recs}) == 2
    ops = sorted(tuple(s["op"] for s in r["telemetry"]["stages"]) for r in recs)
    assert ops == [("generate", "critique", "fuse")] * 2 + [("generate", "fuse")] * 2
