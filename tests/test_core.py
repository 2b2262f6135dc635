"""Core: usage, budget, accountant, context, runner, store. Algorithm-level, on the scripted
(fake) generator; the real-engine tests are in test_vllm_generator.py."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scripted import ScriptedGenerator

import tts
from strategies import BestOfN, SelfConsistency, weighted_majority
from tts.context import Accountant, Context
from tts.errors import BudgetExceeded, TTSError
from tts.experiment.store import ResultStore
from tts.types import Budget, Problem, Usage
from verifiers import Confidence

P = Problem("p1", "What is one half?", answer="1/2")


def ctx_for(gen, budget=None, verifier=None, max_tokens=50):
    acc = Accountant(budget, gen.num_params, None)
    return Context(P, gen, acc, verifier=verifier, sampling=tts.Sampling(max_tokens=max_tokens))


def test_usage_arithmetic_and_budget_caps():
    u = Usage(prompt_tokens=10, cached_tokens=4, completion_tokens=5, verifier_tokens=2, generator_calls=1)
    assert (u + u).completion_tokens == 10 and (u - u).prompt_tokens == 0
    assert u.total_tokens == 17 and u.calls == 1
    assert Budget(total_tokens=16).exceeded_by(u) == "total_tokens"
    assert Budget(total_tokens=17).exceeded_by(u) is None
    assert Usage.from_dict(u.to_dict()) == u


async def test_accountant_refuses_before_dispatch():
    gen = ScriptedGenerator(["a b c"])
    ctx = ctx_for(gen, Budget(completion_tokens=10), max_tokens=20)
    with pytest.raises(BudgetExceeded) as e:
        await ctx.generate(ctx.request(1))
    assert e.value.cap == "completion_tokens"
    assert gen.calls == 0 and ctx.usage.completion_tokens == 0


async def test_affordable_and_flops():
    gen = ScriptedGenerator(["a b c"], num_params=1000)
    ctx = ctx_for(gen, Budget(completion_tokens=50), max_tokens=20)
    assert await ctx.affordable(ctx.request(8)) == 2
    traces = await ctx.generate(ctx.request(2))
    assert [t.num_tokens for t in traces] == [3, 3]
    u = ctx.usage
    assert u.completion_tokens == 6 and u.generator_calls == 1
    assert u.generator_flops == 2 * 1000 * (u.prompt_tokens - u.cached_tokens + 6)


async def test_stream_is_charged_up_to_where_it_stopped():
    gen = ScriptedGenerator(["one two three four five six"])
    ctx = ctx_for(gen)
    seen = 0
    agen = ctx.stream(ctx.request(1))
    async for t in agen:
        seen = t.num_tokens
        if seen == 3:
            break
    await agen.aclose()
    assert ctx.usage.completion_tokens == 3 and ctx.usage.generator_calls == 1
    assert ctx.accountant._reserved == Usage()


async def test_self_consistency_groups_equivalent_answers():
    gen = ScriptedGenerator(["so \\boxed{3}", "thus \\boxed{\\frac{1}{2}}", "\\boxed{0.5}", "\\boxed{3}", "\\boxed{1/2}"])
    r = await tts.solve(P, SelfConsistency(5), generator=gen)
    assert r.answer in ("\\frac{1}{2}", "0.5", "1/2")
    assert sorted(r.telemetry["votes"].values()) == [2.0, 3.0]
    assert r.stopped_by == "done" and len(r.traces) == 5


async def test_best_of_n_and_weighted_majority_select_differently():
    completions = [("\\boxed{7}", -3.0), ("\\boxed{7}", -3.0), ("\\boxed{9}", -0.1)]
    best = await tts.solve(P, BestOfN(3), generator=ScriptedGenerator(completions), verifier=Confidence())
    assert best.answer == "9"
    # weighted: 7 gets 2 * e^-3 ~ 0.10, 9 gets e^-0.1 ~ 0.90
    w = await tts.solve(P, weighted_majority(3), generator=ScriptedGenerator(completions), verifier=Confidence())
    assert w.answer == "9"
    many7 = [("\\boxed{7}", -0.2)] * 3 + [("\\boxed{9}", -0.1)]
    w2 = await tts.solve(P, weighted_majority(4), generator=ScriptedGenerator(many7), verifier=Confidence())
    assert w2.answer == "7"
    sc = await tts.solve(P, SelfConsistency(3), generator=ScriptedGenerator(completions))
    assert sc.answer == "7"


async def test_confidence_requires_logprobs():
    gen = ScriptedGenerator(["\\boxed{1}"])
    ctx = ctx_for(gen, verifier=Confidence())
    traces = await ctx.generate(ctx.request(1, logprobs=None))
    with pytest.raises(TTSError, match="logprobs"):
        await ctx.score(traces)


def test_no_answer_is_none_not_a_crash():
    r = tts.solve_sync(P, SelfConsistency(2), generator=ScriptedGenerator(["no answer here"]))
    assert r.answer is None and r.stopped_by == "done"


STRATEGIES = [lambda n: BestOfN(n), lambda n: weighted_majority(n), lambda n: SelfConsistency(n)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    which=st.integers(0, 2),
    n=st.integers(1, 12),
    max_tokens=st.integers(1, 30),
    lengths=st.lists(st.integers(0, 40), min_size=1, max_size=5),
    cap=st.sampled_from(["completion_tokens", "total_tokens", "calls", "flops"]),
    value=st.integers(0, 400),
)
def test_no_run_ever_exceeds_its_budget(which, n, max_tokens, lengths, cap, value):
    completions = [(" ".join(["w"] * k) + " \\boxed{1}", -0.3) for k in lengths]
    gen = ScriptedGenerator(completions, num_params=10)
    budget = Budget(**{cap: value * (20 if cap == "flops" else 1) if cap != "calls" else value % 4})
    r = tts.solve_sync(
        P, STRATEGIES[which](n), generator=gen, verifier=Confidence(), budget=budget,
        sampling=tts.Sampling(max_tokens=max_tokens),
    )
    assert budget.exceeded_by(r.usage) is None, (budget, r.usage)
    if len(r.traces) < n:
        assert r.stopped_by == "budget"


def _judged(which: int, n: int):
    """A strategy whose verifier or judge calls a model (the scripted judge, FAKE): Best-of-N
    scored by self-evaluation, beam search by an LLM judge of each step, DeepPrune clustering by
    a model judge."""
    from strategies import BeamSearch, DeepPrune
    from verifiers import LLMJudgePRM, ModelJudge, SelfEval

    judge = ScriptedGenerator(["Yes"], num_params=7, top=[("Yes", -0.4), ("No", -1.2)])
    if which == 0:
        return BestOfN(n), SelfEval(judge)
    if which == 1:
        return BeamSearch(2 * n, beam_width=2, max_steps=3), LLMJudgePRM(judge)
    return DeepPrune(n, judge=ModelJudge(judge), tau=0.9, prefix_tokens=2), None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    which=st.integers(0, 2),
    n=st.integers(1, 6),
    max_tokens=st.integers(1, 12),
    cap=st.sampled_from(["verifier_tokens", "total_tokens", "calls", "flops"]),
    value=st.integers(0, 300),
)
def test_no_verifier_or_judge_call_ever_takes_a_run_over_its_budget(which, n, max_tokens, cap, value):
    """Caps hold for verifier and judge tokens by construction: every model call of a verifier
    or judge goes through the context, reserved at its worst case before it is sent."""
    gen = ScriptedGenerator(["a b\n\nc d \\boxed{1}", "e\n\nf g h \\boxed{2}"], num_params=10)
    strategy, verifier = _judged(which, n)
    budget = Budget(**{cap: value * (20 if cap == "flops" else 1) if cap != "calls" else value % 9})
    r = tts.solve_sync(P, strategy, generator=gen, verifier=verifier, budget=budget,
                       sampling=tts.Sampling(max_tokens=max_tokens))
    assert budget.exceeded_by(r.usage) is None, (budget, r.usage)


def _composed(which: int, n: int):
    """Each pipeline operator (and Mind Evolution), after a generate stage: the scripted model
    (FAKE) answers every call, critiques and judgments included; verify uses a judge model."""
    from strategies import MindEvolution, Pipeline
    from tts.pipeline import Critique, Fuse, Generate, Rank, Refine, Revise, Verify, Vote

    gen = Generate(strategy="self_consistency", n=n)
    return [
        Pipeline([gen, Critique()]),
        Pipeline([gen, Critique(joint=True), Refine(keep_correct=False)]),
        Pipeline([gen, Fuse(samples=2)]),
        Pipeline([gen, Rank(group=2, repeats=2)]),
        Pipeline([gen, Rank(method="order", top=2)]),
        Pipeline([gen, Verify("self_eval", threshold=0.5)]),
        Pipeline([gen, Vote(top=1)]),
        Pipeline([gen, Verify("self_eval"), Revise(n=2), Verify("self_eval")]),
        MindEvolution(n=2, islands=2, conversations=1, turns=2),
    ][which]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    which=st.integers(0, 8),
    n=st.integers(1, 4),
    max_tokens=st.integers(1, 12),
    cap=st.sampled_from(["completion_tokens", "total_tokens", "verifier_tokens", "calls", "flops"]),
    value=st.integers(0, 300),
)
def test_no_pipeline_operator_ever_takes_a_run_over_its_budget(which, n, max_tokens, cap, value):
    """Every operator calls the model through the context, so a cap holds across all of a
    pipeline's stages by construction; a stage the budget stops ends the pipeline."""
    gen = ScriptedGenerator(["a b \\boxed{1} Verdict: incorrect Judgment: [1] Answer: [2] > [1]", "c \\boxed{2}"],
                            num_params=10, top=[("Yes", -0.4), ("No", -1.2)])
    budget = Budget(**{cap: value * (20 if cap == "flops" else 1) if cap != "calls" else value % 12})
    strategy = _composed(which, n)
    r = tts.solve_sync(P, strategy, generator=gen, budget=budget, sampling=tts.Sampling(max_tokens=max_tokens))
    assert budget.exceeded_by(r.usage) is None, (budget, r.usage)
    if r.stopped_by != "budget":  # not stopped: every stage (every generation) ran
        ran = r.telemetry["stages"] if "stages" in r.telemetry else r.telemetry["generations"]
        assert len(ran) == (len(strategy.stages()) if "stages" in r.telemetry else 2)


