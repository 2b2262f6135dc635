"""Importers: recorded samples from elsewhere into a bank (the math100 file of Qwen2.5-Math)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from tts.bank.format import BankRecord, RecordedTrace
from tts.bank.reader import Bank
from tts.bank.writer import BankWriter
from tts.errors import TTSError
from tts.types import DEFAULT_SYSTEM_PROMPT


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
    with src.open(encoding="utf-8", newline="\n") as f:  # lines end at "\n" only (a bare "\r" is JSON whitespace)
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
    writer.close()  # (on an error, dropping the writer releases its lock)
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
