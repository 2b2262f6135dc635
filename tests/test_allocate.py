"""Benchmark-wide allocation (issue 16) on the replayed math100 bank, and the self-evaluation
strategies (Manvi et al.) on a scripted generator and on the real engine."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tasks
from scripted import ScriptedGenerator
from strategies import AdaptiveSampling, EarlyPruning
from tts.backends.replay import ReplayGenerator
from tts.types import Sampling
from tts.errors import TTSError
from tts.experiment.allocate import POLICIES, Candidate, allocate, bank_pass1, cost, knapsack
from tts.runner import solve
from tts.types import GenRequest, Problem, Trace, Usage
from verifiers import RecordedScore, SelfEval
from verifiers.self_eval import QUESTION

CANDS = [Candidate("self_consistency", 1), Candidate("self_consistency", 4), Candidate("best_of_n", 8, verifier="recorded")]


def test_knapsack_by_hand():
    """Bins of 2 and 3 problems; candidates (acc, cost): bin 0 (.2, 1) / (.9, 5), bin 1 (.8, 1) /
    (.9, 5). Total 13: all cheap = 5 (value 2.8); bin 0 rich = 13 (value 4.2); bin 1 rich = 17 >
    13. So bin 0 gets the rich one, bin 1 the cheap one. Total 4: nothing fits."""
    acc, costs = [[0.2, 0.9], [0.8, 0.9]], [[1, 5], [1, 5]]
    assert knapsack([2, 3], acc, costs, 13) == (1, 0)
    assert knapsack([2, 3], acc, costs, 100) == (1, 1)
    assert knapsack([2, 3], acc, costs, 4) is None


def _setup(bank):
    problems = bank.problems()
    base = bank.sampling_defaults()
    gen = ReplayGenerator(bank, seed=0, sampling={"temperature": base.temperature, "top_p": base.top_p})
    sampling = Sampling(temperature=base.temperature, top_p=base.top_p, max_tokens=1024)
    return problems[:6], problems[6:], gen, sampling


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(per=st.floats(100, 12000), policy=st.sampled_from(POLICIES))
def test_the_total_is_never_exceeded(math100_bank, per, policy):
    """Property: whatever the total and policy, what the allocation charged (and the sum of the
    records' usage) never exceeds the total; a total too small for a policy is a TTSError."""
    train, test, gen, sampling = _setup(math100_bank)
    total = per * len(test)
    try:
        a = asyncio.run(allocate(test, CANDS, total=total, generator=gen, policy=policy, task=tasks.get_task("math500"),
                                 train=train, verifiers={"recorded": RecordedScore()}, sampling=sampling,
                                 oracle_pass1=bank_pass1(math100_bank), bins=2, probe_n=2))
    except TTSError as e:
        assert "per problem" in str(e)
        return
    assert len(a.results) == len(test)
    assert sum(cost(r.usage, "total_tokens") for r in a.results) <= a.spent + 1e-6 <= total + 1e-6


@pytest.mark.parametrize("policy", ["uniform", "sequential"])
def test_a_tight_total_reaches_every_problem(math100_bank, policy):
    """700 tokens per problem: above a sample's mean cost (~500) but below its worst case (1024
    max_tokens + the prompt), which the accountant reserves before sending it. Caps sized by
    the plan alone bought nothing (each problem stopped before its first sample); now a problem
    waits for those in flight to return what they did not use, and every one gets a sample."""
    train, test, gen, sampling = _setup(math100_bank)
    a = asyncio.run(allocate(test, CANDS[:1], total=700 * len(test), generator=gen, policy=policy,
                             task=tasks.get_task("math500"), train=train, sampling=sampling, batch=1, max_samples=4))
    assert all(r.traces for r in a.results), [len(r.traces) for r in a.results]
    assert a.spent <= 700 * len(test)


def test_errors_name_the_minimum(math100_bank):
    train, test, gen, sampling = _setup(math100_bank)
    kw = dict(generator=gen, task=tasks.get_task("math500"), train=train, sampling=sampling,
              verifiers={"recorded": RecordedScore()})
    with pytest.raises(TTSError, match=r"the cheapest, 'self_consistency n=1', costs .* raise the total to at least"):
        asyncio.run(allocate(test, CANDS, total=10, policy="uniform", **kw))
    with pytest.raises(TTSError, match="less than one probe per problem"):
        asyncio.run(allocate(test, CANDS, total=10, policy="predicted", **kw))
    with pytest.raises(TTSError, match="unknown allocation policy 'even'"):
        asyncio.run(allocate(test, CANDS, total=10, policy="even", **kw))
    with pytest.raises(TTSError, match="oracle_pass1"):
        asyncio.run(allocate(test, CANDS, total=1e6, policy="oracle", **kw))


def test_oracle_gives_hard_bins_more(math100_bank):
    """With room for everything on hard problems only, the oracle spends on the low-pass@1 bin
    and keeps the easy bin on the cheapest candidate."""
    train, test, gen, sampling = _setup(math100_bank)
    pass1 = {p.id: (0.0 if i % 2 else 1.0) for i, p in enumerate(math100_bank.problems())}
    a = asyncio.run(allocate(test, CANDS, total=1e7, generator=gen, policy="oracle", task=tasks.get_task("math500"),
                             train=train, verifiers={"recorded": RecordedScore()}, sampling=sampling,
                             oracle_pass1=pass1, bins=2))
    assert len(a.telemetry["per_bin"]) == 2 and a.spent > 0


# -- self-evaluation ----------------------------------------------------------------------------
class SelfJudging(ScriptedGenerator):
    """FAKE backend: scripted samples; a self-evaluation request answers "No" (no better restart)
    with probability 0.9 for responses containing "sure", else 0.2."""

    async def generate(self, req: GenRequest) -> tuple[list[Trace], Usage]:
        if req.messages[-1]["content"] != QUESTION:
            return await super().generate(req)
        p_no = 0.9 if "sure" in req.messages[-2]["content"] else 0.2
        import math

        t = Trace("No", 1, "stop", [math.log(p_no)], [[math.log(p_no), math.log(1 - p_no)]],
                  top_tokens=[["No", "Yes"]])
        return [t], Usage(prompt_tokens=10, completion_tokens=1)


async def test_adaptive_sampling_stops_once_the_model_is_sure():
    """Batches of 1, 2, 4: samples 1-3 score 0.2 and sample 4 (in the third batch) 0.9 >= 0.8,
    so it stops after 1 + 2 + 4 = 7 samples and answers the sure sample's 7; temperatures are
    annealed 0 -> 0.35 -> 0.525 toward the run's 0.7."""
    gen = SelfJudging(["maybe \\boxed{1}", "maybe \\boxed{2}", "maybe \\boxed{3}", "sure \\boxed{7}"])
    r = await solve(Problem("p", "q"), AdaptiveSampling(n=16, threshold=0.8), generator=gen,
                    verifier=SelfEval(gen))
    assert r.answer == "7" and r.stopped_by == "early_stop" and r.telemetry["samples"] == 7
    assert r.telemetry["temperatures"] == pytest.approx([0.0, 0.35, 0.525])
    assert r.usage.verifier_tokens == 7 * 11 and r.usage.verifier_calls == 7  # one self-evaluation request each


async def test_early_pruning_continues_the_best_partial_samples():
    """4 samples cut at 2 tokens; the two "sure ..." prefixes score 0.9 and are continued
    (keep 0.5), the two others are pruned; the answer is the best complete sample's."""
    gen = SelfJudging(["sure so \\boxed{5}", "nope hmm \\boxed{6}", "sure ok \\boxed{5}", "nope x \\boxed{6}"])
    r = await solve(Problem("p", "q"), EarlyPruning(n=4, prune_at=2, keep=0.5), generator=gen,
                    verifier=SelfEval(gen), sampling=Sampling(max_tokens=20))
    assert r.telemetry["pruned"] == 2 and r.telemetry["continued"] == 2
    assert r.usage.verifier_tokens > 0


@pytest.mark.engine
async def test_self_eval_strategies_on_the_engine(vllm_generator):
    """Both strategies end to end on the real CPU engine: self-evaluation calls are real
    one-token generations read from top-k logprobs, charged as verifier tokens."""
    problem = Problem("p", "What is 2 + 3?")
    ev = SelfEval(vllm_generator)
    r = await solve(problem, AdaptiveSampling(n=4, threshold=0.99), generator=vllm_generator, verifier=ev,
                    sampling=Sampling(max_tokens=16))
    assert 1 <= r.telemetry["samples"] <= 4 and r.usage.verifier_tokens > 0 and r.usage.verifier_calls >= 1
    assert all(0.0 <= s <= 1.0 for s in r.telemetry["self_eval"])
    r = await solve(problem, EarlyPruning(n=4, prune_at=4, keep=0.5), generator=vllm_generator, verifier=ev,
                    sampling=Sampling(max_tokens=16))
    assert r.telemetry["pruned"] + r.telemetry["continued"] + r.telemetry["finished_early"] == 4
    assert r.usage.completion_tokens > 0 and r.usage.verifier_tokens > 0
