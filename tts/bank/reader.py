"""`Bank`: reads a bank, after checking that its index and records agree (`check`)."""

from __future__ import annotations

import struct
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tts.bank.format import INDEX, MAGIC, MANIFEST, RECORDS, BankRecord, _Entry, _read_manifest, read_index, decode_record, question_hash
from tts.errors import TTSError
from tts.types import Problem, Sampling


@dataclass(slots=True)
class Damage:
    """One damaged index line or record: its index line, its key when known, what is wrong."""

    line: int
    key: str | None
    what: str

    def __str__(self) -> str:
        rec = f"record {self.key!r} (index line {self.line})" if self.key is not None else f"index line {self.line}"
        return f"{rec}: {self.what}"


def check(path: Path) -> tuple[list[_Entry], list[Damage]]:
    """The intact entries of the bank at `path` and the damage found: every committed index line
    must parse, name a key once, and point at a record of records.bin whose header, length and
    crc32 match. Reads records.bin once (crc32 runs at about 1 GB/s)."""
    entries, bad, _ = read_index(path)
    damage = [Damage(n, None, why) for n, why in bad]
    rb = path / RECORDS
    size = rb.stat().st_size if rb.exists() else 0
    ok: list[_Entry] = []
    seen: set[str] = set()
    with open(rb, "rb") if rb.exists() else _Empty() as f:
        for e in entries:
            if e.key in seen:
                damage.append(Damage(e.line, e.key, "a second index line for a key already committed"))
                continue
            end = e.offset + e.length
            if end > size:
                damage.append(Damage(e.line, e.key, f"truncated: {RECORDS} ends at byte {size}, the record at {end}"))
                continue
            f.seek(e.offset - 8)
            head, payload = f.read(8), f.read(e.length)
            if head != MAGIC + struct.pack("<I", e.length) or zlib.crc32(payload) != e.crc:
                damage.append(Damage(e.line, e.key, f"corrupt: bytes {e.offset}..{end} of {RECORDS} do not match "
                                                    "the index's length and checksum"))
                continue
            seen.add(e.key)
            ok.append(e)
    return ok, damage


class _Empty:  # a records file that does not exist reads as empty
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def damaged_error(path: Path, damage: list[Damage]) -> TTSError:
    shown = "; ".join(map(str, damage[:3])) + (f"; and {len(damage) - 3} more" if len(damage) > 3 else "")
    return TTSError(
        f"bank {path} is damaged ({len(damage)} problem{'s' * (len(damage) > 1)}: {shown}); repair it: re-record "
        f"the named problems into a new bank, or drop the damaged entries with `python -m tts.bank.repair {path}` "
        "(keeps every intact record, backs up the old index)"
    )


