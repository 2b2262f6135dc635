"""The context owns the budget: sampling shrunk to what is affordable, verifiers' and judges' own
model calls, the one stopped_by rule, a generator's clock. On the scripted (FAKE) generator:
these are accountant rules; the real-engine paths are in test_vllm_generator.py, test_prm.py."""

from __future__ import annotations

import pytest
from scripted import ScriptedGenerator

import tts
from tts.backends.common import LRU, byte_bound
from tts.backends.replay import ReplayGenerator
from tts.context import Accountant, Context
from tts.errors import BudgetExceeded
from tts.search.streams import Streams
from tts.types import Budget, GenRequest, Problem, stopped_by
from verifiers.equivalence import ModelJudge, Prefix

P = Problem("p1", "What is one half?", answer="1/2")


def ctx_for(gen, budget=None, max_tokens=10):
    return Context(P, gen, Accountant(budget, gen.num_params, None), sampling=tts.Sampling(max_tokens=max_tokens))


async def test_sample_shrinks_to_what_the_budget_affords():
    gen = ScriptedGenerator(["the answer is \\boxed{1/2}"])
    # Worst case 10 per sample, 4 used: 2 fit at first (8 used), then one (12), one (16), none.
    ctx = ctx_for(gen, Budget(completion_tokens=25))
    traces, why = await ctx.sample(5)
    assert len(traces) == 4 and why == "budget" and traces[0].answer == "1/2"
    assert ctx.usage.completion_tokens == 16 and ctx.usage.generator_calls == 3
    traces, why = await ctx_for(gen).sample(3)
    assert len(traces) == 3 and why == "done"
    assert await ctx_for(gen, Budget(completion_tokens=5)).sample(2) == ([], "budget")


async def test_judge_calls_are_charged_as_verifier_tokens_at_the_judges_size():
    gen = ScriptedGenerator(["x"], num_params=1000)
    judge = ScriptedGenerator(["yes"], num_params=50, top=[("yes", -0.1), ("no", -2.5)])
    ctx = ctx_for(gen)
    req = GenRequest([{"role": "user", "content": "same? yes or no"}], max_tokens=1, logprobs=2)
    (out,) = await ctx.judge(judge, req)
    prompt = await judge.count_prompt_tokens(req)
    u = ctx.usage
    assert out.text == "yes" and u.verifier_calls == 1 and u.generator_calls == 0
    assert u.verifier_tokens == prompt + 1 and u.verifier_flops == 2 * 50 * (prompt + 1)
    # The worst case (prompt + max_tokens) is checked before dispatch: refused, nothing charged.
    capped = ctx_for(gen, Budget(verifier_tokens=prompt))
    with pytest.raises(BudgetExceeded):
        await capped.judge(judge, req)
    assert judge.calls == 1 and capped.usage.verifier_tokens == 0


async def test_model_judge_charges_through_the_context():
    judge = ScriptedGenerator(["yes"], num_params=50, top=[("yes", -0.1), ("no", -2.5)])
    ctx = ctx_for(ScriptedGenerator(["x"]))
    a = Prefix.of(tts.Trace("one two", 2))
    p = await ModelJudge(judge).probability(ctx, a, a)
    assert 0.5 < p < 1 and ctx.usage.verifier_calls == 1 and ctx.usage.verifier_tokens > 1


async def test_verify_reserves_the_worst_case_and_charges_what_was_computed():
    ctx = ctx_for(ScriptedGenerator(["x"]), Budget(verifier_tokens=10))

    async def work():  # what the scoring engine reported: 5 prompt tokens, 2 of them from its cache
        return "scored", tts.Usage(prompt_tokens=5, cached_tokens=2)

    assert await ctx.verify(work, 10, params=7) == "scored"
    u = ctx.usage
    assert u.verifier_tokens == 3 and u.verifier_cached_tokens == 2 and u.verifier_flops == 2 * 7 * 3
    with pytest.raises(BudgetExceeded):
        await ctx.verify(work, 8)  # 3 used + 8 could reach 11 > 10


async def test_streams_stopped_by_is_budget_when_a_stream_is_refused():
    gen = ScriptedGenerator(["a b c"])
    pool = Streams(ctx_for(gen, Budget(completion_tokens=15)))  # 10 per stream: one of two fits
    pool.launch(2)
    async for _ in pool.ended():
        pass
    assert pool.refused == 1 and pool.stopped_by == "budget"
    free = Streams(ctx_for(gen))
    free.launch(2)
    async for _ in free.ended():
        pass
    assert free.stopped_by == "done"


def test_stopped_by_rule_and_generator_clock():
    assert stopped_by() == "done" and stopped_by(early=True) == "early_stop"
    assert stopped_by(budget=True, early=True) == "budget"  # the budget wins
    assert ScriptedGenerator(["x"]).realtime is True and ReplayGenerator.realtime is False


def test_prompt_cache_helpers():
    cache: LRU[str, int] = LRU(2)
    cache.put("a", 1), cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent: "b" goes first
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and len(cache) == 2
    msgs = [{"role": "user", "content": "héllo"}]
    assert byte_bound(msgs, "ab") == 6 + 2 + 32


async def test_first_finish_cut_by_the_wall_clock_is_stopped_by_budget():
    """Failed before the one stopped_by rule: FirstFinish said "done" when the wall-clock cap cut
    every stream mid-way (it counted only streams refused at the start), DeepPrune "budget"."""
    from strategies import FirstFinish

    gen = ScriptedGenerator([" ".join(["w"] * 40)], delay=0.02)  # 40 tokens, 0.8 s per stream
    r = await tts.solve(P, FirstFinish(2), generator=gen, budget=Budget(wall_seconds=0.2),
                        sampling=tts.Sampling(max_tokens=50))
    assert all(0 < t.num_tokens < 40 for t in r.traces) and r.stopped_by == "budget"


@pytest.mark.parametrize("budget", [Budget(completion_tokens=20), Budget(calls=2)])
async def test_a_running_streams_delivered_tokens_count_once(budget):
    """A stream's reservation shrinks by what it has delivered: with room for exactly two worst
    cases (two calls, or 2 x max_tokens), a second stream starts while the first is running.
    Before, the first stream's delivered tokens and its call counted as used and as reserved,
    so the second was refused."""
    gen = ScriptedGenerator(["the answer is \\boxed{1/2}"])
    ctx = ctx_for(gen, budget)
    first = ctx.stream(ctx.request(1))
    await first.__anext__()  # one token delivered, the stream still running
    second = ctx.stream(ctx.request(1))
    trace = await second.__anext__()
    assert trace.num_tokens >= 1
    async for _ in second:
        pass
    async for _ in first:
        pass
    assert ctx.usage.completion_tokens == 8 and ctx.usage.generator_calls == 2
