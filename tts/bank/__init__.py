"""Trace banks: generated samples recorded once, replayed by `tts.backends.replay.ReplayGenerator` at no
generation cost, deterministically.

A bank is a folder:

    manifest.json   what was recorded, once per bank: model, parameter count, sampling
                    (temperature, top_p, max_tokens, stop), logprobs k, engine seed, task,
                    system prompt, step delimiter, PRM / outcome scorer names, source
    records.bin     append-only; one record per problem holding all its samples:
                    b"TTSR" + u32 payload length + payload
    index.jsonl     one line per committed record: key (problem id), question hash, offset,
                    length and crc32 of the payload, sample and token counts

A payload is `u32 n | zlib(meta JSON) | zlib(arrays)`. The meta JSON holds the problem
(question, system prompt, gold answer, prompt tokens, engine-reported cached tokens) and per
sample its text, token count, finish reason, extracted answer, correctness, outcome score and
PRM score. The arrays are concatenated over the record's samples, byte-shuffled (as blosc does;
delta-coded where monotonic) and compressed together:
token_ids int32 [T], logprobs float32 [T], top_logprobs float32 [T, k] (NaN-padded rows),
char_ends int32 [T] (text offset after each token, when a stream revealed it), step_ends int32
(char offsets of each step delimiter "\\n\\n") and step_scores float32 (per-step PRM scores).
float32 is exact: vLLM computes logprobs in float32, so replayed confidence scores equal the live
ones bit for bit (`logprob_dtype="float16"` halves those arrays, at ~1e-3 relative error).

Size, measured (`Bank.stats()`; bytes of all three files per recorded completion token):
- `tts record` smoke run (Qwen2.5-Coder-0.5B, GSM8K, 2 problems x 2 samples x 32 tokens, top-5
  logprobs): 35.6 B/token, of which records.bin 29.4 B/token: ~15 the top-5 float32 logprobs
  (shuffled floats barely compress), ~4 the sampled token's logprob, ~2 the token ids, the rest
  text and per-problem overhead (question, manifest, index: ~1 KB per problem, amortised over
  only 64 tokens here). With `logprob_dtype="float16"` the same records take 21 B/token; without
  logprobs ~10 B/token at this sample length, and ~1-3 B/token for long samples.
- the imported math100 bank (800 samples, text + token ids + scores, no logprobs): 1.06 B/token
  (332 KB for 312k tokens; 188 KB without token ids). The JSONL it comes from: 2.2 MB.
Speed: importing math100 writes its 100 records in ~0.3 s (without tokenizing); decoding every
record of a 500-problem x 32-sample bank takes ~0.3 s.
So a bank with top-5 logprobs costs ~22 B per generated token (about 18 MB for 100 problems x
32 samples x ~250 tokens), a bank without logprobs ~2-3 B per token.

Crash safety and resume: a record is appended to records.bin and fsync'ed, then its index line
is appended and fsync'ed; the index line is the commit. A reader sees only committed records (a
torn last index line is ignored); a writer reopening the bank drops a torn index line and any
uncommitted bytes at the end of records.bin, and skips problems already recorded. A record whose
bytes are missing (truncated file) or do not match their checksum raises `TTSError` naming the
file and the record when it is read; every other record stays readable.

One writer at a time per bank (no lock is taken).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import sys
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tts.errors import TTSError
from tts.types import DEFAULT_SYSTEM_PROMPT, Problem, Trace

FORMAT = "ttscale-bank"
VERSION = 1
MAGIC = b"TTSR"
STEP_DELIMITER = "\n\n"
MANIFEST, RECORDS, INDEX = "manifest.json", "records.bin", "index.jsonl"

# What a bank must agree on to take more records (resume) and what replay checks.
COMPAT_KEYS = ("model", "task", "sampling", "logprobs", "seed", "n", "system_prompt", "step_delimiter", "prm")


def question_hash(question: str) -> str:
    return hashlib.sha1(question.encode("utf-8")).hexdigest()[:16]


# -- records -----------------------------------------------------------------------------------
@dataclass(slots=True)
class RecordedTrace:
    """One recorded sample. Arrays are numpy (None when not recorded)."""

    text: str
    num_tokens: int
    finish_reason: str | None = "stop"
    answer: str | None = None
    correct: bool | None = None
    score: float | None = None  # outcome score (e.g. an outcome reward model's)
    prm_score: float | None = None  # a process reward model's aggregate score
    token_ids: np.ndarray | None = None  # int32 [T]
    logprobs: np.ndarray | None = None  # float32 [T]
    top_logprobs: np.ndarray | None = None  # float32 [T, k], NaN-padded
    char_ends: np.ndarray | None = None  # int32 [T]: len(text revealed) after each token
    step_ends: np.ndarray | None = None  # int32: char offset of each step delimiter
    step_scores: np.ndarray | None = None  # float32: per-step PRM scores

    @classmethod
    def from_trace(
        cls, t: Trace, *, correct: bool | None = None, char_ends: Sequence[int] | None = None,
        step_scores: Sequence[float] | None = None, prm_score: float | None = None,
        score: float | None = None,
    ) -> "RecordedTrace":
        return cls(
            text=t.text, num_tokens=t.num_tokens, finish_reason=t.finish_reason, answer=t.answer,
            correct=correct, score=score, prm_score=prm_score,
            token_ids=np.asarray(t.token_ids, np.int32) if t.token_ids else None,
            logprobs=np.asarray(t.logprobs, np.float32) if t.logprobs else None,
            top_logprobs=_top_array(t.top_logprobs) if t.top_logprobs else None,
            char_ends=np.asarray(char_ends, np.int32) if char_ends is not None else None,
            step_scores=np.asarray(step_scores, np.float32) if step_scores is not None else None,
        )

    def steps(self, delimiter: str = STEP_DELIMITER) -> list[str]:
        """The text cut at the recorded step boundaries, whitespace-only pieces dropped (as
        `Trace.split_steps` and the PRMs cut it, so `step_scores[i]` belongs to `steps()[i]`)."""
        ends = _step_ends(self.text, delimiter) if self.step_ends is None else self.step_ends.tolist()
        out, start = [], 0
        for e in ends + [len(self.text)]:
            if self.text[start:e].strip():
                out.append(self.text[start:e])
            start = e + len(delimiter)
        return out

    def top_rows(self, k: int) -> list[list[float]]:
        """The top-k logprob rows as lists (at most k per row; padding dropped)."""
        top = self.top_logprobs
        if top is None or k <= 0:
            return []
        sub = top[:, :k]
        if np.isnan(sub).any():
            return [[v for v in row if not math.isnan(v)] for row in sub.tolist()]
        return sub.tolist()


@dataclass(slots=True)
class BankRecord:
    """One problem and all its recorded samples."""

    key: str  # the problem id
    question: str
    samples: list[RecordedTrace]
    system: str | None = None
    gold: str | None = None
    prompt_tokens: int = 0  # per sample, as the engine counted them
    cached_tokens: int = 0  # engine-reported prefix-cache hits over the whole recording
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return sum(s.num_tokens for s in self.samples)

    def problem(self, task: str = "") -> Problem:
        return Problem(self.key, self.question, self.gold, task=task or "bank", meta=dict(self.extra))


def _top_array(rows: Sequence[Sequence[float]]) -> np.ndarray:
    k = max((len(r) for r in rows), default=0)
    if all(len(r) == k for r in rows):
        return np.asarray(rows, np.float32).reshape(len(rows), k)
    out = np.full((len(rows), k), np.nan, np.float32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def _step_ends(text: str, delimiter: str) -> list[int]:
    ends, i = [], text.find(delimiter)
    while i >= 0:
        ends.append(i)
        i = text.find(delimiter, i + len(delimiter))
    return ends


# -- encoding ----------------------------------------------------------------------------------
# name, dtype, delta-coded
_ARRAYS = (
    ("token_ids", np.int32, False),
    ("logprobs", np.float32, False),
    ("top_logprobs", np.float32, False),
    ("char_ends", np.int32, True),
    ("step_ends", np.int32, True),
    ("step_scores", np.float32, False),
)


def encode_record(rec: BankRecord, delimiter: str = STEP_DELIMITER, logprob_dtype: str = "float32") -> bytes:
    samples = []
    for s in rec.samples:
        if s.step_ends is None:
            s.step_ends = np.asarray(_step_ends(s.text, delimiter), np.int32)
        samples.append({
            "text": s.text, "num_tokens": int(s.num_tokens), "finish_reason": s.finish_reason,
            "answer": s.answer, "correct": s.correct, "score": _f(s.score), "prm_score": _f(s.prm_score),
        })
    table, blobs = [], []
    for name, dtype, delta in _ARRAYS:
        arrs = [getattr(s, name) for s in rec.samples]
        if all(a is None for a in arrs):
            continue
        dt = np.dtype(logprob_dtype) if name in ("logprobs", "top_logprobs") else np.dtype(dtype)
        inner = 1
        if name == "top_logprobs":
            inner = max((a.shape[1] for a in arrs if a is not None and a.ndim == 2), default=0)
            arrs = [None if a is None else _pad_cols(a, inner) for a in arrs]
        lens = [-1 if a is None else int(a.shape[0]) for a in arrs]
        flat = np.concatenate([np.asarray(a, dt).reshape(-1) for a in arrs if a is not None]) if any(
            a is not None for a in arrs) else np.zeros(0, dt)
        if delta and flat.size:
            flat = np.diff(flat.astype(np.int64), prepend=0).astype(dt)
        table.append([name, dt.str, inner, lens, "delta+shuffle" if delta else "shuffle"])
        blobs.append(_shuffle(flat))
    meta = {
        "key": rec.key, "question": rec.question, "system": rec.system, "gold": rec.gold,
        "prompt_tokens": int(rec.prompt_tokens), "cached_tokens": int(rec.cached_tokens),
        "extra": rec.extra, "samples": samples, "arrays": table,
    }
    mz = zlib.compress(json.dumps(meta, ensure_ascii=False, separators=(",", ":")).encode("utf-8"), 6)
    az = zlib.compress(b"".join(blobs), 6)
    return struct.pack("<I", len(mz)) + mz + az


def decode_record(payload: bytes) -> BankRecord:
    (n,) = struct.unpack_from("<I", payload, 0)
    meta = json.loads(zlib.decompress(payload[4 : 4 + n]))
    raw = zlib.decompress(payload[4 + n :])
    samples = [
        RecordedTrace(
            text=m["text"], num_tokens=m["num_tokens"], finish_reason=m["finish_reason"],
            answer=m["answer"], correct=m["correct"], score=m["score"], prm_score=m["prm_score"],
        )
        for m in meta["samples"]
    ]
    pos = 0
    for name, dts, inner, lens, codec in meta["arrays"]:
        dt = np.dtype(dts)
        total = sum(max(x, 0) for x in lens) * inner
        nbytes = total * dt.itemsize
        flat = _unshuffle(raw[pos : pos + nbytes], dt, total)
        pos += nbytes
        if codec.startswith("delta") and flat.size:
            flat = np.cumsum(flat, dtype=np.int64).astype(dt)
        if dt != np.float32 and dt.kind == "f":
            flat = flat.astype(np.float32)
        off = 0
        for s, ln in zip(samples, lens):
            if ln < 0:
                continue
            a = flat[off * inner : (off + ln) * inner]
            setattr(s, name, a.reshape(ln, inner) if name == "top_logprobs" else a)
            off += ln
    if pos != len(raw):
        raise ValueError(f"array section has {len(raw)} bytes, the table accounts for {pos}")
    return BankRecord(
        key=meta["key"], question=meta["question"], samples=samples, system=meta["system"],
        gold=meta["gold"], prompt_tokens=meta["prompt_tokens"], cached_tokens=meta["cached_tokens"],
        extra=meta.get("extra") or {},
    )


def _pad_cols(a: np.ndarray, k: int) -> np.ndarray:
    a = a.reshape(a.shape[0], -1)
    if a.shape[1] == k:
        return a
    out = np.full((a.shape[0], k), np.nan, np.float32)
    out[:, : a.shape[1]] = a
    return out


def _shuffle(a: np.ndarray) -> bytes:
    if a.size == 0:
        return b""
    return np.ascontiguousarray(a).view(np.uint8).reshape(-1, a.itemsize).T.tobytes()


def _unshuffle(buf: bytes, dt: np.dtype, count: int) -> np.ndarray:
    if count == 0:
        return np.zeros(0, dt)
    if len(buf) != count * dt.itemsize:
        raise ValueError("array section is short")
    return np.frombuffer(buf, np.uint8).reshape(dt.itemsize, count).T.copy().view(dt).reshape(-1)


def _f(x: float | None) -> float | None:
    return None if x is None else float(x)


# -- files -------------------------------------------------------------------------------------
def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_manifest(path: Path) -> dict[str, Any]:
    mf = path / MANIFEST
    if not mf.is_file():
        raise TTSError(f"{path} is not a trace bank (no {MANIFEST} in it); record one with `tts record`")
    try:
        m = json.loads(mf.read_text(encoding="utf-8"))
    except ValueError as e:
        raise TTSError(f"{mf}: not valid JSON ({e}); the bank's manifest is damaged") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise TTSError(f"{mf}: not a ttscale bank manifest")
    if m.get("version", 0) > VERSION:
        raise TTSError(f"{mf}: bank format version {m.get('version')} is newer than this ttscale reads ({VERSION})")
    return m


@dataclass(slots=True)
class _Entry:
    key: str
    q: str
    offset: int
    length: int
    crc: int
    samples: int
    tokens: int
    line: int


def _read_index(path: Path) -> tuple[list[_Entry], list[str], int]:
    """Committed entries, problems found (bad lines), and the byte length of the good prefix
    (a torn last line, from an interrupted write, is not part of it)."""
    idx = path / INDEX
    entries: list[_Entry] = []
    errors: list[str] = []
    if not idx.exists():
        return entries, errors, 0
    raw = idx.read_bytes()
    good = 0
    for lineno, line in enumerate(raw.splitlines(keepends=True), 1):
        if not line.endswith(b"\n"):
            break  # torn by an interrupted write: not committed
        good += len(line)
        try:
            d = json.loads(line)
            entries.append(_Entry(d["key"], d["q"], int(d["offset"]), int(d["length"]), int(d["crc32"]),
                                  int(d["samples"]), int(d["tokens"]), lineno))
        except (ValueError, KeyError, TypeError) as e:
            errors.append(f"{idx}, line {lineno}: not an index entry ({type(e).__name__}: {e})")
    return entries, errors, good


class Bank:
    """Reads a bank. Records are decoded on demand (`get`); the index is read at open."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self.manifest = _read_manifest(self.path)
        entries, self.errors, _ = _read_index(self.path)
        self._entries: dict[str, _Entry] = {}
        self._by_q: dict[str, str] = {}
        for e in entries:
            if e.key in self._entries:
                self.errors.append(f"{self.path / INDEX}, line {e.line}: duplicate record {e.key!r} ignored")
                continue
            self._entries[e.key] = e
            self._by_q.setdefault(e.q, e.key)  # the same question twice: requests get the first

    # manifest fields
    @property
    def model(self) -> str:
        return self.manifest.get("model") or ""

    @property
    def sampling(self) -> dict[str, Any]:
        return dict(self.manifest.get("sampling") or {})

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
        from tts.context import Sampling

        s, d = self.sampling, Sampling()
        return Sampling(
            temperature=d.temperature if s.get("temperature") is None else s["temperature"],
            top_p=d.top_p if s.get("top_p") is None else s["top_p"],
            max_tokens=d.max_tokens if s.get("max_tokens") is None else s["max_tokens"],
        )

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
        """The record `key`; TTSError naming the file and record if its bytes are bad."""
        e = self._entries.get(key)
        if e is None:
            raise TTSError(f"bank {self.path} has no record {key!r}")
        rb = self.path / RECORDS
        where = f"{rb}: record {key!r} (index line {e.line}, bytes {e.offset}..{e.offset + e.length})"
        try:
            with open(rb, "rb") as f:
                f.seek(e.offset - 8)
                head = f.read(8)
                payload = f.read(e.length)
        except OSError as err:
            raise TTSError(f"{where}: cannot read ({err})") from None
        if len(payload) < e.length or len(head) < 8:
            raise TTSError(f"{where} is truncated (the file ends before it does); re-record that problem "
                           "into a new bank, the other records are intact")
        if head != MAGIC + struct.pack("<I", e.length) or zlib.crc32(payload) != e.crc:
            raise TTSError(f"{where} is corrupt (checksum mismatch); re-record that problem into a new bank, "
                           "the other records are intact")
        try:
            rec = decode_record(payload)
        except (ValueError, KeyError, TypeError, zlib.error, struct.error) as err:
            raise TTSError(f"{where} cannot be decoded ({err})") from None
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


