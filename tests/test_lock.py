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
