"""`BankWriter`: appends records to a bank, crash-safely (the index line is the commit)."""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path
from typing import Any

from tts.bank.format import (
    COMPAT_KEYS, FORMAT, INDEX, MAGIC, MANIFEST, RECORDS, STEP_DELIMITER, VERSION, BankRecord, _read_manifest,
    encode_record, index_line, read_index,
)
from tts.jsonl import LockHolder, OutputLock, append_line, repair_tail
from tts.bank.reader import check, damaged_error
from tts.errors import TTSError


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)



class BankWriter(LockHolder):
    """Appends records to a bank, creating it with `manifest` or resuming an existing one
    (which must have been recorded with the same configuration). Holds the bank's `OutputLock`
    (on its index) until `close()`: one writer per bank, and only it repairs an interrupted
    write."""

    def __init__(self, path: str | Path, manifest: dict[str, Any], logprob_dtype: str = "float32"):
        self.path = Path(path).expanduser()
        full = {"format": FORMAT, "version": VERSION, "step_delimiter": STEP_DELIMITER,
                "logprob_dtype": logprob_dtype, **manifest}
        self._lock: OutputLock | None = None
        if (self.path / MANIFEST).exists():
            old = _read_manifest(self.path)
            diff = [f"{k}: bank has {old.get(k)!r}, now {full.get(k)!r}"
                    for k in COMPAT_KEYS if _norm(old.get(k)) != _norm(full.get(k))]
            if diff:
                raise TTSError(f"bank {self.path} was recorded with another configuration ({'; '.join(diff)}); "
                               "record into another --out folder")
            self.manifest = old
            self._lock = OutputLock(self.path / INDEX).acquire()
            self._recover()
        else:
            if self.path.exists() and any(f.name != INDEX + ".lock" for f in self.path.iterdir()):
                raise TTSError(f"{self.path} exists and is not a trace bank; choose another --out folder")
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock = OutputLock(self.path / INDEX).acquire()
            full.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            _write_atomic(self.path / MANIFEST, json.dumps(full, indent=1, ensure_ascii=False).encode())
            self.manifest = full
            (self.path / RECORDS).touch()
            (self.path / INDEX).touch()
            self.keys: set[str] = set()
        self.delimiter = self.manifest.get("step_delimiter", STEP_DELIMITER)
        self.logprob_dtype = self.manifest.get("logprob_dtype", "float32")

    def _recover(self) -> None:
        """Drop what an interrupted write left (a torn tail of the index, record bytes whose index
        line never landed); refuse a damaged bank (see `tts.bank.reader.check`)."""
        entries, damage = check(self.path)
        if damage:
            self.close()
            raise damaged_error(self.path, damage)
        repair_tail(self.path / INDEX, read_index(self.path)[2])
        rb = self.path / RECORDS
        end = max((e.offset + e.length for e in entries), default=0)
        if (rb.stat().st_size if rb.exists() else 0) > end:
            with open(rb, "r+b") as f:  # bytes of a record whose index line never landed
                f.truncate(end)
        self.keys = {e.key for e in entries}

    def __contains__(self, key: object) -> bool:
        return key in self.keys

    def append(self, rec: BankRecord) -> bool:
        """Write one record (committed when this returns); False if `rec.key` is already there."""
        if rec.key in self.keys:
            return False
        payload = encode_record(rec, self.delimiter, self.logprob_dtype)
        with open(self.path / RECORDS, "ab") as f:
            offset = f.seek(0, os.SEEK_END) + 8
            f.write(MAGIC + struct.pack("<I", len(payload)) + payload)
            f.flush()
            os.fsync(f.fileno())
        append_line(self.path / INDEX, index_line(rec, offset, payload))
        self.keys.add(rec.key)
        return True


def _norm(v: Any) -> Any:
    return json.loads(json.dumps(v))  # tuples vs lists, as stored