class BankWriter:
    """Appends records to a bank, creating it with `manifest` or resuming an existing one
    (which must have been recorded with the same configuration)."""

    def __init__(self, path: str | Path, manifest: dict[str, Any], logprob_dtype: str = "float32"):
        self.path = Path(path).expanduser()
        full = {"format": FORMAT, "version": VERSION, "step_delimiter": STEP_DELIMITER,
                "logprob_dtype": logprob_dtype, **manifest}
        if (self.path / MANIFEST).exists():
            old = _read_manifest(self.path)
            diff = [f"{k}: bank has {old.get(k)!r}, now {full.get(k)!r}"
                    for k in COMPAT_KEYS if _norm(old.get(k)) != _norm(full.get(k))]
            if diff:
                raise TTSError(f"bank {self.path} was recorded with another configuration ({'; '.join(diff)}); "
                               "record into another --out folder")
            self.manifest = old
            self._recover()
        else:
            if self.path.exists() and any(self.path.iterdir()):
                raise TTSError(f"{self.path} exists and is not a trace bank; choose another --out folder")
            self.path.mkdir(parents=True, exist_ok=True)
            full.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            _write_atomic(self.path / MANIFEST, json.dumps(full, indent=1, ensure_ascii=False).encode())
            self.manifest = full
            (self.path / RECORDS).touch()
            (self.path / INDEX).touch()
            self.keys: set[str] = set()
        self.delimiter = self.manifest.get("step_delimiter", STEP_DELIMITER)
        self.logprob_dtype = self.manifest.get("logprob_dtype", "float32")

    def _recover(self) -> None:
        entries, errors, good = _read_index(self.path)
        idx, rb = self.path / INDEX, self.path / RECORDS
        if good < (idx.stat().st_size if idx.exists() else 0):
            print(f"note: dropping a torn last line of {idx} (interrupted write)", file=sys.stderr)
            with open(idx, "r+b") as f:
                f.truncate(good)
        end = max((e.offset + e.length for e in entries), default=0)
        size = rb.stat().st_size if rb.exists() else 0
        if size < end:
            raise TTSError(f"{rb} is shorter ({size} bytes) than its index says ({end}): the file was truncated "
                           "after recording; read what is intact with tts.bank.Bank, and record into a new bank")
        if size > end:
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
        line = json.dumps({
            "key": rec.key, "q": question_hash(rec.question), "offset": offset, "length": len(payload),
            "crc32": zlib.crc32(payload), "samples": len(rec.samples), "tokens": rec.tokens,
        }, ensure_ascii=False) + "\n"
        with open(self.path / INDEX, "ab") as f:
            f.write(line.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        self.keys.add(rec.key)
        return True


def _norm(v: Any) -> Any:
    return json.loads(json.dumps(v))  # tuples vs lists, as stored


# -- the math100 importer ----------------------------------------------------------------------
MATH100_MODEL = "Qwen2.5-Math (QwenLM/Qwen2.5-Math evaluation/data/eval_rm_maj_example)"


def import_math100(path: str | Path, out: str | Path, tokenizer: Any = "auto", limit: int | None = None) -> Bank:
    """Import the math100 file (8 recorded Qwen2.5-Math samples per problem, with extracted
    answers `pred`, correctness `score` and outcome rewards `pred_score`) into a bank.

    Per sample: text = response, answer = pred, correct = score, outcome score = pred_score[0],
    finish reason "stop" (the file does not say). No logprobs. Token ids and counts come from
    `tokenizer` (a HF tokenizer, or a folder / name to load one from); "auto" uses the embedded
    default model's tokenizer when it is prepared (Qwen2.5 family: the same vocabulary as
    Qwen2.5-Math), else, like None, counts are estimated as ceil(utf-8 bytes / 4) and no ids are
    stored (the manifest says which). Sampling parameters are unknown and stored as null (replay
    does not check them). Resumable like any bank."""
    src = Path(path)
    if not src.is_file():
        raise TTSError(f"math100 file {src} not found")
    tok, tok_name = _load_tokenizer(tokenizer)
    rows = []
    with src.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                raise TTSError(f"{src}, line {n}: not valid JSON ({e})") from None
            if limit is not None and len(rows) >= limit:
                break
    system = rows[0].get("system", DEFAULT_SYSTEM_PROMPT) if rows else DEFAULT_SYSTEM_PROMPT
    writer = BankWriter(out, {
        "model": MATH100_MODEL, "num_params": None, "task": "math100",
        "sampling": {"temperature": None, "top_p": None, "max_tokens": None, "stop": []},
        "logprobs": None, "seed": None, "system_prompt": system, "prm": None,
        "outcome": "pred_score[0] (Qwen2.5-Math outcome reward model)",
        "token_counts": tok_name or "estimated: ceil(utf-8 bytes / 4)",
        "cached_tokens": "not recorded (0)", "source": str(src.name),
    })
    for n, row in enumerate(rows, 1):
        key = f"math100/{row.get('idx', n - 1)}"
        if key in writer:
            continue
        try:
            samples = []
            for text, pred, ok, ps in zip(row["response"], row["pred"], row["score"], row["pred_score"], strict=True):
                ids = tok.encode(text, add_special_tokens=False) if tok is not None else None
                samples.append(RecordedTrace(
                    text=text, num_tokens=len(ids) if ids is not None else math.ceil(len(text.encode()) / 4),
                    finish_reason="stop", answer=pred, correct=bool(ok),
                    score=float(ps[0]) if isinstance(ps, list) else float(ps),
                    token_ids=np.asarray(ids, np.int32) if ids is not None else None,
                ))
            question = row["question"]
        except (KeyError, TypeError, ValueError) as e:
            raise TTSError(f"{src}, row {n}: not a math100 row ({type(e).__name__}: {e})") from None
        sys_prompt = row.get("system", system)
        msgs = ([{"role": "system", "content": sys_prompt}] if sys_prompt else []) + [{"role": "user", "content": question}]
        prompt = 0
        if tok is not None:  # as VLLMGenerator.prompt_ids counts it
            prompt = len(tok.encode(tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False),
                                    add_special_tokens=False))
        writer.append(BankRecord(
            key=key, question=question, samples=samples, system=sys_prompt, gold=str(row.get("answer")),
            prompt_tokens=prompt, extra={k: row[k] for k in ("level", "idx") if k in row},
        ))
    return Bank(out)


def _load_tokenizer(tokenizer: Any) -> tuple[Any, str | None]:
    if tokenizer is None:
        return None, None
    if tokenizer == "auto":
        from tts.models import DEFAULT_MODEL, MARKER, cache_dir

        folder = cache_dir() / "models" / DEFAULT_MODEL
        if not (folder / MARKER).exists():
            return None, None
        tokenizer = str(folder)
    if isinstance(tokenizer, (str, Path)):
        try:
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(str(tokenizer)), f"tokenizer of {Path(str(tokenizer)).name}"
        except Exception as e:  # noqa: BLE001
            raise TTSError(f"cannot load a tokenizer from {tokenizer}: {e}") from None
    return tokenizer, f"tokenizer {getattr(tokenizer, 'name_or_path', type(tokenizer).__name__)}"
