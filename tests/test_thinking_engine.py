"""Reasoning models on the real CPU engine and on a real vLLM server (with and without a
reasoning parser): thinking-aware traces, budget forcing, thinking tokens against the engine's
own counters."""

from __future__ import annotations

import asyncio
import json

import pytest
import yaml
from servers import engine_counters, vllm_server

import tts
from strategies import BudgetForcing, SelfConsistency
from tts.thinking import Markers, split_thinking
from tts.types import GenRequest, Problem

pytestmark = pytest.mark.engine


def cli_budget_forcing(model, data, tmp_path, *backend):
    """`tts bench --strategy budget_forcing` and `tts sweep` over n x budget, then `tts report`,
    as a user runs them (subprocesses), on `backend` (none: the in-process engine). Checks the
    records' thinking/answer split, the saturation table and the Pareto plot."""
    from test_cli import tts_cli

    out = tmp_path / "bench.jsonl"
    bench = tts_cli("bench", "--task", "gsm8k", "--data", str(data), "--limit", "2", "--strategy", "budget_forcing",
                    "-n", "2", "--param", "budget=16", "--param", "extensions=1", "--max-tokens", "32",
                    "--temperature", "1.0", "--model", str(model), "--max-model-len", "2048", "--enforce-eager",
                    *backend, "--out", str(out))
    assert bench.returncode == 0, bench.stderr[-3000:]
    sweep_file = tmp_path / "sweep.yaml"
    model_block = {"name": str(model), "max_model_len": 2048, "enforce_eager": True}
    if backend:
        model_block.update(backend="openai", base_urls=[backend[-1]])
    sweep_file.write_text(yaml.safe_dump({
        "model": model_block, "tasks": [{"name": "gsm8k", "data": str(data), "limit": 2}],
        "sampling": {"temperature": 1.0, "max_tokens": 40},
        "strategy": {"name": "budget_forcing", "params": {"extensions": 1}},
        "grid": {"n": [1, 2, 3], "budget": [16, 24, 32]}, "seeds": [0], "output": str(tmp_path / "sweep"),
    }))
    sweep = tts_cli("sweep", str(sweep_file))
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    records += [json.loads(line) for line in (tmp_path / "sweep" / "results.jsonl").read_text().splitlines()]
    assert len(records) == 2 + 9 * 2 and not any(r.get("status") == "failed" or r["error"] for r in records)
    for r in records:
        u = r["usage"]
        assert 0 < u["thinking_tokens"] <= u["completion_tokens"]
        assert u["thinking_tokens"] + u["answer_tokens"] == u["completion_tokens"]
    rep = tts_cli("report", str(tmp_path / "sweep"))
    assert rep.returncode == 0, rep.stderr[-3000:]
    assert "saturation points" in rep.stdout and "thinking tokens" in rep.stdout
    assert (tmp_path / "sweep" / "ttspm_gsm8k.png").exists() and (tmp_path / "sweep" / "saturation.csv").exists()


def test_cli_budget_forcing_bench_sweep_report_on_the_engine(tiny_thinking_dir, shared_data, tmp_path):
    cli_budget_forcing(tiny_thinking_dir, shared_data / "gsm8k_test.jsonl", tmp_path)

MSG = [{"role": "user", "content": "What is 2 + 3?"}]


def delta(before, after, name):
    return after.get(name, 0.0) - before.get(name, 0.0)


def boxed_task():
    """Every trace counts as answered "5" when its answer part (or thinking) has any text."""

    class Task:
        name = "tiny"
        system_prompt = "Think, then answer."

        def extract(self, text):
            return "5" if text.strip() else None

        async def grade(self, problem, answer):
            return answer == problem.answer

    return Task()


async def test_budget_forcing_on_the_engine_matches_its_counters(thinking_generator):
    gen = thinking_generator
    assert gen.markers is not None and gen.markers.switch == "enable_thinking"
    problems = [Problem(f"t{i}", f"Compute {i} + {i}. " * 4, answer="5") for i in range(3)]
    budget = 24
    before = engine_counters(gen)
    rs = await tts.run_many(problems, BudgetForcing(n=2, thinking_budget=budget, extensions=1), generator=gen,
                            sampling=tts.Sampling(max_tokens=40, temperature=1.0), task=boxed_task())
    await asyncio.sleep(1.0)
    after = engine_counters(gen)
    total = sum((r.usage for r in rs), tts.Usage())
    # the accountant's totals are the engine's, every continuation included
    assert total.completion_tokens == delta(before, after, "vllm:generation_tokens_total")
    assert total.prompt_tokens == delta(before, after, "vllm:prompt_tokens_total")
    assert total.cached_tokens == delta(before, after, "vllm:prompt_tokens_cached_total")
    assert total.cached_tokens > 0  # continuations read their prefix from the cache
    assert 0 < total.thinking_tokens < total.completion_tokens
    for r in rs:
        rec = r.record()
        assert rec["usage"]["thinking_tokens"] + rec["usage"]["answer_tokens"] == rec["usage"]["completion_tokens"]
        assert rec["usage"]["thinking_tokens"] == sum(t.thinking_tokens for t in r.traces)
        assert r.correct is not None
        for t in r.traces:
            assert t.thinking is not None and t.thinking_tokens <= budget
            assert t.text.startswith("<think>\n")
            # the random model rarely closes its thinking: the budget closes it, the answer follows
            if t.answer_part is not None:
                assert t.answer_from == "answer"
            assert t.num_tokens <= 40
    tele = rs[0].telemetry["thinking"]
    assert tele["samples"] == 2 and tele["forced_close"] + tele["waits"] >= 1


