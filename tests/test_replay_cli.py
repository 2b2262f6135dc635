"""`tts bench --backend replay --bank DIR`: results served from a recorded bank (the math100
import, and a small synthetic bank with known sampling), hashed apart from live runs; and the
`recorded` verifier by name."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_bank import MANIFEST, rec

from tts.bank import Bank, BankWriter
from tts.experiment.evaluate import BenchConfig, bench, prepare
from tts.cli import main
from tts.errors import TTSError
from tts.registry import lookup
from verifiers.recorded import RecordedScore


@pytest.fixture
def small_bank(tmp_path):
    """Three problems x 6 samples recorded at temperature 0.7, max_tokens 32 (test_bank's)."""
    w = BankWriter(tmp_path / "small", MANIFEST)
    for k in ("a", "b", "c"):
        w.append(rec(k))
    return Bank(tmp_path / "small")


def test_recorded_verifier_is_registered():
    assert lookup("verifier", "recorded") is RecordedScore


def test_cli_replay_bench_serves_the_bank_and_resumes(math100_bank, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    args = ["bench", "--backend", "replay", "--bank", str(math100_bank.path), "--task", "math500",
            "--strategy", "best_of_n", "-n", "4", "--limit", "10", "--out", str(out)]
    assert main(args) == 0
    assert "10 new records" in capsys.readouterr().out
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["problem_id"] for r in recs) == sorted(math100_bank.keys()[:10])  # the bank's problems
    for r in recs:
        assert r["model"] == f"replay:{math100_bank.model}@m100"
        assert r["replay"]["bank"] == str(math100_bank.path)
        # the bank has outcome scores: best_of_n selects by them (the `recorded` verifier) by default
        assert len(r["scores"]) == 4 and None not in r["scores"]
        best = max(range(4), key=lambda i: r["scores"][i])
        assert r["answer"] == r["answers"][best]
        assert r["usage"]["completion_tokens"] > 0 and r["usage"]["generator_flops"] == 0
    # the choice is what the bank's own correctness says it is
    by_key = {k: math100_bank.get(k) for k in (r["problem_id"] for r in recs)}
    for r in recs:
        gold_ok = {s.answer: s.correct for s in by_key[r["problem_id"]].samples}
        assert r["correct"] == gold_ok[r["answer"]]
    assert main(args) == 0  # a re-run finds everything done
    assert "0 new records" in capsys.readouterr().out and len(out.read_text().splitlines()) == 10


def test_replay_never_shares_the_live_hash(math100_bank):
    replay = BenchConfig(task="math500", strategy="self_consistency", n=4, backend="replay", bank=str(math100_bank.path))
    live = BenchConfig(task="math500", strategy="self_consistency", n=4, model=math100_bank.model)
    p, q = prepare(replay, problems=[]), prepare(live, problems=[])
    assert p.model_name.startswith("replay:") and p.model_name != q.model_name
    assert p.config_hash != q.config_hash


async def test_sampling_defaults_come_from_the_bank(small_bank, tmp_path):
    cfg = BenchConfig(task="gsm8k", strategy="self_consistency", n=2, backend="replay", bank=str(small_bank.path),
                      out=str(tmp_path / "r.jsonl"))
    p = prepare(cfg)
    assert (p.sampling.temperature, p.sampling.top_p, p.sampling.max_tokens) == (0.7, 1.0, 32)
    assert [q.id for q in p.problems] == ["a", "b", "c"]
    store, _, _ = await bench(cfg)
    assert len(store.records) == 3
    assert all(len(r["answers"]) == 2 for r in store.records.values())
    # asking for other sampling than recorded is the replay generator's clear error
    with pytest.raises(TTSError, match="temperature=0.7.*temperature=1.0"):
        prepare(BenchConfig(task="gsm8k", strategy="self_consistency", backend="replay", bank=str(small_bank.path),
                            temperature=1.0))


def test_cli_errors_are_one_line(small_bank, tmp_path):
    def err(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "tts.cli", "bench", "--task", "gsm8k", "--strategy",
                               "self_consistency", *args], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
        return lines[0]

    assert "needs --bank" in err("--backend", "replay")
    assert "max_tokens=32" in err("--backend", "replay", "--bank", str(small_bank.path), "--max-tokens", "64",
                                  "--out", str(tmp_path / "x.jsonl"))
    assert "not a trace bank" in err("--backend", "replay", "--bank", str(tmp_path / "nothing"))


def test_cli_total_budget_allocates_resumes_and_holds_the_total(math100_bank, tmp_path, capsys):
    """`tts bench --total-budget`: records of the test split (half the problems, the other half
    learnt on), each naming the configuration it got; a resume after losing records re-solves
    only those, without duplicates, and the records' total never exceeds the budget."""
    out = tmp_path / "alloc.jsonl"
    total = 6 * 1500
    args = ["bench", "--backend", "replay", "--bank", str(math100_bank.path), "--task", "math500",
            "--strategy", "self_consistency", "-n", "4", "--out", str(out), "--total-budget", str(total),
            "--allocation", "predicted", "--candidate", "self_consistency:1,4", "--candidate", "best_of_n:2",
            "--allocation-param", "probe_n=2", "--allocation-param", "bins=2"]
    assert main(args) == 0
    assert "6 new records" in capsys.readouterr().out
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len({r["problem_id"] for r in recs}) == 6 and len({r["config_hash"] for r in recs}) == 1
    assert {r["allocation"]["config"] for r in recs} <= {"self_consistency n=1", "self_consistency n=4",
                                                         "best_of_n n=2 verifier=recorded"}
    assert sum(r["usage"]["total_tokens"] for r in recs) <= total
    out.write_text("".join(line + "\n" for line in out.read_text().splitlines()[:2]))  # a crash lost 4
    assert main(args) == 0
    assert "4 new records" in capsys.readouterr().out
    again = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["problem_id"] for r in again) == sorted(r["problem_id"] for r in recs)
    assert sum(r["usage"]["total_tokens"] for r in again) <= total  # the total holds across the resume
    assert main(args) == 0 and "0 new records" in capsys.readouterr().out


