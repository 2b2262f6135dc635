"""`tts serve` through the real `openai` client over HTTP on 127.0.0.1.

The server runs in process (uvicorn on an ephemeral port, on the test's event loop, stopped by
the test). The HTTP logic is tested first on a FAKE scripted generator (fast, deterministic);
the engine tests at the end serve the session's tiny vLLM CPU engine and check every usage
figure against vLLM's own counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys

import httpx
import openai
import pytest
from scripted import ScriptedGenerator
from servers import engine_counters, free_port, serving

from tts.errors import BackendError
from tts.registry import names
from tts.types import GenRequest

BOXED = ["we get \\boxed{5}", "so \\boxed{5}", "maybe \\boxed{7}"]
ASK = [{"role": "user", "content": "What is 2 + 3?"}]


def client(url: str, key: str = "none") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


class RecordingGenerator(ScriptedGenerator):
    """FAKE: the scripted generator, remembering every request it was sent."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.requests: list[GenRequest] = []

    async def generate(self, req):
        self.requests.append(req)
        return await super().generate(req)


class FailingGenerator(ScriptedGenerator):
    """FAKE: fails like a backend that gave up, for prompts containing FAIL."""

    async def generate(self, req):
        if "FAIL" in req.messages[-1]["content"]:
            raise BackendError("the server stopped answering after 5 attempts")
        return await super().generate(req)


# -- HTTP logic on the scripted generator ------------------------------------------------------
async def test_models_lists_every_registered_strategy():
    async with serving(ScriptedGenerator(BOXED)) as (url, _):
        ids = [m.id async for m in client(url).models.list()]
    assert ids == ["tiny"] + [f"{s}/tiny" for s in names("strategy")]


async def test_self_consistency_answer_usage_and_sampling():
    gen = RecordingGenerator(BOXED)
    async with serving(gen, n=4) as (url, _):
        r = await client(url).chat.completions.create(
            model="tiny", messages=ASK, temperature=0.3, top_p=0.9, max_tokens=17, seed=3)
    assert len(r.choices) == 1 and r.choices[0].message.content in ("we get \\boxed{5}", "so \\boxed{5}")
    req = gen.requests[0]
    assert (req.n, req.temperature, req.top_p, req.max_tokens) == (4, 0.3, 0.9, 17)
    assert req.messages[0]["role"] == "system" and req.messages[1:] == ASK  # the default system prompt
    prompt = await gen.count_prompt_tokens(req)
    assert r.usage.prompt_tokens == 4 * prompt
    assert r.usage.completion_tokens == 3 + 2 + 2 + 3  # every sample, not just the chosen one
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    tts = r.usage.tts
    assert tts["samples"] == 4 and tts["stopped_by"] == "done" and tts["generator_calls"] == 1
    assert tts["cached_tokens"] == 3 * prompt and tts["verifier_tokens"] == 0
    assert r.tts["strategy"] == "self_consistency" and r.tts["answer"] == "5"


async def test_strategy_choice_order_and_candidates():
    async with serving(ScriptedGenerator(BOXED), n=3) as (url, _):
        c = client(url)
        by_name = await c.chat.completions.create(model="best_of_n/tiny", messages=ASK)
        by_body = await c.chat.completions.create(
            model="best_of_n/tiny", messages=ASK,
            extra_body={"tts": {"strategy": "first_finish", "n": 5, "params": {"k": 2}, "return_candidates": True,
                                "telemetry": True}})
    assert by_name.tts["strategy"] == "best_of_n" and by_name.tts["verifier"] == "confidence"
    assert by_body.tts["strategy"] == "first_finish" and by_body.tts["params"] == {"n": 5, "k": 2}
    assert [ch.index for ch in by_body.choices] == list(range(6))  # the answer + 5 candidates
    assert all("score" in ch.tts and "answer" in ch.tts for ch in by_body.choices[1:])
    assert "finish_order" in by_body.tts["telemetry"]