@pytest.mark.parametrize("which", [0, 1, 2])
def test_the_judged_strategies_do_call_their_judges(which):
    gen = ScriptedGenerator(["a b\n\nc d \\boxed{1}", "e\n\nf g h \\boxed{2}"], num_params=10)
    strategy, verifier = _judged(which, 3)
    r = tts.solve_sync(P, strategy, generator=gen, verifier=verifier, sampling=tts.Sampling(max_tokens=12))
    assert r.usage.verifier_calls > 0 and r.usage.verifier_tokens > 0


async def test_run_many_is_bounded_and_ordered():
    gen = ScriptedGenerator(["\\boxed{1}"], delay=0.01)
    live = peak = 0
    orig = gen.generate

    async def counting(req):
        nonlocal live, peak
        live += 1
        peak = max(peak, live)
        try:
            return await orig(req)
        finally:
            live -= 1

    gen.generate = counting
    problems = [Problem(f"q{i}", f"question {i}") for i in range(20)]
    seen = []
    rs = await tts.run_many(problems, SelfConsistency(2), generator=gen, concurrency=4, on_result=lambda r: seen.append(r.problem_id))
    assert [r.problem_id for r in rs] == [p.id for p in problems]
    assert sorted(seen) == sorted(p.id for p in problems)
    assert peak == 4


