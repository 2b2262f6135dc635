"""Append-only line files that survive a crash: each line is written whole with one write() and
fsync, so an interrupted write leaves at most one torn last line (no newline). Readers take the
complete lines only; a writer reopening the file cuts the torn tail before appending again.

Shared by the result store (`tts.experiment.store`) and the bank's index (`tts.bank`).
"""

from __future__ import annotations

import sys
from pathlib import Path


def complete_lines(raw: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """The newline-terminated lines of `raw` with their 1-based line numbers, and the byte
    length they take (the good prefix: a torn last line is not part of it)."""
    lines: list[tuple[int, bytes]] = []
    good = 0
    for lineno, line in enumerate(raw.splitlines(keepends=True), 1):
        if not line.endswith(b"\n"):
            break  # torn by an interrupted write: never committed
        lines.append((lineno, line))
        good += len(line)
    return lines, good


def drop_torn_tail(path: Path, good: int) -> bool:
    """Cut `path` back to its first `good` bytes when it is longer (a torn last line), saying
    so on stderr; True when something was dropped."""
    if not path.exists() or path.stat().st_size <= good:
        return False
    print(f"note: dropping a torn last line of {path} (interrupted write)", file=sys.stderr)
    with open(path, "r+b") as f:
        f.truncate(good)
    return True
