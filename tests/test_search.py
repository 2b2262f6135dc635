"""Step-level search strategies (beam search, DVTS, A*, particle filtering; the budget property and
max_steps for MCTS, REBASE, φ-Decoding, AB-MCTS too) on a FAKE scripted
tree generator and a FAKE table PRM (tests/scripted_tree.py), so every search tree is known
and the expected choices can be worked out by hand."""

from __future__ import annotations

import asyncio
import json
import math
import random

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scripted_tree import DELIM, TablePRM, TreeGenerator

import tts
from strategies import DVTS, MCTS, REBASE, AStar, BeamSearch, BestOfN, ParticleFilter, PhiDecoding
from strategies.particle_filter import particle_weights
from tts.errors import TTSError
from tts.types import Budget, Problem

P = Problem("q", "What is the answer?")


def k(*steps: str) -> str:
    """The tree key (continuation prefix) of the path made of `steps`."""
    return "".join(s + DELIM for s in steps)


# Beam search / DVTS tree. Rewards are per step; a \boxed step ends its path.
BEAM_TREE = {
    k(): ["s1", "s2", "s3", "s4"],
    k("s2"): ["s2a", "s2b"],
    k("s4"): ["s4a", "s4b"],
    k("s2", "s2a"): ["s2a1 \\boxed{1}"],
    k("s4", "s4b"): ["s4b1 \\boxed{2}"],
    k("s4", "s4a"): ["s4a1 \\boxed{5}", "s4a2"],
    k("s2", "s2b"): ["s2b1 \\boxed{6}", "s2b2"],
    k("s4", "s4a", "s4a2"): ["s4a2x \\boxed{8}"],
    k("s2", "s2b", "s2b2"): ["s2b2x \\boxed{9}"],
}
BEAM_REWARDS = {
    "s1": 0.3, "s2": 0.9, "s3": 0.6, "s4": 0.8,
    "s2a": 0.2, "s2b": 0.5, "s4a": 0.7, "s4b": 0.4,
    "s2a1 \\boxed{1}": 0.5, "s4b1 \\boxed{2}": 0.5,
    "s4a1 \\boxed{5}": 0.9, "s4a2": 0.6, "s2b1 \\boxed{6}": 0.3, "s2b2": 0.1,
    "s4a2x \\boxed{8}": 0.95, "s2b2x \\boxed{9}": 0.2,
}  # fmt: skip


async def run(strategy, tree=BEAM_TREE, rewards=BEAM_REWARDS, *, budget=None, max_tokens=20, seed=0):
    gen, prm = TreeGenerator(tree), TablePRM(rewards)
    r = await tts.solve(
        P, strategy, generator=gen, verifier=prm, budget=budget,
        sampling=tts.Sampling(max_tokens=max_tokens), seed=seed,
    )
    return r, gen, prm


def texts(r, ids):
    tree = r.telemetry["tree"]
    return [tree.nodes[i]["text"] for i in ids]


# -- beam search -------------------------------------------------------------------------
async def test_beam_search_keeps_the_top_n_over_beam_width_paths():
    r, gen, _ = await run(BeamSearch(4, beam_width=2))
    # By hand: step 1 samples s1..s4 (0.3 0.9 0.6 0.8) -> keep s2, s4; each expanded twice:
    # s2a 0.2, s2b 0.5, s4a 0.7, s4b 0.4 -> keep s4a, s2b; their children: s4a1 (boxed, done),
    # s4a2 0.6, s2b1 (boxed, done), s2b2 0.1 -> both open ones kept; then all end in \boxed.
    expected = [["s2", "s4"], ["s4a", "s2b"], ["s4a2", "s2b2"]]
    assert [texts(r, ids) for ids in r.telemetry["kept"]] == expected
    # ... which is the ranking by the table, top n // beam_width = 2 of the open children.
    tree = r.telemetry["tree"]
    for depth, kept in enumerate(r.telemetry["kept"], 1):
        open_ = [n for n, d in tree.nodes(data=True) if d["depth"] == depth and d["finish_reason"] is None]
        ranked = sorted(open_, key=lambda n: -BEAM_REWARDS[tree.nodes[n]["text"]])
        assert kept == ranked[:2]
    assert r.answer == "8"  # the best finished path (0.95)
    assert r.stopped_by == "done"
    # Six paths finished (5 and 6 in iteration 3, then 8, 8, 9, 9); the result keeps the first
    # n = 4 in the order they finished (search-and-learn's sort_completed=False).
    assert r.telemetry["finished"] == 6
    assert [t.answer for t in r.traces] == ["5", "6", "8", "8"]
    assert all(t.finish_reason == "stop" for t in r.traces)
    # Batching: one request per distinct prefix per iteration, n = its samples.
    assert [(p, n) for p, n, _ in gen.requests] == [
        ("", 4), (k("s2"), 2), (k("s4"), 2), (k("s4", "s4a"), 2), (k("s2", "s2b"), 2),
        (k("s4", "s4a", "s4a2"), 2), (k("s2", "s2b", "s2b2"), 2),
    ]  # fmt: skip


