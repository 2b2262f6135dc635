"""The tree-search family (issue 26) on the FAKE scripted tree generator and table PRM
(tests/scripted_tree.py): MCTS, REBASE, φ-Decoding and AB-MCTS (treequest) worked by hand from
their references' rules, EquivPruner's merging of equivalent steps, and steps without
delimiters (`tokens_per_step`) for every step search. The real engine: test_search_engine.py."""

from __future__ import annotations

import math
import random

import pytest
from scripted_tree import DELIM, ChunkGenerator, TablePRM, TreeGenerator
from test_search import BEAM_REWARDS, BEAM_TREE, P, k, run, texts

import tts
from strategies import DVTS, MCTS, REBASE, AStar, BeamSearch, ParticleFilter, PhiDecoding
from strategies.phi_decoding import draw
from strategies.rebase import rebase_widths
from tts.errors import ParameterError, TTSError
from tts.experiment.build import build_strategy
from tts.judges import EquivalenceJudge, NoVerdict
from tts.types import Budget

# -- MCTS --------------------------------------------------------------------------------
MCTS_TREE = {
    k(): ["a", "b"],
    k("a"): ["a1 \\boxed{1}", "a2"],
    k("a", "a2"): ["a2x \\boxed{2}", "a2y \\boxed{3}"],
    k("b"): ["b1 \\boxed{4}", "b2"],
}
MCTS_REWARDS = {
    "a": 0.6, "b": 0.5, "a1 \\boxed{1}": 0.3, "a2": 0.7, "a2x \\boxed{2}": 0.4, "a2y \\boxed{3}": 0.45,
    "b1 \\boxed{4}": 0.9, "b2": 0.2,
}  # fmt: skip


def c_puct(n_parent: int) -> float:
    """OpenR's exploration coefficient: log((N + 19652 + 1) / 19652) + 1.25."""
    return math.log((n_parent + 19653) / 19652) + 1.25


def by_text(r, key):
    g = r.telemetry["tree"]
    return {g.nodes[i]["text"]: v for i, v in g.nodes(data=key) if v is not None}


async def test_mcts_rollout_simulations_match_the_hand_worked_puct():
    """OpenR's vanila_mcts, uniform priors (prior=False: 1/2 each), k 2. By hand:
    sim 1: nothing visited, so each choice is the highest reward: a (.6) -> a2 (.7) -> a2y (.45,
    finished); value .45 backed up along root, a, a2, a2y.
    sim 2 (N_root 1): a = .45 + c(1) .5 sqrt(1) / 2 = .7625; b = .5 + c(1) .5 / 1 = 1.1251 -> b,
    expanded: b1 (.9, finished) over b2 (.2) -> value .9.
    sim 3 (N_root 2): a = .45 + c(2) .5 sqrt2 / 2 = .8920; b = .9 + the same = 1.3420 -> b; in b
    (N 1): b1 = .9 + c(1) .5 / 2 = 1.2125, b2 = .2 + c(1) .5 = .8250 -> b1 again, .9.
    sim 4 (N_root 3): a = .45 + c(3) .5 sqrt3 / 2 = .9914; b = .9 + c(3) .5 sqrt3 / 3 = 1.2609 ->
    b; b1 = .9 + c(2) .5 sqrt2 / 3 = 1.1947, b2 = .2 + c(2) .5 sqrt2 = 1.0840 -> b1.
    Votes by value over the four ends: 3: .45, 4: 3 x .9 = 2.7 -> 4."""
    assert 0.45 + c_puct(1) * 0.5 / 2 == pytest.approx(0.7625, abs=1e-4)
    assert 0.9 + c_puct(3) * 0.5 * math.sqrt(3) / 3 == pytest.approx(1.2609, abs=1e-4)
    r, gen, _ = await run(MCTS(4, k=2, prior=False), MCTS_TREE, MCTS_REWARDS)
    assert texts(r, r.telemetry["ends"]) == ["a2y \\boxed{3}"] + ["b1 \\boxed{4}"] * 3
    assert r.answer == "4" and r.telemetry["votes"] == pytest.approx({"3": 0.45, "4": 2.7})
    visits = by_text(r, "visits")
    assert visits == {"": 4, "a": 1, "a2": 1, "a2y \\boxed{3}": 1, "b": 3, "b1 \\boxed{4}": 3}
    assert by_text(r, "q")["b"] == pytest.approx(0.9) and by_text(r, "q")[""] == pytest.approx(3.15 / 4)
    # four expansions (root, a, a2, b), each one request of k = 2 samples; b1's revisits are free
    assert [(p, n) for p, n, _ in gen.requests] == [("", 2), (k("a"), 2), (k("a", "a2"), 2), (k("b"), 2)]
    assert {t.answer for t in r.traces} == {"3", "4"}  # each finished path reached, once
    for select in ("max", "visits"):
        assert (await run(MCTS(4, k=2, prior=False, select=select), MCTS_TREE, MCTS_REWARDS))[0].answer == "4"


