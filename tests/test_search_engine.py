"""The step-level search strategies end to end on the real vLLM CPU engine (tiny random
model, so the text is gibberish: this checks the mechanics, not the answers).

The process verifier is `LLMJudgePRM` on the same engine (the tiny model judging its own steps),
so generation and scoring share one engine, as they would with a small judge in production."""

from __future__ import annotations

import asyncio

import pytest
from servers import engine_counters

import tts
from strategies import DVTS, MCTS, REBASE, AStar, BeamSearch, ParticleFilter, PhiDecoding
from tts.types import Budget, GenRequest, Problem
from verifiers.prm import LLMJudgePRM

pytestmark = pytest.mark.engine

# About 300 prompt tokens with the tiny tokenizer: more than two 128-token KV blocks, so
# continuations of the same problem are served from the prefix cache.
QUESTION = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May? "
) * 6


async def frequent_delimiter(gen) -> str:
    """A string the tiny model writes often (its most common character), so its steps end at
    the delimiter well before the 16-token limit and the searches go several steps deep."""
    req = GenRequest([{"role": "user", "content": QUESTION}], n=4, max_tokens=32, temperature=1.0)
    probe, _ = await gen.generate(req)
    text = "".join(t.text for t in probe)
    return max((c for c in set(text) if c.isascii() and c.isprintable() and not c.isspace()), key=text.count)


async def test_search_strategies_on_the_engine(vllm_generator):
    delim = await frequent_delimiter(vllm_generator)
    problem = Problem("search-e2e", QUESTION)
    assert await vllm_generator.count_prompt_tokens(GenRequest(problem.messages())) > 256
    searches = {
        # 8 samples, not 4: all 4 first steps of the random model once ran to the 16-token limit
        # without the delimiter (every path finished after one step)
        "beam_search": BeamSearch(8, beam_width=2, max_steps=3, delimiter=delim),
        "dvts": DVTS(4, beam_width=2, max_steps=3, delimiter=delim),
        "astar": AStar(k=2, max_steps=3, delimiter=delim),
        "particle_filter": ParticleFilter(4, max_steps=3, delimiter=delim),
        # 8 first steps, not 4: a rollout needs one step that did not run to the 16-token limit
        # without the delimiter, and all 4 of the random model's did so once in a CI-like run
        "beam_lookahead": BeamSearch(8, beam_width=2, max_steps=3, lookahead=1, delimiter=delim),
        "mcts": MCTS(4, k=2, max_steps=3, delimiter=delim),
        "rebase": REBASE(4, max_steps=3, delimiter=delim),
        "phi_decoding": PhiDecoding(2, num_rollout=2, num_foresight=2, least_foresight_num=0, delimiter=delim),
        # EquivPruner with the model judge: the engine asked whether two sibling steps are equivalent
        "beam_pruned": BeamSearch(8, beam_width=2, max_steps=3, delimiter=delim, prune_equivalent="model"),
    }
    budget = Budget(completion_tokens=40)
    judge = LLMJudgePRM(vllm_generator, delimiter=delim)
    before = engine_counters(vllm_generator)
    # All searches at once (as run_many runs problems): the engine batches all their requests.
    results = await asyncio.gather(
        *(
            tts.solve(problem, s, generator=vllm_generator, verifier=judge,
                      sampling=tts.Sampling(max_tokens=16, temperature=1.0))
            for s in searches.values()
        ),
        tts.solve(problem, ParticleFilter(4, max_steps=3, delimiter=delim), generator=vllm_generator,
                  verifier=judge, sampling=tts.Sampling(max_tokens=16), budget=budget),
    )  # fmt: skip
    await asyncio.sleep(1.0)  # let the engine publish its counters
    after = engine_counters(vllm_generator)
    *runs, budgeted = results
    for name, r in zip(searches, runs):
        tree = r.telemetry["tree"]
        assert r.error is None and r.stopped_by == "done", (name, r.stopped_by)
        assert r.answer is None or isinstance(r.answer, str)
        assert tree.number_of_nodes() > 1 and tree.number_of_edges() == tree.number_of_nodes() - 1, name
        assert max(d for _, d in tree.nodes(data="depth")) <= 3
        assert r.traces and all(t.finish_reason in ("stop", "length", "max_steps") for t in r.traces), name
        assert r.usage.generator_calls == r.telemetry["expansions"] and r.usage.completion_tokens > 0
    by_name = dict(zip(searches, runs))
    # Step after step from the same problem: the prompt's blocks come from the prefix cache.
    assert by_name["beam_search"].usage.cached_tokens > 0
    assert by_name["beam_search"].telemetry["steps"] >= 2, "the delimiter never cut a step"
    assert by_name["beam_lookahead"].telemetry["lookahead_samples"] > 0
    # The budget holds on the real engine too.
    assert budget.exceeded_by(budgeted.usage) is None and budgeted.stopped_by == "budget"
    scored = [r for name, r in zip([*searches, "budgeted"], results) if name != "phi_decoding"]  # φ: no PRM
    assert all(r.usage.verifier_tokens > 0 and r.telemetry["prm_passes"] > 0 for r in scored)
    phi = by_name["phi_decoding"]
    # Its foresight rolls out every open first step; the random tiny model sometimes ends every
    # path in its first 16 tokens, leaving none to roll out (this flaked once in a full run).
    first_only = max(d for _, d in phi.telemetry["tree"].nodes(data="depth")) <= 1
    assert (phi.telemetry["rollout_samples"] > 0 or first_only) and phi.usage.verifier_tokens == 0
    assert by_name["mcts"].telemetry["simulations"] > 0 and by_name["rebase"].telemetry["widths"]
    pruning = by_name["beam_pruned"].telemetry["equivalent"]
    assert pruning["judge"] == "model" and pruning["judge_calls"] > 0  # charged: in the engine count below
    # Every token was charged: the searches' generator tokens plus the judge's (verifier) tokens,
    # computed and served from the prefix cache, equal what the engine itself counted.
    total = sum((r.usage for r in results), tts.Usage())
    generated = after["vllm:generation_tokens_total"] - before["vllm:generation_tokens_total"]
    prompted = after["vllm:prompt_tokens_total"] - before["vllm:prompt_tokens_total"]
    assert total.total_tokens + total.verifier_cached_tokens == generated + prompted
    assert total.verifier_cached_tokens > 0  # the judge's prompts share the problem and earlier steps
    # The judge scored grown paths incrementally (earlier steps' verdicts remembered).
    assert sum(r.telemetry.get("verifier_paths", {}).get("incremental", 0) for r in results) > 0
    assert not any("full-prefix" in r.telemetry.get("verifier_paths", {}) for r in results)