async def test_beam_search_tree_is_a_digraph_with_the_expected_shape():
    r, _, prm = await run(BeamSearch(4, beam_width=2))
    tree = r.telemetry["tree"]
    assert isinstance(tree, nx.DiGraph) and nx.is_arborescence(tree)
    assert tree.number_of_nodes() == 1 + 4 * 4 and tree.number_of_edges() == 16
    root = next(n for n, d in tree.in_degree() if d == 0)
    assert tree.nodes[root]["depth"] == 0 and tree.out_degree(root) == 4
    for n, d in tree.nodes(data=True):
        assert {"text", "score", "tokens", "depth"} <= d.keys()
        if n != root:
            assert d["score"] == BEAM_REWARDS[d["text"]] and d["tokens"] == len(d["text"].split())
    # One verifier call per expansion (pipelined), or one per iteration without the pipeline.
    assert r.telemetry["expansions"] == 7 and r.telemetry["prm_calls"] == prm.calls == 7
    r2, _, prm2 = await run(BeamSearch(4, beam_width=2, pipeline=False))
    assert r2.telemetry["prm_calls"] == prm2.calls == 4 and r2.telemetry["prm_passes"] == 16
    assert r.telemetry["prm_passes"] == 16 and r.telemetry["steps"] == 4
    rec = json.loads(json.dumps(r.record()))  # the graph is dropped, counters kept
    assert "tree" not in rec["telemetry"] and rec["telemetry"]["expansions"] == 7


async def test_beam_search_weighted_selection_and_lookahead():
    r, _, _ = await run(BeamSearch(4, beam_width=2, select="weighted"))
    assert r.answer == "8" and r.telemetry["votes"]["8"] == pytest.approx(1.9)
    r, gen, prm = await run(BeamSearch(4, beam_width=2, lookahead=1))
    assert r.telemetry["lookahead_samples"] > 0
    assert any(t == 0.0 for *_, t in gen.requests)  # rollouts are greedy
    assert k("s2") + "s2a" in prm.scored  # s2 was scored by its one-step rollout
    assert r.answer is not None and r.stopped_by == "done"


@pytest.mark.parametrize("agg,answer", [("last", "8"), ("min", "5"), ("prod", "5")])
async def test_beam_search_ranks_and_selects_by_the_step_aggregate(agg, answer):
    """search-and-learn's agg_strategy over the step rewards, for pruning and the final pick.
    By hand, min: iteration 2 s2a .2, s2b .5, s4a .7, s4b .4 -> s4a, s2b (as with last);
    the first 4 finished: 5 = min(.8, .7, .9) = .7, 6 = .3, 8 = min(.8, .7, .6, .95) = .6
    (twice) -> 5. prod: 5 = .504, 6 = .135, 8 = .3192 -> 5. last: 8 (.95). Failed before the
    fix: there was no agg (the answer was 8 whatever the aggregate)."""
    r, _, _ = await run(BeamSearch(4, beam_width=2, agg=agg))
    assert [texts(r, ids) for ids in r.telemetry["kept"]] == [["s2", "s4"], ["s4a", "s2b"], ["s4a2", "s2b2"]]
    assert r.answer == answer


async def test_beam_search_keeps_the_first_n_completed_or_the_best_n():
    """sort_completed=False (search-and-learn's default) keeps the first n finished paths in
    the order they finished: 5, 6, 8, 8 (9, 9 finished last). sort_completed=True keeps the n
    with the highest aggregate: 8 (.95), 8, 5 (.9), 6 (.3), dropping 9 (.2). Failed before the
    fix: all six were kept."""
    r, _, _ = await run(BeamSearch(4, beam_width=2))
    assert [t.answer for t in r.traces] == ["5", "6", "8", "8"]
    r, _, _ = await run(BeamSearch(4, beam_width=2, sort_completed=True))
    assert [t.answer for t in r.traces] == ["8", "8", "5", "6"] and r.answer == "8"
    with pytest.raises(ValueError, match="agg"):
        DVTS(4, beam_width=2, agg="mean")


class SlowTreeGenerator(TreeGenerator):
    """FAKE: a TreeGenerator whose requests at `slow` prefixes take 50 ms (the others return at
    once), logging ("generated", prefix) when each request returns."""

    def __init__(self, tree, slow, log):
        super().__init__(tree)
        self.slow, self.log = slow, log

    async def generate(self, req):
        if req.prefix in self.slow:
            await asyncio.sleep(0.05)
        out = await super().generate(req)
        self.log.append(("generated", req.prefix))
        return out


class LoggingPRM(TablePRM):
    def __init__(self, rewards, log):
        super().__init__(rewards)
        self.log = log

    async def score(self, problem, traces):
        self.log.append(("scored", tuple(t.prefix for t in traces)))
        return await super().score(problem, traces)