async def test_mcts_prm_evaluation_expands_a_node_when_it_is_reached_again():
    """OpenR's `_simulate` (lazy expansion): a new node is valued by its reward. By hand:
    sim 1: root expanded, a (.6) chosen, never visited: value .6. sim 2: a = .6 + c(1) .5 / 2 =
    .9125, b = .5 + c(1) .5 = 1.1251 -> b, new: .5. sim 3: a = .6 + c(2) .5 sqrt2 / 2 = 1.0420,
    b = .5 + the same = .9420 -> a, visited once: expanded (a1 .3, a2 .7); a1 = .3 + c(1) .5 =
    .9251, a2 = .7 + .6251 = 1.3251 -> a2, new: .7. sim 4: a = .65 + c(3) .5 sqrt3 / 3 = 1.0109,
    b = .5 + c(3) .5 sqrt3 / 2 = 1.0414 -> b, expanded; b1 = .9 + .6251 -> b1, finished: .9.
    Ends a, b, a2, b1: the one finished path reached answers (4)."""
    r, gen, _ = await run(MCTS(4, k=2, prior=False, evaluate="prm"), MCTS_TREE, MCTS_REWARDS)
    assert texts(r, r.telemetry["ends"]) == ["a", "b", "a2", "b1 \\boxed{4}"]
    assert by_text(r, "visits") == {"": 4, "a": 2, "b": 2, "a2": 1, "b1 \\boxed{4}": 1}
    assert by_text(r, "q")["a"] == pytest.approx(0.65)
    assert [p for p, *_ in gen.requests] == ["", k("a"), k("b")] and r.answer == "4"


async def test_mcts_priors_are_normalised_step_probabilities():
    """OpenR's prior: exp(mean token logprob) normalised over the siblings. a's tokens -0.1, b's
    -1.0: e^-.1 / (e^-.1 + e^-1) = .7109. With it, sim 2 goes a's way (a = .45 + c(1) .7109 / 2 =
    .8944 > b = .5 + c(1) .2891 = .8613), and in a (priors 1/2, -0.5 each) a1 = .3 + c(1) .5 =
    .9251 beats a2 = .45 + c(1) .5 / 2 = .7625: ends a2y, a1."""
    gen, prm = TreeGenerator(MCTS_TREE, logprobs={"a": -0.1, "b": -1.0}), TablePRM(MCTS_REWARDS)
    r = await tts.solve(P, MCTS(2, k=2), generator=gen, verifier=prm, sampling=tts.Sampling(max_tokens=20))
    prior = by_text(r, "prior")
    assert prior["a"] == pytest.approx(math.exp(-0.1) / (math.exp(-0.1) + math.exp(-1))) and prior["a2"] == 0.5
    assert texts(r, r.telemetry["ends"]) == ["a2y \\boxed{3}", "a1 \\boxed{1}"] and r.answer == "3"


# AB-MCTS on a tree whose best path is two steps deep: good (.9) -> good1 \boxed{42} (.95).
AB_TREE = {k(): ["good", "bad"], k("good"): ["good1 \\boxed{42}", "good2 \\boxed{41}"], k("bad"): ["bad1 \\boxed{0}"]}
AB_REWARDS = {"good": 0.9, "bad": 0.1, "good1 \\boxed{42}": 0.95, "good2 \\boxed{41}": 0.5, "bad1 \\boxed{0}": 0.2}


