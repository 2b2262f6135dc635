"""Append-only line files that survive a crash and never lose a byte to a reader.

Each line is written whole, with its `\\n`, in one write() followed by fsync, so an interrupted
write leaves at most a torn *tail*: the bytes after the last `\\n`. The rules every reader and
writer of these files follows (the result store, `tts.experiment.store`; the bank's index,
`tts.bank`):

- Lines end at `\\n` only. `bytes.splitlines` also ends a line at a bare `\\r` (JSON
  whitespace, legal between a record's tokens), and `str.splitlines` at `\\x0b`, `\\x0c`,
  `\\x1c`-`\\x1e`, `\\x85`, `\\u2028` and `\\u2029` too: a record holding one of those is still
  one record.
- A reader never writes. A complete line that is not valid UTF-8 JSON (or not a record) is
  skipped and reported, never a reason to drop what follows it; the tail is not a record unless
  it parses whole (a record whose `\\n` alone is missing: no proper prefix of a JSON object
  parses, so a write in progress never reads as one).
- Only the writer, holding the file's `OutputLock`, repairs, and only the tail: a tail that is
  a whole record gets its `\\n`; any other tail (a torn write, never committed) is cut, said on
  stderr. Nothing before the last `\\n` is ever changed.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from tts.errors import TTSError

T = TypeVar("T")


def complete_lines(raw: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """The `\\n`-terminated lines of `raw` (1-based line number, the line without its `\\n`)
    and the byte length they take; `raw[good:]` is the tail."""
    good = raw.rfind(b"\n") + 1
    return list(enumerate(raw[:good].split(b"\n")[:-1], 1)), good


def parse_json(line: bytes) -> Any:
    """One line as JSON, decoded as UTF-8 (json.loads on bytes would guess UTF-16/32 too)."""
    return json.loads(line.decode("utf-8"))


@dataclass
class Loaded(Generic[T]):
    """What a reader took from a line file: the records by line number (a whole-record tail
    numbered after the last line), the lines skipped with why, and the tail's bytes."""

    records: list[tuple[int, T]] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    tail: bytes = b""
    tail_is_record: bool = False


def load(path: Path, parse: Callable[[Any], T]) -> Loaded[T]:
    """Read `path` (which may not exist) without changing it: each complete line through
    `parse_json` then `parse` (which raises ValueError, KeyError or TypeError for a JSON value
    that is not a record)."""
    out: Loaded[T] = Loaded()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return out
    except OSError as e:
        raise TTSError(f"cannot read {path} ({e.strerror or e})") from None
    lines, good = complete_lines(raw)
    for lineno, line in lines:
        if not line.strip():
            continue  # a blank line (an editor's) holds nothing to lose
        try:
            out.records.append((lineno, parse(parse_json(line))))
        except UnicodeDecodeError as e:
            out.skipped.append((lineno, f"not UTF-8 (byte {e.start})"))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            out.skipped.append((lineno, f"{type(e).__name__}: {str(e)[:80]}"))
    out.tail = raw[good:]
    if out.tail:
        try:
            out.records.append((len(lines) + 1, parse(parse_json(out.tail))))
            out.tail_is_record = True
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
    return out


def report_skipped(path: Path, skipped: list[tuple[int, str]], what: str) -> None:
    """One line on stderr naming the lines a reader skipped, as `what` ("a result record"); they
    stay in the file."""
    if skipped:
        shown = "; ".join(f"line {n}: {why}" for n, why in skipped[:3]) + ("; ..." if len(skipped) > 3 else "")
        print(f"warning: {path}: skipped {len(skipped)} line{'s' * (len(skipped) > 1)} that could not be read as "
              f"{what} ({shown}); they stay in the file as they are", file=sys.stderr)


def repair_tail(path: Path, loaded: Loaded[Any]) -> None:
    """For the writer holding `path`'s lock, before it appends: end a whole-record tail with its
    `\\n`, or cut a torn one (the bytes after the last `\\n`, never more), saying so."""
    if not loaded.tail:
        return
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        if loaded.tail_is_record:
            f.write(b"\n")
        else:
            print(f"note: {path}: cutting the {len(loaded.tail)} bytes after its last complete line "
                  "(a write that was interrupted)", file=sys.stderr)
            f.truncate(size - len(loaded.tail))
        f.flush()
        os.fsync(f.fileno())


def cut_torn_tail(path: Path) -> None:
    """For the writer holding the lock of a file too big to read whole before appending (a
    details file): cut the bytes after its last `\n`, reading only its end. (Such a file's tail
    is never a whole record: its lines are written after their records' details are.)"""
    if not path.exists():
        return
    with open(path, "r+b") as f:
        pos = f.seek(0, os.SEEK_END)
        while pos > 0:
            start = max(0, pos - (1 << 16))
            f.seek(start)
            nl = f.read(pos - start).rfind(b"\n")
            if nl >= 0:
                pos = start + nl + 1
                break
            pos = start
        if pos < f.seek(0, os.SEEK_END):
            print(f"note: {path}: cutting the bytes after its last complete line (a write that was interrupted)",
                  file=sys.stderr)
            f.truncate(pos)
            f.flush()
            os.fsync(f.fileno())


def append_line(path: Path, line: bytes) -> None:
    """Append one `\\n`-terminated line with one write() and fsync (the commit)."""
    with open(path, "ab") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


class OutputLock:
    """One writer per output file: an exclusive `flock` on `<path>.lock`, held while the writer
    is open, so a second run on the same output fails at once (naming the process that holds
    it) instead of running everything twice. The kernel drops the lock when the holder dies, so
    a crashed run never leaves a stale lock; the file itself stays (removing it would race with
    a new holder). Re-entrant within a process: flock conflicts between two open files of one
    process too, and one run may open its output more than once."""

    _held: dict[Path, tuple[int, int]] = {}  # lock path -> (fd, holders in this process)

    def __init__(self, path: str | Path):
        self.path = Path(str(path) + ".lock").resolve()

    def acquire(self) -> "OutputLock":
        import fcntl

        fd, count = self._held.get(self.path, (None, 0))
        if fd is None:
            out = self.path.with_suffix("")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:  # a read-only or special filesystem, a file where a folder should be
                raise TTSError(f"cannot write {out}: {e.strerror or e}; choose another output path") from None
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


class LockHolder:
    """A writer that holds its file's OutputLock (`_lock`) until it is closed, or dropped."""

    _lock: OutputLock | None = None

    def close(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __del__(self) -> None:
        if getattr(self, "_lock", None) is not None:
            self.close()