@pytest.mark.parametrize("make", [lambda p: BeamSearch(4, beam_width=2, pipeline=p), lambda p: DVTS(4, 2, pipeline=p)])
async def test_pipelining_scores_each_expansion_at_once_and_keeps_the_same_beams(make):
    """Issue 13 item 2. The s2 beam's expansions are slow (50 ms). Pipelined, the s4 beam's
    children are scored while s2's expansion is still out (s4's score is logged before s2's
    samples return); without the pipeline every score waits for s2. The kept beams, the tree,
    the traces and the answer are the same either way (hand ranking as in
    test_beam_search_keeps_the_top_n_over_beam_width_paths / test_dvts_...)."""
    runs = {}
    for pipeline in (True, False):
        log: list = []
        gen, prm = SlowTreeGenerator(BEAM_TREE, {k("s2"), k("s2", "s2b")}, log), LoggingPRM(BEAM_REWARDS, log)
        r = await tts.solve(P, make(pipeline), generator=gen, verifier=prm, sampling=tts.Sampling(max_tokens=20), seed=0)
        first_s4_score = next(i for i, (what, x) in enumerate(log) if what == "scored" and k("s4") in x)
        s2_back = log.index(("generated", k("s2")))
        runs[pipeline] = (r, first_s4_score < s2_back)
    (on, early), (off, late) = runs[True], runs[False]
    assert early and not late
    # Node ids follow arrival order, so compare by text.
    for key in ("kept", "chosen"):
        if key in on.telemetry:
            assert [texts(on, ids) for ids in on.telemetry[key]] == [texts(off, ids) for ids in off.telemetry[key]]
    assert [(t.text, t.score) for t in on.traces] == [(t.text, t.score) for t in off.traces]
    assert on.answer == off.answer and on.answer in ("8", "5")

    def shape(r):
        g = r.telemetry["tree"]
        return sorted((g.nodes[a]["text"], g.nodes[b]["text"], g.nodes[b]["score"]) for a, b in g.edges)

    assert shape(on) == shape(off)


# Four paths finish by iteration 3 while two stay open for three more (a2y..., b2y...).
DECIDED_TREE = {
    k(): ["a", "b", "c", "d"],
    k("a"): ["a1 \\boxed{1}", "a2"], k("b"): ["b1 \\boxed{2}", "b2"],
    k("a", "a2"): ["a2x \\boxed{3}", "a2y"], k("b", "b2"): ["b2x \\boxed{4}", "b2y"],
    k("a", "a2", "a2y"): ["a3"], k("b", "b2", "b2y"): ["b3"],
    k("a", "a2", "a2y", "a3"): ["a4 \\boxed{5}"], k("b", "b2", "b2y", "b3"): ["b4 \\boxed{6}"],
}
DECIDED_REWARDS = {"a": 0.9, "b": 0.8, "c": 0.1, "d": 0.2, "a1 \\boxed{1}": 0.4, "b1 \\boxed{2}": 0.7,
                   "a2x \\boxed{3}": 0.6, "b2x \\boxed{4}": 0.5, "a4 \\boxed{5}": 0.99, "b4 \\boxed{6}": 0.99}


async def test_beam_search_stops_once_its_answer_is_decided():
    """With sort_completed=False the answer comes from the first n finished paths: here 1, 2
    (iteration 2), 3, 4 (iteration 3). search-and-learn goes on expanding a2y and b2y for two
    more iterations (8 more samples, 4 more requests) whose paths (5, scored .99) can never be
    picked; stop_when_decided (the default) stops after iteration 3 with the same answer,
    the same returned paths and their scores. Failed before: the search ran to the end."""
    early, gen_e, prm_e = await run(BeamSearch(4, beam_width=2), DECIDED_TREE, DECIDED_REWARDS)
    full, gen_f, prm_f = await run(BeamSearch(4, beam_width=2, stop_when_decided=False), DECIDED_TREE,
                                   DECIDED_REWARDS)
    assert early.answer == full.answer == "2"
    assert [(t.text, t.score) for t in early.traces] == [(t.text, t.score) for t in full.traces]
    assert [t.answer for t in full.traces] == ["1", "2", "3", "4"] and full.telemetry["finished"] == 8
    assert (gen_e.samples, gen_f.samples) == (12, 20) and (len(gen_e.requests), len(gen_f.requests)) == (5, 9)
    assert len(prm_e.scored) == 12 and len(prm_f.scored) == 20
    # sort_completed=True reads every finished path: nothing is decided early.
    best, gen_s, _ = await run(BeamSearch(4, beam_width=2, sort_completed=True), DECIDED_TREE, DECIDED_REWARDS)
    assert gen_s.samples == 20 and best.answer == "5"


async def test_beam_search_first_samples_beam_width_is_its_hubs_first_iteration():
    """first_samples="beam_width": the problem is one beam, expanded beam_width (2) times as
    its_hub's beam search does (budget // beam_width first candidates), not n (4) times."""
    r, gen, _ = await run(BeamSearch(4, beam_width=2, first_samples="beam_width"))
    assert gen.requests[0][:2] == ("", 2)
    assert texts(r, r.telemetry["kept"][0]) == ["s2", "s1"]  # both first steps kept (keep = 2), best first
    default, gen_d, _ = await run(BeamSearch(4, beam_width=2))
    assert gen_d.requests[0][:2] == ("", 4)


def test_beam_search_parameters_added_later_keep_the_old_configuration_key():
    """first_samples and stop_when_decided at their defaults are not in the configuration (so
    a run keyed before they existed keeps its key); set otherwise, they are."""
    base = BeamSearch(4, beam_width=2).config()
    assert "first_samples" not in base and "stop_when_decided" not in base
    assert BeamSearch(4, beam_width=2, first_samples="beam_width").config()["first_samples"] == "beam_width"
    assert BeamSearch(4, beam_width=2, stop_when_decided=False).config() == {**base, "stop_when_decided": False}
    with pytest.raises(tts.errors.ParameterError, match="first_samples"):
        BeamSearch(4, beam_width=2, first_samples="all")