async def test_budget_cap_and_budget_stop():
    # 8 samples of 2-3 tokens, worst case 10 each: a cap of 25 buys 6 of them (2, 2, 1, 1).
    async with serving(ScriptedGenerator(BOXED), n=8, max_tokens=10, budget={"completion_tokens": 25}) as (url, _):
        c = client(url)
        r = await c.chat.completions.create(model="tiny", messages=ASK)
        assert r.usage.tts["stopped_by"] == "budget" and r.usage.completion_tokens <= 25
        assert r.choices[0].message.content  # the best answer so far, not an error
        with pytest.raises(openai.BadRequestError) as e:
            await c.chat.completions.create(model="tiny", messages=ASK, extra_body={"tts": {"budget": {"completion_tokens": 26}}})
        assert e.value.body["param"] == "tts.budget.completion_tokens"
        small = await c.chat.completions.create(model="tiny", messages=ASK, extra_body={"tts": {"budget": {"completion_tokens": 15}}})
        assert small.usage.completion_tokens <= 15 and small.tts["budget"] == {"completion_tokens": 15}


@pytest.mark.parametrize("body, param, words", [
    ({"messages": ASK, "extra_body": {"tts": {"strategy": "best_of_m"}}}, "tts.strategy", "did you mean 'best_of_n'"),
    ({"messages": ASK, "extra_body": {"tts": {"params": {"beam": 2}}}}, "tts.params", "takes no parameter beam"),
    ({"messages": ASK, "extra_body": {"tts": {"verifier": "oracle"}}}, "tts.verifier", "unknown verifier"),
    ({"messages": ASK, "extra_body": {"tts": {"budget": {"tokens": 5}}}}, "tts.budget", "unknown budget cap"),
    ({"messages": ASK, "extra_body": {"tts": {"budget": {"calls": 0}}}}, "tts.budget.calls", "greater than 0"),
    ({"messages": ASK, "extra_body": {"tts": {"strategi": "x"}}}, "tts.strategi", "Unrecognized request argument"),
    ({"messages": []}, "messages", "at least 1"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role", "'user'"),
    ({"messages": [{"role": "user", "content": "  "}]}, "messages", "empty"),
    ({"messages": ASK + [{"role": "assistant", "content": "4"}]}, "messages.1.role", "last message"),
    ({"messages": ASK, "tools": [{"type": "function", "function": {"name": "f"}}]}, "tools", "tool calling"),
    ({"messages": ASK, "response_format": {"type": "json_object"}}, "response_format", "structured output"),
    ({"messages": ASK, "frequency_penalty": 0.5}, "frequency_penalty", "not supported"),
    ({"messages": ASK, "extra_body": {"top_k": 5}}, "top_k", "not supported"),
    ({"messages": ASK, "extra_body": {"guided_json": {}}}, "guided_json", "Unrecognized request argument"),
    ({"messages": ASK, "top_logprobs": 2}, "top_logprobs", "needs logprobs"),
    ({"messages": ASK, "stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
    ({"messages": ASK, "stream_options": {"include_usage": True}}, "stream_options", "stream=true"),
    ({"messages": ASK, "extra_body": {"tts": {"n": 65}}}, "tts.n", "limit of 64"),
    ({"messages": ASK, "extra_body": {"tts": {"params": {"n": 65}}}}, "tts.params.n", "limit of 64"),
    ({"messages": ASK, "n": 17}, "n", "limit of 16"),
    ({"messages": ASK, "extra_body": {"tts": {"strategy": "none", "n": 2}}}, "tts.n", "has no size"),
    ({"messages": [{"role": "assistant", "content": "x", "tool_calls": [{"id": "1"}]}, *ASK]}, "messages.0.tool_calls",
     "tool calling"),
    ({"messages": [{"role": "user", "content": "many words " * 60}]}, "messages", "takes fewer than 100"),
    ({"messages": ASK, "temperature": 3}, "temperature", "less than or equal to 2"),
])
async def test_bad_input_is_400_naming_the_field(body, param, words):
    short = ScriptedGenerator(BOXED)
    short.max_model_len = 100  # the context the generator's model takes
    async with serving(short) as (url, _):
        with pytest.raises(openai.BadRequestError) as e:
            await client(url).chat.completions.create(model="tiny", **body)
    err = e.value.body
    assert err["param"] == param and words in err["message"], err


async def test_raw_http_errors_missing_messages_json_model_and_key():
    async with serving(ScriptedGenerator(BOXED), api_key="s3cret") as (url, _):
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": "Bearer s3cret"}) as h:
            bad = await h.post("/v1/chat/completions", content=b'{"model": "tiny", "messages": [')
            assert bad.status_code == 400 and "malformed JSON" in bad.json()["error"]["message"]
            missing = await h.post("/v1/chat/completions", json={"model": "tiny"})
            assert missing.status_code == 400 and missing.json()["error"]["param"] == "messages"
            # NaN passed validation and lifted the operator's cap (a comparison with NaN is false)
            nan = await h.post("/v1/chat/completions", headers={"Content-Type": "application/json"},
                               content=b'{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], '
                                       b'"tts": {"budget": {"calls": NaN}}}')
            assert nan.status_code == 400 and "NaN is not JSON" in nan.json()["error"]["message"]
            unknown = await h.post("/v1/chat/completions", json={"model": "gpt-9", "messages": ASK})
            assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
            assert (await h.get("/health")).json() == {"status": "ok"}
        async with httpx.AsyncClient(base_url=url) as h:
            for key in (None, "wrong", "s3cret!"):
                headers = {"Authorization": f"Bearer {key}"} if key else {}
                r = await h.post("/v1/chat/completions", json={"model": "tiny", "messages": ASK}, headers=headers)
                assert r.status_code == 401 and "s3cret" not in r.text
            assert (await h.get("/metrics")).status_code == 401
        with pytest.raises(openai.AuthenticationError):
            await client(url, "wrong").models.list()
        ok = await client(url, "s3cret").chat.completions.create(model="tiny", messages=ASK)
        assert ok.choices[0].message.content


async def test_full_queue_is_429_with_retry_after():
    async with serving(ScriptedGenerator(BOXED, delay=0.5), max_concurrent=1, max_queue=1) as (url, _):
        async with httpx.AsyncClient(base_url=url, timeout=30) as h:
            post = lambda: h.post("/v1/chat/completions", json={"model": "tiny", "messages": ASK})  # noqa: E731
            replies = await asyncio.gather(*(post() for _ in range(4)))
    codes = sorted(r.status_code for r in replies)
    assert codes == [200, 200, 429, 429], codes
    full = next(r for r in replies if r.status_code == 429)
    assert full.headers["retry-after"] == "1" and full.json()["error"]["code"] == "queue_full"


async def test_backend_failure_is_502_and_the_server_keeps_serving():
    async with serving(FailingGenerator(BOXED)) as (url, app):
        c = client(url)
        with pytest.raises(openai.APIStatusError) as e:
            await c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "FAIL now"}])
        assert e.value.status_code == 502 and "stopped answering" in e.value.body["message"]
        ok = await c.chat.completions.create(model="tiny", messages=ASK)
        assert ok.choices[0].message.content
        async with httpx.AsyncClient() as h:
            metrics = (await h.get(f"{url}/metrics")).text
    assert 'tts_requests_total{status="502",strategy="self_consistency"} 1.0' in metrics
    assert 'tts_requests_total{status="200",strategy="self_consistency"} 1.0' in metrics
    assert 'tts_tokens_total{kind="completion"}' in metrics and "tts_strategy_latency_seconds_bucket" in metrics


