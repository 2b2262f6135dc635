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
uncommitted bytes at the end of records.bin, and skips problems already recorded.

Damage is never a silently smaller bank: opening a bank (`Bank`, `BankWriter`) checks every
committed index line parses and points at a record whose header, length and crc32 match, and a
damaged bank is a `TTSError` naming each damaged entry and the repair: re-record those problems,
or drop them with `python -m tts.bank.repair BANK` (`tts.bank.repair.drop_damaged`).

Modules: `format` (records, codec, index lines), `reader` (`Bank`, `check`), `writer`
(`BankWriter`), `importers` (`import_math100`), `repair`.

One writer at a time per bank (no lock is taken).
"""

from tts.bank.format import (
    COMPAT_KEYS, FORMAT, INDEX, MAGIC, MANIFEST, RECORDS, STEP_DELIMITER, VERSION, BankRecord, RecordedTrace,
    decode_record, encode_record, question_hash,
)
from tts.bank.importers import MATH100_MODEL, import_math100
from tts.bank.reader import Bank, Damage, check
from tts.bank.writer import BankWriter

__all__ = [
    "COMPAT_KEYS", "FORMAT", "INDEX", "MAGIC", "MANIFEST", "MATH100_MODEL", "RECORDS", "STEP_DELIMITER", "VERSION",
    "Bank", "BankRecord", "BankWriter", "Damage", "RecordedTrace", "check", "decode_record", "encode_record",
    "import_math100", "question_hash",
]