async def test_search_without_a_verifier_is_a_user_error():
    with pytest.raises(TTSError, match="verifier"):
        await tts.solve(P, BeamSearch(4, 2), generator=TreeGenerator(BEAM_TREE))


def test_beam_width_must_divide_n():
    with pytest.raises(ValueError, match=r"beam_width \(3\).*n \(4\)"):
        BeamSearch(4, beam_width=3)
    with pytest.raises(ValueError, match=r"beam_width \(3\).*n \(8\)"):
        DVTS(8, beam_width=3)


# -- DVTS --------------------------------------------------------------------------------
async def test_dvts_expands_independent_subtrees_greedily():
    r, gen, _ = await run(DVTS(4, beam_width=2))
    # 2 subtrees: the first samples s1, s2 (-> s2), the second s3, s4 (-> s4); then s2b, s4a;
    # then both pick their \boxed child: s2b1 (0.3) and s4a1 (0.9).
    assert [texts(r, ids) for ids in r.telemetry["chosen"]] == [
        ["s2", "s4"], ["s2b", "s4a"], ["s2b1 \\boxed{6}", "s4a1 \\boxed{5}"],
    ]  # fmt: skip
    assert r.answer == "5"
    assert sorted(t.answer for t in r.traces) == ["5", "6"]
    assert r.telemetry["tree"].number_of_nodes() == 1 + 3 * 4
    assert [(p, n) for p, n, _ in gen.requests][:2] == [("", 2), ("", 2)]


# -- A* ----------------------------------------------------------------------------------
ASTAR_TREE = {
    k(): ["a1", "b1", "c1"],
    k("a1"): ["a2 \\boxed{1}"],
    k("b1"): ["b2x", "b2"],
    k("b1", "b2x"): ["b3x \\boxed{2}"],
    k("b1", "b2"): ["b3 \\boxed{7}"],
    k("c1"): ["c2 \\boxed{3}"],
}
ASTAR_REWARDS = {
    "a1": 0.6, "b1": 0.8, "c1": 0.3, "a2 \\boxed{1}": 0.5, "b2x": 0.4, "b2": 0.9,
    "b3x \\boxed{2}": 0.2, "b3 \\boxed{7}": 0.95, "c2 \\boxed{3}": 0.4,
}  # fmt: skip


async def test_astar_finds_the_best_path_with_fewer_samples_than_best_of_n():
    r, gen, _ = await run(AStar(2), ASTAR_TREE, ASTAR_REWARDS)
    assert r.answer == "7" and r.stopped_by == "done"
    # f = g + h, h = 1 - r, g adds only increases of h: a1 f=.8, b1 f=.4 -> pop b1;
    # b2x f=.2+.4+.6=1.2, b2 f=.2+0+.1=.3 -> pop b2; b3 f=.2+0+.05=.25 (finished) -> answer.
    assert texts(r, r.telemetry["popped"])[1:] == ["b1", "b2", "b3 \\boxed{7}"]
    assert r.telemetry["f"] == pytest.approx(0.25)
    assert r.telemetry["expansions"] == 3 and r.telemetry["prm_passes"] == 6
    assert r.traces[0].steps[-1].score == 0.95 and r.traces[0].finish_reason == "stop"
    # Best-of-N on the same tree needs 5 whole samples before it holds (and picks) the best path.
    for n in range(1, 10):
        bon, bon_gen, _ = await run(BestOfN(n), ASTAR_TREE, ASTAR_REWARDS)
        if bon.answer == "7":
            break
    assert n == 5
    assert r.telemetry["expansions"] < n and gen.calls < n
    assert r.usage.completion_tokens < bon.usage.completion_tokens  # 8 < 17


async def test_astar_f_falls_where_the_reward_rises_as_its_docstring_says():
    """By hand, the path b1 -> b2 -> b3 (rewards 0.8, 0.9, 0.95): h = 0.2, 0.1, 0.05; g adds only
    increases of h, so g = 0.2 throughout and f = 0.4, 0.3, 0.25: f decreases along the path. The
    docstring said "f never decreases along a path" (false for this code); it now states this
    rule with this example. (A docstring fix: the code is unchanged, so only the docstring
    assertion failed before.)"""
    import strategies.astar

    fs, g, h = [], 0.0, 0.0
    for reward in (0.8, 0.9, 0.95):
        g, h = g + max(0.0, (1 - reward) - h), 1 - reward
        fs.append(g + h)
    assert fs == pytest.approx([0.4, 0.3, 0.25])
    r, _, _ = await run(AStar(2), ASTAR_TREE, ASTAR_REWARDS)
    assert r.telemetry["f"] == pytest.approx(fs[-1])
    doc = " ".join(strategies.astar.__doc__.split())
    assert "f never decreases" not in doc and "f = 0.4, 0.3, 0.25" in doc