async def test_every_search_runs_from_bench_with_both_prms(vllm_generator, tiny_prm_dir, shared_data, tmp_path):
    """`tts bench --strategy beam_search|dvts|astar|particle_filter|mcts|rebase|phi_decoding` with
    the LLM-as-judge PRM (the default: the generator judges its own steps) and with the tiny
    Qwen2.5-Math-PRM (φ-Decoding uses neither: its value is the model's own foresight)."""
    from tts.experiment.evaluate import BenchConfig, bench
    from verifiers.prm import QwenPRM

    prm = QwenPRM(str(tiny_prm_dir), enforce_eager=True, max_model_len=2048)
    scored_runs = {None: 0, "qwen_prm": 0}
    try:
        for strategy, params in [
            ("beam_search", {"beam_width": 2, "max_steps": 2}), ("dvts", {"beam_width": 2, "max_steps": 2}),
            ("astar", {"max_steps": 2}), ("particle_filter", {"max_steps": 2}), ("mcts", {"k": 2, "max_steps": 2}),
            ("rebase", {"max_steps": 2}), ("phi_decoding", {"num_rollout": 2, "num_foresight": 1}),
        ]:
            for verifier_name, verifier in [(None, None), ("qwen_prm", prm)]:
                cfg = BenchConfig(
                    task="gsm8k", strategy=strategy, n=4 if strategy != "astar" else 2,
                    params=params, verifier=verifier_name, verifier_model=str(tiny_prm_dir),
                    data=str(shared_data / "gsm8k_test.jsonl"), limit=2, out=str(tmp_path / "r.jsonl"),
                    max_tokens=8, model="tiny",
                )
                store, chash, _ = await bench(cfg, generator=vllm_generator, verifier=verifier)
                recs = store.for_config(chash, 0)
                assert len(recs) == 2, (strategy, verifier_name)
                for r in recs:
                    assert r["strategy"] == strategy and r["usage"]["completion_tokens"] > 0
                    assert r["telemetry"]["expansions"] > 0
                assert all("verifier_cached_tokens" in r["usage"] for r in recs)
                # The random model can stop at once: a search whose steps all came out empty has
                # nothing to score (no scoring path, no tokens; CI once met it in astar's 2 samples).
                scored = [r for r in recs if r["telemetry"].get("verifier_paths")]
                scored_runs[verifier_name] += bool(scored)
                if scored:  # one verifier call per request to the PRM: none when no step had text
                    assert all(r["usage"]["verifier_calls"] > 0 for r in scored)
                    assert sum(r["usage"]["verifier_tokens"] for r in scored) > 0, (strategy, verifier_name)
                    # both PRMs chose incremental scoring by themselves; the record shows it
                    assert all("incremental" in r["telemetry"]["verifier_paths"] for r in scored)
        assert min(scored_runs.values()) >= 3, scored_runs  # each PRM scored (nearly) every search
    finally:
        await prm.close()
