"""The architecture search (tts.experiment.architecture) and the sample memo it measures with
(tts.backends.memo), on the scripted generator (FAKE: answers by the request's text). The
engine run is in test_pipeline_engine.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from scripted import ScriptedGenerator

import tts
from tts.backends.memo import MemoGenerator
from tts.errors import TTSError
from tts.experiment.architecture import expected_improvement, features, read_file, run_search, split
from tts.types import GenRequest, Problem

MSG = [{"role": "user", "content": "What is 2 + 3?"}]


async def test_memo_serves_repeated_requests_and_generates_only_what_is_missing():
    inner = ScriptedGenerator(["a \\boxed{1}", "b c \\boxed{2}", "d \\boxed{3}"])
    memo = MemoGenerator(inner)
    first, u1 = await memo.generate(GenRequest(MSG, n=2, max_tokens=10))
    assert inner.calls == 1 and memo.generated == 2 and u1.completion_tokens == 5
    memo.reset()  # a new configuration: the same request draws the same samples, from the first
    again, u2 = await memo.generate(GenRequest(MSG, n=3, max_tokens=10))
    assert [t.text for t in again] == [t.text for t in first] + ["d \\boxed{3}"]
    assert inner.calls == 2 and inner.requests[-1].n == 1  # only the missing sample was generated
    assert memo.served == 2 and memo.generated == 3
    # a reused sample is charged as recorded: its prompt tokens per sample, completion as made, none cached
    per_sample = await inner.count_prompt_tokens(GenRequest(MSG))
    assert u2.prompt_tokens == 3 * per_sample and u2.completion_tokens == 5 + 2 and u2.cached_tokens == 0
    again[0].answer = "changed"  # the caller's copy; the record is untouched
    memo.reset()
    third, _ = await memo.generate(GenRequest(MSG, n=1, max_tokens=10))
    assert third[0].answer is None and third[0].text == "a \\boxed{1}"
    # anything that changes the distribution is another key: generated afresh
    await memo.generate(GenRequest(MSG, n=1, max_tokens=10, temperature=0.1))
    assert inner.calls == 3
    # within one run the second identical request takes the next samples, not the same ones
    memo.reset()
    a, _ = await memo.generate(GenRequest(MSG, n=1, max_tokens=10))
    b, _ = await memo.generate(GenRequest(MSG, n=1, max_tokens=10))
    assert a[0].text != b[0].text


async def test_memo_charges_through_the_context_like_live_samples():
    inner = ScriptedGenerator(["a b \\boxed{1}"])
    memo = MemoGenerator(inner)
    p = Problem("p", "What is 2 + 3?", answer="5")
    from strategies import SelfConsistency

    live = await tts.solve(p, SelfConsistency(3), generator=memo, sampling=tts.Sampling(max_tokens=10))
    memo.reset()
    reused = await tts.solve(p, SelfConsistency(3), generator=memo, sampling=tts.Sampling(max_tokens=10))
    assert inner.calls == 1 and reused.answer == live.answer == "1"
    assert reused.usage.completion_tokens == live.usage.completion_tokens
    assert reused.usage.prompt_tokens == live.usage.prompt_tokens
    assert reused.config_hash == live.config_hash  # keyed as the backend it wraps


def test_split_is_seeded_disjoint_and_keeps_order():
    ps = [Problem(f"q{i}", "x") for i in range(10)]
    dev, test = split(ps, 0.5, seed=0)
    assert len(dev) == 5 and not {p.id for p in dev} & {p.id for p in test}
    assert split(ps, 0.5, seed=0) == (dev, test) and split(ps, 0.5, seed=1) != (dev, test)
    assert [p.id for p in dev] == sorted((p.id for p in dev), key=lambda s: int(s[1:]))
    with pytest.raises(TTSError, match="at least 2"):
        split(ps[:1], 0.5, 0)


def test_expected_improvement_prefers_the_unexplored_and_the_promising():
    x = np.array([[0.0, 0.0], [1.0, 1.0]])
    y = np.array([0.2, 0.6])
    ei = expected_improvement(x, y, np.array([[0.0, 0.05], [0.95, 1.0], [0.0, 1.0]]))
    assert ei[1] > ei[0]  # next to the better one beats next to the worse one
    assert ei[2] > ei[0]  # far from both: uncertain, worth a look


def search_file(tmp_path, gsm, budget, method="exhaustive", extra=None):
    tmp_path.mkdir(parents=True, exist_ok=True)
    f = tmp_path / "search.yaml"
    f.write_text(yaml.safe_dump({
        "tasks": [{"name": "gsm8k", "data": str(gsm), "limit": 8}],
        "sampling": {"temperature": 0.7, "max_tokens": 20},
        "strategies": [
            {"name": "self_consistency", "grid": {"n": [1, 2, 4]}},
            {"name": "pipeline", "params": {"stages": [{"op": "generate", "n": 2}, {"op": "fuse"}]}},
            {"name": "mixture_of_agents", "n": 2, "params": {"layers": 2}},
        ],
        "output": str(tmp_path / "out"),
        "search": {"budget": budget, "method": method, "test_all": True, **(extra or {})},
    }))
    return f


def fused_gets_it_right(gold_by_question):
    """Samples are wrong; a fuse call answers the gold of the question it quotes (FAKE)."""
    def route(req):
        text = req.messages[-1]["content"]
        if "Synthesize" in text:
            q = next(q for q in gold_by_question if q in text)
            return f"so \\boxed{{{gold_by_question[q]}}}"
        return None
    return route


@pytest.fixture
def gold(shared_data):
    import tasks

    ps = tasks.get_task("gsm8k").load(shared_data / "gsm8k_test.jsonl", limit=8)
    return {p.question: p.answer for p in ps}


async def test_search_chooses_the_best_that_fits_and_reports_it_held_out(tmp_path, shared_data, gold):
    gen = ScriptedGenerator(["w \\boxed{-1}"], route=fused_gets_it_right(gold))
    f = search_file(tmp_path, shared_data / "gsm8k_test.jsonl", budget=10_000)
    s = await run_search(f, generator=gen)
    dev = {m.label: m for m in s.dev}
    assert len(dev) == 5 and s.dev_problems == s.test_problems == 4
    assert dev["self_consistency n=4"].accuracy == 0.0
    assert dev["mixture_of_agents n=2 layers=2"].accuracy == 1.0
    # both fuse pipelines are right everywhere; the cheaper... they are the same requests: equal cost
    assert s.chosen in ("mixture_of_agents n=2 layers=2", next(k for k in dev if k.startswith("pipeline")))
    chosen = dev[s.chosen]
    base = dev[s.baseline]  # the best self-consistency whose cost is at most the chosen one's
    assert base.label.startswith("self_consistency") and base.cost <= chosen.cost
    assert {m.label for m in s.test} == set(dev)  # test_all
    assert {m.label: m.accuracy for m in s.test}[s.chosen] == 1.0
    # the pipelines' 2 samples are the first 2 of self-consistency's 4, and MoA's fuse call is
    # the pipeline's: each generated once
    assert s.reused_samples > 0
    out = json.loads((tmp_path / "out" / "search.json").read_text())
    assert out["chosen"] == s.chosen and "| chosen |" in (tmp_path / "out" / "search.md").read_text()
    # resumable: a rerun measures nothing again
    calls = gen.calls
    again = await run_search(f, generator=gen)
    assert gen.calls == calls and again.chosen == s.chosen


async def test_a_budget_below_the_pipelines_picks_a_single_strategy(tmp_path, shared_data, gold):
    gen = ScriptedGenerator(["w \\boxed{-1}"], route=fused_gets_it_right(gold))
    probe = await run_search(search_file(tmp_path / "a", shared_data / "gsm8k_test.jsonl", 10_000), generator=gen)
    costs = {m.label: m.cost for m in probe.dev}
    budget = costs["self_consistency n=2"] + 1  # the fuse pipelines cost more than that
    assert min(costs[k] for k in costs if not k.startswith("self_consistency")) > budget
    s = await run_search(search_file(tmp_path / "b", shared_data / "gsm8k_test.jsonl", budget), generator=gen)
    assert s.chosen == "self_consistency n=1"  # all wrong: the cheapest of equals
    low = await run_search(search_file(tmp_path / "c", shared_data / "gsm8k_test.jsonl", 1), generator=gen)
    assert low.chosen is None and "No configuration fits" in (tmp_path / "c" / "out" / "search.md").read_text()


async def test_bayesian_optimisation_measures_the_baselines_and_evaluations(tmp_path, shared_data, gold):
    gen = ScriptedGenerator(["w \\boxed{-1}"], route=fused_gets_it_right(gold))
    f = search_file(tmp_path, shared_data / "gsm8k_test.jsonl", 10_000, method="bayes",
                    extra={"evaluations": 4, "init": 1, "test_all": False})
    s = await run_search(f, generator=gen)
    assert len(s.dev) == 4  # the 3 baselines (always), then 1 at random
    assert all(m.label in {x.label for x in s.dev} for m in s.test) and len(s.test) <= 2


def test_features_encode_strategies_parameters_and_stages():
    from tts.options import BenchConfig

    cfg = BenchConfig(task="gsm8k", strategy="pipeline", n=8,
                      params={"stages": [{"op": "generate", "n": 4}, {"op": "critique"}, {"op": "fuse", "top": 3},
                                         {"op": "fuse", "top": 1}]})
    f = features(cfg)
    assert f["strategy=pipeline"] == 1 and f["stages.fuse"] == 2 and f["stages.fuse.top"] == 4
    assert f["stages.generate.n"] == 4 and f["stages.critique"] == 1


def test_search_file_errors_are_one_line(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump({"tasks": [{"name": "gsm8k"}], "strategy": {"name": "self_consistency"}}))
    with pytest.raises(TTSError, match="search: a search file is a sweep file with a `search:` block"):
        read_file(f)
    f.write_text(yaml.safe_dump({"tasks": [{"name": "gsm8k"}], "search": {"budget": 0}}))
    with pytest.raises(TTSError, match=r"search: budget: Input should be greater than 0"):
        read_file(f)
    f.write_text(yaml.safe_dump({"tasks": [{"name": "gsm8k"}], "search": {"budget": 5, "methd": "bayes"}}))
    with pytest.raises(TTSError, match="methd"):
        read_file(f)


async def test_a_fault_stops_the_search_and_a_rerun_retries_it(tmp_path, shared_data, gold):
    from tts.errors import BackendError

    class Dying(ScriptedGenerator):
        """FAKE: the engine dies at the first fuse call."""

        async def generate(self, req):
            if "Synthesize" in req.messages[-1]["content"]:
                raise BackendError("the engine died")
            return await super().generate(req)

    f = search_file(tmp_path, shared_data / "gsm8k_test.jsonl", budget=10_000)
    with pytest.raises(TTSError, match="failed .*the engine died.*run the same command again"):
        await run_search(f, generator=Dying(["w \\boxed{-1}"]))
    lines = [json.loads(x) for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    kept = [r for r in lines if r["status"] == "finished"]
    assert len(kept) == 3 * 4 and {r["strategy"] for r in kept} == {"self_consistency"}  # 3 runs x 4 dev problems
    assert sum(r["status"] == "failed" for r in lines) == 4  # the first pipeline's 4 dev problems
    good = ScriptedGenerator(["w \\boxed{-1}"], route=fused_gets_it_right(gold))
    s = await run_search(f, generator=good)
    assert len(s.dev) == 5 and {m.label: m.accuracy for m in s.dev}["mixture_of_agents n=2 layers=2"] == 1.0
    lines = [json.loads(x) for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    finished = [(r["problem_id"], r["config_hash"]) for r in lines if r["status"] == "finished"]
    assert len(finished) == len(set(finished)) == 5 * 8  # every configuration on both splits, none twice


async def test_memo_samples_survive_a_restart_and_a_torn_tail(tmp_path, capsys):
    path = tmp_path / "samples.jsonl"
    inner = ScriptedGenerator(["a \\boxed{1}", "b \\boxed{2}"])
    first, _ = await MemoGenerator(inner, path).generate(GenRequest(MSG, n=2, max_tokens=10))
    with open(path, "ab") as f:
        f.write(b'{"key": "torn')  # a crash mid-append
    again = MemoGenerator(inner, path)  # a resumed search
    assert path.read_bytes().endswith(b"}\n")  # the writer cut the torn tail
    served, usage = await again.generate(GenRequest(MSG, n=2, max_tokens=10))
    assert inner.calls == 1 and [t.text for t in served] == [t.text for t in first]
    assert usage.completion_tokens == 4 and again.served == 2