async def test_astar_max_expansions_returns_the_best_so_far():
    r, _, _ = await run(AStar(2, max_expansions=2), ASTAR_TREE, ASTAR_REWARDS)
    # After 2 expansions nothing finished is in the queue: the best open state (b2) answers.
    assert r.telemetry["expansions"] == 2 and r.answer is None
    assert r.traces[0].text == k("b1") + "b2" and r.stopped_by == "done"


# -- particle filtering ------------------------------------------------------------------
PF_TREE = {
    k(): ["p1", "p2", "p3", "p4"],
    k("p1"): ["p1a \\boxed{1}"],
    k("p2"): ["p2a"],
    k("p3"): ["p3a \\boxed{3}"],
    k("p4"): ["p4a"],
    k("p2", "p2a"): ["p2b \\boxed{2}"],
    k("p4", "p4a"): ["p4b \\boxed{4}"],
}
PF_REWARDS = {
    "p1": 0.3, "p2": 0.9, "p3": 0.6, "p4": 0.8, "p1a \\boxed{1}": 0.5, "p2a": 0.7,
    "p3a \\boxed{3}": 0.4, "p4a": 0.2, "p2b \\boxed{2}": 0.9, "p4b \\boxed{4}": 0.6,
}  # fmt: skip
CHILD = {  # the only next step of each PF_TREE state
    "p1": "p1a \\boxed{1}", "p2": "p2a", "p3": "p3a \\boxed{3}", "p4": "p4a",
    "p2a": "p2b \\boxed{2}", "p4a": "p4b \\boxed{4}",
}  # fmt: skip


def hand_weights(rewards, temp=1.0):
    logits = [math.log(r / (1 - r)) / temp for r in rewards]
    z = sum(math.exp(x) for x in logits)
    return [math.exp(x) / z for x in logits]


@pytest.mark.parametrize("seed", [0, 1, 7])
async def test_particle_weights_and_resampling_match_hand_computation(seed):
    """resample_inactive=False, latest-step rewards: only the unfinished particles are resampled."""
    r, _, _ = await run(ParticleFilter(4, resample_inactive=False, single_step=False), PF_TREE, PF_REWARDS, seed=seed)
    rng = random.Random(seed)
    # Step 1: four particles p1..p4; all unfinished, so all four are resampled.
    particles = ["p1", "p2", "p3", "p4"]
    w1 = hand_weights([PF_REWARDS[p] for p in particles])
    d1 = rng.choices(range(4), weights=w1, k=4)
    assert r.telemetry["weights"][0] == pytest.approx(w1)
    assert r.telemetry["resampled"][0] == d1
    # Step 2: each takes its (only) next step; p1a, p3a finish (\boxed) and are kept as they are.
    particles = [CHILD[particles[d]] for d in d1]
    live = [i for i, p in enumerate(particles) if "boxed" not in p]
    if live:
        w2 = hand_weights([PF_REWARDS[particles[i]] for i in live])
        d2 = rng.choices(range(len(live)), weights=w2, k=len(live))
        assert r.telemetry["weights"][1] == pytest.approx(w2)
        assert r.telemetry["resampled"][1] == d2
        pool = [particles[i] for i in live]
        for i, d in zip(live, d2):
            particles[i] = CHILD[pool[d]]
    assert len(r.telemetry["weights"]) == (2 if live else 1)
    final = sorted(p.split("{")[1].rstrip("}") for p in particles)
    assert sorted(t.answer for t in r.traces) == final
    best = max(particles, key=lambda p: PF_REWARDS[p])
    assert r.answer == best.split("{")[1].rstrip("}")


@pytest.mark.parametrize("seed", [7, 8])
async def test_finished_particles_take_part_in_resampling(seed):
    """resample_inactive (the reference's published runs; its_hub): every particle is in the
    pool, a finished one with its final reward, and n are drawn. Seeds 7 and 8 give a pool that
    mixes finished and open particles at step 2. By hand for seed 8: step 1 draws [1, 3, 1, 2]
    -> p2a .7, p4a .2, p2a .7, p3a .4 (p3a \\boxed, finished); odds r / (1 - r) = 7/3, 1/4,
    7/3, 2/3, sum 67/12, weights [.4179, .0448, .4179, .1194]; the draw [0, 0, 3, 0] copies the
    finished p3a once (it stays finished) and p2a three times (-> p2b \\boxed{2}, .9): answers
    2, 2, 3, 2 and the answer 2. Failed before the fix: only the 3 open particles were pooled."""
    r, _, _ = await run(ParticleFilter(4, single_step=False), PF_TREE, PF_REWARDS, seed=seed)
    rng = random.Random(seed)
    particles = ["p1", "p2", "p3", "p4"]
    d1 = rng.choices(range(4), weights=hand_weights([PF_REWARDS[p] for p in particles]), k=4)
    particles = [CHILD[particles[d]] for d in d1]
    finished = ["boxed" in p for p in particles]
    assert any(finished) and not all(finished)  # the pool mixes finished and open particles
    w2 = hand_weights([PF_REWARDS[p] for p in particles])
    d2 = rng.choices(range(4), weights=w2, k=4)
    assert r.telemetry["weights"][1] == pytest.approx(w2) and r.telemetry["resampled"][1] == d2
    particles = [particles[d] if "boxed" in particles[d] else CHILD[particles[d]] for d in d2]
    assert [t.answer for t in r.traces] == [p.split("{")[1].rstrip("}") for p in particles]
    if seed == 8:
        assert r.telemetry["weights"][1] == pytest.approx([0.4179, 0.0448, 0.4179, 0.1194], abs=1e-4)
        assert [t.answer for t in r.traces] == ["2", "2", "3", "2"] and r.answer == "2"
    assert len(r.telemetry["weights"]) == 2  # after step 3 every particle has finished


