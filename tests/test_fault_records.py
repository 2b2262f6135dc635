"""Every fault is a failed record on every path (issue 23): streamed and raced (first-finish),
probed (certainty probing), judged (DeepPrune's model judge, the LLM step judge). `tts bench
--backend openai` against the FAKE OpenAI server (tests/servers.py) in a fault mode leaves a
`status: failed` record and exits 1; the same command against a healthy server finishes it.

Before: every one of these ended as a finished record (answer None, correct False, exit 0):
first-finish skipped a failed stream and answered from the rest (none left: None); a cut
stream's snapshot counted as finished; a failed probe was counted in telemetry and its trace ran
on; a failed judge call was counted and the trace kept as its own cluster; a judge answering
without logprobs read as "no verdict" (DeepPrune) or P(yes) = 0.5 (llm_judge)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from servers import FakeOpenAIServer  # noqa: E402

from tts.cli import main  # noqa: E402


def bench(tmp_path, url: str, strategy: str, *extra: str) -> tuple[int, list[dict]]:
    data = tmp_path / "p.jsonl"
    data.write_text(json.dumps({"question": "What is 2 + 2?", "answer": "4"}) + "\n")
    out = tmp_path / "r.jsonl"
    code = main(["bench", "--task", "gsm8k", "--strategy", strategy, "--backend", "openai", "--model", "fake",
                 "--data", str(data), "--out", str(out), "--base-url", url, "--retries", "1", "--timeout", "2",
                 "--max-tokens", "32", *extra])
    return code, [json.loads(x) for x in out.read_text().splitlines()]


def failed_then_finished(tmp_path, capsys, mode: str, strategy: str, *extra: str, only: str | None = None) -> dict:
    with FakeOpenAIServer(mode, only=only, retry_after=0.05) as s:
        code, recs = bench(tmp_path, s.url, strategy, *extra)
    (rec,) = recs
    assert code == 1 and rec["status"] == "failed" and rec["answer"] is None and rec["correct"] is None, rec
    assert "problems failed" in capsys.readouterr().err
    with FakeOpenAIServer("ok") as s:
        code, recs = bench(tmp_path, s.url, strategy, *extra)
    assert code == 0 and len(recs) == 2 and recs[-1]["status"] == "finished" and recs[-1]["correct"] is True
    return rec


@pytest.mark.parametrize("mode", ["cut", "truncated", "http500", "no_choices", "malformed", "empty"])
def test_raced_streams_that_fail_make_a_failed_record(tmp_path, capsys, mode):
    rec = failed_then_finished(tmp_path, capsys, mode, "first_finish", "-n", "2")
    assert rec["error"].startswith("BackendError:")


def test_a_failed_probe_makes_a_failed_record(tmp_path, capsys):
    """Streams healthy, probes (non-streamed) failing."""
    rec = failed_then_finished(tmp_path, capsys, "http500", "certainty_probe", "--param", "chunk=2", only="generate")
    assert "HTTP 500" in rec["error"]


@pytest.mark.parametrize("mode", ["http500", "nologprobs"])
def test_a_failed_judge_makes_a_failed_record(tmp_path, capsys, mode):
    """DeepPrune's model judge (the generator, zero-shot): its calls failing, or answered without
    the logprobs a verdict is read from."""
    rec = failed_then_finished(tmp_path, capsys, mode, "deepprune", "-n", "3", "--param", "prefix_tokens=2",
                               only="generate")
    assert rec["error"].startswith("BackendError:")


def test_a_step_judge_without_logprobs_makes_a_failed_record(tmp_path, capsys):
    rec = failed_then_finished(tmp_path, capsys, "nologprobs", "beam_search", "-n", "2", "--param", "beam_width=2",
                               "--param", "max_steps=2")
    assert "without the top-k logprobs" in rec["error"]
