"""Composed pipelines: the operators' logic worked by hand on the scripted generator (a FAKE
that answers by the request's text), the presets' shapes, Mind Evolution's islands, and the
Python / command-line / sweep surfaces of a pipeline's configuration. The real-engine tests are
in test_pipeline_engine.py."""

from __future__ import annotations

import json

import pytest
from scripted import ScriptedGenerator

import tts
from strategies import (Archon, GenSelect, MindEvolution, MixtureOfAgents, Pipeline,
                        SelfConsistency, SelfRefine)
from tts.context import Verifier
from tts.errors import ParameterError, TTSError
from tts.experiment.build import build_strategy
from tts.pipeline import Critique, Fuse, Generate, Rank, Refine, Revise, Verify, Vote, describe
from tts.pipeline.operators import judgment_of, ranking_of, split_joint, verdict_of
from tts.types import Problem, Score

P = Problem("p", "What is 2 + 3?", answer="5")
SAMPLING = tts.Sampling(max_tokens=40)


def user_text(req) -> str:
    return req.messages[-1]["content"]


class ByAnswer(Verifier):
    """A FAKE verifier: a fixed score per answer, no model call."""

    name = "by_answer"

    def __init__(self, scores):
        self.scores = scores

    async def score(self, ctx, traces):
        return [Score(self.scores.get(t.answer, 0.0)) for t in traces]


def test_parsers_read_what_the_references_print():
    assert verdict_of("step 2 is wrong.\nVerdict: incorrect") is False
    assert verdict_of("Verdict: incorrect ... on reflection, **Verdict: Correct**") is True
    assert verdict_of("looks fine") is None
    assert judgment_of("0 is wrong, 2 is right.\nJudgment: [2]", 3) == 2
    assert judgment_of("Judgment: 1", 3) == 1 and judgment_of("Judgment: [7]", 3) is None
    # Archon's ranker: the Answer line, missing identifiers appended in their order
    assert ranking_of("Answer: [3] > [1]\nbecause ...", 4) == ([2, 0, 1, 3], False)
    assert ranking_of("[2] > [1]", 2) == ([1, 0], True)
    assert split_joint("[1]\nStrengths: a\n\n[2]\nStrengths: b", 2) == ["Strengths: a", "Strengths: b"]
    assert split_joint("[1] only one", 2) is None


async def test_critique_then_refine_fixes_the_wrong_and_keeps_the_right():
    # samples 3, 5, 5, 3; the critic calls the 5s correct and the 3s wrong; a refinement says 5
    gen = ScriptedGenerator(["\\boxed{3}", "\\boxed{5}", "\\boxed{5}", "\\boxed{3}"])
    gen.route = lambda req: (("the sum is wrong. Verdict: incorrect" if "boxed{3}" in user_text(req)
                              else "all steps check. Verdict: correct") if "Review this solution" in user_text(req)
                             else "fixed: \\boxed{5}" if "Feedback on it" in user_text(req) else None)
    pipe = Pipeline([Generate(SelfConsistency(4)), Critique(), Refine()])
    r = await tts.solve(P, pipe, generator=gen, sampling=SAMPLING)
    assert r.answer == "5" and r.stopped_by == "done"
    # 1 request for 4 samples, 4 critiques, 2 refinements (the two called correct are kept)
    assert gen.calls == 1 + 4 + 2 == r.usage.generator_calls
    assert r.telemetry["refine_kept_correct"] == 2
    # 4 samples (the majority's first: a tie goes to the first seen, 3) + 2 refinements
    assert [t.answer for t in r.traces] == ["3", "3", "5", "5", "5", "5"]
    # each stage's usage is its share of the run's: they sum to the total
    stages = r.telemetry["stages"]
    assert [s["op"] for s in stages] == ["generate", "critique", "refine"]
    assert [s["generator_calls"] for s in stages] == [1, 4, 2]
    for k in ("prompt_tokens", "cached_tokens", "completion_tokens"):
        assert sum(s[k] for s in stages) == getattr(r.usage, k)
    # a refine request shows the candidate and its critique; a critique request has no system prompt
    refine = next(q for q in gen.requests if "Feedback on it" in user_text(q))
    assert "boxed{3}" in user_text(refine) and "Verdict: incorrect" in user_text(refine)
    critique = next(q for q in gen.requests if "Review this solution" in user_text(q))
    assert [m["role"] for m in critique.messages] == ["user"] and critique.logprobs is None