async def test_stream_sends_keepalives_then_the_answer_and_usage():
    async with serving(ScriptedGenerator(BOXED, delay=0.3), keepalive=0.05) as (url, _):
        async with httpx.AsyncClient(base_url=url, timeout=30) as h:
            async with h.stream("POST", "/v1/chat/completions",
                                json={"model": "tiny", "messages": ASK, "stream": True}) as r:
                lines = [line async for line in r.aiter_lines() if line]
        plain = [c async for c in await client(url).chat.completions.create(model="tiny", messages=ASK, stream=True)]
        chunks = [c async for c in await client(url).chat.completions.create(
            model="tiny", messages=ASK, stream=True, stream_options={"include_usage": True})]
        async with httpx.AsyncClient(base_url=url) as h:
            metrics = (await h.get("/metrics")).text
    # streams read to their end are answered (the openai client hangs up as soon as [DONE] is in)
    counted = [line for line in metrics.splitlines() if line.startswith("tts_requests_total")]
    assert counted == ['tts_requests_total{status="200",strategy="self_consistency"} 3.0'], counted
    assert ": keep-alive" in lines and lines[-1] == "data: [DONE]"
    # without include_usage every chunk has a choice (the common `chunk.choices[0].delta` loop) and none a usage
    assert all(c.choices and c.usage is None for c in plain)
    assert plain[0].choices[0].delta.role == "assistant" and plain[-1].tts["strategy"] == "self_consistency"
    text = "".join(c.choices[0].delta.content or "" for c in plain)
    assert text in ("we get \\boxed{5}", "so \\boxed{5}")
    assert [c.choices[0].finish_reason for c in plain][-1] == "stop"
    # with it, one last chunk without choices carries the whole bill, as vLLM's
    assert chunks[-1].choices == [] and all(c.usage is None for c in chunks[:-1])
    assert chunks[-1].usage.completion_tokens > 0 and chunks[-1].usage.tts["samples"] == 8


