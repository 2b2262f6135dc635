"""Thinking-aware traces and budget forcing, exactly, on the scripted generator (a FAKE backend
for algorithm checks) and the pure helpers."""

from __future__ import annotations

import pytest
from scripted import ScriptedGenerator

import tts
from strategies import BudgetForcing, SelfConsistency
from tts.backends.common import thinking_kwargs
from tts.context import Accountant, Context
from tts.spec import sampling_fields
from tts.thinking import Markers, extract_answer, markers_for, split_thinking
from tts.types import Forcing
from tts.types import GenRequest, Problem, Trace

M = Markers()


def test_split_thinking_cases():
    assert split_thinking("<think>\nabc</think>ans", M) == ("\nabc", "ans")
    assert split_thinking("abc</think>ans", M) == ("abc", "ans")  # the template opened it (R1)
    assert split_thinking("<think>abc", M) == ("abc", None)  # cut inside the thinking
    assert split_thinking("abc", M, opened=True) == ("abc", None)
    assert split_thinking("plain answer", M) == (None, None)


def test_extraction_reads_the_answer_part_and_falls_back_to_the_thinking():
    ex = lambda s: s.split("=")[-1].strip() if "=" in s else None  # noqa: E731
    t = Trace("x", 1, "stop", thinking="a=1", answer_part="b=2")
    assert extract_answer(t, ex) == ("2", "answer")
    t = Trace("x", 1, "length", thinking="a=1 then a=3", answer_part=None)
    assert extract_answer(t, ex) == ("3", "thinking")
    assert extract_answer(Trace("c=4", 1, "stop"), ex) == ("4", "")


def test_markers_table_and_user_markers():
    assert markers_for("Qwen/Qwen3-8B") == Markers()
    assert markers_for("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B").prompt_opens
    assert markers_for("some/model") is None
    assert markers_for("some/model", think_open="<r>", think_close="</r>").close == "</r>"
    with pytest.raises(tts.TTSError, match="both"):
        markers_for("some/model", think_open="<r>")


def test_a_switch_on_a_template_without_one_names_the_model():
    with pytest.raises(tts.TTSError, match="'m1'.*no thinking switch"):
        thinking_kwargs(GenRequest([], enable_thinking=True), M, "m1", "{{ messages }}")
    assert thinking_kwargs(GenRequest([], enable_thinking=False), M, "m1", "enable_thinking") == {
        "enable_thinking": False}


def test_unset_thinking_fields_keep_old_config_hashes():
    assert set(sampling_fields(tts.Sampling())) == {"temperature", "top_p", "max_tokens"}
    assert sampling_fields(tts.Sampling(thinking_budget=8))["thinking_budget"] == 8


def ctx_of(completions, **sampling):
    g = ScriptedGenerator(completions, markers=M)
    return Context(Problem("p", "q?"), g, Accountant(), sampling=tts.Sampling(**sampling))


async def test_budget_forcing_inserts_exactly_the_configured_waits():
    # the model closes its thinking early every time: each close becomes "Wait", 3 times
    ctx = ctx_of(["t1 t2 </think> x"] * 4 + ["\\boxed{7}"], max_tokens=200)
    r = await BudgetForcing(n=1, thinking_budget=100, extensions=3).solve(ctx.problem, ctx)
    t = r.traces[0]
    assert t.text.count("Wait") == 3
    assert ctx.telemetry["thinking"] == {"samples": 1, "waits": 3, "forced_close": 0}
    assert t.answer_part is not None and t.answer_from == "answer"
    assert ctx.usage.generator_calls == 5  # 4 thinking continuations + the answer
    assert ctx.usage.thinking_tokens == t.thinking_tokens


async def test_budget_caps_the_thinking_and_the_forced_answer_is_generated_and_graded():
    words = " ".join(f"w{i}" for i in range(50))
    ctx = ctx_of([words, "so \\boxed{7}"], max_tokens=100)
    ctx.extract = lambda s: "7" if "\\boxed{7}" in s else None
    r = await BudgetForcing(n=1, thinking_budget=12, extensions=2).solve(ctx.problem, ctx)
    t = r.traces[0]
    # exactly the budget: the forced close and its cue come after it, outside it, as s1's
    assert t.thinking_tokens == 12
    assert "</think>\n\nFinal Answer:so \\boxed{7}" in t.text
    assert r.answer == "7" and t.answer_from == "answer"
    assert ctx.telemetry["thinking"]["forced_close"] == 1
    assert ctx.usage.completion_tokens == t.num_tokens == t.thinking_tokens + t.answer_tokens


