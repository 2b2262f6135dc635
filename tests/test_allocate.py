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
from tts.experiment.allocate import POLICIES, AllocationSpec, Candidate, Pool, allocate, bank_pass1, cost, knapsack
from tts.runner import solve
from tts.types import Budget, GenRequest, Problem, Trace, Usage
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


def test_predicted_reuses_its_probe_samples(math100_bank):
    """The predicted policy's probe (2 samples) is not thrown away: self-consistency over 4 is
    served the probe's 2 samples (free: the probe paid for them) and draws the rest after them
    in the bank's order, never the probe's again; a record carries its probe's cost. Without
    reuse (round 2) the same problem pays for its first 2 samples twice."""
    train, test, gen, sampling = _setup(math100_bank)
    kw = dict(total=1e7, generator=gen, policy="predicted", task=tasks.get_task("math500"), train=train,
              sampling=sampling, bins=2, probe_n=2)
    reused = asyncio.run(allocate(test, CANDS[1:2], **kw))
    for p, r in zip(test, reused.results):  # the first samples of the problem's order, each drawn once
        first = [math100_bank.get(p.id).samples[i].text for i in gen.order(p.id)[:len(r.traces)]]
        assert r.telemetry["probe_samples_reused"] == 2 and sorted(t.text for t in r.traces) == sorted(first)
        assert len(gen.served(p.id)) == len(r.traces) > 2
    discarded = asyncio.run(allocate(test, CANDS[1:2], reuse_probe=False, **kw))
    for r, d in zip(reused.results, discarded.results):
        assert len(r.traces) >= len(d.traces)  # the same caps buy the free samples on top
    assert reused.telemetry["probe_samples_reused"] == 2 * len(test)
    assert reused.telemetry["probe_spent"] == discarded.telemetry["probe_spent"] > 0
    assert reused.spent < discarded.spent
    for a in (reused, discarded):  # a record carries its probe's cost, reused or not
        assert sum(cost(r.usage, "total_tokens") for r in a.results) == pytest.approx(a.spent)
    # the training profile measured what the candidate adds after the probe: about half its cost
    assert reused.telemetry["train_cost"]["self_consistency n=4"] < 0.7 * discarded.telemetry["train_cost"]["self_consistency n=4"]
    assert AllocationSpec("predicted", 1e6, candidates=tuple(CANDS)).params()["reuse_probe"] is True
    assert "reuse_probe" not in AllocationSpec("uniform", 1e6, candidates=tuple(CANDS)).params()


def test_snell_five_bins_are_the_default(math100_bank):
    """Snell et al. bin problems into five quantiles of pass@1. By hand: 6 training problems with
    pass@1 0/12, 1/12, ..., 5/12 have distinct quintile edges (4 of them), so 5 bins. Before:
    the default was 4 bins (3 edges)."""
    train, test, gen, sampling = _setup(math100_bank)
    pass1 = {p.id: i / 12 for i, p in enumerate(math100_bank.problems())}
    a = asyncio.run(allocate(test, CANDS[:2], total=1e7, generator=gen, policy="oracle", task=tasks.get_task("math500"),
                             train=train, sampling=sampling, oracle_pass1=pass1))
    assert len(a.telemetry["edges"]) == 4 and len(a.telemetry["bin_sizes"]) == 5
    assert AllocationSpec("oracle", 1e7, candidates=tuple(CANDS)).bins == 5


def test_pool_never_waits_on_a_float_remainder():
    """By hand: caps 0.1 and 0.2 granted, settled in the other order: 0.1 + 0.2 - 0.2 - 0.1 is
    2.8e-17 in floats, which `reserved > 0` took for a problem in flight: the sequential policy
    waited for a return that never came (math100, -n 8, totals 60,000 / 61,000 / 64,000 hung)."""
    pool = Pool(1.0)
    a, b = pool.grant(most=0.1), pool.grant(most=0.2)
    assert pool.in_flight == 2
    pool.settle(b, 0.2)
    pool.settle(a, 0.1)
    assert pool.in_flight == 0 and pool.reserved == 0.0 and pool.free == pytest.approx(0.7)