async def test_self_refine_stops_once_the_critic_says_correct():
    gen = ScriptedGenerator(["\\boxed{4}"])
    gen.route = lambda req: (("Verdict: correct" if "boxed{5}" in user_text(req) else "Verdict: incorrect")
                             if "Review this solution" in user_text(req)
                             else "\\boxed{5}" if "Feedback on it" in user_text(req) else None)
    r = await tts.solve(P, SelfRefine(n=1, rounds=4), generator=gen, sampling=SAMPLING)
    # round 1: critique (incorrect) + refine -> 5; round 2: critique (correct), no refine; rounds
    # 3 and 4 ask nothing: the candidate was critiqued and kept
    assert r.answer == "5" and gen.calls == 1 + 2 + 1


async def test_fuse_shows_the_first_k_with_their_critiques_and_makes_samples():
    gen = ScriptedGenerator(["\\boxed{1}", "\\boxed{2}", "\\boxed{3}"])
    gen.route = lambda req: ("Verdict: incorrect" if "Review this solution" in user_text(req)
                             else "\\boxed{9}" if "Synthesize" in user_text(req) else None)
    r = await tts.solve(P, Pipeline([Generate(SelfConsistency(3)), Critique(), Fuse(top=2, samples=2)]),
                        generator=gen, sampling=SAMPLING)
    fuse = [q for q in gen.requests if "Synthesize" in user_text(q)]
    assert len(fuse) == 1 and fuse[0].n == 2  # one request for the layer's 2 samples
    text = user_text(fuse[0])
    assert "[1] \\boxed{1}" in text and "[2] \\boxed{2}" in text and "boxed{3}" not in text
    assert text.count("Critique of [") == 2
    assert r.answer == "9" and r.telemetry["stages"][-1]["candidates"] == 2


async def test_joint_critique_is_split_per_candidate_or_kept_as_a_note():
    for reply, split in (("[1]\nStrengths: x Weaknesses: y\n\n[2]\nStrengths: z", True), ("all fine", False)):
        gen = ScriptedGenerator(["\\boxed{1}", "\\boxed{2}"])
        gen.route = lambda req, reply=reply: (reply if "Evaluate each response" in user_text(req)
                                              else "\\boxed{7}" if "Synthesize" in user_text(req) else None)
        r = await tts.solve(P, Archon(n=2), generator=gen, sampling=SAMPLING)
        fuse = next(user_text(q) for q in gen.requests if "Synthesize" in user_text(q))
        assert r.answer == "7" and gen.calls == 3
        assert ("Critique of [1]:\nStrengths: x" in fuse) is split
        assert ("Critique of the responses:\nall fine" in fuse) is not split
        assert r.telemetry.get("joint_critique_unsplit", 0) == (0 if split else 1)


async def test_genselect_knockout_makes_n_minus_one_comparisons_and_votes():
    gen = ScriptedGenerator([f"\\boxed{{{a}}}" for a in (1, 5, 2, 5, 3)])
    gen.route = lambda req: ("Judgment: [0]" if "Judgment" in user_text(req) and "0) \\boxed{5}" in user_text(req)
                             else "Judgment: [1]" if "Judgment" in user_text(req) else None)
    # a judge that picks a 5 whenever one is shown first, else the second: a 5 always wins a group with one
    r = await tts.solve(P, GenSelect(n=5, group=2, repeats=1), generator=gen, sampling=SAMPLING)
    judged = [q for q in gen.requests if "Judgment" in user_text(q)]
    assert len(judged) == 4  # 5 -> 3 -> 2 -> 1 in pairs: n - 1 comparisons
    assert r.answer == "5" and r.telemetry["stages"][-1]["candidates"] == 1
    r3 = await tts.solve(P, GenSelect(n=5, group=8, repeats=3), generator=gen, sampling=SAMPLING)
    assert sum(r3.telemetry["select_wins"][0]) == 3  # three tournaments of one call each


async def test_rank_order_keeps_the_top_in_the_models_order():
    gen = ScriptedGenerator(["\\boxed{1}", "\\boxed{2}", "\\boxed{3}"])
    gen.route = lambda req: "Answer: [3] > [1] > [2]" if "Rank all" in user_text(req) else None
    r = await tts.solve(P, Pipeline([Generate(SelfConsistency(3)), Rank(method="order", top=2)], answer="first"),
                        generator=gen, sampling=SAMPLING)
    assert r.answer == "3" and r.telemetry["stages"][-1]["candidates"] == 2


