"""First-finish, DeepConf-online, certainty probing, ESC and adaptive-consistency end to end on the
real vLLM CPU engine (tiny random model: gibberish text, real streaming, abort and counting).

What it shows: stopped streams stop consuming tokens at the engine, and what the accountant
charged equals what the engine counted, up to the tokens the engine had already produced for a
stream but not yet handed over when the stream was stopped (bounded below)."""

from __future__ import annotations

import asyncio

import pytest
from servers import engine_counters

import tts
from strategies import ESC, AdaptiveConsistency, CertaintyProbe, DeepConf, FirstFinish
from tts.types import Problem

pytestmark = pytest.mark.engine

MAX_TOKENS = 160


def delta(before: dict, after: dict, name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


async def test_early_stopping_strategies_on_the_engine(vllm_generator):
    problem = Problem("early-e2e", "Natalia sold clips to 48 of her friends. How many clips? " * 3)
    strategies = {
        "first_finish": FirstFinish(6),
        # keep=0.1 (DeepConf-low): the threshold is near the highest of the warm-up's lowest
        # windows, so most final traces fall below it somewhere and are stopped there.
        "deepconf": DeepConf(12, warmup=4, keep=0.1, window=4, top_k=2),
        "certainty_probe": CertaintyProbe(2, chunk=32, k=2, probe_tokens=8),
        "esc": ESC(4, window=2),
        "adaptive_consistency": AdaptiveConsistency(4),
    }
    sampling = tts.Sampling(max_tokens=MAX_TOKENS, temperature=1.0)
    before = engine_counters(vllm_generator)
    results = await asyncio.gather(*(
        tts.solve(problem, s, generator=vllm_generator, sampling=sampling) for s in strategies.values()
    ))
    await asyncio.sleep(1.0)  # let the engine publish its counters
    after = engine_counters(vllm_generator)
    r = dict(zip(strategies, results))

    conf = r["deepconf"]
    low = [i for i, why in conf.telemetry["stop_reasons"].items() if why == "low_confidence"]
    assert low, {k: v for k, v in conf.telemetry.items() if k != "votes"} | {"n": [t.num_tokens for t in conf.traces]}  # some final trace fell below the threshold ...
    assert all(conf.traces[i].num_tokens < MAX_TOKENS for i in low)  # ... and was cut short
    assert all(t.num_tokens == MAX_TOKENS or t.finish_reason == "stop" for t in conf.traces[:4])  # warm-up ran out
    ff = r["first_finish"]
    # Only a trace that reached its end of sequence counts as finished, never one cut at
    # MAX_TOKENS; when none ended, the fallback says so.
    ended = any(t.finish_reason == "stop" for t in ff.traces)
    assert len(ff.traces) == 6 and len(ff.telemetry["finish_order"]) == int(ended)
    assert all(ff.traces[i].finish_reason == "stop" for i in ff.telemetry["finish_order"])
    assert (ff.telemetry["fallback"] is None) == ended
    assert r["certainty_probe"].telemetry["probes"] >= 2  # probes ran (gibberish never gets certain)
    for name in ("esc", "adaptive_consistency"):
        assert 2 <= r[name].telemetry["samples"] <= 4

    total = sum((x.usage for x in results), tts.Usage())
    generated = delta(before, after, "vllm:generation_tokens_total")
    stopped = sum(t.finish_reason == "abort" for x in results for t in x.traces)
    assert total.completion_tokens <= generated
    # Undelivered at the stop: at most a few engine steps' tokens per stopped stream.
    assert generated - total.completion_tokens <= 4 * stopped, (generated, total.completion_tokens, stopped)
    assert total.prompt_tokens == delta(before, after, "vllm:prompt_tokens_total")
    # Nothing kept running after the strategies returned: the counters are still.
    await asyncio.sleep(1.0)
    assert delta(after, engine_counters(vllm_generator), "vllm:generation_tokens_total") == 0


@pytest.mark.parametrize("strategy, params", [
    ("first_finish", {"k": 2}),
    ("deepconf", {"warmup": 2, "window": 4, "top_k": 2}),
    ("deepconf", {"mode": "offline", "window": 4, "top_k": 2}),
    ("esc", {"window": 2}),
    ("adaptive_consistency", {"criterion": "dirichlet"}),
    ("certainty_probe", {"chunk": 4, "k": 2, "probe_tokens": 4}),
])
async def test_each_strategy_runs_from_tts_bench(strategy, params, vllm_generator, shared_data, tmp_path):
    from tts.experiment.evaluate import BenchConfig, bench

    cfg = BenchConfig(task="gsm8k", strategy=strategy, n=4, params=params, data=str(shared_data / "gsm8k_test.jsonl"),
                      limit=2, out=str(tmp_path / "r.jsonl"), max_tokens=16, model="tiny", temperature=1.0)
    store, chash, _ = await bench(cfg, generator=vllm_generator)
    recs = store.for_config(chash, 0)
    assert len(recs) == 2
    assert all(r["strategy"] == strategy and r["usage"]["completion_tokens"] > 0 for r in recs)