@pytest.mark.parametrize("extra, words", [
    (["--budget", "total_tokens=100000"], "cannot be combined with --total-budget"),
    (["--candidate", "self_consistency"], "must look like STRATEGY:N"),
    (["--candidate", "self_consistenc:2"], "did you mean"),
    (["--allocation", "even"], "unknown allocation policy 'even'"),
    (["--allocation-param", "bin=2"], "takes bins, probe_n"),
    (["--allocation", "predicted", "--total-budget", "10"], "less than one probe per problem"),
])
def test_cli_total_budget_errors_are_one_line(math100_bank, tmp_path, capsys, extra, words):
    args = ["bench", "--backend", "replay", "--bank", str(math100_bank.path), "--task", "math500",
            "--strategy", "self_consistency", "--out", str(tmp_path / "a.jsonl"), "--total-budget", "9000", *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1, err


def test_cli_total_budget_in_flops_prints_what_it_spent(math100_bank, tmp_path, capsys):
    """--total-unit flops: the summary's total is read through the same cost rule as the pool
    (records store generator and verifier FLOPs, not a `flops` key). FLOPs need a parameter
    count, which the imported bank lacks: a copy says 1.5e9 (Qwen2.5-Math-1.5B)."""
    import shutil

    bank = tmp_path / "m100"
    shutil.copytree(math100_bank.path, bank)
    manifest = json.loads((bank / "manifest.json").read_text())
    (bank / "manifest.json").write_text(json.dumps({**manifest, "num_params": 1_500_000_000}))
    args = ["bench", "--backend", "replay", "--bank", str(bank), "--task", "math500",
            "--strategy", "self_consistency", "-n", "2", "--out", str(tmp_path / "f.jsonl"),
            "--total-budget", "1e15", "--total-unit", "flops"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "total spent" in out
    recs = [json.loads(x) for x in (tmp_path / "f.jsonl").read_text().splitlines()]
    spent = sum(r["usage"]["generator_flops"] for r in recs)
    assert 0 < spent <= 1e15 and all(r["answer"] is not None for r in recs)