async def test_thinking_budget_is_a_plain_sampling_field_for_any_strategy():
    words = " ".join(f"w{i}" for i in range(50))
    ctx = ctx_of([words, "\\boxed{3}"], max_tokens=100, thinking_budget=10)
    r = await SelfConsistency(2).solve(ctx.problem, ctx)
    assert all(t.thinking_tokens <= 10 and "Wait" not in t.text for t in r.traces)
    assert ctx.usage.thinking_tokens == sum(t.thinking_tokens for t in r.traces)
    rec = tts.Result("p", r.answer, r.traces, usage=ctx.usage).record()
    assert rec["usage"]["thinking_tokens"] + rec["usage"]["answer_tokens"] == rec["usage"]["completion_tokens"]
    assert rec["answer_from"] == ["answer", "answer"]


async def test_a_trace_cut_in_its_thinking_answers_from_it_and_says_so():
    ctx = ctx_of(["w1 w2 \\boxed{4} w3 w4 w5 w6 w7 w8"], max_tokens=6, thinking_budget=50)
    ctx.extract = lambda s: "4" if "\\boxed{4}" in s else None
    traces, _ = await ctx.sample(1)
    assert traces[0].answer_part is None and traces[0].answer == "4" and traces[0].answer_from == "thinking"


async def test_an_end_of_sequence_inside_the_thinking_is_extended_then_closed_and_answered():
    """s1's rule (its ignore loop takes any finish but "length" as an end to replace by "Wait",
    then always appends the thinking-end marker and generates the answer). Before: a sample whose
    thinking ended with end of sequence stopped there, no "Wait", no answer."""
    ctx = ctx_of(["a b c", "d e </think> x", "\\boxed{1}"], max_tokens=100)
    ctx.extract = lambda s: "1" if "\\boxed{1}" in s else None
    r = await BudgetForcing(n=1, thinking_budget=50, extensions=1).solve(ctx.problem, ctx)
    t = r.traces[0]
    assert t.text == "<think>\na b cWaitd e </think>\\boxed{1}"
    assert r.answer == "1" and t.answer_from == "answer" and ctx.usage.generator_calls == 3
    assert ctx.telemetry["thinking"] == {"samples": 1, "waits": 1, "forced_close": 0}


async def test_a_thinking_budget_closes_a_thinking_ended_by_end_of_sequence_and_answers():
    ctx = ctx_of(["a b c", "\\boxed{2}"], max_tokens=100, thinking_budget=50)
    ctx.extract = lambda s: "2" if "\\boxed{2}" in s else None
    (t,), _ = await ctx.sample(1)
    assert t.text == "<think>\na b c</think>\\boxed{2}" and t.answer == "2" and t.answer_from == "answer"


async def test_bad_budgets_are_clear_errors():
    with pytest.raises(tts.TTSError, match="min_thinking <= thinking_budget"):
        Forcing(4, min_thinking=5)
    with pytest.raises(tts.TTSError, match="must differ"):
        markers_for("some/model", think_open="<t>", think_close="<t>")
    ctx = ctx_of(["a"], max_tokens=10, thinking_budget=8, enable_thinking=False)
    with pytest.raises(tts.TTSError, match="no thinking to budget"):
        await ctx.sample(1)
    ctx = Context(Problem("p", "q"), ScriptedGenerator(["a"]), Accountant(), sampling=tts.Sampling(thinking_budget=8))
    with pytest.raises(tts.TTSError, match="think_open"):
        await ctx.sample(1)
    with pytest.raises(tts.TTSError, match="thinking_budget >= 1"):
        Forcing(0)


async def test_a_budget_cap_counts_every_continuation():
    words = " ".join(f"w{i}" for i in range(50))
    ctx = ctx_of([words, "\\boxed{3}"], max_tokens=40, thinking_budget=10)
    ctx.accountant.budget = tts.Budget(total_tokens=100)  # less than one forced sample's worst case
    traces, stopped = await ctx.sample(1)
    assert traces == [] and stopped == "budget"