async def test_verify_sorts_filters_and_votes_weighted():
    gen = ScriptedGenerator(["\\boxed{1}", "\\boxed{2}", "\\boxed{2}", "\\boxed{3}"])
    v = ByAnswer({"1": 0.9, "2": 0.3, "3": 0.6})
    keep = Pipeline([Generate(SelfConsistency(4)), Verify(threshold=0.5)], answer="first")
    r = await tts.solve(P, keep, generator=gen, verifier=v, sampling=SAMPLING)
    assert r.answer == "1" and r.telemetry["stages"][-1]["candidates"] == 2  # 1 (0.9), 3 (0.6)
    vote = Pipeline([Generate(SelfConsistency(4)), Verify(), Vote(weighted=True, top=1)], answer="first")
    assert (await tts.solve(P, vote, generator=gen, verifier=v, sampling=SAMPLING)).answer == "1"  # 0.9 > 0.6
    plain = Pipeline([Generate(SelfConsistency(4)), Vote()])
    assert (await tts.solve(P, plain, generator=gen, sampling=SAMPLING)).answer == "2"
    with pytest.raises(TTSError, match="--verifier"):
        await tts.solve(P, keep, generator=gen, sampling=SAMPLING)


async def test_revise_feeds_back_best_and_worst_and_keeps_the_best():
    gen = ScriptedGenerator(["\\boxed{1}", "\\boxed{2}"])
    gen.route = lambda req: "\\boxed{5}" if "The best attempt" in user_text(req) else None
    v = ByAnswer({"1": 0.2, "2": 0.7, "5": 0.95})
    r = await tts.solve(P, Pipeline([Generate(SelfConsistency(2)), Verify(), Revise(n=2), Verify()], answer="first"), generator=gen, verifier=v, sampling=SAMPLING)
    revise = next(user_text(q) for q in gen.requests if "The best attempt" in user_text(q))
    assert "(score 0.70):\n\\boxed{2}" in revise and "(score 0.20):\n\\boxed{1}" in revise
    assert r.answer == "5"
    assert [s["op"] for s in r.telemetry["stages"]] == ["generate", "verify", "revise", "verify"]
    assert r.telemetry["stages"][2]["candidates"] == 3  # the best kept beside 2 new


def test_presets_build_the_references_shapes():
    assert describe(MixtureOfAgents(n=3, layers=3).stages()) == \
        "generate(self_consistency n=3) > fuse(samples=3) > fuse"
    assert describe(MixtureOfAgents(n=3, layers=2, critique=True).stages()) == \
        "generate(self_consistency n=3) > critique(joint=True) > fuse"
    assert describe(Archon().stages()) == "generate(self_consistency n=5) > critique(joint=True) > fuse"
    assert describe(Archon(n=8, rank_top=5, critique=False).stages()) == \
        "generate(self_consistency n=8) > rank(method=order top=5) > fuse"
    assert describe(GenSelect().stages()) == "generate(self_consistency n=8) > rank(critiques=False)"
    assert describe(SelfRefine(rounds=2).stages()) == \
        "generate(self_consistency n=1) > critique > refine > critique > refine"
    with pytest.raises(ParameterError, match="layers"):
        MixtureOfAgents(layers=1)


def test_a_pipeline_is_one_json_configuration_from_python_the_cli_and_yaml():
    py = Pipeline([Generate(SelfConsistency(4)), Critique(), Fuse(top=3)])
    cli = build_strategy("pipeline", 8, {"stages": "[{op: generate, n: 4}, {op: critique}, {op: fuse, top: 3}]"})
    as_dicts = Pipeline([{"op": "generate", "strategy": "self_consistency", "n": 4}, {"op": "critique"},
                         {"op": "fuse", "top": 3}])
    assert py.config() == cli.config() == as_dicts.config()
    json.dumps(py.config())  # plain JSON: what the run spec hashes
    gen = ScriptedGenerator(["\\boxed{1}"])
    a = tts.solve_sync(P, py, generator=gen, sampling=SAMPLING)
    b = tts.solve_sync(P, cli, generator=gen, sampling=SAMPLING)
    c = tts.solve_sync(P, Pipeline([Generate(SelfConsistency(4)), Critique(), Fuse(top=2)]), generator=gen,
                       sampling=SAMPLING)
    assert a.config_hash == b.config_hash != c.config_hash


@pytest.mark.parametrize("stages, message", [
    ([{"op": "fuse"}], "first stage must be a generate"),
    ([{"op": "generate"}, {"op": "refine"}], "needs a critique stage before it"),
    ([{"op": "generate"}, {"op": "revise"}], "needs a verify stage before it"),
    ([{"op": "generate"}, {"op": "fuse", "topp": 3}], r"stages.1.fuse.topp"),
    ([{"op": "generate", "n": 0}], r"stages.0.generate.n"),
    ([{"op": "generate"}, {"op": "critique", "prompt": "{question} {oops}"}], "may use only the fields"),
    ([{"op": "generate"}, {"op": "shuffle"}], "shuffle"),
    ("[{op: generate", "YAML"),
])
def test_bad_stages_are_one_line_parameter_errors(stages, message):
    with pytest.raises(ParameterError, match=message) as e:
        Pipeline(stages)
    assert "\n" not in str(e.value)