@pytest.fixture(scope="module")
def math100_full(tmp_path_factory):
    """All 100 recorded math100 problems (the hang needs the full bank's numbers)."""
    from conftest import SHARED_DATA
    from tts.bank import import_math100

    src = SHARED_DATA / "math100_qwen25math_8samples_rm.jsonl"
    if not src.exists():
        pytest.skip(f"{src} not found")
    return import_math100(src, tmp_path_factory.mktemp("banks") / "m100-full", tokenizer=None)


def cli(*args: str, timeout: float = 120):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "tts.cli", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("total", [60000, 61000, 64000])
def test_sequential_allocation_finishes_at_the_totals_that_hung(math100_full, tmp_path, total):
    """The reported case, as a command: each hung forever with nothing in flight (a subprocess,
    so a hang is a TimeoutExpired here, not a stuck suite)."""
    import json

    out = tmp_path / "s.jsonl"
    proc = cli("bench", "--backend", "replay", "--bank", str(math100_full.path), "--task", "math500", "--strategy",
               "self_consistency", "-n", "8", "--out", str(out), "--total-budget", str(total), "--allocation",
               "sequential")
    assert proc.returncode == 0, proc.stderr[-2000:]
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(recs) == 50 and sum(r["usage"]["total_tokens"] for r in recs) <= total


def _error_line(proc) -> str:
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return lines[0]


@pytest.mark.parametrize("args, words", [
    (["--allocation", "sequential"], r"cannot reach all 50 problems: one sample costs 288.6 on average and 3092 at "
                                     r"its worst .* needs at least 17231.4"),
    (["--candidate", "self_consistency:1"], r"the cheapest, 'self_consistency n=1', costs 289.8 per problem and one "
                                            r"sample 3092 at its worst .* at least 17293.2"),
])
def test_a_total_that_cannot_reach_every_problem_names_the_minimum(math100_full, tmp_path, args, words):
    """15,000 tokens for 50 problems: above the plan (50 x 289.8 = 14,490 for one sample each)
    but the accountant reserves a sample's worst case (3,092 tokens: the bank's longest sample,
    its max_tokens) before sending it, so the last problems cannot start. By hand: 49 x 289.8 +
    3,092 = 17,293.2. Before: exit 0 with 15 of 50 problems answered None (uniform), and the
    sequential policy answered all 50 None at 2,500."""
    import re

    out = tmp_path / "a.jsonl"
    proc = cli("bench", "--backend", "replay", "--bank", str(math100_full.path), "--task", "math500", "--strategy",
               "self_consistency", "-n", "8", "--out", str(out), "--total-budget", "15000", *args)
    assert re.search(words, _error_line(proc)) and not out.exists()


@pytest.mark.parametrize("args, words", [
    (["--total-budget", "1e15", "--total-unit", "flops"], "a total in flops needs the generator's parameter count"),
    (["--total-budget", "9000", "--candidate", "self_consistency:1", "--allocation-param", "bins=abc"],
     "allocation parameter bins must be a whole number >= 1, got 'abc'"),
    (["--total-budget", "9000", "--candidate", "self_consistency:1", "--allocation-param", "bins=0"],
     "allocation parameter bins must be a whole number >= 1, got 0"),
    (["--total-budget", "9000", "--candidate", "self_consistency:1", "--allocation-param", "bins=2.5"],
     "bins must be a whole number >= 1, got 2.5"),
    (["--total-budget", "9000", "--candidate", "self_consistency:1", "--allocation-param", "probe_n=-1"],
     "allocation parameter probe_n must be a whole number >= 1, got -1"),
    (["--total-budget", "9000", "--candidate", "self_consistency:1", "--allocation-param", "confidence=5"],
     r"confidence must be a number in \(0, 1\), got 5"),
    (["--total-budget", "9000", "--allocation", "sequential", "--allocation-param", "batch=4",
      "--allocation-param", "max_samples=2"], r"max_samples \(2\) must be at least batch \(4\)"),
    (["--total-budget", "9000", "--candidate", "self_consistency:1", "--allocation-param", "train_fraction=2"],
     "the training share is --train-fraction"),
    (["--total-budget", "9000", "--candidate", "self_consistency:1", "--train-fraction", "2"],
     r"training fraction must be a number in \(0, 1\), got 2"),
    (["--total-budget", "inf", "--candidate", "self_consistency:1"], "total budget must be a finite number > 0"),
])
def test_allocation_input_that_cannot_work_is_one_error_line(math100_bank, tmp_path, args, words):
    """Before: bins=abc and bins=2.5 were TypeError tracebacks, probe_n=-1 a ValueError traceback;
    bins=0, confidence=5 and batch > max_samples ran; flops without a parameter count answered
    None everywhere having spent 0 (exit 0); a total below one worst-case sample answered None
    everywhere (exit 0)."""
    import re

    out = tmp_path / "a.jsonl"
    proc = cli("bench", "--backend", "replay", "--bank", str(math100_bank.path), "--task", "math500", "--strategy",
               "self_consistency", "-n", "4", "--out", str(out), *args)
    assert re.search(words, _error_line(proc)) and not out.exists()


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


