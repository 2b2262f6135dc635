"""The in-process vLLM backend on the real CPU engine (one engine per session)."""

from __future__ import annotations

import asyncio

import pytest
from servers import engine_counters

import tts
from strategies import BestOfN, SelfConsistency
from tts.types import GenRequest, Problem
from verifiers import Confidence

pytestmark = pytest.mark.engine

MSG = [{"role": "user", "content": "What is 2 + 3?"}]


def delta(before, after, name):
    return after.get(name, 0.0) - before.get(name, 0.0)


async def test_generate_samples_with_logprobs(vllm_generator):
    req = GenRequest(MSG, n=3, max_tokens=12, temperature=1.0, logprobs=2)
    traces, usage = await vllm_generator.generate(req)
    assert len(traces) == 3
    for t in traces:
        assert 0 < t.num_tokens <= 12
        assert len(t.logprobs) == len(t.top_logprobs) == t.num_tokens
        assert all(len(row) == 2 and row[0] >= row[1] for row in t.top_logprobs)
        assert t.finish_reason in ("stop", "length")
    assert usage.completion_tokens == sum(t.num_tokens for t in traces)
    assert usage.prompt_tokens == 3 * await vllm_generator.count_prompt_tokens(req)


async def test_stop_strings_cut_the_output(vllm_generator):
    probe, _ = await vllm_generator.generate(GenRequest(MSG, n=4, max_tokens=40, temperature=1.0))
    text = "".join(t.text for t in probe)
    common = max(set(text), key=text.count)  # a character the model emits often
    traces, _ = await vllm_generator.generate(GenRequest(MSG, n=4, max_tokens=40, temperature=1.0, stop=(common,)))
    assert all(common not in t.text for t in traces)
    assert any(t.finish_reason == "stop" for t in traces)


async def test_continuation_of_a_partial_assistant_message(vllm_generator):
    base = GenRequest(MSG, max_tokens=5)
    cont = base.replace(prefix="Step 1: 2 + 3 = 5.\n\n")
    n0, n1 = await vllm_generator.count_prompt_tokens(base), await vllm_generator.count_prompt_tokens(cont)
    assert n1 > n0
    assert vllm_generator.prompt_ids(cont)[:n0] == vllm_generator.prompt_ids(base)
    traces, _ = await vllm_generator.generate(cont)
    assert traces[0].prefix == cont.prefix and not traces[0].text.startswith("Step 1")


async def test_prefix_cache_is_reported(vllm_generator):
    long = [{"role": "user", "content": "Natalia sold clips to 48 of her friends. " * 40}]
    req = GenRequest(long, n=1, max_tokens=4)
    _, first = await vllm_generator.generate(req)
    _, second = await vllm_generator.generate(req)
    assert second.cached_tokens >= 128 and second.cached_tokens > first.cached_tokens


async def test_abandoned_stream_is_aborted_at_the_engine(vllm_generator):
    before = engine_counters(vllm_generator)
    req = GenRequest(MSG, max_tokens=400, temperature=1.0)
    ctx = tts.Context(Problem("s", "x"), vllm_generator, tts.Accountant())
    agen = ctx.stream(req)
    async for t in agen:
        if t.num_tokens >= 5:
            break
    await agen.aclose()
    await asyncio.sleep(1.0)  # let the engine process the abort and publish its counters
    after = engine_counters(vllm_generator)
    generated = delta(before, after, "vllm:generation_tokens_total")
    assert generated < 100, generated  # far fewer than max_tokens: the request was aborted
    # What the accountant charged is exactly what the engine reported to us (up to the abort).
    assert ctx.usage.completion_tokens <= generated
    assert ctx.usage.completion_tokens >= 5


async def test_accountant_totals_equal_the_engine_counters(vllm_generator):
    problems = [Problem(f"e{i}", f"Compute {i} + {i} and explain. " * 8) for i in range(4)]
    before = engine_counters(vllm_generator)
    rs = await tts.run_many(
        problems, BestOfN(3), generator=vllm_generator, verifier=Confidence(),
        sampling=tts.Sampling(max_tokens=16, temperature=1.0),
    )
    rs += await tts.run_many(
        problems[:2], SelfConsistency(2), generator=vllm_generator, sampling=tts.Sampling(max_tokens=8),
    )
    await asyncio.sleep(1.0)
    after = engine_counters(vllm_generator)
    total = sum((r.usage for r in rs), tts.Usage())
    assert total.completion_tokens == delta(before, after, "vllm:generation_tokens_total")
    assert total.prompt_tokens == delta(before, after, "vllm:prompt_tokens_total")
    assert total.cached_tokens == delta(before, after, "vllm:prompt_tokens_cached_total")
    assert total.generator_calls == len(rs)
    assert all(r.usage.generator_flops > 0 for r in rs)
    assert all(len(r.traces) == (3 if r.strategy == "best_of_n" else 2) for r in rs)


async def test_budget_holds_on_the_real_engine(vllm_generator):
    budget = tts.Budget(completion_tokens=40)
    r = await tts.solve(
        Problem("b", "What is 7 * 6?"), BestOfN(8), generator=vllm_generator, verifier=Confidence(),
        budget=budget, sampling=tts.Sampling(max_tokens=16),
    )
    assert len(r.traces) == 2 and r.stopped_by == "budget"
    assert r.usage.completion_tokens <= 40


def test_missing_model_folder_is_a_clear_error(tmp_path):
    from tts.backends.vllm import VLLMGenerator

    with pytest.raises(tts.TTSError, match="not found"):
        VLLMGenerator(str(tmp_path / "nope"))