def test_config_hash_identifies_configuration():
    gen = ScriptedGenerator(["\\boxed{1}"])
    a = tts.solve_sync(P, SelfConsistency(2), generator=gen)
    b = tts.solve_sync(P, SelfConsistency(2), generator=gen, seed=3)
    c = tts.solve_sync(P, SelfConsistency(3), generator=gen)
    assert a.config_hash == b.config_hash != c.config_hash
    assert json.loads(json.dumps(a.record()))["problem_id"] == "p1"


def test_store_resumes_repairs_and_never_duplicates(tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    s = ResultStore(path, writer=True)
    rec = {"problem_id": "a", "config_hash": "h", "seed": 0, "usage": {}}
    s.append(rec)
    s.append(rec)
    with open(path, "ab") as f:
        f.write(b'{"problem_id": "b", "config_h')  # a crash mid-write
    reader = ResultStore(path)
    assert reader.done(("a", "h", 0)) and not reader.done(("b", "h", 0))
    assert path.read_bytes().endswith(b'"config_h')  # a reader leaves the torn tail alone
    with pytest.raises(TypeError, match="opened to read"):
        reader.append(rec)
    s2 = ResultStore(path, writer=True)  # the writer cuts it
    assert path.read_text().count("\n") == 1 and "cutting the 29 bytes" in capsys.readouterr().err
    s2.append({**rec, "problem_id": "b"})
    assert len(ResultStore(path).records) == 2
    path.write_text('{"problem_id": "a", "config_hash": "h", "seed": 0}\nnot json\n')
    assert list(ResultStore(path).records) == [("a", "h", 0)]  # a bad line is skipped and named, not fatal
    assert "r.jsonl: skipped 1 line that could not be read as a result record (line 2: JSONDecodeError" \
        in capsys.readouterr().err