async def test_sync_client_choices_stop_and_the_drop_in_defaults():
    """The sync `openai` client: `n` is the number of choices (each one run of the strategy, usage
    summed), `stop` cuts every choice, and the pass-through sends the conversation as it is (no
    system prompt), at vLLM's defaults: temperature 1.0 and max_tokens the rest of the context."""
    gen = RecordingGenerator(BOXED)
    gen.max_model_len = 100
    async with serving(gen) as (url, _):
        sync = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        r = await asyncio.to_thread(sync.chat.completions.create, model="none/tiny", messages=ASK, n=3, stop=["get", "7"])
        sent = list(gen.requests)
        gen.requests.clear()
        sc = await client(url).chat.completions.create(model="tiny", messages=ASK, n=2, max_tokens=9)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert [c.message.content for c in r.choices] == ["we ", "so \\boxed{5}", "maybe \\boxed{"]
    assert [c.finish_reason for c in r.choices] == ["stop"] * 3
    assert r.usage.tts["samples"] == 3 and r.usage.completion_tokens == 2 + 2 + 2  # the fake's words, summed
    assert all(q.messages == ASK and q.n == 1 and q.stop == ("get", "7") and q.temperature == 1.0 for q in sent)
    assert sent[0].max_tokens == 100 - await gen.count_prompt_tokens(sent[0])
    # a strategy: its system prompt, tts.Sampling's temperature, each choice a whole run
    assert len(sc.choices) == 2 and sc.usage.tts["samples"] == 16 and len(sc.tts["answers"]) == 2
    assert all(q.messages[0]["role"] == "system" and q.n == 8 and q.temperature == 0.7 and q.max_tokens == 9
               for q in gen.requests)


async def test_temperature_zero_samples_a_voting_strategy_at_the_servers_temperature():
    """Greedy samples are all the same: a strategy of several samples asked for temperature 0
    samples at the server's --temperature and says so; a single sample stays greedy."""
    gen = RecordingGenerator(BOXED)
    async with serving(gen, n=4, temperature=0.5) as (url, _):
        c = client(url)
        voted = await c.chat.completions.create(model="tiny", messages=ASK, temperature=0)
        assert gen.requests[-1].temperature == 0.5
        one = await c.chat.completions.create(model="none/tiny", messages=ASK, temperature=0)
        assert gen.requests[-1].temperature == 0
        single = await c.chat.completions.create(model="tiny", messages=ASK, temperature=0, extra_body={"tts": {"n": 1}})
        assert gen.requests[-1].temperature == 0
    assert voted.tts["sampling"] == {"temperature": 0.5, "requested_temperature": 0.0}
    assert one.tts["sampling"] == single.tts["sampling"] == {"temperature": 0.0}


