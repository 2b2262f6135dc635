"""A strategy's `Result` as an OpenAI chat completion (one body, or stream chunks).

The answer is the full text of the selected trace: among the traces whose extracted answer is
the result's answer, the best scored (first-finish: the first to finish); with no answer, the
best-scored trace. `usage` is the strategy's whole cost: prompt / completion tokens summed over
every sample it drew (aborted ones up to where they were stopped); `total_tokens` adds the
verifier's tokens, so it is the true bill, and `usage.tts` itemises the rest.
"""

from __future__ import annotations

import math
from typing import Any

from tts.types import Result, Trace


def selected(result: Result) -> Trace | None:
    traces = result.traces
    if not traces:
        return None
    order = result.telemetry.get("finish_order")
    if isinstance(order, list) and all(isinstance(i, int) and 0 <= i < len(traces) for i in order):
        first = set(order)
        traces = [traces[i] for i in order] + [t for i, t in enumerate(traces) if i not in first]
    pool = [t for t in traces if result.answer is not None and t.answer == result.answer]
    pool = pool or [t for t in traces if t.finished] or traces
    return max(pool, key=lambda t: _rank(t.score))  # max keeps the first of equals


def _rank(score: float | None) -> float:
    return score if score is not None and math.isfinite(score) else -math.inf


def full_text(trace: Trace | None) -> str:
    return "" if trace is None else trace.prefix + trace.text


def finish_reason(trace: Trace | None) -> str:
    return "length" if trace is not None and trace.finish_reason == "length" else "stop"


def usage(result: Result) -> dict[str, Any]:
    u = result.usage
    samples = result.telemetry.get("samples")
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
        "tts": {
            "verifier_tokens": u.verifier_tokens,
            "verifier_cached_tokens": u.verifier_cached_tokens,
            "cached_tokens": u.cached_tokens,
            "generator_calls": u.generator_calls,
            "verifier_calls": u.verifier_calls,
            "calls": u.calls,
            "generator_flops": u.generator_flops,
            "verifier_flops": u.verifier_flops,
            "flops": u.flops,
            "samples": samples if isinstance(samples, int) else len(result.traces),
            "wall_seconds": u.wall_seconds,
            "stopped_by": result.stopped_by,
        },
    }


def candidates(result: Result) -> list[dict[str, Any]]:
    """Every trace as an extra choice (index 1, 2, ...) with its answer and score."""
    return [
        {
            "index": i,
            "message": {"role": "assistant", "content": full_text(t)},
            "finish_reason": finish_reason(t),
            "tts": {"answer": t.answer, "score": clean(t.score), "finish_reason": t.finish_reason},
        }
        for i, t in enumerate(result.traces, 1)
    ]


def info(result: Result, chosen: dict[str, Any], telemetry: bool) -> dict[str, Any]:
    """The response's `tts` field: what ran, what it answered, and (on request) its telemetry."""
    out = {**chosen, "answer": result.answer, "stopped_by": result.stopped_by, "config_hash": result.config_hash}
    if telemetry:
        out["telemetry"] = clean(result.telemetry)
    return out


def completion(rid: str, created: int, model: str, result: Result, chosen: dict[str, Any],
               return_candidates: bool, telemetry: bool) -> dict[str, Any]:
    trace = selected(result)
    choices = [{"index": 0, "message": {"role": "assistant", "content": full_text(trace)},
                "finish_reason": finish_reason(trace)}]
    if return_candidates:
        choices += candidates(result)
    return {
        "id": rid, "object": "chat.completion", "created": created, "model": model,
        "choices": choices, "usage": usage(result), "tts": info(result, chosen, telemetry),
    }


def chunk(rid: str, created: int, model: str, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": choices, **extra}


def pieces(text: str, size: int = 64) -> list[str]:
    """The answer in chunks of about `size` characters, cut after whitespace where possible."""
    out, start = [], 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            cut = max(text.rfind(" ", start, end), text.rfind("\n", start, end))
            end = cut + 1 if cut > start else end
        out.append(text[start:end])
        start = end
    return out


def clean(value: Any) -> Any:
    """JSON-safe: non-finite floats become None, unknown objects their str (e.g. a search tree)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [clean(v) for v in value]
    return str(value)
