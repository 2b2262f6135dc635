"""Append-only JSONL result store that resumes.

One JSON object per line, keyed by (problem_id, config_hash, seed). Each record is written with
a single write() followed by fsync, so a crash leaves at most one torn last line; opening the
store drops such a line (and says so), and `done()` tells a re-run what to skip.

A record with `status: failed` (a backend fault) is not done: a re-run retries its problem and
appends the new record, and the latest record of a key wins (a finished one is never replaced).

A record handed in with details (under `details.DETAILS`: its traces, search tree...) has them
appended to the details file beside the store first (`tts.experiment.details`), so a stored
record implies its details; the record itself is stored without them.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from tts.errors import TTSError
from tts.experiment.details import DETAILS, DetailsWriter, is_details_file

Key = tuple[str, str, int]


def is_failed(rec: dict[str, Any]) -> bool:
    """A record of a problem whose solving failed (a resume retries it)."""
    return rec.get("status") == "failed"


def record_key(rec: dict[str, Any]) -> Key:
    return (rec["problem_id"], rec["config_hash"], int(rec["seed"]))


class ResultStore:
    """`writer=True`: this store appends, so it holds the file's `OutputLock` until it is closed
    (or dropped); readers of other shards' files take no lock."""

    def __init__(self, path: str | Path, writer: bool = False):
        self.path = Path(path)
        self.records: dict[Key, dict[str, Any]] = {}
        self._lock = OutputLock(self.path).acquire() if writer else None
        self._details = DetailsWriter(self.path)
        if self.path.exists():
            self._load()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def _load(self) -> None:
        raw = self.path.read_bytes()
        good = 0  # byte offset after the last complete, valid line
        for lineno, line in enumerate(raw.splitlines(keepends=True), 1):
            if not line.endswith(b"\n"):
                break  # torn by a crash mid-write: dropped below
            try:
                rec = json.loads(line)
                key = record_key(rec)
                if not (is_failed(rec) and self.done(key)):  # a finished record stays
                    self.records[key] = rec
            except (ValueError, KeyError, TypeError) as e:
                raise TTSError(
                    f"{self.path}:{lineno}: not a result record ({e}); fix or remove that line"
                ) from None
            good += len(line)
        if good < len(raw):
            print(f"note: dropping a torn last line of {self.path} (interrupted write)", file=sys.stderr)
            with open(self.path, "r+b") as f:
                f.truncate(good)

    def done(self, key: Key) -> bool:
        rec = self.records.get(key)
        return rec is not None and not is_failed(rec)

    def append(self, rec: dict[str, Any]) -> None:
        details = rec.pop(DETAILS, None)
        key = record_key(rec)
        if self.done(key):
            return  # never duplicate a finished record
        if details is not None:
            self._details.append(key, details)
        line = (json.dumps(rec, ensure_ascii=False) + "\n").encode()
        with open(self.path, "ab") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self.records[key] = rec

    def close(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __del__(self) -> None:
        if getattr(self, "_lock", None) is not None:
            self.close()

    def for_config(self, config_hash: str, seed: int) -> list[dict[str, Any]]:
        return [r for (_, h, s), r in self.records.items() if h == config_hash and s == seed]


class OutputLock:
    """One writer per output file: an exclusive `flock` on `<path>.lock`, held while the store is
    open, so a second `tts bench` / `tts sweep` on the same output fails at once (naming the
    process that holds it) instead of running everything twice. The kernel drops the lock when
    the holder dies, so a crashed run never leaves a stale lock; the file itself stays (removing
    it would race with a new holder). Re-entrant within a process: flock conflicts between two
    open files of one process too, and one run may open its store more than once."""

    _held: dict[Path, tuple[int, int]] = {}  # lock path -> (fd, holders in this process)

    def __init__(self, path: str | Path):
        self.path = Path(str(path) + ".lock").resolve()

    def acquire(self) -> "OutputLock":
        import fcntl

        fd, count = self._held.get(self.path, (None, 0))
        if fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                out = self.path.with_suffix("")
                raise TTSError(
                    f"{out} is being written by another run (process {holder}); wait for it to "
                    f"finish or stop it, or write to another output"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._held[self.path] = (fd, count + 1)
        return self

    def release(self) -> None:
        fd, count = self._held.get(self.path, (None, 0))
        if fd is None:
            return
        if count > 1:
            self._held[self.path] = (fd, count - 1)
            return
        del self._held[self.path]
        os.close(fd)  # closing the only descriptor releases the flock


# -- a sweep's folder ---------------------------------------------------------------------------
RESULTS = "results.jsonl"


class SweepStore(ResultStore):
    """The sweep's store: its own append-only JSONL file (see above: one write + fsync per
    record, a torn last line dropped on open, a finished key never written twice), plus
    read-only the other shards' files in the same folder, so no shard redoes what another
    finished.

    Why JSONL and not SQLite in WAL mode: a record is one line written with one write() and
    fsync'ed, so SIGKILL loses at most the problems in flight and leaves at most one torn last
    line, which opening drops; the files are greppable, diffable and concatenable (shards each
    write their own file, so there is never a second writer on one file), and nothing else is
    needed."""

    def __init__(self, out: Path, name: str = RESULTS):
        super().__init__(out / name, writer=True)
        self.others: set[Key] = set()
        for f in result_files(out):
            if f != self.path:
                self.others.update(k for k, r in ResultStore(f).records.items() if not is_failed(r))

    def done(self, key: Key) -> bool:
        return super().done(key) or key in self.others


def load_records(out: Path) -> list[dict[str, Any]]:
    """Every record in a sweep folder (all shards), each key once (a finished one if any)."""
    seen: dict[Key, dict[str, Any]] = {}
    for f in result_files(out):
        for k, r in ResultStore(f).records.items():
            if k not in seen or (is_failed(seen[k]) and not is_failed(r)):
                seen[k] = r
    return list(seen.values())


def result_files(out: str | Path) -> list[Path]:
    """A sweep folder's results files (every shard's), not their details files."""
    return sorted(f for f in Path(out).glob("results*.jsonl") if not is_details_file(f))