# Whole-solution rewards (newline runs collapsed, as the reference scores them), unlike the
# per-step table: the p2 path scores .2 as a whole but .7 by its latest step.
WHOLE = {
    "p1": 0.3, "p2": 0.9, "p3": 0.6, "p4": 0.8,
    "p1\np1a \\boxed{1}": 0.5, "p2\np2a": 0.2, "p3\np3a \\boxed{3}": 0.4, "p4\np4a": 0.6,
    "p2\np2a\np2b \\boxed{2}": 0.9, "p4\np4a\np4b \\boxed{4}": 0.3,
}  # fmt: skip


async def test_particle_filter_scores_the_whole_solution_as_one_step():
    """The paper's model-based aggregation (search-and-learn's QWEN_PRM.score with
    outputs_is_single_step=True after re.sub(r"\\n+", "\\n", ...)): the verifier sees each
    partial solution as one step. By hand, seed 8: step 1 as before (p1..p4 are one step each);
    step 2 particles p2a, p4a, p2a, p3a scored as wholes .2, .6, .2, .4: weights = odds 1/4,
    3/2, 1/4, 2/3 over 8/3 = [.09375, .5625, .09375, .25]. Failed before the fix: the verifier
    got the steps and the weights came from the latest step (.7, .2, .7, .4)."""
    r, _, prm = await run(ParticleFilter(4), PF_TREE, WHOLE, seed=8)
    assert prm.scored and all(DELIM not in t for t in prm.scored)
    assert "p2\np2a" in prm.scored and "p3\np3a \\boxed{3}" in prm.scored
    assert r.telemetry["resampled"][0] == [1, 3, 1, 2]
    assert r.telemetry["weights"][1] == pytest.approx([0.09375, 0.5625, 0.09375, 0.25])
    assert all(len(t.steps) >= 2 for t in r.traces)  # the tree keeps the steps; only scoring is whole
    assert all(t.score == WHOLE[t.text.replace(DELIM, "\n")] for t in r.traces)


def test_sizes_are_n_with_the_former_names_as_aliases():
    from tts.experiment.evaluate import build_strategy

    assert ParticleFilter(n_particles=3).n == 3 and ParticleFilter(5).n == 5 and ParticleFilter().n == 8
    assert AStar(k=3).n == 3 and AStar(2).n == 2 and AStar().n == 4
    with pytest.raises(ValueError, match="n_particles"):
        ParticleFilter(4, n_particles=3)
    assert build_strategy("particle_filter", 6, {}).n == 6 and build_strategy("astar", 2, {}).n == 2


def test_particle_weight_formula_with_temperature():
    w = particle_weights([0.2, 0.5, 0.99], softmax_temp=2.0)
    assert w == pytest.approx(hand_weights([0.2, 0.5, 0.99], temp=2.0))
    assert particle_weights([0.0, 1.0]) == pytest.approx([0.0, 1.0])  # clipped, no inf/nan


async def test_particle_gibbs_keeps_a_reference_particle():
    r, _, _ = await run(ParticleFilter(4, gibbs_iterations=1, select="weighted_vote"), PF_TREE, PF_REWARDS, seed=3)
    assert len(r.telemetry["references"]) == 1
    assert len(r.traces) == 4  # 3 free particles + the reference
    ref = r.telemetry["references"][0]
    ref_text = r.telemetry["tree"].nodes[ref]["text"]
    assert r.traces[-1].text.endswith(ref_text) and r.traces[-1].finish_reason == "stop"
    # In the second run the pool holds the unfinished free particles plus the reference's state.
    first, second = r.telemetry["resamplings"]
    assert len(r.telemetry["weights"]) == first + second and second >= 1
    # The second run's first pool: its unfinished free particles (all 3 at step 1) + the reference
    # truncated to one step, weighted by that step's reward.
    pool = r.telemetry["weights"][first]
    ref_step1 = r.traces[-1].steps[0]
    assert len(pool) == 4 and sum(pool) == pytest.approx(1.0)
    assert ref_step1.score == PF_REWARDS[ref_step1.text]
    # The fake tree cycles its root steps: run 2's free particles drew p1, p2, p3.
    assert pool == pytest.approx(hand_weights([0.3, 0.9, 0.6, ref_step1.score]))
    assert r.answer in {t.answer for t in r.traces} and "votes" in r.telemetry


# -- all four: max_steps, budget ---------------------------------------------------------
class DeepTree(dict):
    """Every path continues with "more" until it has 5 steps, then ends (end of sequence)."""

    def get(self, key, default=None):
        return ["more"] if key.count(DELIM) < 5 else None


