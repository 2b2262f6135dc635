"""Cheaper calls where the backend allows (issue 29): a request's n samples in one request
(vLLM's `n`), a judge's requests of one score call as one batch (vLLM's batch route, through
`Context.judge_many`), identical candidates scored once. On FAKES: the scripted generator and the
FAKE OpenAI server of tests/servers.py, which count requests; the real server's token counts
are checked in test_openai_generator.py."""

from __future__ import annotations

import math

import pytest
from scripted import ScriptedGenerator
from servers import FakeOpenAIServer

import tts
from tts.backends.openai import OpenAIGenerator
from tts.context import Accountant, Context
from tts.errors import BudgetExceeded
from tts.types import Budget, GenRequest, Problem, Trace
from verifiers import LLMJudgePRM

P = Problem("p1", "Natalia sold 48 clips in April and half as many in May. How many clips in all?")
ASK = [{"role": "user", "content": "What is 2 + 2?"}]
YES = [("Yes", math.log(0.6)), ("No", math.log(0.2))]  # P(Yes) = 0.75


def ctx_for(gen, judge=None, budget=None) -> Context:
    acc = Accountant(budget, gen.num_params, judge.num_params if judge else None)
    return Context(P, gen, acc, verifier=judge)


# -- n samples in one request ----------------------------------------------------------------
async def test_share_prompt_sends_n_samples_as_one_request_and_charges_the_prompt_n_times():
    """n = 3 as three requests (default) or one request with n = 3 (share_prompt). The FAKE
    server reports the prompt once for n samples, as vLLM does; vLLM runs them as n engine
    requests, each prefilling it, so it is charged n times either way. Failed before: no
    share_prompt (always n requests)."""
    with FakeOpenAIServer("ok", text="so the answer is \\boxed{4}") as s:
        for share, requests in ((False, [("/v1/chat/completions", 1)] * 3), (True, [("/v1/chat/completions", 3)])):
            s.requests.clear()
            gen = OpenAIGenerator("fake", s.url, vllm=True, max_model_len=4096, share_prompt=share)
            gen._can_tokenize = False  # the FAKE has no /tokenize: byte bounds
            traces, usage = await gen.generate(GenRequest(ASK, n=3, max_tokens=16))
            await gen.close()
            assert s.requests == requests
            assert [t.num_tokens for t in traces] == [5, 5, 5] and {t.text for t in traces} == {s.text}
            assert usage.prompt_tokens == 3 * 7 and usage.completion_tokens == 15


# -- judge requests as one batch -------------------------------------------------------------
async def test_generate_many_uses_the_batch_route_and_falls_back_without_it():
    """Three single-sample judge requests: one POST to .../chat/completions/batch; a server
    without that route (404) gets them one by one, and is not asked for it again."""
    reqs = [GenRequest([{"role": "user", "content": f"Is {i} even? Answer Yes or No."}], max_tokens=1,
                       temperature=0.0, logprobs=2) for i in range(3)]
    with FakeOpenAIServer("ok") as s:
        gen = OpenAIGenerator("fake", s.url, vllm=True, max_model_len=4096)
        gen._can_tokenize = False  # the FAKE has no /tokenize: byte bounds
        out, usage = await gen.generate_many(reqs)
        assert s.requests == [("/v1/chat/completions/batch", 3)]
        assert [o[0].text for o in out] == ["yes"] * 3 and all(o[0].top_tokens[0][0] == "yes" for o in out)
        assert usage.prompt_tokens == 3 * 7 and usage.completion_tokens == 3
        s.requests.clear()
        s.batch_route = False
        out, usage = await gen.generate_many(reqs)
        out2, _ = await gen.generate_many(reqs)
        assert s.hits == 1 + 1 + 3 + 3 and s.requests == [("/v1/chat/completions", 1)] * 6
        assert usage.prompt_tokens == 3 * 7 and [o[0].text for o in out + out2] == ["yes"] * 6
        await gen.close()


