"""Results as OpenAI bodies: chat completions (one body, or stream chunks), text completions and
responses, shaped as vLLM 0.32's server shapes them.

A choice's text is the full text of the selected trace: among the traces whose extracted answer
is the result's answer, the best scored (first-finish: the first to finish); with no answer, the
best-scored trace; then cut at the earliest of the request's stop strings (the backends already
stop there; a strategy that assembles text from several generations may not). `usage` is the
strategies' whole cost, summed over the choices: prompt / completion tokens over every sample
drawn (aborted ones up to where they were stopped); `total_tokens` adds the verifier's tokens, so
it is the true bill, and `usage.tts` itemises the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tts.serve.schema import APIError
from tts.types import Result, TextCompletion, Trace, Usage

NEG = -9999.0  # what vLLM's server shows for a -inf logprob (JSON has no infinity)


@dataclass(slots=True)
class Answer:
    """One choice: the text returned, why it ended, and the trace it came from."""

    text: str
    finish_reason: str
    trace: Trace | None
    result: Result
    cut: bool = False  # cut here at a stop string (the backend had not stopped there)


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


def cut(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    """`text` up to the earliest stop string (excluded, as vLLM returns it), and whether one cut it."""
    ends = [i for i in (text.find(s) for s in stops) if i >= 0]
    return (text[: min(ends)], True) if ends else (text, False)


def answer(result: Result, stops: tuple[str, ...] = (), trace: Trace | None = None) -> Answer:
    trace = trace or selected(result)
    text, was_cut = cut("" if trace is None else trace.prefix + trace.text, stops)
    finish = "length" if trace is not None and trace.finish_reason == "length" and not was_cut else "stop"
    return Answer(text, finish, trace, result, was_cut)


# -- logprobs ---------------------------------------------------------------------------------
def _entry(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": max(logprob, NEG), "bytes": list(token.encode("utf-8", "replace"))}


def chat_logprobs(a: Answer, k: int, strategy: str) -> dict[str, Any]:
    """The chat `logprobs` of a choice: each returned token with its top `k`. Only a choice that is
    one whole generation has them; text a strategy assembled from several (step-level search,
    budget forcing) is a 400 saying so."""
    t = a.trace
    if t is None or not t.tokens and t.num_tokens == 0:
        return {"content": []}
    if t.prefix or len(t.tokens) != t.num_tokens or len(t.logprobs) != t.num_tokens \
            or (k and len(t.top_logprobs) != t.num_tokens):
        raise APIError(400, f"logprobs: strategy '{strategy}' returned text that is not one whole generation with "
                       "its logprobs (assembled from several calls, or from a backend without token strings); "
                       "ask without logprobs", "logprobs", code="logprobs_unavailable")
    out, length = [], 0
    for i, tok in enumerate(t.tokens):
        if a.cut and length >= len(a.text) and i:  # cut here at a stop string: its tokens end with the text
            break  # (a stop the backend honoured keeps the tokens that made it, as vLLM returns them)
        length += len(tok)
        e = _entry(tok, t.logprobs[i])
        e["top_logprobs"] = [_entry(s, v) for s, v in zip(t.top_tokens[i], t.top_logprobs[i])][:k] if k else []
        out.append(e)
    return {"content": out}


def text_logprobs(done: TextCompletion, t: Trace | None, k: int, echo: bool) -> dict[str, Any]:
    """A completion choice's `logprobs` as vLLM's /v1/completions builds them: tokens (the
    prompt's first with echo), each one's logprob (None for the prompt's first token), the top
    k plus the token itself as {token: logprob}, and text offsets."""
    tokens: list[str] = list(done.prompt_tokens) if echo else []
    values: list[float | None] = list(done.prompt_logprobs) if echo else []
    top: list[dict[str, float] | None] = list(done.prompt_top) if echo else []
    if t is not None:
        for i, tok in enumerate(t.tokens):
            lp = max(t.logprobs[i], NEG)
            tokens.append(tok)
            values.append(lp)
            row = {tok: lp}
            if k and i < len(t.top_tokens):
                row.update({s: max(v, NEG) for s, v in zip(t.top_tokens[i][:k], t.top_logprobs[i][:k])})
            top.append(row)
    offsets, at = [], 0
    for tok in tokens:
        offsets.append(at)
        at += len(tok)
    return {"text_offset": offsets, "token_logprobs": values, "tokens": tokens, "top_logprobs": top}


# -- usage and the tts field ------------------------------------------------------------------
def usage(results: list[Result]) -> dict[str, Any]:
    u = sum((r.usage for r in results), Usage())
    samples = sum(s if isinstance(s := r.telemetry.get("samples"), int) else len(r.traces) for r in results)
    stopped = [r.stopped_by for r in results]
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
            "samples": samples,
            "wall_seconds": u.wall_seconds,
            "stopped_by": stopped[0] if len(stopped) == 1 else stopped,
        },
    }


def text_usage(u: Usage) -> dict[str, Any]:
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "total_tokens": u.prompt_tokens + u.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": u.cached_tokens}}


def info(results: list[Result], chosen: dict[str, Any], telemetry: bool) -> dict[str, Any]:
    """The response's `tts` field: what ran, what it answered (each choice's, after the first's),
    and on request its telemetry."""
    first = results[0]
    out = {**chosen, "answer": first.answer, "stopped_by": first.stopped_by, "config_hash": first.config_hash}
    if len(results) > 1:
        out["answers"] = [r.answer for r in results]
    if telemetry:
        out["telemetry"] = clean(first.telemetry) if len(results) == 1 else [clean(r.telemetry) for r in results]
    return out


def candidates(results: list[Result], start: int) -> list[dict[str, Any]]:
    """Every trace of every choice as an extra choice (index `start`, ...) with its answer and score."""
    out = []
    for c, result in enumerate(results):
        for t in result.traces:
            a = answer(result, trace=t)
            out.append({"index": start + len(out), "message": {"role": "assistant", "content": a.text},
                        "finish_reason": a.finish_reason,
                        "tts": {"choice": c, "answer": t.answer, "score": clean(t.score), "finish_reason": t.finish_reason}})
    return out


# -- chat completions -------------------------------------------------------------------------
def chat_completion(rid: str, created: int, model: str, answers: list[Answer], logprobs: list[Any],
                    chosen: dict[str, Any], return_candidates: bool, telemetry: bool) -> dict[str, Any]:
    results = [a.result for a in answers]
    choices = [{"index": i, "message": {"role": "assistant", "content": a.text}, "logprobs": logprobs[i],
                "finish_reason": a.finish_reason, "stop_reason": _stop_reason(a)} for i, a in enumerate(answers)]
    if return_candidates:
        choices += candidates(results, len(choices))
    return {"id": rid, "object": "chat.completion", "created": created, "model": model, "choices": choices,
            "usage": usage(results), "tts": info(results, chosen, telemetry)}


def _stop_reason(a: Answer) -> str | None:
    return a.trace.stop_reason if a.trace is not None else None


def chunk(rid: str, created: int, model: str, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": choices, **extra}


def chat_chunks(rid: str, created: int, model: str, answers: list[Answer], logprobs: list[Any],
                chosen: dict[str, Any], return_candidates: bool, telemetry: bool,
                include_usage: bool) -> list[dict[str, Any]]:
    """What a stream sends once the answers are chosen (the role went first): each choice's text
    in pieces, its logprobs with its last piece, its finish; the candidates when asked; the usage
    chunk (no choices) only when `stream_options.include_usage` asks for it, as vLLM. The `tts`
    field rides on the last chunk."""
    results = [a.result for a in answers]
    out = []
    for i, a in enumerate(answers):
        parts = pieces(a.text) or [""]
        for j, piece in enumerate(parts):
            c: dict[str, Any] = {"index": i, "delta": {"content": piece}, "logprobs": None, "finish_reason": None}
            if j == len(parts) - 1:
                c["logprobs"] = logprobs[i]
            out.append(chunk(rid, created, model, [c]))
        out.append(chunk(rid, created, model, [{"index": i, "delta": {}, "logprobs": None,
                                                "finish_reason": a.finish_reason, "stop_reason": _stop_reason(a)}]))
    if return_candidates:
        for c in candidates(results, len(answers)):
            out.append(chunk(rid, created, model, [{"index": c["index"], "tts": c["tts"], "finish_reason": c["finish_reason"],
                                                    "delta": {"role": "assistant", "content": c["message"]["content"]}}]))
    if include_usage:
        out.append(chunk(rid, created, model, [], usage=usage(results)))
    out[-1]["tts"] = info(results, chosen, telemetry)
    return out


def pieces(text: str, size: int = 64) -> list[str]:
    """The answer in chunks of about `size` characters, cut after whitespace where possible."""
    out, start = [], 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            cut_at = max(text.rfind(" ", start, end), text.rfind("\n", start, end))
            end = cut_at + 1 if cut_at > start else end
        out.append(text[start:end])
        start = end
    return out


# -- text completions -------------------------------------------------------------------------
def text_choices(done: TextCompletion, stops: tuple[str, ...], k: int | None, echo: bool, start: int,
                 prompt_only: bool = False) -> list[dict[str, Any]]:
    """A prompt's choices, numbered from `start` (several prompts number on, as vLLM's);
    `prompt_only` (echo with max_tokens 0): each the prompt alone, the generated token left out."""
    out = []
    for t in done.choices:
        text, was_cut = ("", False) if prompt_only else cut(t.text, stops)
        finish = "length" if prompt_only or t.finish_reason == "length" and not was_cut else "stop"
        out.append({"index": start + len(out), "text": (done.prompt_text if echo else "") + text,
                    "logprobs": None if k is None else text_logprobs(done, None if prompt_only else t, k, echo),
                    "finish_reason": finish, "stop_reason": None if prompt_only else t.stop_reason})
    return out


def text_completion(rid: str, created: int, model: str, choices: list[dict[str, Any]], u: Usage) -> dict[str, Any]:
    return {"id": rid, "object": "text_completion", "created": created, "model": model, "choices": choices,
            "usage": text_usage(u)}


# -- responses --------------------------------------------------------------------------------
def response(rid: str, created: int, model: str, a: Answer | None, req: Any, chosen: dict[str, Any] | None,
             status: str = "completed") -> dict[str, Any]:
    """A Responses API object: one assistant message of output text (none while in progress)."""
    output, usage_, incomplete = [], None, None
    if a is not None:
        output = [message_item(rid, a.text, "completed")]
        u = a.result.usage
        usage_ = {"input_tokens": u.prompt_tokens, "input_tokens_details": {"cached_tokens": u.cached_tokens,
                                                                          "cache_write_tokens": 0},
                  "output_tokens": u.completion_tokens,
                  "output_tokens_details": {"reasoning_tokens": u.thinking_tokens},
                  "total_tokens": u.total_tokens}
        if a.finish_reason == "length":
            status, incomplete = "incomplete", {"reason": "max_output_tokens"}
    body = {"id": rid, "object": "response", "created_at": created, "status": status, "model": model,
            "output": output, "usage": usage_, "incomplete_details": incomplete, "error": None,
            "instructions": req.instructions, "max_output_tokens": req.max_output_tokens,
            "temperature": req.temperature, "top_p": req.top_p, "metadata": req.metadata or {},
            "parallel_tool_calls": False, "tool_choice": "none", "tools": [], "text": {"format": {"type": "text"}},
            "store": False, "previous_response_id": None, "reasoning": None, "truncation": "disabled",
            "user": req.user}
    if a is not None and chosen is not None:
        body["tts"] = info([a.result], chosen, req.tts.telemetry)
        body["usage"]["tts"] = usage([a.result])["tts"]
    return body


def message_item(rid: str, text: str | None, status: str) -> dict[str, Any]:
    content = [] if text is None else [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {"type": "message", "id": f"msg_{rid.removeprefix('resp_')}", "status": status, "role": "assistant",
            "content": content}


def response_events(rid: str, created: int, model: str, a: Answer, req: Any,
                    chosen: dict[str, Any]) -> list[dict[str, Any]]:
    """The events after `response.created`/`in_progress`: the message and its text part added, the
    text in deltas, each part done, then `response.completed` with the whole response."""
    item_id = message_item(rid, None, "in_progress")["id"]
    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    events: list[dict[str, Any]] = [
        {"type": "response.output_item.added", "output_index": 0, "item": message_item(rid, None, "in_progress")},
        {"type": "response.content_part.added", **where, "part": part},
    ]
    events += [{"type": "response.output_text.delta", **where, "delta": p, "logprobs": []} for p in pieces(a.text)]
    done = message_item(rid, a.text, "completed")
    events += [
        {"type": "response.output_text.done", **where, "text": a.text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": done["content"][0]},
        {"type": "response.output_item.done", "output_index": 0, "item": done},
    ]
    final = response(rid, created, model, a, req, chosen)
    events.append({"type": f"response.{final['status']}", "response": final})
    return events


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