class Bank:
    """Reads a bank. Opening checks the index against the records (`check`): a damaged bank is a
    TTSError naming each damaged entry and how to repair it, never a silently smaller bank.
    Records are decoded on demand (`get`)."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self.manifest = _read_manifest(self.path)
        entries, damage = check(self.path)
        if damage:
            raise damaged_error(self.path, damage)
        self._entries: dict[str, _Entry] = {e.key: e for e in entries}
        self._by_q: dict[str, str] = {}
        for e in entries:
            self._by_q.setdefault(e.q, e.key)  # the same question twice: requests get the first
        self._longest: int | None = None

    # manifest fields
    @property
    def model(self) -> str:
        return self.manifest.get("model") or ""

    @property
    def sampling(self) -> dict[str, Any]:
        """The sampling recorded. A bank that does not know its max_tokens (an import) reports
        its longest sample's length: what a replayed request must allow for the bank to serve
        its samples whole (a smaller request gets them cut, as a live run would)."""
        s = dict(self.manifest.get("sampling") or {})
        if s.get("max_tokens") is None and self._entries:
            s["max_tokens"] = self.longest_sample()
        return s

    @property
    def recorded_max_tokens(self) -> int | None:
        """max_tokens as the manifest recorded it (None: not recorded)."""
        return (self.manifest.get("sampling") or {}).get("max_tokens")

    @property
    def logprobs(self) -> int | None:
        return self.manifest.get("logprobs")

    @property
    def system_prompt(self) -> str | None:
        return self.manifest.get("system_prompt")

    @property
    def task(self) -> str:
        return self.manifest.get("task") or ""

    def sampling_defaults(self) -> Any:
        """A `tts.Sampling` equal to what the bank was recorded with (for `run_many(sampling=)`)."""
        s, d = self.sampling, Sampling()
        return Sampling(
            temperature=d.temperature if s.get("temperature") is None else s["temperature"],
            top_p=d.top_p if s.get("top_p") is None else s["top_p"],
            max_tokens=d.max_tokens if s.get("max_tokens") is None else s["max_tokens"],
        )

    def longest_sample(self) -> int:
        """The most completion tokens of any recorded sample (from the index; banks written
        before the index carried it are decoded once)."""
        if self._longest is None:
            self._longest = max(
                (e.longest if e.longest is not None else max((s.num_tokens for s in self.get(e.key).samples), default=0)
                 for e in self._entries.values()), default=0)
        return self._longest

    # records
    def keys(self) -> list[str]:
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def find(self, question: str) -> str | None:
        """The key of the record posing `question`, or None."""
        return self._by_q.get(question_hash(question))

    def num_samples(self, key: str) -> int:
        return self._entries[key].samples

    def get(self, key: str) -> BankRecord:
        """The record `key`; TTSError naming the file and record if its bytes are bad (the
        file may have changed since the bank was opened and checked)."""
        e = self._entries.get(key)
        if e is None:
            raise TTSError(f"bank {self.path} has no record {key!r}")
        rb = self.path / RECORDS
        where = f"{rb}: record {key!r} (index line {e.line}, bytes {e.offset}..{e.offset + e.length})"
        fix = f"re-record that problem into a new bank, or drop it with `python -m tts.bank.repair {self.path}`"
        try:
            with open(rb, "rb") as f:
                f.seek(e.offset - 8)
                head = f.read(8)
                payload = f.read(e.length)
        except OSError as err:
            raise TTSError(f"{where}: cannot read ({err})") from None
        if len(payload) < e.length or len(head) < 8:
            raise TTSError(f"{where} is truncated (the file ends before it does); {fix}")
        if head != MAGIC + struct.pack("<I", e.length) or zlib.crc32(payload) != e.crc:
            raise TTSError(f"{where} is corrupt (checksum mismatch); {fix}")
        try:
            rec = decode_record(payload)
        except (ValueError, KeyError, TypeError, zlib.error, struct.error) as err:
            raise TTSError(f"{where} cannot be decoded ({err}); {fix}") from None
        if rec.key != key or len(rec.samples) != e.samples or rec.tokens != e.tokens:
            raise TTSError(f"{where} does not match its index line (key {rec.key!r}, {len(rec.samples)} samples, "
                           f"{rec.tokens} tokens; the index says {e.samples} samples, {e.tokens} tokens); {fix}")
        return rec

    def records(self, skip_corrupt: bool = False) -> Iterator[BankRecord]:
        """All records in recording order; bad ones raise (or are skipped with a note)."""
        for key in self._entries:
            try:
                yield self.get(key)
            except TTSError as e:
                if not skip_corrupt:
                    raise
                print(f"note: skipping {e}", file=sys.stderr)

    def problems(self) -> list[Problem]:
        """The recorded problems (id, question, gold answer), without decoding samples' arrays
        beyond what `get` does."""
        return [r.problem(self.task) for r in self.records()]

    def stats(self) -> dict[str, Any]:
        size = sum((self.path / f).stat().st_size for f in (MANIFEST, RECORDS, INDEX) if (self.path / f).exists())
        tokens = sum(e.tokens for e in self._entries.values())
        return {
            "problems": len(self._entries),
            "samples": sum(e.samples for e in self._entries.values()),
            "tokens": tokens,
            "bytes": size,
            "bytes_per_token": size / tokens if tokens else float("nan"),
        }

    def __repr__(self) -> str:
        return f"Bank({str(self.path)!r}, {len(self)} problems, model={self.model!r})"