async def test_judge_many_is_one_verifier_call_reserved_at_its_worst_case():
    gen = ScriptedGenerator(["x"], num_params=1000)
    judge = ScriptedGenerator(["Yes"], num_params=50, top=YES)
    reqs = [GenRequest([{"role": "user", "content": f"step {i} right?"}], max_tokens=1, logprobs=2) for i in range(3)]
    prompts = [await judge.count_prompt_tokens(r) for r in reqs]
    ctx = ctx_for(gen)
    out = await ctx.judge_many(judge, reqs)
    assert [o[0].text for o in out] == ["Yes"] * 3 and judge.calls == 3
    u = ctx.usage
    assert u.verifier_calls == 1 and u.verifier_tokens == sum(prompts) + 3 and u.verifier_flops == 2 * 50 * (
        sum(prompts) + 3)
    # the worst case of all three (prompts + 3 x max_tokens) is checked before anything is sent
    capped = ctx_for(gen, budget=Budget(verifier_tokens=sum(prompts) + 2))
    with pytest.raises(BudgetExceeded):
        await capped.judge_many(judge, reqs)
    assert judge.calls == 3 and capped.usage.verifier_tokens == 0
    assert await ctx.judge_many(judge, []) == []


# -- identical candidates scored once --------------------------------------------------------
def _step(text: str, prefix: str = "Step 1: April is 48.\n\n") -> Trace:
    return Trace(text=text, num_tokens=len(text.split()), finish_reason="stop", prefix=prefix)


CANDIDATES = [_step("May is 24."), _step("So 72 in all."), _step("May is 24."), _step("So 72 in all."),
              _step("May is 24.")]  # one expansion's 5 samples, 2 distinct


@pytest.mark.parametrize("steps", ["last", "all"])
async def test_a_judge_scores_identical_candidates_once_in_one_batch(steps):
    """Five candidates, two distinct: two judge requests ("last"; "all" adds the shared first
    step once), in ONE verifier call (batch); every candidate gets its text's score. With
    dedupe and batch off: one request and one call per step of each candidate, the same scores.
    Failed before: five requests (ten with "all"), five calls."""
    gen = ScriptedGenerator(["x"])
    judge_gen = ScriptedGenerator(["Yes"], top=YES)
    judge = LLMJudgePRM(judge_gen, steps=steps)
    ctx = ctx_for(gen, judge)
    scores = await ctx.score(CANDIDATES)
    assert judge_gen.calls == (2 if steps == "last" else 3) and ctx.usage.verifier_calls == 1
    assert [s.value for s in scores] == [pytest.approx(0.75)] * 5
    assert scores[0] is scores[2] is scores[4] and scores[1] is scores[3]

    plain_gen = ScriptedGenerator(["Yes"], top=YES)
    plain = LLMJudgePRM(plain_gen, steps=steps, batch=False, incremental=False)
    plain.dedupe = False
    ctx2 = ctx_for(gen, plain)
    again = await ctx2.score(CANDIDATES)
    per = 1 if steps == "last" else 2
    assert plain_gen.calls == 5 * per and ctx2.usage.verifier_calls == 5 * per
    assert [s.steps for s in again] == [s.steps for s in scores]
    assert ctx2.usage.verifier_tokens > ctx.usage.verifier_tokens


async def test_a_step_search_scores_duplicate_children_once():
    """Beam search on the scripted generator, whose every first step is the same text: the
    four identical children are judged once, not four times."""
    from strategies import BeamSearch

    judge_gen = ScriptedGenerator(["Yes"], top=YES)
    r = await tts.solve(P, BeamSearch(4, beam_width=2, max_steps=1), generator=ScriptedGenerator(["\\boxed{72}"]),
                        verifier=LLMJudgePRM(judge_gen, steps="last"), sampling=tts.Sampling(max_tokens=8))
    assert r.answer == "72" and r.telemetry["prm_passes"] == 4 and judge_gen.calls == 1
