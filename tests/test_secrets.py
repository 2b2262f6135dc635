"""Secrets never leave (issue 23): a password in `--base-url http://user:pass@host/v1` and an API
key reach the server (as its Authorization header) and nothing else: not stderr, stdout, the
results file, an error, a log line, `tts serve`'s answers or /metrics.

Before: the password was printed in every retry warning, every "could not count prompt tokens"
warning (httpx puts the URL in its messages), and in the failed record's error."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from servers import FakeOpenAIServer, StubServer, free_port  # noqa: E402

from tts.secrets import redact, split_credentials  # noqa: E402
from tts.backends.openai import OpenAIGenerator  # noqa: E402
from tts.errors import BackendError  # noqa: E402
from tts.types import GenRequest  # noqa: E402

PASSWORD, KEY = "s3cret", "sk-KEY-9f8e7d"
BASIC = "Basic " + base64.b64encode(f"user:{PASSWORD}".encode()).decode()


def test_split_credentials_and_redact():
    assert split_credentials("http://u:p%40ss@h:1/v1") == ("http://h:1/v1", ("u", "p@ss"))
    assert split_credentials("http://h:1/v1") == ("http://h:1/v1", None)
    text = f"for url 'http://user:{PASSWORD}@127.0.0.1:9/tokenize' and key {KEY}"
    assert redact(text, [KEY]) == "for url 'http://***@127.0.0.1:9/tokenize' and key ***"


def cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tts.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.mark.parametrize("mode", ["ok", "http500", "cut", "down"])
def test_bench_never_shows_the_password_or_key(tmp_path, mode):
    data = tmp_path / "p.jsonl"
    data.write_text(json.dumps({"question": "What is 2 + 2?", "answer": "4"}) + "\n")
    out = tmp_path / "r.jsonl"
    env = dict(os.environ, OPENAI_API_KEY=KEY)
    with FakeOpenAIServer("ok" if mode == "down" else mode) as s:
        port = free_port() if mode == "down" else s.url.rsplit(":", 1)[1].split("/")[0]
        proc = cli(["bench", "--task", "gsm8k", "--strategy", "first_finish", "-n", "2", "--backend", "openai",
                    "--model", "fake", "--data", str(data), "--out", str(out), "--retries", "1", "--timeout", "2",
                    "--base-url", f"http://user:{PASSWORD}@127.0.0.1:{port}/v1"], env)
    assert proc.returncode == (0 if mode == "ok" else 1), proc.stderr[-2000:]
    (rec,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert rec["status"] == ("finished" if mode == "ok" else "failed")
    if mode != "down":
        assert s.auth and set(s.auth) == {BASIC}  # the credentials still reach the server
    for where, text in (("stderr", proc.stderr), ("stdout", proc.stdout), ("results", out.read_text())):
        assert PASSWORD not in text and KEY not in text, (where, text[-2000:])
    if mode != "ok":
        assert f"127.0.0.1:{port}/v1" in rec["error"]  # the server is still named, without the password


async def test_a_key_a_server_echoes_is_redacted():
    echo = {"error": {"message": f"Incorrect API key provided: {KEY}", "type": "invalid_request_error"}}
    with StubServer([(401, echo)]) as stub:
        g = OpenAIGenerator("fake", stub.url, api_key=KEY, vllm=False, retries=0, timeout=2)
        with pytest.raises(BackendError) as e:
            await g.generate(GenRequest([{"role": "user", "content": "hi"}], max_tokens=4))
        await g.close()
    assert "Incorrect API key provided: ***" in str(e.value) and KEY not in str(e.value)


async def test_serve_never_shows_the_password(tmp_path):
    """`tts serve --backend openai` over a password-protected upstream: its answers, errors,
    /metrics and log hold no password."""
    port, log = free_port(), tmp_path / "serve.log"
    env = dict(os.environ, OPENAI_API_KEY=KEY)
    with FakeOpenAIServer("ok") as s, open(log, "wb") as logf:
        up = s.url.replace("http://", f"http://user:{PASSWORD}@")
        proc = subprocess.Popen([sys.executable, "-m", "tts.cli", "serve", "--backend", "openai", "--model", "fake",
                                 "--base-url", up, "--port", str(port), "-n", "2", "--strategy", "self_consistency"],
                                stdout=logf, stderr=subprocess.STDOUT, env=env)
        texts = []
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as h:
                for _ in range(600):
                    assert proc.poll() is None, log.read_text()[-3000:]
                    with contextlib.suppress(httpx.HTTPError):
                        if (await h.get("/health")).status_code == 200:
                            break
                    await asyncio.sleep(0.2)
                ask = {"model": "fake", "messages": [{"role": "user", "content": "What is 2 + 2?"}]}
                ok = await h.post("/v1/chat/completions", json=ask)
                texts.append(ok.text)
                s.mode = "http500"  # the upstream fails: the error the client gets names no password
                bad = await h.post("/v1/chat/completions", json=ask)
                texts += [bad.text, (await h.get("/metrics")).text]
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    assert ok.status_code == 200 and bad.status_code >= 500 and set(s.auth) == {BASIC}
    for text in (*texts, log.read_text()):
        assert PASSWORD not in text and KEY not in text, text[-2000:]


def test_sweep_never_stores_the_password(tmp_path):
    """A sweep over a password-protected server, recording a bank (n swept): nothing it writes
    (results, plan.json, the bank's manifest, index and records) nor prints holds the password."""
    import yaml

    data = tmp_path / "p.jsonl"
    data.write_text(json.dumps({"question": "What is 2 + 2?", "answer": "4"}) + "\n")
    with FakeOpenAIServer("ok") as s:
        f = tmp_path / "s.yaml"
        url = s.url.replace("http://", f"http://user:{PASSWORD}@")
        f.write_text(yaml.safe_dump({
            "model": {"backend": "openai", "name": "fake", "base_urls": [url]},
            "tasks": [{"name": "gsm8k", "data": str(data)}], "strategies": [{"name": "self_consistency"}],
            "grid": {"n": [1, 2]}, "output": str(tmp_path / "out")}))
        proc = cli(["sweep", str(f)], dict(os.environ, OPENAI_API_KEY=KEY))
    assert proc.returncode == 0, proc.stderr[-2000:]
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert any(p.name == "manifest.json" for p in written) and set(s.auth) == {BASIC}
    for p in written:
        assert PASSWORD.encode() not in p.read_bytes() and KEY.encode() not in p.read_bytes(), p
    assert PASSWORD not in proc.stdout + proc.stderr and KEY not in proc.stdout + proc.stderr