async def test_mcts_and_treequest_ab_mcts_agree_on_the_same_tree():
    """Sakana AI's AB-MCTS-A (treequest 0.3.3) through the `ab_mcts` adapter and our MCTS, on the
    same scripted generator and PRM: both answer 42. MCTS by hand: good (.9) then good1 (.95).
    AB-MCTS draws by Thompson sampling whether to widen or deepen (seeded from the run's seed):
    of seeds 0-9 it answers 42 in nine; with seed 2 it keeps widening the root (good, bad, good,
    ... never growing good) and finds no finished path in 12 nodes."""
    pytest.importorskip("treequest", reason="treequest is the optional extra: pip install 'ttscale[treequest]'")
    from strategies import ABMCTS

    ours, _, _ = await run(MCTS(4, k=2), AB_TREE, AB_REWARDS)
    assert ours.answer == "42"
    theirs = [(await run(ABMCTS(12), AB_TREE, AB_REWARDS, seed=seed))[0] for seed in range(10)]
    assert [r.answer for r in theirs] == ["42", "42", None] + ["42"] * 7
    assert all(r.telemetry["expansions"] <= 12 and len(r.telemetry["grown"]) == 12 for r in theirs)
    assert (await run(ABMCTS(12), AB_TREE, AB_REWARDS, seed=0))[0].telemetry["grown"] == theirs[0].telemetry["grown"]


# -- REBASE ------------------------------------------------------------------------------
def test_rebase_widths_follow_the_reference_rounding():
    """`select_softmax`: highest reward first, ceil(W e_i / S) of what is left. T 0.2 over rewards
    (.3, .9, .6, .8), width 4: e = exp((r - .9) / .2) = .0498, 1, .2231, .6065 (S 1.8795); .9 gets
    ceil(4 / 1.8795) = 3, .8 ceil(1 x .6065 / .8795) = 1, the rest 0. T 1: 1, .9048, .7408, .4966
    (S 3.1422): 2, then ceil(2 x .9048 / 2.1422) = 1, ceil(1 x .7408 / 1.2374) = 1, then 0.
    Equal rewards: the later first (the reference reverses an ascending sort)."""
    assert rebase_widths([0.3, 0.9, 0.6, 0.8], 4, 0.2) == [(1, 3), (3, 1), (2, 0), (0, 0)]
    assert rebase_widths([0.3, 0.9, 0.6, 0.8], 4, 1.0) == [(1, 2), (3, 1), (2, 1), (0, 0)]
    assert rebase_widths([0.5, 0.5], 3, 0.2) == [(1, 2), (0, 1)]


async def test_rebase_shares_the_width_by_softmax_of_the_rewards():
    """By hand on the beam-search tree, n 4, T .2: depth 1 s2 3, s4 1 (above); depth 2: s2a .2,
    s2b .5, s2a .2, s4a .7 -> e = 1, .3679, .0821, .0821 (S 1.5321): s4a ceil(4 / 1.5321) = 3,
    s2b ceil(.3679 / .5321) = 1; depth 3: s4a1 \\boxed{5} twice and s2b1 \\boxed{6} finish,
    3 leaves: width 1, all to s4a2; depth 4: s4a2x \\boxed{8} finishes, width 0. Weighted vote by
    the last reward: 5: .9 + .9, 6: .3, 8: .95 -> 5 (select=max: 8)."""
    r, _, _ = await run(REBASE(4))
    assert [[(texts(r, [i])[0], w) for i, w in depth] for depth in r.telemetry["widths"]] == [
        [("", 4)], [("s2", 3), ("s4", 1)], [("s4a", 3), ("s2b", 1)], [("s4a2", 1)],
    ]  # fmt: skip
    assert r.answer == "5" and r.telemetry["votes"] == pytest.approx({"5": 1.8, "6": 0.3, "8": 0.95})
    assert sorted(t.answer for t in r.traces) == ["5", "5", "6", "8"]
    assert (await run(REBASE(4, select="max")))[0].answer == "8"


# -- φ-Decoding --------------------------------------------------------------------------
PHI_TREE = {
    k(): ["p", "q", "r", "s"],
    k("p"): ["p1 answer is \\boxed{77}"], k("q"): ["q1 answer is \\boxed{77}"], k("r"): ["r1 other path \\boxed{99}"],
    k("s"): ["s1 \\boxed{5}"],
}  # fmt: skip
PHI_LOGPROBS = {"p": -0.2, "q": -0.3, "r": -1.0, "s": -2.0, "p1 answer is \\boxed{77}": -0.1,
                "q1 answer is \\boxed{77}": -0.4, "r1 other path \\boxed{99}": -0.2}


