"""Servers for the tests: a real vLLM OpenAI server subprocess, a FAKE HTTP stub (clearly one, for
failures a real server cannot be made to produce on demand), and vLLM's own engine counters."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest


@contextlib.asynccontextmanager
async def serving(generator, **options):
    """`tts serve`'s app (served as "tiny") on a free port of 127.0.0.1, uvicorn on the test's
    event loop; yields (base URL, app); stops on exit."""
    import uvicorn

    from tts.serve.app import create_app
    from tts.serve.schema import ServeOptions

    opts = ServeOptions(served_model_name="tiny", **options)
    app = create_app(generator, opts)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # a failed start raises here
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        await task


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def vllm_server(
    model_dir, log_path: Path, *extra_args: str, timeout: float = 300, name: str = "vLLM server"
) -> Iterator[int]:
    """Start `python -m vllm.entrypoints.openai.api_server` for `model_dir` on a free port of
    127.0.0.1 (its output in `log_path`), wait up to `timeout` s for /health, yield the port and
    stop the server on exit. A server that exits or does not come up fails the test with the
    log's tail."""
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", VLLM_CPU_KVCACHE_SPACE="1")
    # one engine step can take minutes on a busy shared CPU; vLLM's default (300 s) kills the server
    env.setdefault("VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS", "3600")
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
        "--host", "127.0.0.1", "--port", str(port), "--enforce-eager", "--max-model-len", "2048",
        *extra_args,
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.time() + timeout
        while True:
            if proc.poll() is not None or time.time() > deadline:
                tail = log_path.read_text(errors="replace")[-4000:]
                pytest.fail(f"{name} did not come up (exit {proc.poll()}); log tail:\n{tail}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class StubServer:
    """A FAKE server on 127.0.0.1 answering POSTs with `replies` ((status, json) pairs) in order,
    the last one for every request after; counts `hits` and records the request `paths`.
    `url` is its base URL, under /v1 as an OpenAI-compatible server's."""

    def __init__(self, replies):
        self.replies, self.hits, self.paths = list(replies), 0, []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                stub.paths.append(self.path)
                status, body = stub.replies[min(stub.hits, len(stub.replies) - 1)]
                stub.hits += 1
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def engine_counters(gen) -> dict[str, float]:
    """vLLM's own Prometheus counters of `gen`'s engine (its token counts, independent of ours).

    Read from that engine's stat logger, not the global registry: each new engine (the thinking
    engine is a second one) unregisters the vllm:* metrics of the engines before it."""
    from prometheus_client import Counter
    from vllm.v1.metrics.loggers import PrometheusStatLogger

    loggers = [lg for lg in gen.engine.logger_manager.stat_loggers if isinstance(lg, PrometheusStatLogger)]
    out: dict[str, float] = {}

    def walk(obj):
        if isinstance(obj, Counter):
            for metric in obj.collect():
                for s in metric.samples:
                    if s.name.endswith("_total"):
                        out[s.name] = out.get(s.name, 0.0) + s.value
        elif isinstance(obj, dict):
            for v in obj.values():
                walk(v)
        elif isinstance(obj, list | tuple):
            for v in obj:
                walk(v)

    for lg in loggers:
        for name, value in vars(lg).items():
            if name.startswith("counter"):
                walk(value)
    return out


class FakeOpenAIServer:
    """A FAKE OpenAI-compatible chat server on 127.0.0.1 that fails on demand (a real server
    cannot be made to): the fault-injection fixture. Answers POST /v1/chat/completions, streamed
    or not. `mode` is what every request gets, or only the first `fail_first` requests (then
    "ok", to prove a retry survived):

    - "ok": a completion of `text` (streamed in word chunks, with usage); `n` choices for a
      request with `n`, one per conversation on the batch route (`.../chat/completions/batch`,
      vLLM's; 404 when `batch_route` is False), with `token_ids` (one per word) when asked;
    - "http500" / "http400": that error status with an OpenAI-style error body;
    - "ratelimit": 429 with a `Retry-After: retry_after` header;
    - "hang": accepts, reads the request, never answers (bounded: held at most `hang_s`, and
      released when the server stops);
    - "malformed": 200 with a body that is not JSON; "empty": 200 with an empty body;
    - "no_choices": 200 with a valid completion whose choices are empty;
    - "cut": streams two content chunks, then closes the connection (no finish reason, no
      [DONE]); non-streamed, sends half the JSON body and closes;
    - "truncated": streams one content chunk, then an event whose JSON is cut short, then
      closes; non-streamed, as "cut";
    - "nologprobs": as "ok", but never returns the logprobs a request asks for.

    `only` ("stream" or "generate") applies the mode to streamed or to non-streamed requests
    only, the others get "ok" (a probe or a judge failing beside healthy streams). "ok" answers a
    request for logprobs with them (each word at -0.1, "no" second at -2.5) and a one-token
    request (a judge's verdict) with "yes". `hits` counts requests, `times` their arrival
    (time.monotonic()), `auth` the Authorization headers received."""

    MODES = ("ok", "http500", "http400", "ratelimit", "hang", "malformed", "empty", "no_choices", "cut", "truncated",
             "nologprobs")

    def __init__(self, mode: str = "ok", fail_first: int | None = None, text: str = "so the answer is \\boxed{4}",
                 retry_after: float = 1, hang_s: float = 30, only: str | None = None):
        if mode not in self.MODES:
            raise ValueError(f"unknown mode {mode!r}; valid: {', '.join(self.MODES)}")
        if only not in (None, "stream", "generate"):
            raise ValueError(f"only must be 'stream' or 'generate', not {only!r}")
        self.mode, self.fail_first, self.text, self.only = mode, fail_first, text, only
        self.auth: list[str] = []
        self.retry_after, self.hang_s = retry_after, hang_s
        self.hits, self.times = 0, []
        self.report_usage = True  # False: a server that reports no token counts
        self.batch_route = True  # False: POST .../batch answers 404 (a server without vLLM's batch route)
        self.requests: list[tuple[str, int]] = []  # (path, choices) of each completed non-streamed request
        self._stop = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with threading.Lock():
                    fake.hits += 1
                    fake.times.append(time.monotonic())
                    fake.auth.append(self.headers.get("Authorization", ""))
                    n = fake.hits
                mode = fake.mode if fake.fail_first is None or n <= fake.fail_first else "ok"
                if fake.only is not None and fake.only != ("stream" if body.get("stream") else "generate"):
                    mode = "ok"
                getattr(self, f"_{mode}")(body)

            def _send(self, status, data: bytes, headers=(), length=None):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data) if length is None else length))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()

            def _error(self, status, message, headers=()):
                self._send(status, json.dumps({"error": {"message": message, "type": "fake", "code": status}}).encode(),
                           headers)

            def _http500(self, body):
                self._error(500, "FAKE internal error")

            def _http400(self, body):
                self._error(400, "FAKE bad request: max_tokens is too large")

            def _ratelimit(self, body):
                self._error(429, "FAKE rate limited", [("Retry-After", str(fake.retry_after))])

            def _hang(self, body):
                fake._stop.wait(fake.hang_s)
                self.close_connection = True

            def _malformed(self, body):
                self._send(200, b"<html>this is not json</html>")

            def _empty(self, body):
                self._send(200, b"")

            def _completion(self, choices):
                usage = {"prompt_tokens": 7, "completion_tokens": len(fake.text.split()), "total_tokens": 0}
                return {"id": "fake", "object": "chat.completion", "created": 0, "model": "fake", "choices": choices,
                        "usage": usage if fake.report_usage else None}

            def _no_choices(self, body):
                if body.get("stream"):
                    return self._sse([self._chunk(None, None, usage=True)], done=True)
                self._send(200, json.dumps(self._completion([])).encode())

            def _chunk(self, content, finish, usage=False, k=0):
                c = {"id": "fake", "object": "chat.completion.chunk", "created": 0, "model": "fake", "choices": []}
                if content is not None or finish is not None:
                    c["choices"] = [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]
                if usage and fake.report_usage:
                    c["usage"] = {"prompt_tokens": 7, "completion_tokens": k, "total_tokens": 7 + k}
                return c

            def _sse(self, chunks, done):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                for c in chunks:
                    self.wfile.write(f"data: {json.dumps(c)}\n\n".encode())
                    self.wfile.flush()
                if done:
                    self.wfile.write(b"data: [DONE]\n\n")

            def _ok(self, body, logprobs=True):
                text = "yes" if body.get("max_tokens") == 1 else fake.text
                words = text.split(" ")
                lp = logprobs and body.get("logprobs")
                if not body.get("stream"):
                    batch = self.path.endswith("/batch")
                    if batch and not fake.batch_route:
                        return self._error(404, "FAKE: no such route")
                    k = len(body["messages"]) if batch else body.get("n") or 1
                    choices = []
                    for i in range(k):
                        msg = {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                        if body.get("return_token_ids"):
                            msg["token_ids"] = list(range(len(words)))
                        if lp:
                            msg["logprobs"] = {"content": [self._logprob(w if j == 0 else " " + w)
                                                           for j, w in enumerate(words)]}
                        choices.append(msg)
                    out = self._completion(choices)
                    if out["usage"]:
                        out["usage"]["completion_tokens"] = len(words) * k
                        out["usage"]["prompt_tokens"] *= k if batch else 1  # n samples: the prompt once
                    fake.requests.append((self.path, k))
                    return self._send(200, json.dumps(out).encode())
                chunks = [self._chunk(w if i == 0 else " " + w, None, usage=True, k=i + 1) for i, w in enumerate(words)]
                if lp:
                    for c, w in zip(chunks, words):
                        c["choices"][0]["logprobs"] = {"content": [self._logprob(c["choices"][0]["delta"]["content"])]}
                chunks.append(self._chunk("", "stop", usage=True, k=len(words)))
                self._sse(chunks, done=True)

            def _logprob(self, token):
                top = [{"token": token, "logprob": -0.1, "bytes": None},
                       {"token": "no", "logprob": -2.5, "bytes": None}]
                return {"token": token, "logprob": -0.1, "bytes": None, "top_logprobs": top}

            def _nologprobs(self, body):
                self._ok(body, logprobs=False)

            def _truncated(self, body):
                if not body.get("stream"):
                    return self._cut(body)
                self._sse([self._chunk("so", None, usage=True, k=1)], done=False)
                self.wfile.write(b'data: {"id": "fake", "object": "chat.completion.chunk", "choi\n\n')
                self.wfile.flush()
                self.close_connection = True

            def _cut(self, body):
                if not body.get("stream"):
                    data = json.dumps(self._completion([])).encode()
                    self._send(200, data[: len(data) // 2], length=len(data))
                else:
                    self._sse([self._chunk("so", None, usage=True, k=1), self._chunk(" the", None, usage=True, k=2)],
                              done=False)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()  # releases hanging handlers
        self.httpd.shutdown()
        self.httpd.server_close()