SEARCHES = {
    "beam": lambda: BeamSearch(4, beam_width=2, max_steps=3),
    "beam_lookahead": lambda: BeamSearch(4, beam_width=2, max_steps=3, lookahead=1),
    "dvts": lambda: DVTS(4, beam_width=2, max_steps=3),
    "astar": lambda: AStar(2, max_steps=3),
    "pf": lambda: ParticleFilter(4, max_steps=3),
    "pgibbs": lambda: ParticleFilter(3, max_steps=3, gibbs_iterations=1),
    "mcts": lambda: MCTS(8, k=2, max_steps=3),
    "rebase": lambda: REBASE(4, max_steps=3),
}
# The budget property holds for every search, these variants included (φ-Decoding's rollouts and
# AB-MCTS's single steps do not fit the max_steps test's request pattern).
BUDGETED = {
    **SEARCHES,
    "mcts_prm": lambda: MCTS(8, k=2, max_steps=3, evaluate="prm"),
    "phi": lambda: PhiDecoding(2, num_rollout=2, num_foresight=2, least_foresight_num=0),
    "beam_pruned": lambda: BeamSearch(4, beam_width=2, max_steps=3, prune_equivalent="math"),
}
try:
    import treequest  # noqa: F401  (the optional extra)

    from strategies import ABMCTS

    BUDGETED["ab_mcts"] = lambda: ABMCTS(8, max_steps=3)
except ImportError:
    pass


@pytest.mark.parametrize("name", sorted(SEARCHES))
async def test_max_steps_finishes_paths_to_the_end_of_sequence(name):
    """search-and-learn's last iteration drops the step stop and generates to the end. By hand:
    paths of 5 steps, max_steps 3: steps 1 and 2 stop at the delimiter, the third request (from
    a 2-step prefix) has no stop and returns the 3 remaining steps in one node, finish "stop".
    Failed before the fix: the third step stopped at the delimiter, finish "max_steps"."""
    r, gen, _ = await run(SEARCHES[name](), DeepTree(), {"more": 0.5})
    assert r.traces and all(t.finish_reason == "stop" for t in r.traces)
    assert all(t.text == DELIM.join(["more"] * 5) and len(t.steps) == 3 for t in r.traces)
    assert all(t.answer is None for t in r.traces)
    assert r.telemetry["steps"] == 3 and r.stopped_by == "done"
    sampled = [(p, stop) for (p, _, temp), stop in zip(gen.requests, gen.stops) if temp != 0.0]  # not rollouts
    assert sampled and all((stop == ()) == (p.count(DELIM) == 2) for p, stop in sampled)
    if "lookahead" not in name:  # charged as usual: every sampled token, the last chunk included
        tokens = sum(t for _, t in r.telemetry["tree"].nodes(data="tokens"))
        assert r.usage.completion_tokens == tokens and tokens > 0


async def test_beam_search_last_step_delimited_ends_open_paths_at_max_steps():
    """last_step="delimited" (its_hub's rule): the max_steps-th step stops at the delimiter as
    any other. By hand: paths of 5 steps, max_steps 3: every request stops at the delimiter,
    every path is three "more" steps, finish "max_steps", no answer; three iterations of
    requests, as with "to_end", each asking a step, never the rest of the solution."""
    r, gen, _ = await run(BeamSearch(4, beam_width=2, max_steps=3, last_step="delimited"), DeepTree(), {"more": 0.5})
    assert gen.stops and all(stop == (DELIM,) for stop in gen.stops)
    assert r.traces and all(t.finish_reason == "max_steps" and t.text == DELIM.join(["more"] * 3) for t in r.traces)
    assert r.answer is None and r.telemetry["steps"] == 3 and r.stopped_by == "done"
    assert max(p.count(DELIM) for p, _, _ in gen.requests) == 2
    assert BeamSearch(4, beam_width=2, last_step="delimited").config()["last_step"] == "delimited"
    assert "last_step" not in BeamSearch(4, beam_width=2).config()
    with pytest.raises(tts.errors.ParameterError, match="last_step"):
        BeamSearch(4, beam_width=2, last_step="cut")


# An answered path (a, a1: \boxed{3}, 2 steps) against a deeper path without an answer whose
# PRM scores are higher (b, b1, then b2, b3 to the end of sequence).
COMPETE_TREE = {
    k(): ["a", "b"],
    k("a"): ["a1 \\boxed{3}"],
    k("b"): ["b1"],
    k("b", "b1"): ["b2"],
    k("b", "b1", "b2"): ["b3"],
}
COMPETE_REWARDS = {"a": 0.4, "b": 0.6, "a1 \\boxed{3}": 0.5, "b1": 0.7, "b2": 0.8, "b3": 0.9}
B_END = k("b", "b1") + "b2" + DELIM + "b3"