def softmax(xs):
    e = [math.exp(x) for x in xs]
    return [x / sum(e) for x in e]


@pytest.mark.parametrize("seed,beams,answer", [(0, ["r", "q"], "77"), (1, ["p", "r"], "99")])
async def test_phi_decoding_matches_the_hand_worked_foresight_step(seed, beams, answer):
    """2 beams x 2 candidates, 2 clusters, depth pruning from step 0. By hand, step 1: the four
    root steps p q r s, mean logprobs -.2 -.3 -1 -2: mean -.875, std .7189, so s (below -1.594)
    is pruned in width; rollouts p1.. (-.1), q1.. (-.4), r1.. (-.2): advantages -.1 -.4 -.2;
    TF-IDF k-means: {p1, q1} (same words but one) and {r1}: shares 2/3, 2/3, 1/3 -> cluster
    weights softmax = .3681 .3681 .2638; advantage weights softmax(adv / .1) = .7054 .0351 .2595;
    joint .5368 .2016 .2616; two beams drawn without replacement (replayed below). Step 2: every
    candidate finishes (an answer), so every foresight is empty: the same text, the search stops
    and (as the code) that step's draw is not taken. Final: each beam to the end; advantages 0;
    the two responses fall in two clusters of one, and the code then takes the second cluster:
    the second beam's answer."""
    gen = TreeGenerator(PHI_TREE, logprobs=PHI_LOGPROBS)
    strategy = PhiDecoding(2, num_rollout=2, cluster_num=2, least_foresight_num=0, delimiter=DELIM)
    r = await tts.solve(P, strategy, generator=gen, sampling=tts.Sampling(max_tokens=20), seed=seed)
    first = r.telemetry["steps"][0]
    assert texts(r, first["kept"]) == ["p", "q", "r"] and first["clusters"] == [0, 0, 1]
    assert first["advantages"] == pytest.approx([-0.1, -0.4, -0.2])
    cw, aw = softmax([2 / 3, 2 / 3, 1 / 3]), softmax([-1.0, -4.0, -2.0])
    weights = [(a + b) / 2 for a, b in zip(cw, aw)]
    assert first["weights"] == pytest.approx(weights) and weights == pytest.approx([0.5368, 0.2016, 0.2616], abs=1e-4)
    assert [["p", "q", "r"][i] for i in draw(random.Random(seed), weights, 2)] == texts(r, first["drawn"]) == beams
    assert r.telemetry["stopped_at"] == 1 and r.telemetry["final"]["advantages"] == pytest.approx([0.0, 0.0])
    assert r.answer == answer and r.usage.verifier_tokens == 0
    # every generation charged: 4 candidates, 3 rollouts, 4 step-2 candidates, 2 final responses
    tokens = 1 * 4 + (4 + 4 + 4) + 4 * 4 + (4 + 4)
    assert r.usage.completion_tokens == tokens and r.telemetry["rollout_samples"] == 3


# -- EquivPruner -------------------------------------------------------------------------
PRUNE_TREE = {
    k(): ["Half of 48 is 24.", "48 / 2 = 24", "She sells 24 in May.", "So May is 30."],
    k("Half of 48 is 24."): ["Total \\boxed{72}"],
    k("48 / 2 = 24"): ["Total \\boxed{72}"],
    k("She sells 24 in May."): ["Total \\boxed{72}"],
    k("So May is 30."): ["Total \\boxed{78}"],
}
PRUNE_REWARDS = {"Half of 48 is 24.": 0.7, "48 / 2 = 24": 0.8, "She sells 24 in May.": 0.6, "So May is 30.": 0.5,
                 "Total \\boxed{72}": 0.9, "Total \\boxed{78}": 0.4}


