"""The bank's on-disk format: records (`RecordedTrace`, `BankRecord`), their binary codec, the
manifest and the index (see `tts.bank` for the layout)."""


from __future__ import annotations

import hashlib
import json
import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tts import jsonl
from tts.errors import TTSError
from tts.types import Problem, Trace

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
    if a.ndim != 2:  # (an empty sample's rows cannot be reshaped with -1)
        a = a.reshape(a.shape[0], -1) if a.size else np.zeros((a.shape[0], 0), np.float32)
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
    longest: int | None = None  # the longest sample's tokens (absent in banks written before it)


def read_index(path: Path) -> tuple[list[_Entry], list[tuple[int, str]], jsonl.Loaded[_Entry]]:
    """Committed entries, damaged lines (line number, what is wrong), and what was read (its
    tail: a torn last line from an interrupted write is not an entry). Lines end at "\\n" only
    and nothing is written (`tts.jsonl`)."""
    loaded = jsonl.load(path / INDEX, _entry)
    for lineno, e in loaded.records:
        e.line = lineno
    return [e for _, e in loaded.records], [(n, f"not an index entry ({why})") for n, why in loaded.skipped], loaded


def _entry(d: Any) -> _Entry:
    e = _Entry(str(d["key"]), str(d["q"]), int(d["offset"]), int(d["length"]), int(d["crc32"]),
               int(d["samples"]), int(d["tokens"]), 0, int(d["longest"]) if d.get("longest") is not None else None)
    if e.offset < 8 or e.length < 0 or e.samples < 0 or e.tokens < 0:
        raise ValueError("negative offset, length or count")
    return e


def index_line(rec: "BankRecord", offset: int, payload: bytes) -> bytes:
    """The index line that commits `rec`, stored at `offset` of records.bin."""
    return (json.dumps({
        "key": rec.key, "q": question_hash(rec.question), "offset": offset, "length": len(payload),
        "crc32": zlib.crc32(payload), "samples": len(rec.samples), "tokens": rec.tokens,
        "longest": max((s.num_tokens for s in rec.samples), default=0),
    }, ensure_ascii=False) + "\n").encode("utf-8")
