"""Servers for the tests: a real vLLM OpenAI server subprocess, a FAKE HTTP stub (clearly one, for
failures a real server cannot be made to produce on demand), and vLLM's own engine counters."""

from __future__ import annotations

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


def engine_counters() -> dict[str, float]:
    """vLLM's own Prometheus counters (the engine's token counts, independent of ours)."""
    from prometheus_client import REGISTRY

    out: dict[str, float] = {}
    for metric in REGISTRY.collect():
        if metric.name.startswith("vllm:") and metric.type == "counter":
            for s in metric.samples:
                if s.name.endswith("_total"):
                    out[s.name] = out.get(s.name, 0.0) + s.value
    return out