async def test_equivalent_steps_are_merged_before_scoring_with_the_math_judge():
    """The four first steps' final expressions: 24, 24, 24, 30 (math-verify): the three 24-steps
    merge into the first, before scoring, so the PRM scores two first steps, not four; the
    merged ones stay in the tree (`equivalent_to`) and leave the search, and the beam (2 kept)
    holds 24 and 30 instead of three ways of saying 24. Failed before EquivPruner: no pruning."""
    r, _, prm = await run(BeamSearch(4, beam_width=2, prune_equivalent="math"), PRUNE_TREE, PRUNE_REWARDS)
    eq = r.telemetry["equivalent"]
    assert eq["judge"] == "math" and eq["merged"] >= 2 and eq["judge_calls"] >= 3
    g = r.telemetry["tree"]
    merged = {g.nodes[i]["text"]: g.nodes[j]["text"] for i, j in g.nodes(data="equivalent_to") if j is not None}
    assert merged["48 / 2 = 24"] == merged["She sells 24 in May."] == "Half of 48 is 24."
    assert texts(r, r.telemetry["kept"][0]) == ["Half of 48 is 24.", "So May is 30."]
    assert "48 / 2 = 24" not in prm.scored and "She sells 24 in May." not in prm.scored
    plain, _, _ = await run(BeamSearch(4, beam_width=2), PRUNE_TREE, PRUNE_REWARDS)
    assert r.usage.verifier_tokens < plain.usage.verifier_tokens
    assert r.answer == plain.answer == "72"


class TableJudge(EquivalenceJudge):
    """FAKE equivalence judge: P from a table of step pairs (either order); "?" is no verdict;
    one judge call charged per pair (one verifier token)."""

    name = "table"
    pairs = {("Half of 48 is 24.", "48 / 2 = 24"): 0.9, ("Half of 48 is 24.", "She sells 24 in May."): 0.4,
             ("48 / 2 = 24", "She sells 24 in May."): "?"}

    async def probability(self, ctx, a, b):
        from tts.types import Usage

        async def work():
            return self.pairs.get((b.text, a.text), self.pairs.get((a.text, b.text), 0.0)), Usage(prompt_tokens=1)

        p = await ctx.verify(work, 1)
        if p == "?":
            raise NoVerdict("?")
        return p


async def test_the_pruner_joins_the_first_kept_sibling_above_tau_and_counts_what_it_did(monkeypatch):
    """EquivPruner's order: each child is compared with the kept siblings before it. By hand:
    "48 / 2 = 24" vs "Half..": .9 >= .5, merged; "She sells.." vs "Half..": .4 < .5, kept (its
    pair with the merged one is never asked); "So May.." vs the two kept: 0, kept. Judge calls
    1 + 1 + 2 = 4; with tau .3, "She sells.." merges too. A judge's prior is summed into its
    representative for MCTS (EquivPruner's merge_node)."""
    import tts.search.tree

    real = tts.search.tree.lookup  # the fake judge by name, for this test only (not in the registry)
    monkeypatch.setattr(tts.search.tree, "lookup", lambda kind, name: TableJudge if name == "table" else real(kind, name))
    r, _, _ = await run(DVTS(4, beam_width=4, prune_equivalent="table"), PRUNE_TREE, PRUNE_REWARDS)
    assert r.telemetry["equivalent"] == {"judge": "table", "tau": 0.5, "groups": 2, "merged": 1, "same_text": 0,
                                         "judge_calls": 4, "judge_failures": 0, "judge_refused": 0}
    assert r.usage.verifier_calls == 4 + r.telemetry["prm_calls"]  # every judgement charged
    r, _, _ = await run(DVTS(4, beam_width=4, prune_equivalent="table", prune_tau=0.3), PRUNE_TREE, PRUNE_REWARDS)
    assert r.telemetry["equivalent"]["merged"] == 2
    m, _, _ = await run(MCTS(1, k=4, prune_equivalent="table"), PRUNE_TREE, PRUNE_REWARDS)
    priors = by_text(m, "prior")
    assert priors["Half of 48 is 24."] == pytest.approx(0.5) and priors["She sells 24 in May."] == pytest.approx(0.25)
    with pytest.raises(TTSError, match="unknown judge 'nope'"):
        BeamSearch(4, 2, prune_equivalent="nope")
    with pytest.raises(ValueError, match="prune_tau"):
        REBASE(4, prune_tau=0.5)


async def test_particles_of_merged_steps_follow_their_representative():
    """Particle filtering keeps n particles: a particle whose step was merged continues as its
    representative (same partial solution), so only representatives are scored."""
    r, _, prm = await run(ParticleFilter(4, prune_equivalent="math", single_step=False), PRUNE_TREE, PRUNE_REWARDS)
    assert len(r.traces) == 4 and r.telemetry["equivalent"]["merged"] == 2
    assert "48 / 2 = 24" not in prm.scored and r.answer == "72"