def test_generate_names_unknown_strategies_and_takes_strategy_objects():
    with pytest.raises(TTSError, match="did you mean 'self_consistency'"):
        Generate(strategy="self_consistenc")
    g = Generate(SelfConsistency(3))
    assert (g.strategy, g.n, g.params) == ("self_consistency", 3, {})
    assert Verify("llm_judge").verifier == "llm_judge"


async def test_mind_evolution_islands_migrate_and_record_generations():
    # fresh samples answer 4 or 5; crossovers and refinements answer 5: agreement grows toward 5
    gen = ScriptedGenerator(["\\boxed{4}", "\\boxed{5}"])
    gen.route = lambda req: ("Verdict: incorrect" if "Review this solution" in user_text(req)
                             else "\\boxed{5}" if ("Feedback on it" in user_text(req)
                                                   or "Combine the strengths" in user_text(req)) else None)
    me = MindEvolution(n=3, islands=2, conversations=2, turns=2, parents=2, no_parents=0.0,
                       emigrants=1, reset_interval=2, resets=1)
    r = await tts.solve(P, me, generator=gen, sampling=SAMPLING)
    gens = r.telemetry["generations"]
    assert [g["generation"] for g in gens] == [0, 1, 2]
    # per conversation: 1 author call + (turns - 1) x (critic + author) = 3 calls; 4 per generation
    assert gen.calls == r.usage.generator_calls == 3 * 4 * 3
    assert r.telemetry["solutions"] == 2 * 4 * 3 == len(r.traces)
    assert r.telemetry["crossovers"] == 4 * 2  # every conversation after the first generation
    assert all(g["migrated"] == 2 for g in gens)  # one emigrant from each of 2 islands
    assert gens[1]["reset"] and "reset" not in gens[0]
    assert r.answer == "5" and r.telemetry["stopped"] == "generations"


async def test_mind_evolution_stops_when_the_verifier_is_satisfied():
    gen = ScriptedGenerator(["\\boxed{4}", "\\boxed{5}"])
    gen.route = lambda req: "Verdict: incorrect" if "Review this solution" in user_text(req) else None
    v = ByAnswer({"5": 1.0, "4": 0.0})
    me = MindEvolution(n=5, islands=1, conversations=2, turns=1, fitness="verifier")
    r = await tts.solve(P, me, generator=gen, verifier=v, sampling=SAMPLING)
    assert r.telemetry["stopped"] == "fitness" and len(r.telemetry["generations"]) == 1 and r.answer == "5"


async def test_an_unfinished_solution_never_wins_a_ranking_nor_passes_as_correct():
    # GenSelect's judge always names the first shown: without the answered-only rule a
    # truncated sample (no final answer) would win half the time (measured on GSM8K, CPU)
    gen = ScriptedGenerator(["cut off before the end", "\\boxed{5}", "also cut", "\\boxed{5}"])
    gen.route = lambda req: "Judgment: [0]" if "Judgment" in user_text(req) else None
    for seed in range(4):
        r = await tts.solve(P, GenSelect(n=4, group=2), generator=gen, sampling=SAMPLING, seed=seed)
        assert r.answer == "5" and r.telemetry["rank_unanswered_out"] == 2
    order = Pipeline([Generate(SelfConsistency(3)), Rank(method="order", top=3)], answer="first")
    gen3 = ScriptedGenerator(["cut", "\\boxed{1}", "\\boxed{2}"])
    gen3.route = lambda req: "Answer: [2] > [1]" if "Rank all" in user_text(req) else None
    r = await tts.solve(P, order, generator=gen3, sampling=SAMPLING)
    assert r.answer == "2" and r.telemetry["rank_unanswered_out"] == 1  # ranked among the answered
    # a critic that calls an unfinished solution correct does not stop its refinement
    gen2 = ScriptedGenerator(["cut off before the end"])
    gen2.route = lambda req: ("Verdict: correct" if "Review this solution" in user_text(req)
                              else "\\boxed{5}" if "Feedback on it" in user_text(req) else None)
    r = await tts.solve(P, SelfRefine(n=1, rounds=1), generator=gen2, sampling=SAMPLING)
    assert r.answer == "5" and gen2.calls == 3 and r.telemetry["refine_kept_correct"] == 0