async def test_adaptive_sampling_keeps_a_batch_it_was_charged_for():
    """By hand: batch 1 (1 sample) is scored 0.2: its worst case (36: the evaluator's prompt count
    + 1 token) fits the cap of 40, and it is charged 11 (10 prompt + 1); batch 2 (2 samples) is
    drawn, but scoring it reserves 72 more (11 + 72 > 40): refused. The 3 samples
    were all charged (3 x 3 completion tokens), so all 3 are traces and in the telemetry (the 2
    unscored as None), and the answer is the only scored one's. Before: batch 2 was charged but
    dropped from traces, self_eval, temperatures and samples (1)."""
    gen = SelfJudging(["maybe a \\boxed{1}", "maybe b \\boxed{2}", "maybe c \\boxed{3}"])
    r = await solve(Problem("p", "q"), AdaptiveSampling(n=16, threshold=0.8), generator=gen,
                    verifier=SelfEval(gen), budget=Budget(verifier_tokens=40))
    assert r.stopped_by == "budget" and r.usage.completion_tokens == 9 and r.usage.verifier_tokens == 11
    assert len(r.traces) == 3 and r.telemetry["samples"] == 3
    assert r.telemetry["self_eval"] == [pytest.approx(0.2), None, None]
    assert r.telemetry["temperatures"] == pytest.approx([0.0, 0.35]) and r.answer == "1"
    assert sum(t.num_tokens for t in r.traces) == r.usage.completion_tokens


async def test_early_pruning_counts_each_sample_once():
    """By hand: 4 heads of 2 tokens ("sure a", "nope a", "sure d", "nope d"): 8 tokens; the two
    "sure" heads score 0.9 and are continued with 4 tokens each (the script's next two
    completions): 8 more. Charged: 16 completion tokens; the traces are the 2 pruned heads (2 each)
    and the 2 continued samples (2 + 4 each): 16. Before: the continued heads were listed as well,
    6 traces and 20 tokens (each continued head counted twice)."""
    gen = SelfJudging(["sure a b c", "nope a b c", "sure d e f", "nope d e f"])
    r = await solve(Problem("p", "q"), EarlyPruning(n=4, prune_at=2, keep=0.5), generator=gen,
                    verifier=SelfEval(gen), sampling=Sampling(max_tokens=20))
    assert r.usage.completion_tokens == 16 and len(r.traces) == 4
    assert [t.num_tokens for t in r.traces] == [6, 2, 6, 2]
    assert sum(t.num_tokens for t in r.traces) == r.usage.completion_tokens
    assert r.telemetry == {"pruned": 2, "continued": 2, "finished_early": 0}


async def test_early_pruning_keeps_samples_cut_at_max_tokens_within_prune_at():
    """max_tokens 4 <= prune_at 4: nothing is left to prune, so the two samples cut at 4 tokens
    ("\\boxed{3} x y z") are complete samples and vote with the one that stopped ("\\boxed{5}"):
    3 wins 2 to 1. Before: the cut ones were silently dropped and 5 answered."""
    gen = SelfJudging(["\\boxed{3} x y z w", "\\boxed{3} q r s t", "\\boxed{5}"])
    r = await solve(Problem("p", "q"), EarlyPruning(n=3, prune_at=4, select="vote"), generator=gen,
                    verifier=SelfEval(gen), sampling=Sampling(max_tokens=4))
    assert [t.finish_reason for t in r.traces] == ["length", "length", "stop"]
    assert r.answer == "3" and r.telemetry == {"pruned": 0, "continued": 0, "finished_early": 3}


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