# -- steps without delimiters ------------------------------------------------------------
SOLUTIONS = [
    "Half of 48 is 24 clips.\n\nSo 48 + 24 = 72 in all: \\boxed{72}",
    "She sold 48 and then 24 more.\n\nThe total is \\boxed{72}",
    "Maybe 48 + 48 = 96\n\nso \\boxed{96}",
]
CHUNK_REWARDS = {"Half of 48 is 24 clips.": 0.8, "She sold 48 and then 24 more.": 0.7, "Maybe 48 + 48 = 96": 0.2}

STEP_SEARCHES = {
    "beam": lambda **kw: BeamSearch(4, beam_width=2, **kw),
    "dvts": lambda **kw: DVTS(4, beam_width=2, **kw),
    "astar": lambda **kw: AStar(2, **kw),
    "pf": lambda **kw: ParticleFilter(3, **kw),
    "mcts": lambda **kw: MCTS(4, k=2, **kw),
    "rebase": lambda **kw: REBASE(4, **kw),
    "phi": lambda **kw: PhiDecoding(2, num_rollout=2, **kw),
}


@pytest.mark.parametrize("name", sorted(STEP_SEARCHES))
@pytest.mark.parametrize("delimiter", [None, DELIM])
async def test_every_step_search_runs_on_steps_of_tokens_per_step(name, delimiter):
    """its_hub #97's `tokens_per_step`: with no delimiter a step is 3 tokens (words with their
    spaces here) and the path goes on from its text as it is, so every path's text is exactly a
    solution the model wrote (no delimiter added), and the end of sequence ends a path; with the
    delimiter as well, a step ends at whichever comes first. Failed before: a step cut at its
    token limit ("length") ended its path, and without a delimiter nothing could run."""
    gen, prm = ChunkGenerator(SOLUTIONS), TablePRM(CHUNK_REWARDS)
    strategy = STEP_SEARCHES[name](delimiter=delimiter, tokens_per_step=3)
    r = await tts.solve(P, strategy, generator=gen, verifier=prm, sampling=tts.Sampling(max_tokens=40), seed=0)
    assert r.stopped_by == "done" and r.traces
    finished = [t for t in r.traces if t.finish_reason == "stop"]
    assert finished and all(t.text in SOLUTIONS for t in finished), [t.text for t in r.traces]
    assert r.answer in ("72", "96")
    steps = [(p, stop) for (p, *_), stop in zip(gen.requests, gen.stops)]
    assert all(stop == (() if delimiter is None else (DELIM,)) for p, stop in steps[:1])
    tree = r.telemetry["tree"]
    assert max(d for _, d in tree.nodes(data="depth")) > 2  # several 3-token steps deep
    assert all(tokens <= 3 for n, tokens in tree.nodes(data="tokens") if tree.nodes[n]["finish_reason"] is None)


def test_steps_need_an_end_and_step_tokens_is_still_accepted():
    with pytest.raises(ValueError, match="tokens_per_step"):
        BeamSearch(4, 2, delimiter=None)
    with pytest.raises(ParameterError, match="delimiter"):
        build_strategy("mcts", 4, {"delimiter": ""})
    assert build_strategy("beam_search", 4, {"beam_width": 2, "step_tokens": 8}).tokens_per_step == 8
    assert build_strategy("rebase", 4, {"step_tokens": 8}).tokens_per_step == 8
    # an unset tokens_per_step keeps the key results were stored under; a set one is keyed anew
    assert build_strategy("beam_search", 4, {"beam_width": 2}).config()["step_tokens"] is None
    assert "step_tokens" not in build_strategy("beam_search", 4, {"beam_width": 2, "step_tokens": 8}).config()


async def test_new_searches_stop_at_the_budget_with_their_best_so_far():
    for strategy in (MCTS(8, k=2), REBASE(4), PhiDecoding(2, num_rollout=2)):
        r, _, _ = await run(strategy, budget=Budget(completion_tokens=12), max_tokens=5)
        assert r.stopped_by == "budget" and r.usage.completion_tokens <= 12, strategy.name
