"""The one input boundary: malformed sweep files and CLI values are one line `error: ...` (exit 2)
before anything starts, never a traceback, a hang or a silently wrong run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tts.cli import main

GSM8K = [{"question": f"{i}+1?", "answer": f"#### {i + 1}"} for i in range(3)]


@pytest.fixture
def data(tmp_path) -> Path:
    p = tmp_path / "gsm8k.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in GSM8K))
    return p




def one_line(capsys, *args: str) -> str:
    """The command fails with exit 2 and its last stderr line is the one error line."""
    try:
        rc = main(list(args))
    except SystemExit as e:  # argparse's own refusals (a non-integer for an integer option)
        rc = e.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, err
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in err, err
    return lines[-1]


# -- tts bench ----------------------------------------------------------------------------------
BENCH_BAD = [
    (["--limit", "-1"], "--limit: Input should be greater than or equal to 1"),
    (["--limit", "0"], "--limit"),
    (["-n", "0"], "-n"),
    (["--concurrency", "0"], "--concurrency"),
    (["--budget", "total_tokens=-5"], "total_tokens: Input should be greater than 0"),
    (["--budget", "tokens=5"], "unknown budget cap tokens"),
    (["--temperature", "-0.1"], "--temperature"),
    (["--top-p", "0"], "--top-p"),
    (["--top-p", "1.5"], "--top-p"),
    (["--max-tokens", "0"], "--max-tokens"),
    (["--seed", "-1"], "--seed"),
    (["--timeout", "0"], "--timeout"),
    (["--retries", "-1"], "--retries"),
    (["--limit", "two"], "invalid int value: 'two'"),
    (["--out", "FILE/r.jsonl"], "cannot be written"),
    (["--backend", "tgi"], "unknown backend 'tgi'"),
]


@pytest.mark.parametrize("extra, expected", BENCH_BAD, ids=lambda x: " ".join(x) if isinstance(x, list) else "")
def test_bench_bad_values_are_one_line(extra, expected, data, tmp_path, capsys):
    args = ["bench", "--task", "gsm8k", "--strategy", "self_consistency", "--data", str(data)]
    (tmp_path / "FILE").write_text("a file, not a folder")
    extra = [str(tmp_path / x) if x.startswith("FILE") else x for x in extra]
    if "--out" not in extra:
        args += ["--out", str(tmp_path / "r.jsonl")]
    err = one_line(capsys, *args, *extra)
    assert expected in err
    assert not (tmp_path / "r.jsonl").exists()  # nothing started


def test_bench_data_file_not_utf8(tmp_path, capsys):
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes('{"question": "caf\xe9?", "answer": "#### 1"}\n'.encode("latin-1"))
    err = one_line(capsys, "bench", "--task", "gsm8k", "--strategy", "self_consistency", "--data", str(bad))
    assert "not UTF-8" in err and "latin1.jsonl" in err


def test_bench_missing_data_file(tmp_path, capsys):
    err = one_line(capsys, "bench", "--task", "gsm8k", "--strategy", "self_consistency",
                   "--data", str(tmp_path / "none.jsonl"))
    assert "none.jsonl not found" in err


@pytest.mark.parametrize("extra, expected", [
    (["-n", "0"], "-n"), (["--limit", "-3"], "--limit"), (["--logprobs", "-1"], "--logprobs"),
    (["--top-p", "2"], "--top-p"), (["--concurrency", "0"], "--concurrency"),
])
def test_record_bad_values_are_one_line(extra, expected, data, tmp_path, capsys):
    err = one_line(capsys, "record", "--task", "gsm8k", "--data", str(data), "--out", str(tmp_path / "b"), *extra)
    assert expected in err and not (tmp_path / "b").exists()


def test_report_of_a_missing_folder(tmp_path, capsys):
    assert "no such folder" in one_line(capsys, "report", str(tmp_path / "nothing"))


def test_sweep_options(tmp_path, data, capsys):
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump({"tasks": [{"name": "gsm8k", "data": str(data)}], "strategy": {"name": "best_of_n"}}))
    assert "--actors must be >= 1" in one_line(capsys, "sweep", str(f), "--actors", "0", "--dry-run")
    assert "--shard" in one_line(capsys, "sweep", str(f), "--shard", "2/2", "--dry-run")
    (tmp_path / "FILE").write_text("a file, not a folder")
    assert "cannot be written" in one_line(capsys, "sweep", str(f), "--out", str(tmp_path / "FILE" / "y"), "--dry-run")


# -- sweep files --------------------------------------------------------------------------------
def good(data: Path) -> dict:
    return {"tasks": [{"name": "gsm8k", "data": str(data), "limit": 2}], "strategy": {"name": "best_of_n"},
            "grid": {"n": [1, 2]}}


def edit(doc: dict, path: str, value) -> dict:
    doc = json.loads(json.dumps(doc))
    *parents, last = path.split(".")
    node = doc
    for p in parents:
        node = node[int(p)] if p.isdigit() else node.setdefault(p, {})
    node[last] = value
    return doc


SWEEP_BAD = [
    ("tasks.0.limit", -1, "tasks[0].limit: Input should be greater than or equal to 1"),
    ("tasks.0.limit", 0, "tasks[0].limit"),
    ("concurrency", 0, "concurrency"),
    ("seeds", [-1], "seeds[0]"),
    ("budget", {"total_tokens": -1}, "total_tokens: Input should be greater than 0"),
    ("budget", {"tokenz": 5}, "unknown budget cap tokenz"),
    ("sampling", {"temperature": -1}, "sampling.temperature"),
    ("sampling", {"top_p": 0}, "sampling.top_p"),
    ("sampling", {"max_tokens": 0}, "sampling.max_tokens"),
    ("model", {"timeout": -1}, "model.timeout"),
    ("model", {"retries": -2}, "model.retries"),
    ("output", "FILE/out", "cannot be written"),
    ("tasks.0.data", "/no/such.jsonl", "not found"),
    ("grid", {"n": [0]}, "n must be an integer >= 1"),
    ("grid", {"temperature": [-1.0]}, "temperature"),
    ("strategy", {"name": "best_of_n", "params": {"select": 5}}, "select"),
    ("strategy", {"name": "best_of_n", "paramz": {}}, "unknown key 'paramz' (did you mean 'params'?)"),
]


@pytest.mark.parametrize("path, value, expected", SWEEP_BAD, ids=[f"{p}={v}" for p, v, _ in SWEEP_BAD])
def test_sweep_bad_fields_are_one_line(path, value, expected, data, tmp_path, capsys):
    f = tmp_path / "s.yaml"
    (tmp_path / "FILE").write_text("a file, not a folder")
    if isinstance(value, str) and value.startswith("FILE"):
        value = str(tmp_path / value)
    f.write_text(yaml.safe_dump(edit(good(data), path, value)))
    err = one_line(capsys, "sweep", str(f), "--dry-run")
    assert str(f) in err and expected in err


def test_good_sweep_dry_runs(data, tmp_path, capsys):
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(good(data)))
    assert main(["sweep", str(f), "--dry-run"]) == 0
    assert "2 runs" in capsys.readouterr().err


BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(9))


@pytest.mark.parametrize("content, expected", [
    (b"\x00\x01\x02binary\xff\xfe", "a binary file"),
    ("caf\xe9: 1\n".encode("latin-1"), "not UTF-8"),
    (b"x" * (1 << 20) + b"\n", "larger than 1 MiB"),
    ("tasks: " + "[" * 200 + "]" * 200 + "\n", "nested deeper than"),
    (BOMB, "expands to more than"),
    ("tasks: [unclosed\n", "not valid YAML"),
    ("- a list\n", "a sweep file is a YAML mapping"),
], ids=["binary", "latin1", "too-big", "deep", "alias-bomb", "bad-yaml", "not-a-mapping"])
def test_malformed_sweep_files_are_one_line_and_fast(content, expected, tmp_path, capsys):
    f = tmp_path / "bad.yaml"
    f.write_bytes(content if isinstance(content, bytes) else content.encode())
    t0 = time.perf_counter()
    err = one_line(capsys, "sweep", str(f), "--dry-run")
    assert time.perf_counter() - t0 < 5
    assert str(f) in err and expected in err


def test_cli_bad_option_is_one_line_in_a_real_process(tmp_path):
    """The installed entry point, not just main(): exit 2 and one line, no usage dump."""
    proc = subprocess.run([sys.executable, "-m", "tts.cli", "bench", "--task", "gsm8k", "--strategy",
                           "best_of_n", "--concurrency", "zero"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")

# -- dry runs need no network -------------------------------------------------------------------
EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_experiment_dry_runs_offline_in_seconds(path, shared_data, math100_bank, tmp_path):
    """`tts sweep FILE --dry-run` (`tts itas` for a search file) validates everything and prints the plan without the network
    (failed before for the GPU files: 40 s of dataset-hub retries, then an error). Run where the
    files' relative paths resolve (relative to the file's folder: ../../shared/data,
    ../banks/math100) in a copy of the repository's layout, run from another folder, with the hub
    NOT set offline, so any attempt to reach it would show as retries and time."""
    (tmp_path / "shared").symlink_to(shared_data.parent)
    work = tmp_path / "work"
    (work / "banks").mkdir(parents=True)
    (work / "banks" / "math100").symlink_to(math100_bank.path)
    (work / "experiments").mkdir()
    copy = work / "experiments" / path.name
    copy.write_text(path.read_text())
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    t0 = time.perf_counter()
    command = "itas" if "search" in yaml.safe_load(path.read_text()) else "sweep"  # a search file is itas's
    proc = subprocess.run([sys.executable, "-m", "tts.cli", command, str(copy), "--dry-run"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=env)
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert wall < 15 and "Retrying" not in proc.stderr, (wall, proc.stderr[-2000:])
    doc = yaml.safe_load(path.read_text())
    hub = any("data" not in t for t in doc["tasks"]) and doc.get("model", {}).get("backend") != "replay"
    if hub and command == "sweep":  # counts that need a download are shown as unknown (itas lists configurations)
        assert "? (on the dataset hub" in proc.stderr and "generated tokens: ?" in proc.stderr
    else:
        assert "? (on the dataset hub" not in proc.stderr


def test_unreachable_hub_fails_fast_and_says_what_it_waited_for(tmp_path):
    """Failed before: the hub client retried for ~25 s, then a long error. Now a bounded probe
    of the hub's host (here a closed port on 127.0.0.1) names it and fails in seconds."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env["HF_ENDPOINT"] = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "tts.cli", "bench", "--task", "math500", "--strategy",
                           "self_consistency", "--limit", "1", "--out", str(tmp_path / "r.jsonl")],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2 and time.perf_counter() - t0 < 15, proc.stderr[-2000:]
    assert "loading HuggingFaceH4/MATH-500 from the dataset hub (127.0.0.1" in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith(f"error: cannot reach the dataset hub at 127.0.0.1:{port}")


