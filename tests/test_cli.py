"""`tts bench`: errors a user can cause, and resumable runs on the real engine."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from tts.experiment.evaluate import BenchConfig, bench, summarize
from tts.registry import names


def tts_cli(*args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "tts.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def one_line_error(proc) -> str:
    """The error is one line, last, with no traceback (retry warnings may come before it)."""
    assert proc.returncode == 2, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert lines[-1].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    return lines[-1]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--task", "gsm9k", "--strategy", "best_of_n"], "valid: aime24, aime25, gsm8k, humaneval, math500, mbpp"),
        (["--task", "gsm8k", "--strategy", "best_of_m"], "valid: " + ", ".join(names("strategy"))),
        (["--task", "gsm8k", "--strategy", "best_of_n", "--param", "beam=2"], "takes no parameter beam"),
        (["--task", "gsm8k", "--strategy", "best_of_n", "--budget", "tokens=5"], "unknown budget cap tokens"),
        (["--task", "gsm8k", "--strategy", "best_of_n", "--backend", "tgi"], "valid: openai, replay, vllm"),
    ],
)
def test_bad_names_get_one_line_listing_valid_ones(args, expected, shared_data):
    err = one_line_error(tts_cli("bench", *args, "--data", str(shared_data / "gsm8k_test.jsonl")))
    assert expected in err


def test_malformed_data_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "1+1?", "answer": "#### 2"}\n{"question": oops}\n')
    err = one_line_error(tts_cli("bench", "--task", "gsm8k", "--strategy", "self_consistency", "--data", str(bad)))
    assert "bad.jsonl" in err and "2" in err


def test_missing_model_folder_is_named(tmp_path, shared_data):
    missing = tmp_path / "no-such-model"
    err = one_line_error(tts_cli(
        "bench", "--task", "gsm8k", "--strategy", "self_consistency", "--limit", "1",
        "--data", str(shared_data / "gsm8k_test.jsonl"), "--model", str(missing), "--out", str(tmp_path / "r.jsonl"),
    ))
    assert str(missing) in err


def test_unreachable_server_fails_clearly(tmp_path, shared_data):
    """A server that is down: every problem is recorded as failed (a re-run retries it), and the
    run ends with exit 1 and one line naming the URL, no traceback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    url = f"http://127.0.0.1:{port}/v1"
    proc = tts_cli(
        "bench", "--task", "gsm8k", "--strategy", "self_consistency", "-n", "2", "--limit", "2",
        "--data", str(shared_data / "gsm8k_test.jsonl"), "--backend", "openai", "--model", "m",
        "--base-url", url, "--out", str(tmp_path / "r.jsonl"), "--retries", "1",
    )
    last = [line for line in proc.stderr.splitlines() if line.strip()][-1]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "2 problems failed" in last and f"cannot connect to {url}" in last and "again to retry" in last
    recs = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(recs) == 2 and all(r["status"] == "failed" and url in r["error"] for r in recs)


@pytest.mark.engine
async def test_bench_resumes_without_regenerating(vllm_generator, shared_data, tmp_path):
    out = tmp_path / "r.jsonl"
    cfg = BenchConfig(
        task="gsm8k", strategy="best_of_n", n=2, data=str(shared_data / "gsm8k_test.jsonl"),
        limit=3, out=str(out), max_tokens=12, model="tiny",
    )
    calls = 0
    real = vllm_generator.generate

    async def counting(req):
        nonlocal calls
        calls += 1
        return await real(req)

    vllm_generator.generate = counting
    try:
        store, chash, problems = await bench(cfg, generator=vllm_generator)
        assert calls == 3 and len(store.records) == 3
        # A crash after two problems: cut the file back to two records, then resume.
        lines = out.read_text().splitlines(keepends=True)
        out.write_text("".join(lines[:2]) + lines[2][:25])
        calls = 0
        store, chash2, _ = await bench(cfg, generator=vllm_generator)
        assert chash2 == chash and calls == 1
        calls = 0
        store, _, _ = await bench(cfg, generator=vllm_generator)
        assert calls == 0
    finally:
        del vllm_generator.generate
    recs = [json.loads(l) for l in out.read_text().splitlines()]
    assert sorted(r["problem_id"] for r in recs) == sorted(p.id for p in problems)
    for r in recs:
        assert r["config_hash"] == chash and r["seed"] == 0 and r["gold"] is not None
        assert r["correct"] in (True, False) and r["n_samples"] == 2
        assert r["usage"]["completion_tokens"] > 0 and len(r["answers"]) == 2
    s = summarize(recs)
    assert s["problems"] == 3 and 0.0 <= s["accuracy"] <= s["pass_at_n"] <= 1.0


@pytest.mark.engine
def test_cli_end_to_end_and_rerun(tiny_model_dir, tiny_prm_dir, shared_data, tmp_path):
    """The real command: beam search over the tiny model scored by the tiny PRM (two engines),
    then the same command again, which finds everything done and starts no engine."""
    out = tmp_path / "cli.jsonl"
    args = [
        "bench", "--task", "gsm8k", "--data", str(shared_data / "gsm8k_test.jsonl"), "--strategy",
        "beam_search", "-n", "4", "--param", "beam_width=2", "--param", "max_steps=2", "--limit", "2",
        "--max-tokens", "8", "--model", str(tiny_model_dir), "--verifier", "qwen_prm",
        "--verifier-model", str(tiny_prm_dir), "--max-model-len", "1024", "--out", str(out),
    ]
    first = tts_cli(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "accuracy" in first.stdout and "2 new records" in first.stdout
    second = tts_cli(*args)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "0 new records" in second.stdout
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(recs) == 2 and all(r["usage"]["verifier_tokens"] > 0 for r in recs)