async def test_responses_api_with_the_openai_client():
    async with serving(ScriptedGenerator(BOXED), n=3) as (url, _):
        c = client(url)
        r = await c.responses.create(model="tiny", input="What is 2 + 3?", instructions="Be brief.",
                                     max_output_tokens=50)
        events = [e async for e in await c.responses.create(
            model="none/tiny", input=[{"role": "user", "content": [{"type": "input_text", "text": "2 + 3?"}]}],
            stream=True)]
        with pytest.raises(openai.BadRequestError) as e:
            await c.responses.create(model="tiny", input="hi", tools=[{"type": "web_search"}])
        with pytest.raises(openai.BadRequestError) as prev:
            await c.responses.create(model="tiny", input="hi", previous_response_id="resp_1")
    assert r.status == "completed" and r.output_text in ("we get \\boxed{5}", "so \\boxed{5}")
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0 and r.tts["strategy"] == "self_consistency"
    kinds = [ev.type for ev in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert [ev.sequence_number for ev in events] == list(range(len(events)))
    text = "".join(ev.delta for ev in events if ev.type == "response.output_text.delta")
    assert text == events[-1].response.output_text and events[-1].response.usage.output_tokens > 0
    assert e.value.body["param"] == "tools" and "tool calling" in e.value.body["message"]
    assert prev.value.body["param"] == "previous_response_id"


async def test_completions_need_the_pass_through_and_a_backend_that_completes_text():
    async with serving(ScriptedGenerator(BOXED)) as (url, _):
        c = client(url)
        with pytest.raises(openai.BadRequestError) as strategy:
            await c.completions.create(model="tiny", prompt="2 + 3 =")
        with pytest.raises(openai.BadRequestError) as backend:
            await c.completions.create(model="none/tiny", prompt="2 + 3 =")
        with pytest.raises(openai.BadRequestError) as logprobs:
            await c.chat.completions.create(model="none/tiny", messages=ASK, logprobs=True)
    assert strategy.value.body["code"] == "strategy_unsupported" and "none/tiny" in strategy.value.body["message"]
    assert "does not complete raw text" in backend.value.body["message"]
    assert logprobs.value.body["code"] == "logprobs_unavailable"


async def test_hostile_requests_get_openai_errors_never_a_500():
    """Each case of the round-3 report: a body over the limit (it was read whole: 50 MB took
    1.8 GB), bytes that are not UTF-8, nesting past the limit, NaN, a lone surrogate, an unknown
    route, a wrong method, a request past its wall time: each its 4xx in OpenAI's shape."""
    async with serving(ScriptedGenerator(BOXED, delay=0.4), max_body_bytes=4096, max_seconds=0.2) as (url, app):
        async with httpx.AsyncClient(base_url=url, timeout=30) as h:
            def post(content: bytes, path: str = "/v1/chat/completions"):
                return h.post(path, content=content, headers={"Content-Type": "application/json"})

            async def chunked():  # no Content-Length: the limit holds while reading
                for _ in range(8):
                    yield b"x" * 1024
            cases = {
                "big": await post(b'{"messages": "' + b"x" * 5000 + b'"}'),
                "big-chunked": await h.post("/v1/chat/completions", content=chunked()),
                "utf8": await post(b'{"model": "tiny", "messages": [{"role": "user", "content": "\xff\xfe"}]}'),
                "deep": await post(b'{"tts": {"params": {"a": ' + b"[" * 40 + b"]" * 40 + b"}}}"),
                "deeper": await post(b"[" * 2000 + b"]" * 2000),  # past the parser's own recursion limit
                "nan": await post(b'{"model": "tiny", "messages": [], "temperature": NaN}'),
                "inf": await post(b'{"model": "tiny", "messages": [], "top_p": -Infinity}'),
                "surrogate": await post(b'{"model": "tiny", "messages": [{"role": "user", "content": "\\ud800"}]}'),
                "array": await post(b"[1, 2]"),
                "route": await h.post("/v1/embeddings", json={}),
                "method": await h.get("/v1/chat/completions"),
                "slow": await h.post("/v1/chat/completions", json={"model": "tiny", "messages": ASK}),
            }
            ok = await client(url).models.list()
    codes = {k: r.status_code for k, r in cases.items()}
    assert codes == {"big": 413, "big-chunked": 413, "utf8": 400, "deep": 400, "deeper": 400, "nan": 400,
                     "inf": 400, "surrogate": 400, "array": 400, "route": 404, "method": 405, "slow": 408}, codes
    for r in cases.values():
        err = r.json()["error"]
        assert isinstance(err["message"], str) and err["type"] and "param" in err and "code" in err
    assert "NaN is not JSON" in cases["nan"].json()["error"]["message"]
    assert "--max-seconds" in cases["slow"].json()["error"]["message"] and app.state.service.admitted == 0
    assert ok.data  # and the server goes on answering


async def test_replay_answers_a_question_as_often_as_asked(math100_bank):
    """Each request replays from the start of the bank (deterministically), however often and
    however concurrently a question is asked; what a client can fix about a replay is a 400."""
    from tts.backends.replay import ReplayGenerator
    from tts.serve import served_name

    problem = math100_bank.problems()[0]
    ask = [{"role": "user", "content": problem.question}]
    gen = ReplayGenerator(math100_bank)
    async with serving(gen, n=8, system_prompt=math100_bank.system_prompt or "") as (url, _):
        c = client(url)
        first = await c.chat.completions.create(model="tiny", messages=ask)
        again = await asyncio.gather(*(c.chat.completions.create(model="tiny", messages=ask) for _ in range(5)))
        errors = {}
        for key, kw in {"unknown question": dict(messages=[{"role": "user", "content": "What is 2 + 2?"}]),
                        "more than the bank": dict(messages=ask, extra_body={"tts": {"n": 9}}),
                        "needs a verifier": dict(model="adaptive_sampling/tiny", messages=ask),
                        "no thinking markers": dict(model="budget_forcing/tiny", messages=ask)}.items():
            with pytest.raises(openai.BadRequestError) as e:
                await c.chat.completions.create(**{"model": "tiny", **kw})
            errors[key] = e.value.body["message"]
    assert all(r.choices[0].message.content == first.choices[0].message.content for r in again)
    assert all(r.usage.tts["samples"] == 8 for r in [first, *again])
    assert "has no problem with the question" in errors["unknown question"]
    assert "has 8 samples" in errors["more than the bank"]
    assert "needs a verifier" in errors["needs a verifier"]
    assert "thinking markers" in errors["no thinking markers"]
    assert served_name(gen.model) == "Qwen2.5-Math" and served_name("/models/qwen-0.5b/") == "qwen-0.5b"


# -- on the real engine ------------------------------------------------------------------------
def delta(before: dict, after: dict, name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


@pytest.mark.engine
async def test_engine_usage_equals_the_engine_counters(vllm_generator):
    """Self-consistency and beam search (llm_judge on the same engine), then 64 concurrent
    requests with zero failures: every usage figure is what vLLM itself counted."""
    async with serving(vllm_generator, max_tokens=12, temperature=1.0) as (url, _):
        c = client(url)
        before = engine_counters(vllm_generator)
        sc = await c.chat.completions.create(model="self_consistency/tiny", messages=ASK, extra_body={"tts": {"n": 3}})
        await asyncio.sleep(1.0)  # let the engine publish its counters
        after = engine_counters(vllm_generator)
        assert sc.usage.completion_tokens == delta(before, after, "vllm:generation_tokens_total")
        assert sc.usage.prompt_tokens == delta(before, after, "vllm:prompt_tokens_total")
        assert sc.usage.tts["cached_tokens"] == delta(before, after, "vllm:prompt_tokens_cached_total")
        assert sc.usage.tts["samples"] == 3 and sc.choices[0].message.content

        beam = await c.chat.completions.create(
            model="tiny", messages=ASK, max_tokens=60,
            extra_body={"tts": {"strategy": "beam_search", "n": 2,
                                "params": {"beam_width": 2, "max_steps": 2, "step_tokens": 8}}})
        await asyncio.sleep(1.0)
        later = engine_counters(vllm_generator)
        engine_tokens = sum(delta(after, later, f"vllm:{k}_tokens_total") for k in ("prompt", "generation"))
        assert beam.tts["verifier"] == "llm_judge" and beam.usage.tts["verifier_tokens"] > 0
        # generator + judge, both on this engine; the judge's prompt tokens its prefix cache
        # served are not in total_tokens (nothing was computed) but vLLM counts them as prompt
        assert beam.usage.total_tokens + beam.usage.tts["verifier_cached_tokens"] == engine_tokens
        assert beam.usage.prompt_tokens_details.cached_tokens == beam.usage.tts["cached_tokens"]
        assert beam.usage.tts["verifier_calls"] > 0 and beam.choices[0].message.content

        async def one(i: int):
            return await c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": f"{i} + {i}?"}],
                                                   max_tokens=8, extra_body={"tts": {"n": 2}})
        replies = await asyncio.gather(*(one(i) for i in range(64)), return_exceptions=True)
        await asyncio.sleep(1.0)
        end = engine_counters(vllm_generator)
    failed = [r for r in replies if isinstance(r, BaseException)]
    assert not failed, failed[:3]
    assert sum(r.usage.completion_tokens for r in replies) == delta(later, end, "vllm:generation_tokens_total")
    assert sum(r.usage.prompt_tokens for r in replies) == delta(later, end, "vllm:prompt_tokens_total")


@pytest.mark.engine
async def test_engine_stream_and_disconnect_aborts_every_trace(vllm_generator):
    async with serving(vllm_generator, temperature=1.0, keepalive=0.05) as (url, app):
        stream = await client(url).chat.completions.create(
            model="first_finish/tiny", messages=ASK, max_tokens=16, stream=True, stream_options={"include_usage": True},
            extra_body={"tts": {"n": 3}})
        chunks = [ch async for ch in stream]
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert chunks[-1].usage.tts["samples"] == 3 and chunks[-1].usage.completion_tokens > 0

        # first_finish runs its traces in tasks of their own: all must stop with the client.
        before = engine_counters(vllm_generator)
        async with httpx.AsyncClient(base_url=url, timeout=30) as h:
            async with h.stream("POST", "/v1/chat/completions", json={
                    "model": "first_finish/tiny", "messages": ASK, "max_tokens": 1900, "stream": True,
                    "tts": {"n": 4, "params": {"k": 4}}}) as r:  # k=4: it waits for every trace
                async for line in r.aiter_lines():
                    if line == ": keep-alive" and delta(before, engine_counters(vllm_generator),
                                                        "vllm:generation_tokens_total") > 0:
                        break  # the strategy is generating: hang up
        await asyncio.sleep(1.0)
        gone = engine_counters(vllm_generator)
        await asyncio.sleep(1.0)
        still = engine_counters(vllm_generator)
        async with httpx.AsyncClient(base_url=url) as h:
            metrics = (await h.get("/metrics")).text
    generated = delta(before, gone, "vllm:generation_tokens_total")
    assert 0 < generated < 4 * 1900 / 2, generated  # far short of the request's worst case
    assert delta(gone, still, "vllm:generation_tokens_total") == 0  # nothing of it runs on
    assert 'tts_requests_total{status="499",strategy="first_finish"} 1.0' in metrics, \
        [line for line in metrics.splitlines() if line.startswith("tts_requests_total")]
    assert app.state.service.admitted == 0


# -- the command ---------------------------------------------------------------------------------
def test_bad_default_fails_before_any_engine_starts():
    proc = subprocess.run([sys.executable, "-m", "tts.cli", "serve", "--strategy", "best_of_m"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: unknown strategy 'best_of_m'")


async def test_tts_serve_command_on_a_replayed_bank(math100_bank, tmp_path):
    """`tts serve` end to end as a command (a subprocess on 127.0.0.1, stopped by the test),
    serving recorded samples: the key comes from the environment and never reaches the log."""
    port, log = free_port(), tmp_path / "serve.log"
    env = dict(os.environ, TTS_API_KEY="k3y-from-env")
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tts.cli", "serve", "--backend", "replay", "--bank",
                                 str(math100_bank.path), "--served-model-name", "m100", "--port", str(port), "-n", "4"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url) as h:
            for _ in range(600):
                assert proc.poll() is None, log.read_text()[-3000:]
                with contextlib.suppress(httpx.HTTPError):
                    if (await h.get("/health")).status_code == 200:
                        break
                await asyncio.sleep(0.2)
        problem = math100_bank.problems()[0]
        r = await client(url, "k3y-from-env").chat.completions.create(
            model="m100", messages=[{"role": "user", "content": problem.question}])
        recorded = [s.answer for s in math100_bank.get(problem.id).samples]
        assert r.tts["answer"] in recorded and r.usage.tts["samples"] == 4 and r.usage.completion_tokens > 0
        with pytest.raises(openai.AuthenticationError):
            await client(url, "wrong").chat.completions.create(model="m100", messages=ASK)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert "k3y-from-env" not in log.read_text()


@pytest.mark.engine
async def test_engine_pass_through_logprobs_stop_choices_and_completions(vllm_generator):
    """The pass-through on the real engine: greedy choices are the same, each with the logprobs of
    every returned token (the top one is the chosen one); `stop` ends generation at the engine
    (fewer tokens), and lm-eval's loglikelihood request (echo + logprobs, max_tokens 1) returns
    the prompt's tokens with their logprobs, the first without."""
    async with serving(vllm_generator) as (url, _):
        c = client(url)
        greedy = await c.chat.completions.create(model="none/tiny", messages=ASK, n=2, temperature=0, max_tokens=12,
                                                 logprobs=True, top_logprobs=3)
        text = greedy.choices[0].message.content
        stop = text[len(text) // 2:len(text) // 2 + 2]
        cut = await c.chat.completions.create(model="none/tiny", messages=ASK, temperature=0, max_tokens=12, stop=[stop])
        prompt = "Question: what is 2 + 3?\nAnswer: 5"
        scored = await c.completions.create(model="none/tiny", prompt=prompt, echo=True, logprobs=1, max_tokens=1,
                                            temperature=0)
        streamed = [ch async for ch in await c.completions.create(
            model="none/tiny", prompt=prompt, max_tokens=4, temperature=0, stream=True,
            stream_options={"include_usage": True})]
    a, b = greedy.choices
    assert a.message.content == b.message.content and a.logprobs.content == b.logprobs.content
    tokens = a.logprobs.content
    assert "".join(t.token for t in tokens) == text and len(tokens) == greedy.usage.completion_tokens // 2
    assert all(len(t.top_logprobs) == 3 and t.top_logprobs[0].token == t.token for t in tokens)
    assert stop and cut.choices[0].message.content == text[:text.index(stop)]
    assert cut.choices[0].finish_reason == "stop" and cut.usage.completion_tokens < len(tokens)
    lp = scored.choices[0].logprobs
    ids = vllm_generator.tokenizer.encode(prompt)
    assert scored.usage.prompt_tokens == len(ids) and len(lp.tokens) == len(ids) + 1
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert all(x is not None and x <= 0 for x in lp.token_logprobs[1:])
    assert all(lp.tokens[i] in lp.top_logprobs[i] for i in range(1, len(ids) + 1))
    assert scored.choices[0].text.startswith(prompt) and "".join(lp.tokens[1:len(ids)]) in prompt
    assert streamed[-1].choices == [] and streamed[-1].usage.completion_tokens > 0
    assert "".join(ch.choices[0].text for ch in streamed[:-1])


async def test_a_client_that_leaves_stops_its_work():
    """Not streamed: a client that gives up (here a read timeout, as an impatient SDK's) has its
    request cancelled within the server's poll (0.5 s), and nothing of it goes on running."""
    gen = ScriptedGenerator(BOXED, delay=5.0)
    async with serving(gen) as (url, app):
        async with httpx.AsyncClient(base_url=url, timeout=0.5) as h:
            with pytest.raises(httpx.ReadTimeout):
                await h.post("/v1/chat/completions", json={"model": "tiny", "messages": ASK})
        await asyncio.sleep(1.5)
        service = app.state.service
        running = [t for t in asyncio.all_tasks() if "solve" in repr(t.get_coro())]
        async with httpx.AsyncClient(base_url=url) as h:
            metrics = (await h.get("/metrics")).text
    assert service.admitted == 0 and not running, running
    assert 'tts_requests_total{status="499",strategy="self_consistency"} 1.0' in metrics
