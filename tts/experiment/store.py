"""Append-only JSONL result store that resumes.

One JSON object per line, keyed by (problem_id, config_hash, seed). Each record is written with
a single write() followed by fsync, so a crash leaves at most a torn tail after the last
newline; the next writer cuts that tail (and says so), readers leave the file as it is (see
`tts.jsonl` for the rules), and `done()` tells a re-run what to skip.

A record with `status: failed` (a backend fault) is not done: a re-run retries its problem and
appends the new record, and the latest record of a key wins (a finished one is never replaced).

A record handed in with details (under `details.DETAILS`: its traces, search tree...) has them
appended to the details file beside the store first (`tts.experiment.details`), so a stored
record implies its details; the record itself is stored without them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tts import jsonl
from tts.experiment.details import DETAILS, DetailsWriter, is_details_file
from tts.jsonl import LockHolder, OutputLock

__all__ = ["RESULTS", "Key", "OutputLock", "ResultStore", "SweepStore", "is_failed", "load_records", "record_key"]

Key = tuple[str, str, int]


def is_failed(rec: dict[str, Any]) -> bool:
    """A record of a problem whose solving failed (a resume retries it)."""
    return rec.get("status") == "failed"


def record_key(rec: dict[str, Any]) -> Key:
    return (rec["problem_id"], rec["config_hash"], int(rec["seed"]))


def _as_record(value: Any) -> dict[str, Any]:
    """A JSON line that is a result record (else TypeError / KeyError / ValueError)."""
    if not isinstance(value, dict):
        raise TypeError(f"a JSON {type(value).__name__}, not an object")
    record_key(value)
    usage = value.get("usage", {})
    if not isinstance(usage, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                              for v in usage.values()):
        raise ValueError("its usage is not a mapping of numbers")
    return value


class ResultStore(LockHolder):
    """`writer=True`: this store appends, so it holds the file's `OutputLock` until it is closed
    (or dropped), and only it repairs the file's torn tail (`tts.jsonl`); a reader (another
    shard's file, `tts report`) never changes the file. Lines that are not records are skipped
    and named on stderr, and stay in the file."""

    def __init__(self, path: str | Path, writer: bool = False):
        self.path = Path(path)
        self.records: dict[Key, dict[str, Any]] = {}
        self._lock = OutputLock(self.path).acquire() if writer else None
        self._details = DetailsWriter(self.path) if writer else None
        loaded = jsonl.load(self.path, _as_record)
        jsonl.report_skipped(self.path, loaded.skipped, "a result record")
        for _, rec in loaded.records:
            key = record_key(rec)
            if not (is_failed(rec) and self.done(key)):  # a finished record stays
                self.records[key] = rec
        if writer:
            jsonl.repair_tail(self.path, loaded)

    def done(self, key: Key) -> bool:
        rec = self.records.get(key)
        return rec is not None and not is_failed(rec)

    def append(self, rec: dict[str, Any]) -> None:
        if self._lock is None or self._details is None:
            raise TypeError(f"{self.path} was opened to read: ResultStore(path, writer=True) appends")
        details = rec.pop(DETAILS, None)
        key = record_key(rec)
        if self.done(key):
            return  # never duplicate a finished record
        if details is not None:  # first: a stored record implies its details
            self._details.append(key, details)
        jsonl.append_line(self.path, (json.dumps(rec, ensure_ascii=False) + "\n").encode())
        self.records[key] = rec

    def for_config(self, config_hash: str, seed: int) -> list[dict[str, Any]]:
        return [r for (_, h, s), r in self.records.items() if h == config_hash and s == seed]


# -- a sweep's folder ---------------------------------------------------------------------------
RESULTS = "results.jsonl"


class SweepStore(ResultStore):
    """The sweep's store: its own append-only JSONL file (see above: one write + fsync per
    record, a torn tail cut by the writer, a finished key never written twice), plus
    read-only the other shards' files in the same folder, so no shard redoes what another
    finished.

    Why JSONL and not SQLite in WAL mode: a record is one line written with one write() and
    fsync'ed, so SIGKILL loses at most the problems in flight and leaves at most a torn tail,
    which the next writer cuts; the files are greppable, diffable and concatenable (shards each
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
