"""Fuzzing `tts serve` over HTTP on 127.0.0.1: hypothesis-generated bodies (tests/serve_bodies.py)
to the three endpoints of a server replaying the recorded math100 bank (a real backend, fast
enough for hundreds of requests). Whatever a client sends, the answer is never a 5xx and every
error is OpenAI's error object; afterwards the server still answers. benchmarks/serve_fuzz.py
runs the same generator for a longer campaign and measures the server's memory."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

import httpx
import pytest
import serve_bodies
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servers import free_port

from tts.backends.replay import ReplayGenerator


@dataclass
class Served:
    url: str
    questions: list[str]


@pytest.fixture(scope="module")
def fuzz_server(math100_bank):
    """uvicorn with `tts serve`'s app over a replay of the bank, in a thread of its own (the
    hypothesis test is synchronous); stopped at the end of the module."""
    import uvicorn

    from tts.serve.app import create_app
    from tts.serve.schema import ServeOptions

    opts = ServeOptions(served_model_name="m", n=4, system_prompt=math100_bank.system_prompt or "",
                        max_n=16, max_seconds=20)
    app = create_app(ReplayGenerator(math100_bank), opts)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the server did not start"
        threading.Event().wait(0.02)
    try:
        yield Served(f"http://127.0.0.1:{port}", [p.question for p in math100_bank.problems()])
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def check(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:500])
    if r.headers.get("content-type", "").startswith("text/event-stream"):
        assert '"server_error"' not in r.text, r.text[-500:]
    elif r.status_code >= 400:
        err = r.json()["error"]
        assert isinstance(err["message"], str) and err["message"] and isinstance(err["type"], str), err
    else:
        r.json()


@settings(max_examples=250, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_no_request_gets_a_5xx(fuzz_server, data):
    with httpx.Client(base_url=fuzz_server.url, timeout=120) as h:  # (a hung request gets 408 at 20 s)
        if data.draw(st.integers(0, 9)) == 0:
            path = data.draw(st.sampled_from(serve_bodies.ENDPOINTS))
            r = h.post(path, content=data.draw(serve_bodies.raw()), headers={"Content-Type": "application/json"})
        else:
            path, body = data.draw(serve_bodies.body(fuzz_server.questions))
            r = h.post(path, content=serve_bodies.encode(body), headers={"Content-Type": "application/json"})
        check(r)


def test_the_server_answers_after_the_fuzz(fuzz_server):
    r = httpx.post(f"{fuzz_server.url}/v1/chat/completions", timeout=30, json={
        "model": "m", "messages": [{"role": "user", "content": fuzz_server.questions[0]}]})
    assert r.status_code == 200 and r.json()["usage"]["tts"]["samples"] == 4