@pytest.mark.parametrize(
    "make",
    [
        lambda: BeamSearch(2, beam_width=1, max_steps=3),
        lambda: DVTS(2, beam_width=1, max_steps=3),
        lambda: AStar(2, max_steps=3),
        lambda: ParticleFilter(2, max_steps=3, single_step=False),
    ],
    ids=["beam", "dvts", "astar", "pf"],
)
async def test_an_answered_path_beats_a_deeper_unanswered_one(make):
    """max_steps 3. Beam search (n 2, width 1, keeps 2): a .4, b .6 -> b1 .7 (open), a1 \\boxed{3}
    .5 (finished) -> b1's last step goes to the end: b2, b3 (.9, no answer). Finished: a1, b-end.
    DVTS (2 subtrees of width 1): subtree 1 a -> a1 (done), subtree 2 b -> b1 -> b-end.
    A* (n 2): f(a) = .6 + .6, f(b) = .8 -> b; f(b1) = .4 + .3 -> b1; f(b-end) = .4 + .1 = .5:
    popped first, no answer, a dead end; both b-ends, the second b1 and its two b-ends likewise;
    then a (1.2) -> a1: f = .6 + .5, answered: the answer.
    PF (seed 1, the draws replayed below): the final pool holds a1 and b-end.
    Every search ranks b-end (.9) above a1 (.5) and must still answer 3. Failed before the fix:
    the deeper path ended at b2 with "max_steps" and won with no answer."""
    seed, strategy = 1, make()
    r, gen, _ = await run(strategy, COMPETE_TREE, COMPETE_REWARDS, seed=seed)
    assert r.answer == "3"
    texts_ = {t.text for t in r.traces}
    assert k("a") + "a1 \\boxed{3}" in texts_ or isinstance(strategy, AStar)
    if not isinstance(strategy, AStar):
        assert B_END in texts_  # the unanswered path was finished to its end and competed
    assert (k("b", "b1"), ()) in [(p, st) for (p, *_), st in zip(gen.requests, gen.stops)]
    if isinstance(strategy, AStar):
        assert texts(r, r.telemetry["popped"])[1:] == [
            "b", "b1", "b2" + DELIM + "b3", "b2" + DELIM + "b3", "b1", "b2" + DELIM + "b3",
            "b2" + DELIM + "b3", "a", "a1 \\boxed{3}",
        ]  # fmt: skip
        assert r.telemetry["f"] == pytest.approx(1.1)
    if isinstance(strategy, ParticleFilter):
        rng = random.Random(seed)
        assert rng.choices(range(2), weights=hand_weights([0.4, 0.6]), k=2) == [0, 1]  # a, b kept
        assert rng.choices(range(2), weights=hand_weights([0.5, 0.7]), k=2) == [1, 0]  # a1, b1 kept
        assert r.telemetry["resampled"] == [[0, 1], [1, 0]]


async def test_budget_stop_returns_the_best_answer_so_far():
    # Step tokens <= 5, a request of 2 samples reserves 10. Iterations 1-2 use 8 tokens; in
    # iteration 3, s4a's request fits (s4a1 \boxed{5}, s4a2: 11 used), s2b's does not fit the 9
    # left, so its samples go one at a time (s2b1 \boxed{6}, s2b2: 14 used); iteration 4 affords
    # one sample of s4a2: s4a2x \boxed{8} (0.95) is the best finished path when the budget ends.
    budget = Budget(completion_tokens=20)
    r, _, _ = await run(BeamSearch(4, beam_width=2), budget=budget, max_tokens=5)
    assert r.stopped_by == "budget" and r.answer == "8"
    assert r.usage.completion_tokens <= 20
    # With nothing finished yet, the best partial path is returned (it has no answer yet).
    r, _, _ = await run(BeamSearch(4, beam_width=2), budget=Budget(completion_tokens=12), max_tokens=5)
    assert r.stopped_by == "budget" and r.answer is None and r.usage.completion_tokens <= 12
    assert len(r.traces) == 1 and r.traces[0].finish_reason == "budget"
    # A budget too small for anything returns nothing, not an error.
    r, _, _ = await run(ParticleFilter(4), budget=Budget(completion_tokens=3), max_tokens=5)
    assert r.stopped_by == "budget" and r.answer is None and r.usage.completion_tokens == 0


@settings(max_examples=160, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(sorted(BUDGETED)),
    max_tokens=st.integers(1, 4),
    cap=st.sampled_from(["completion_tokens", "total_tokens", "verifier_tokens", "calls", "flops"]),
    value=st.integers(0, 120),
    seed=st.integers(0, 3),
)
def test_no_search_ever_exceeds_its_budget(name, max_tokens, cap, value, seed):
    budget = Budget(**{cap: value * 2000 if cap == "flops" else value % 30 if cap == "calls" else value})

    def solve(b):
        return tts.solve_sync(
            P, BUDGETED[name](), generator=TreeGenerator(BEAM_TREE), verifier=TablePRM(BEAM_REWARDS),
            budget=b, sampling=tts.Sampling(max_tokens=max_tokens), seed=seed,
        )

    free, r = solve(None), solve(budget)
    assert budget.exceeded_by(r.usage) is None, (budget, r.usage)
    assert r.stopped_by in ("done", "budget")
    if r.stopped_by == "done":  # the budget never stopped it: the run is the unbudgeted one (a request
        # the cap split into smaller ones, as `Context.sample` does, is served less from the cache)
        assert r.answer == free.answer
        assert [(u.prompt_tokens, u.completion_tokens, u.verifier_tokens) for u in (r.usage, free.usage)] == [
            (free.usage.prompt_tokens, free.usage.completion_tokens, free.usage.verifier_tokens)] * 2