async def test_thinking_budget_applies_to_any_strategy_when_streamed(thinking_generator):
    from strategies import FirstFinish

    r = await tts.solve(Problem("s", "What is 3 + 4?"), FirstFinish(n=2, k=1), generator=thinking_generator,
                        sampling=tts.Sampling(max_tokens=30, thinking_budget=12, temperature=1.0))
    finished = [t for t in r.traces if t.finish_reason != "abort"]
    assert finished and all(t.thinking_tokens <= 12 for t in finished)
    assert r.usage.thinking_tokens <= r.usage.completion_tokens


async def test_enable_thinking_reaches_the_template(thinking_generator):
    on = thinking_generator.prompt_ids(GenRequest(MSG, enable_thinking=True))
    off = thinking_generator.prompt_ids(GenRequest(MSG, enable_thinking=False))
    tok = thinking_generator.tokenizer
    assert tok.decode(off).endswith("<think>\n\n</think>\n\n") and not tok.decode(on).endswith("</think>\n\n")
    traces, usage = await thinking_generator.generate(GenRequest(MSG, n=2, max_tokens=8, enable_thinking=False))
    assert usage.prompt_tokens == 2 * len(off)


async def test_a_thinking_switch_on_a_model_without_one_is_a_clear_error(vllm_generator):
    with pytest.raises(tts.TTSError, match=r"no thinking switch.*drop the option"):
        vllm_generator.prompt_ids(GenRequest(MSG, enable_thinking=True))
    # no markers known for the plain model: a budget says how to pass them
    with pytest.raises(tts.TTSError, match="think_open"):
        await tts.solve(Problem("x", "1+1?"), SelfConsistency(1), generator=vllm_generator,
                        sampling=tts.Sampling(max_tokens=8, thinking_budget=4))


def test_servers_with_and_without_a_reasoning_parser(tiny_thinking_dir, shared_data, tmp_path):
    """vLLM 0.32's server puts the thinking in `reasoning` with `--reasoning-parser`; without one
    the raw `<think>` text is split by us. Budget forcing runs against both."""
    from tts.backends.openai import OpenAIGenerator

    async def run(port):
        gen = OpenAIGenerator(str(tiny_thinking_dir), f"http://127.0.0.1:{port}/v1")
        try:
            r = await tts.solve(Problem("p", "Compute 2 + 2.", answer="5"),
                                BudgetForcing(n=2, thinking_budget=16, extensions=1), generator=gen,
                                sampling=tts.Sampling(max_tokens=32, temperature=1.0), task=boxed_task())
            plain, usage = await gen.generate(GenRequest(MSG, n=2, max_tokens=24, temperature=1.0,
                                                         prefix="<think>\nlet me see</think>\n\n"))
            import httpx

            raw = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=60, json={
                "model": str(tiny_thinking_dir), "messages": MSG, "max_tokens": 8}).json()
            message = raw["choices"][0]["message"]
            streamed = None
            async for streamed, _ in gen.stream(GenRequest(MSG, max_tokens=12, prefix="<think>\n")):
                pass
            return r, plain, streamed, message
        finally:
            await gen.close()

    for extra in (("--reasoning-parser", "deepseek_r1"), ()):
        with vllm_server(tiny_thinking_dir, tmp_path / f"server{len(extra)}.log", *extra) as port:
            r, plain, streamed, message = asyncio.run(run(port))
            if extra:  # the commands a user runs, against the server with the reasoning parser
                cli_budget_forcing(tiny_thinking_dir, shared_data / "gsm8k_test.jsonl", tmp_path,
                                   "--backend", "openai", "--base-url", f"http://127.0.0.1:{port}/v1")
        # vLLM 0.32 names the field `reasoning` (not `reasoning_content`); deepseek_r1 takes an
        # output without markers for thinking
        assert "reasoning_content" not in message
        assert (message.get("reasoning") is not None) == bool(extra), message
        for t in r.traces:
            assert t.thinking is not None and t.thinking_tokens <= 16, (extra, t)
            assert t.text.startswith("<think>\n")
        assert r.usage.thinking_tokens == sum(t.thinking_tokens for t in r.traces)
        assert r.usage.thinking_tokens + r.usage.answer_tokens == r.usage.completion_tokens
        for t in plain:  # continued after a closed thinking: all answer
            assert t.thinking_tokens == 0
        # a stream continued inside the thinking: all of it is thinking (unless the model closed it)
        assert streamed is not None and streamed.thinking is not None
        if streamed.answer_part is None:
            assert streamed.thinking_tokens == streamed.num_tokens
        assert split_thinking(streamed.text, Markers(), opened=True)[0] is not None
