"""OpenAIGenerator against one real vLLM OpenAI-compatible server (tiny random Llama, CPU).

The retry tests use a tiny HTTP stub on 127.0.0.1 (a fake server, clearly one: it only answers
503s, 400s and a canned chat completion) and a dead port, since a real server cannot be made to
fail on demand.
"""

from __future__ import annotations

import asyncio
import collections
import re
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from servers import StubServer, free_port, vllm_server  # noqa: E402
from tiny_models import build_llama  # noqa: E402

from tts.errors import TTSError  # noqa: E402
from tts.backends.openai import OpenAIGenerator  # noqa: E402
from tts.types import GenRequest  # noqa: E402

pytestmark = pytest.mark.engine

QUESTION = [{"role": "user", "content": "Natalia sold clips to 48 of her friends. How many clips?"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(model dir, port) of one vLLM OpenAI server, stopped at the end of the module."""
    pytest.importorskip("vllm")
    model = build_llama(tmp_path_factory.mktemp("m") / "llama")
    log_path = tmp_path_factory.mktemp("log") / "vllm_server.log"
    with vllm_server(
        model, log_path, "--seed", "0", "--enable-prompt-tokens-details", "--enable-prefix-caching",
        timeout=300,  # ~30 s alone; minutes on a busy shared machine
    ) as port:
        yield str(model), port


@pytest.fixture
async def gen(server):
    model, port = server
    g = OpenAIGenerator(model, f"http://127.0.0.1:{port}/v1")
    yield g
    await g.close()


def _generated_tokens(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    values = re.findall(r"^vllm:generation_tokens_total(?:\{[^}]*\})? (\S+)$", text, re.M)
    assert values, "vllm:generation_tokens_total not found in /metrics"
    return sum(float(v) for v in values)


# -- against the real server -----------------------------------------------------------------
async def test_generate_n_with_logprobs(gen):
    req = GenRequest(messages=QUESTION, n=3, max_tokens=24, logprobs=2)
    traces, usage = await gen.generate(req)
    assert len(traces) == 3
    for t in traces:
        assert t.num_tokens == len(t.logprobs) == len(t.top_logprobs) > 0
        assert all(len(row) == 2 and row[0] >= row[1] for row in t.top_logprobs)
        # the top-1 logprob is at least the sampled token's
        assert all(row[0] >= lp - 1e-6 for row, lp in zip(t.top_logprobs, t.logprobs))
        assert t.finish_reason in ("stop", "length")
    assert usage.completion_tokens == sum(t.num_tokens for t in traces)
    assert usage.prompt_tokens == 3 * await gen.count_prompt_tokens(req) > 0


async def test_top_logprobs_up_to_the_servers_cap(gen):
    """An LLM judge reads the top 20 (vLLM's default --max-logprobs): greedy or sampled, 20 come
    back (the sampled case asked 21, one past the cap, and the server refused it with a 400);
    past the cap, a clear error before anything is sent."""
    for temperature in (0.0, 0.7):
        traces, _ = await gen.generate(GenRequest(messages=QUESTION, max_tokens=3, temperature=temperature, logprobs=20))
        rows = traces[0].top_logprobs
        assert rows and all(len(r) == 20 and r == sorted(r, reverse=True) for r in rows)
        if temperature == 0.0:  # greedy: the sampled token is the top one
            assert all(abs(r[0] - lp) < 1e-5 for r, lp in zip(rows, traces[0].logprobs))
    sent = sum(gen.calls.values())
    with pytest.raises(TTSError, match="--max-logprobs 21"):
        await gen.generate(GenRequest(messages=QUESTION, max_tokens=3, logprobs=21))
    assert sum(gen.calls.values()) == sent


async def test_token_counts_without_logprobs(gen):
    traces, usage = await gen.generate(GenRequest(messages=QUESTION, n=2, max_tokens=10))
    assert all(0 < t.num_tokens <= 10 and not t.logprobs for t in traces)
    assert usage.completion_tokens == sum(t.num_tokens for t in traces)
    # one request per sample, each prefilling its prompt: counted per sample, as the engine does
    assert usage.prompt_tokens == 2 * await gen.count_prompt_tokens(GenRequest(messages=QUESTION))


async def test_stop_strings(gen):
    free, _ = await gen.generate(GenRequest(messages=QUESTION, n=4, max_tokens=30))
    common = collections.Counter("".join(t.text for t in free)).most_common(1)[0][0]
    traces, _ = await gen.generate(GenRequest(messages=QUESTION, n=4, max_tokens=30, stop=(common,)))
    for t in traces:
        assert t.finish_reason in ("stop", "length")
        assert common not in t.text
    assert any(t.finish_reason == "stop" for t in traces)


async def test_tts_serve_pass_through_answers_as_vllms_own_server(server, vllm_generator):
    """What an evaluation harness sends (lm-eval's loglikelihood: a text prompt with echo and
    logprobs, max_tokens 1; its generate_until: greedy chat with stop strings) answered by vLLM's
    own server and by `tts serve` with the pass-through, on the in-process engine (the same
    weights) and on the openai backend (over that same server): the same tokens and text, and
    the same logprobs, so a harness scores alike."""
    import openai

    from servers import serving

    model, port = server
    direct = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="EMPTY", max_retries=0)
    scoring = dict(prompt=["Question: 2 + 3 = ?\nAnswer: 5", "The sky is"], echo=True, logprobs=1, max_tokens=1,
                   temperature=0)
    chat = dict(messages=QUESTION, temperature=0, max_tokens=16, stop=["\n\n", "Question:"], logprobs=True,
                top_logprobs=2)
    prompt_only = {**scoring, "max_tokens": 0}  # score the prompt alone
    want = [await direct.completions.create(model=model, **b) for b in (scoring, prompt_only)]
    want_chat = await direct.chat.completions.create(model=model, **chat)
    backend = OpenAIGenerator(model, f"http://127.0.0.1:{port}/v1")
    try:
        for gen in (vllm_generator, backend):
            async with serving(gen) as (url, _):
                ours = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="EMPTY", max_retries=0)
                got = [await ours.completions.create(model="none/tiny", **b) for b in (scoring, prompt_only)]
                got_chat = await ours.chat.completions.create(model="none/tiny", **chat)
            for w, g in zip([c for r in want for c in r.choices], [c for r in got for c in r.choices], strict=True):
                assert (g.index, g.text, g.logprobs.tokens, g.logprobs.text_offset) == \
                       (w.index, w.text, w.logprobs.tokens, w.logprobs.text_offset)
                assert g.logprobs.token_logprobs[0] is None is w.logprobs.token_logprobs[0]
                assert g.logprobs.token_logprobs[1:] == pytest.approx(w.logprobs.token_logprobs[1:], abs=1e-4)
                assert [sorted(r) for r in g.logprobs.top_logprobs[1:]] == \
                       [sorted(r) for r in w.logprobs.top_logprobs[1:]]
                assert g.finish_reason == w.finish_reason
            assert [r.usage.prompt_tokens for r in got] == [r.usage.prompt_tokens for r in want]
            w, g = want_chat.choices[0], got_chat.choices[0]
            assert (g.message.content, g.finish_reason) == (w.message.content, w.finish_reason)
            assert [t.token for t in g.logprobs.content] == [t.token for t in w.logprobs.content]
            assert [t.logprob for t in g.logprobs.content] == \
                   pytest.approx([t.logprob for t in w.logprobs.content], abs=1e-4)
    finally:
        await backend.close()
        await direct.close()


async def test_continuation_of_prefix(gen, server):
    from transformers import AutoTokenizer

    prefix = "Step 1: compute 48 / 2 = 24."
    plain = GenRequest(messages=QUESTION, n=2, max_tokens=12)
    cont = plain.replace(prefix=prefix)
    n_plain, n_cont = await gen.count_prompt_tokens(plain), await gen.count_prompt_tokens(cont)
    tok = AutoTokenizer.from_pretrained(server[0])
    assert n_cont - n_plain == len(tok.encode(prefix, add_special_tokens=False))
    traces, usage = await gen.generate(cont)
    assert usage.prompt_tokens == 2 * n_cont
    for t in traces:
        assert t.prefix == prefix and not t.text.startswith(prefix) and t.num_tokens > 0


async def test_cached_tokens_on_repeat(gen):
    long_q = " ".join(f"Problem {i}: Let x be the number. Then 2x + 3 = 11, so x = 4." for i in range(40))
    req = GenRequest(messages=[{"role": "user", "content": long_q}], max_tokens=4)
    assert await gen.count_prompt_tokens(req) > 300  # the CPU KV block is 128 tokens
    _, first = await gen.generate(req)
    _, second = await gen.generate(req)
    assert first.prompt_tokens == second.prompt_tokens > 300
    assert second.cached_tokens > 0 and second.cached_tokens >= first.cached_tokens


def _engine(port: int) -> dict[str, float]:
    """The server's own prompt, generation and finished-request counters."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    out = {}
    for name in ("prompt_tokens", "generation_tokens", "request_success"):
        values = re.findall(rf"^vllm:{name}_total(?:\{{[^}}]*\}})? (\S+)$", text, re.M)
        out[name] = sum(float(v) for v in values)
    return out


async def test_share_prompt_and_the_batch_route_charge_what_the_engine_did(server):
    """Issue 29's two cheaper calls against the real server's own counters: n = 3 samples in
    one request (share_prompt) are 3 engine requests, each prefilling the prompt, which our
    usage charges 3 times; three judge requests through the batch route are 3 engine requests
    whose prompt and generated tokens our usage matches, with the verdicts single requests
    give (greedy)."""
    model, port = server
    g = OpenAIGenerator(model, f"http://127.0.0.1:{port}/v1", share_prompt=True)
    before = _engine(port)
    traces, u = await g.generate(GenRequest(QUESTION, n=3, max_tokens=8, temperature=0.8))
    after = _engine(port)
    assert len(traces) == 3 and u.completion_tokens == sum(t.num_tokens for t in traces)
    assert after["generation_tokens"] - before["generation_tokens"] == u.completion_tokens
    assert after["prompt_tokens"] - before["prompt_tokens"] == u.prompt_tokens == 3 * await g.count_prompt_tokens(
        GenRequest(QUESTION))
    assert after["request_success"] - before["request_success"] == 3

    reqs = [GenRequest([{"role": "user", "content": f"Is {i} even? Answer Yes or No."}], max_tokens=1,
                       temperature=0.0, logprobs=5) for i in range(3)]
    before = _engine(port)
    out, u = await g.generate_many(reqs)
    after = _engine(port)
    assert g._can_batch and [len(o) for o in out] == [1, 1, 1]
    assert u.prompt_tokens == sum([await g.count_prompt_tokens(r) for r in reqs]) == (
        after["prompt_tokens"] - before["prompt_tokens"])
    assert u.completion_tokens == 3 == after["generation_tokens"] - before["generation_tokens"]
    assert after["request_success"] - before["request_success"] == 3
    single = [(await g.generate(r))[0][0] for r in reqs]
    assert [o[0].top_tokens[0] for o in out] == [t.top_tokens[0] for t in single]
    await g.close()


async def test_stream_snapshots_and_final_usage(gen):
    req = GenRequest(messages=QUESTION, max_tokens=40, logprobs=0)
    seen = []
    async for trace, usage in gen.stream(req):
        seen.append((len(trace.text), trace.num_tokens, len(trace.logprobs), usage.completion_tokens, trace.finish_reason))
    assert len(seen) > 1
    assert all(a[1] < b[1] and a[0] <= b[0] for a, b in zip(seen, seen[1:]))
    assert all(r[4] is None for r in seen[:-1]) and seen[-1][4] in ("stop", "length")
    n_text, n_tok, n_lp, n_usage, _ = seen[-1]
    assert n_tok == n_lp == n_usage <= 40
    assert usage.prompt_tokens == await gen.count_prompt_tokens(req)


async def test_stream_rejects_n_above_one(gen):
    with pytest.raises(ValueError):
        async for _ in gen.stream(GenRequest(messages=QUESTION, n=2)):
            pass


async def test_closing_stream_aborts_on_server(server):
    model, port = server
    # ignore_eos: the request would run all 500 tokens unless aborted
    g = OpenAIGenerator(model, f"http://127.0.0.1:{port}/v1", extra_body={"ignore_eos": True})
    try:
        before = _generated_tokens(port)
        s = g.stream(GenRequest(messages=QUESTION, max_tokens=500))
        async for trace, _ in s:
            if trace.num_tokens >= 5:
                break
        await s.aclose()
        await asyncio.sleep(1.5)  # 500 tokens take about 1 s here; give the engine time to run on
        mid = _generated_tokens(port) - before
        await asyncio.sleep(1.0)
        assert _generated_tokens(port) - before == mid  # nothing more is generated
        assert mid < 100

        # cancelling the task awaiting generate() closes the connection too
        before = _generated_tokens(port)
        task = asyncio.create_task(g.generate(GenRequest(messages=QUESTION, max_tokens=1900)))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(2.0)
        assert _generated_tokens(port) - before < 1000
    finally:
        await g.close()


async def test_round_robin_over_two_urls(server):
    model, port = server
    urls = [f"http://127.0.0.1:{port}/v1", f"http://localhost:{port}/v1"]
    g = OpenAIGenerator(model, urls)
    try:
        for _ in range(4):
            traces, _ = await g.generate(GenRequest(messages=QUESTION, max_tokens=3))
            assert traces[0].num_tokens > 0
        assert g.calls == {urls[0]: 2, urls[1]: 2}
    finally:
        await g.close()


async def test_client_error_is_not_retried(gen):
    with pytest.raises(TTSError, match="temperature"):
        await gen.generate(GenRequest(messages=QUESTION, temperature=5.0))
    assert sum(gen.calls.values()) == 1


# -- failures (a stub server and a dead port) --------------------------------------------------
_COMPLETION = {
    "id": "stub", "object": "chat.completion", "created": 0, "model": "stub",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "4"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8},
}


async def test_retries_503_then_succeeds():
    busy = (503, {"error": {"message": "overloaded", "type": "ServiceUnavailable", "code": 503}})
    with StubServer([busy, busy, (200, _COMPLETION)]) as stub:
        g = OpenAIGenerator("stub", stub.url, max_retries=3, backoff=0.01, vllm=False)
        try:
            traces, usage = await g.generate(GenRequest(messages=QUESTION))
        finally:
            await g.close()
    assert stub.hits == 3 and g.calls[stub.url] == 3
    assert traces[0].text == "4" and traces[0].num_tokens == 1 and traces[0].finish_reason == "stop"
    assert (usage.prompt_tokens, usage.completion_tokens) == (7, 1)


async def test_bad_request_reports_server_message():
    bad = (400, {"error": {"message": "max_tokens is too large", "type": "BadRequestError", "code": 400}})
    with StubServer([bad]) as stub:
        g = OpenAIGenerator("stub", stub.url, max_retries=3, backoff=0.01, vllm=False)
        try:
            with pytest.raises(TTSError, match="max_tokens is too large"):
                await g.generate(GenRequest(messages=QUESTION))
        finally:
            await g.close()
    assert stub.hits == 1


async def test_dead_server_gives_clear_error():
    url = f"http://127.0.0.1:{free_port()}/v1"
    g = OpenAIGenerator("m", url, max_retries=3, backoff=0.01, api_key="sk-secret-do-not-log")
    try:
        with pytest.raises(TTSError, match=r"cannot connect to .* \(3 attempts\)") as err:
            await g.generate(GenRequest(messages=QUESTION))
        assert url in str(err.value) and "sk-secret" not in str(err.value)
        with pytest.raises(TTSError, match="cannot connect"):
            async for _ in g.stream(GenRequest(messages=QUESTION)):
                pass
        # counting falls back to an upper bound when /tokenize cannot be reached
        bound = await g.count_prompt_tokens(GenRequest(messages=QUESTION))
        assert bound >= len(QUESTION[0]["content"].encode())
    finally:
        await g.close()
    assert g.calls[url] == 6
