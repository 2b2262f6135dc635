"""One writer per output: a second run on the same results file fails at once, naming the holder
(issue 12: two `tts sweep` processes on one folder both ran everything, 3600 duplicate keys)."""

import subprocess
import sys
import textwrap

import pytest

from tts.errors import TTSError
from tts.experiment.store import OutputLock


def test_second_process_is_refused_with_the_holders_pid(tmp_path):
    out = tmp_path / "results.jsonl"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from tts.experiment.store import OutputLock
            OutputLock({str(out)!r}).acquire()
            print("held", flush=True)
            sys.stdin.readline()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(TTSError, match=rf"another run \(process {holder.pid}\)"):
            OutputLock(out).acquire()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    # the holder is gone: the kernel released its lock, the stale file does not block
    lock = OutputLock(out).acquire()
    lock.release()


def test_reentrant_within_one_process(tmp_path):
    a = OutputLock(tmp_path / "r.jsonl").acquire()
    b = OutputLock(tmp_path / "r.jsonl").acquire()  # the same run opening its store twice
    b.release()
    a.release()
    OutputLock(tmp_path / "r.jsonl").acquire().release()


def test_a_second_bench_on_the_same_output_fails_at_once(tmp_path, shared_data, capsys):
    """`tts bench` while another process writes the same results file: one error line naming
    that process, exit 2, nothing appended."""
    from tts.cli import main

    out = tmp_path / "r.jsonl"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from tts.experiment.store import ResultStore
            store = ResultStore({str(out)!r}, writer=True)
            print("held", flush=True)
            sys.stdin.readline()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        rc = main(["bench", "--task", "gsm8k", "--data", str(shared_data / "gsm8k_test.jsonl"), "--limit", "1",
                   "--strategy", "self_consistency", "-n", "1", "--backend", "openai", "--model", "m",
                   "--base-url", "http://127.0.0.1:9/v1", "--out", str(out)])
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert rc == 2 and f"another run (process {holder.pid})" in err and err.startswith("error: ")
        assert not out.exists() or out.read_text() == ""
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