# -- round 3: the cases a demanding user hit (each a traceback, a minute of retries or a silent
# wrong run before; one `error:` line now) --------------------------------------------------------
def test_bench_cases_that_crashed_or_ran_nothing(data, tmp_path, capsys, math100_bank):
    bench = ["bench", "--task", "gsm8k", "--strategy", "self_consistency", "--data", str(data)]
    assert "cannot write" in one_line(capsys, *bench, "--out", "/proc/no/such/r.jsonl")  # special filesystem
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert "holds no problems" in one_line(capsys, "bench", "--task", "gsm8k", "--strategy", "self_consistency",
                                           "--data", str(empty), "--out", str(tmp_path / "e.jsonl"))
    t0 = time.perf_counter()
    err = one_line(capsys, *bench, "--backend", "openai", "--model", "m", "--base-url", "notaurl")
    assert "--base-url: 'notaurl' is not a server URL" in err and time.perf_counter() - t0 < 5  # not 10 s of retries
    err = one_line(capsys, *bench, "--backend", "openai", "--model", "m", "--base-url", "http://u:s3cret@h:99999/v1")
    assert "is not a server URL" in err and "s3cret" not in err
    assert "--verifier-model" in one_line(capsys, *bench, "--verifier", "qwen_prm")  # not a minute of hub retries
    replay = ["bench", "--task", "math500", "--backend", "replay", "--bank", str(math100_bank.path),
              "--strategy", "self_consistency", "--out", str(tmp_path / "r.jsonl")]
    # the bank's max_tokens is its longest sample (714 here): a smaller cap bought nothing, exit 0
    err = one_line(capsys, *replay, "--budget", "completion_tokens=500")
    assert "completion_tokens=500 cannot buy one sample of max_tokens 714" in err
    # the advice was to pass the thinking markers, which then failed the same way
    assert "live backend" in one_line(capsys, *replay, "--thinking-budget", "8", "--think-open", "<think>",
                                      "--think-close", "</think>")


