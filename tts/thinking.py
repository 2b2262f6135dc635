"""Reasoning ("thinking") models: where a trace's thinking ends and its answer begins, and the
sequential scaling of the thinking (budget forcing, s1: Muennighoff et al. 2025).

- `Markers`: a model family's thinking markers (`<think>` / `</think>` for Qwen3, QwQ and the
  DeepSeek-R1 distills), whether its chat template's generation prompt already opens the
  thinking, and the template's thinking switch (Qwen3's `enable_thinking`). `markers_for` picks
  them from the table of known families, the tokenizer's vocabulary, or `think_open` /
  `think_close` given by the user.
- `split_thinking(text, markers)`: the one splitter every backend uses (a vLLM server's
  reasoning field, when its reasoning parser gives one, is the same split done server side).
- `extract_answer`: the answer part first; the last answer in the thinking only when the
  thinking never closed (a trace cut at max_tokens), and the trace says so (`answer_from`).
- `force_thinking`: one sample whose thinking is capped at a budget B (`tts.types.Forcing`) and
  extended, where the model ends it early, by "Wait" instead of its end; then the answer, as s1
  does. The context runs it (`Context.generate` / `stream` on a request that carries a
  `Forcing`), passing its own calls in, so each continuation is one generator call through the
  accountant, its prefix served from the prefix cache: any strategy that samples through the
  context samples budget-forced traces, sequential inside, parallel outside.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tts.errors import TTSError
from tts.types import Forcing, GenRequest, Trace


@dataclass(frozen=True, slots=True)
class Markers:
    """A model family's thinking markers. `prompt_opens`: the chat template's generation prompt
    already ends with `open` (the model starts inside its thinking, as the R1 distills do).
    `switch`: the chat-template variable that turns thinking on and off (None: none known)."""

    open: str = "<think>"
    close: str = "</think>"
    prompt_opens: bool = False
    switch: str | None = "enable_thinking"


# Known families, matched against the model's name (lower case); the first match wins.
FAMILIES: dict[str, Markers] = {
    "qwen3": Markers(),  # Qwen3: the model writes <think>; enable_thinking=False adds an empty block
    "qwq": Markers(prompt_opens=True, switch=None),  # QwQ-32B: the template ends with "<think>\n"
    "deepseek-r1": Markers(prompt_opens=True, switch=None),  # R1 and the R1-Distill models
    "r1-distill": Markers(prompt_opens=True, switch=None),
}

HOW_TO_PASS = ("pass think_open=... and think_close=... (CLI: --think-open '<think>' --think-close '</think>'), "
               "the markers the model writes around its thinking")


def markers_for(model: str, vocab: Any = None, think_open: str | None = None,
                think_close: str | None = None) -> Markers | None:
    """The thinking markers of `model`: `think_open`/`think_close` when given, else its family's
    (`FAMILIES`, by name), else `<think>`/`</think>` when the tokenizer's vocabulary has both as
    single tokens; None: not a known reasoning model (its traces are all answer)."""
    name = str(model).lower()
    family = next((m for key, m in FAMILIES.items() if key in name), None)
    if think_open or think_close:
        if not (think_open and think_close):
            raise TTSError(f"give both think_open and think_close (got open={think_open!r}, close={think_close!r})")
        if think_open == think_close or think_open in think_close or think_close in think_open:
            raise TTSError(f"think_open {think_open!r} and think_close {think_close!r} must differ, neither inside "
                           "the other (a trace's thinking is split where they stand)")
        base = family or Markers(switch=None)
        return Markers(think_open, think_close, base.prompt_opens, base.switch)
    if family is not None:
        return family
    if vocab is not None and "<think>" in vocab and "</think>" in vocab:
        return Markers()
    return None


def need_markers(markers: Markers | None, model: str, what: str) -> Markers:
    """`markers`, or the error that says how to give them when `what` needs them."""
    if markers is None:
        raise TTSError(f"{what} needs the thinking markers of model {model!r}, an unknown family: {HOW_TO_PASS}")
    return markers


def split_thinking(text: str, markers: Markers, opened: bool = False) -> tuple[str | None, str | None]:
    """`(thinking, answer)` of a completion. `opened`: the prompt left the model inside its
    thinking (a template or prefix that ends with the open marker). The thinking starts at the
    open marker when the text starts with it (leading whitespace aside), or at the start when
    `opened` or when a close marker follows without an open one; it ends at the close marker.
    thinking None: the text has no thinking part (it is all answer); answer None: the thinking
    never closed (the trace was cut inside it)."""
    start = len(text) - len(text.lstrip())
    if text.startswith(markers.open, start):
        start, opened = start + len(markers.open), True
    else:
        start = 0
    end = text.find(markers.close, start)
    if end >= 0:
        return text[start:end], text[end + len(markers.close):]
    if opened:
        return text[start:], None
    return None, None


def opens_thinking(prompt_text: str, markers: Markers) -> bool:
    """Whether a prompt ends inside a thinking block (its last open marker after its last close)."""
    return prompt_text.rfind(markers.open) > prompt_text.rfind(markers.close)


def mark_thinking(trace: Trace, markers: Markers | None, opened: bool, close_id: int | None = None) -> None:
    """Set `trace.thinking`, `answer_part` and `thinking_tokens` (generated tokens up to and
    including the close marker; all of them when the thinking never closed). Counted from the
    token ids where the backend reports them, else estimated in proportion to the text."""
    if markers is None:
        return
    thinking, answer = split_thinking(trace.text, markers, opened)
    trace.thinking, trace.answer_part = thinking, answer
    if thinking is None:
        trace.thinking_tokens = 0
    elif answer is None:
        trace.thinking_tokens = trace.num_tokens
    elif close_id is not None and close_id in trace.token_ids:
        trace.thinking_tokens = trace.token_ids.index(close_id) + 1
    else:
        trace.thinking_tokens = _share(trace, answer)


def _share(trace: Trace, answer: str) -> int:
    if not trace.text:
        return 0
    head = len(trace.text) - len(answer)
    return min(trace.num_tokens, max(1, round(trace.num_tokens * head / len(trace.text))))


def extract_answer(trace: Trace, extract: Callable[[str], str | None]) -> tuple[str | None, str]:
    """A trace's answer and where it came from: "answer" (the answer part), "thinking" (no
    answer part: the last answer in the thinking), "" (no thinking part: the whole text)."""
    if trace.thinking is None:
        return extract(trace.text), ""
    if trace.answer_part is not None:
        return extract(trace.answer_part), "answer"
    return extract(trace.thinking), "thinking"


# -- budget forcing ------------------------------------------------------------------------------

def inserted_bound(f: Forcing, markers: Markers) -> int:
    """An upper bound on the tokens budget forcing inserts into one sample's prefix (a token is
    >= 1 byte): the open marker, every "Wait", the close marker and the answer cue."""
    text = markers.open + "\n" + f.wait * f.extensions + markers.close + f.answer_cue
    return len(text.encode())


Call = Callable[[GenRequest], Awaitable[list[Trace]]]
StreamCall = Callable[[GenRequest], AsyncIterator[Trace]]


async def _text_tokens(count: Callable[[GenRequest], Awaitable[int]], req: GenRequest, text: str) -> int:
    """Tokens `text` adds at the end of `req`'s prompt, by the generator's own count."""
    return await count(req.replace(prefix=req.prefix + text)) - await count(req)


async def force_thinking(req: GenRequest, markers: Markers, *, count: Callable[[GenRequest], Awaitable[int]],
                         call: Call, stream_call: StreamCall | None, telemetry: dict[str, Any]
                         ) -> AsyncIterator[Trace]:
    """One budget-forced sample of `req` (n=1, `req.forcing` set), as s1's reference does
    (simplescaling/s1, eval/lm-evaluation-harness/lm_eval/models/vllm_causallms.py): think in
    continuations from the growing prefix, each stopped at the close marker; any end other than
    the budget running out (the close marker, end of sequence, a stop string) is replaced by
    "Wait" and the thinking goes on, while under `min_thinking` and extensions remain; then the
    thinking is always closed (the model's own end: the close marker; the budget reached: the
    close marker and `answer_cue`, outside the budget) and the answer is generated in what
    max_tokens leaves. (Ours: max_tokens caps thinking and answer together; s1 gives the answer
    its own max_gen_toks.)

    `call` / `stream_call` run one continuation (the context's calls, charged under the whole
    sample's reservation; `stream_call` None: not streamed); `count` counts prompt tokens.
    Yields the sample's trace: once, finished (not streamed), or as it grows (one object, grown
    in place). The trace's text is what followed `req.prefix`, inserted text included;
    `num_tokens`, `thinking_tokens`, `token_ids` and logprobs are the generated ones (what the
    engine counts). `telemetry["thinking"]` counts samples, waits and forced closes."""
    f = req.forcing
    assert f is not None
    if req.enable_thinking is False:
        raise TTSError("a thinking budget with enable_thinking=False: there is no thinking to budget; "
                       "drop one of them")
    base = req.replace(n=1, forcing=None)
    opened = (markers.prompt_opens and req.enable_thinking is not False) or opens_thinking(req.prefix, markers)
    text = "" if opened else markers.open + "\n"
    wait_tokens = await _text_tokens(count, base.replace(prefix=req.prefix + text), f.wait) if f.extensions else 0
    out = Trace(text=text, num_tokens=0, prefix=req.prefix)
    used = 0  # the thinking's tokens so far: generated plus the inserted Waits
    waits = 0
    tele = telemetry.setdefault("thinking", {"samples": 0, "waits": 0, "forced_close": 0})
    tele["samples"] += 1

    async def phase(r: GenRequest) -> AsyncIterator[Trace]:
        """One continuation, its trace appended to `out` as it grows (yields `out` while it does,
        then the continuation's own finished trace)."""
        head, n0, k0 = out.text, out.num_tokens, out.thinking_tokens
        lists = ("token_ids", "logprobs", "top_logprobs", "top_tokens")
        starts = {name: len(getattr(out, name)) for name in lists}

        def grow(t: Trace) -> None:
            out.text, out.num_tokens = head + t.text, n0 + t.num_tokens
            for name in lists:  # extend by what is new (the backend grows its trace in place)
                mine, theirs = getattr(out, name), getattr(t, name)
                mine.extend(theirs[len(mine) - starts[name]:])

        got: Trace | None = None
        if stream_call is not None:
            async for t in stream_call(r):
                got = t
                grow(t)
                if not t.finished:
                    yield out
        else:
            got = (await call(r))[0]
        assert got is not None
        grow(got)
        out.thinking_tokens = k0 + got.thinking_tokens
        out.finish_reason, out.stop_reason = got.finish_reason, got.stop_reason
        yield got

    closed = False  # the model ended its thinking and it was closed (no cue)
    while True:
        room = min(f.thinking_budget - used, req.max_tokens - out.num_tokens)
        if room <= 0:
            break
        r = base.replace(prefix=req.prefix + out.text, max_tokens=room, stop=(markers.close, *req.stop))
        t = None
        async for t in phase(r):
            if t is out:
                yield out
        assert t is not None
        used += t.num_tokens
        if t.finish_reason == "length":
            break  # the budget (or max_tokens) ran out inside the thinking
        if used < f.min_thinking and waits < f.extensions:  # s1 ignores the end: "Wait", go on
            out.text += f.wait
            used += wait_tokens
            waits += 1
            continue
        out.text += markers.close
        closed = True
        break
    room = req.max_tokens - out.num_tokens
    if not closed and room > 0:  # the budget is reached: close the thinking for the model
        out.text += markers.close + f.answer_cue
        tele["forced_close"] += 1
    if room > 0:
        async for t in phase(base.replace(prefix=req.prefix + out.text, max_tokens=room)):
            if t is out:
                yield out
    else:
        out.finish_reason = "length"  # max_tokens spent inside the thinking: no answer part
    thinking, answer = split_thinking(out.text, markers, opened)
    out.thinking, out.answer_part = thinking if thinking is not None else "", answer
    out.finish_reason = out.finish_reason or "stop"
    tele["waits"] += waits
    yield out