def test_serve_port_out_of_range_is_one_line(capsys):
    assert "--port: Input should be less than or equal to 65535" in one_line(capsys, "serve", "--port", "99999")


def test_a_deeply_nested_sweep_file_is_one_line(tmp_path, capsys):
    f = tmp_path / "deep.yaml"
    f.write_text("x: " + "[" * 3000 + "]" * 3000 + "\n")  # a RecursionError, 3,000 lines of it
    assert "nested deeper than 50 levels" in one_line(capsys, "sweep", str(f), "--dry-run")


def test_sweep_paths_are_relative_to_the_file(data, tmp_path, monkeypatch):
    from tts.experiment import sweep

    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "d.jsonl").write_text(data.read_text())
    f = folder / "s.yaml"
    f.write_text(yaml.safe_dump({"tasks": [{"name": "gsm8k", "data": "d.jsonl"}],
                                 "strategy": {"name": "self_consistency"}, "output": "out"}))
    monkeypatch.chdir(tmp_path)  # elsewhere: the file's paths still mean its own folder's
    p = sweep.plan(f, offline=True)
    assert p.out == folder / "out" and len(p.problems[0]) == 3


def test_report_of_a_corrupt_plan_or_record_is_one_line_or_a_named_skip(math100_bank, tmp_path, capsys):
    from tts.experiment import sweep

    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump({"model": {"backend": "replay", "bank": str(math100_bank.path)},
                                 "tasks": [{"name": "math500", "limit": 3}], "strategy": {"name": "self_consistency"},
                                 "output": str(tmp_path / "out")}))
    sweep.run_sweep(sweep.plan(f))
    results = tmp_path / "out" / "results.jsonl"
    lines = results.read_text().splitlines()
    bad = json.loads(lines[0])
    bad["usage"]["completion_tokens"] = "12"  # string-typed usage: a traceback in the report before
    results.write_text("\n".join([json.dumps(bad), *lines[1:]]) + "\n")
    assert main(["report", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "skipped 1 line" in err and "usage is not a mapping of numbers" in err and "Traceback" not in err
    (tmp_path / "out" / "plan.json").write_text('{"runs": [')
    assert "plan.json is not a sweep plan" in one_line(capsys, "report", str(tmp_path / "out"))


def test_a_data_file_that_is_not_utf8_is_one_line_from_python_too(tmp_path):
    from tasks import get_task
    from tts.errors import TTSError

    p = tmp_path / "latin1.jsonl"
    p.write_bytes(json.dumps({"question": "caf\u00e9?", "answer": "#### 1"}, ensure_ascii=False).encode("latin-1") + b"\n")
    with pytest.raises(TTSError, match="line 1: not UTF-8"):
        get_task("gsm8k").load(p)
