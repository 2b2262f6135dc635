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
- `Forcing` and `force_thinking`: one sample whose thinking is capped at a budget B and, below
  a minimum, extended by replacing the close marker with "Wait"; then the answer. It runs on the
  context (each continuation is one generator call through the accountant, its prefix served
  from the prefix cache), so any strategy that samples through `Context` samples budget-forced
  traces when its requests carry a `Forcing`: sequential inside, parallel outside.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tts.errors import TTSError
from tts.types import GenRequest, Trace, Usage

if TYPE_CHECKING:
    from tts.context import Context


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

DEFAULT_WAIT = "Wait"
DEFAULT_ANSWER_CUE = "\n\nFinal Answer:"


@dataclass(frozen=True, slots=True)
class Forcing:
    """Budget forcing of one sample's thinking (s1). `budget`: the thinking's tokens at most
    (what the model generated, the "Wait"s inserted and the forced close marker + `answer_cue`);
    at the budget the thinking is closed for the model and only the answer is generated.
    `min_thinking`: a model that closes its thinking before this many tokens gets `wait`
    instead of its close marker and continues, up to `extensions` times. The request's
    max_tokens caps thinking and answer together. `thinking_budget` (a sampling field) is
    Forcing(budget) alone: cap and answer, no extension."""

    budget: int
    min_thinking: int = 0
    extensions: int = 0
    wait: str = DEFAULT_WAIT
    answer_cue: str = DEFAULT_ANSWER_CUE

    def __post_init__(self) -> None:
        if self.budget < 1 or self.min_thinking < 0 or self.extensions < 0:
            raise TTSError(f"budget forcing needs budget >= 1, min_thinking >= 0 and extensions >= 0 (got "
                           f"budget={self.budget}, min_thinking={self.min_thinking}, extensions={self.extensions})")

    @property
    def calls(self) -> int:
        """Generator calls one sample can take: thinking, one per extension, the answer."""
        return self.extensions + 2

    def inserted_bound(self, markers: Markers) -> int:
        """An upper bound on the tokens inserted into one sample's prefix (a token is >= 1 byte)."""
        text = markers.open + "\n" + self.wait * self.extensions + markers.close + self.answer_cue
        return len(text.encode())


async def _text_tokens(ctx: "Context", req: GenRequest, text: str) -> int:
    """Tokens `text` adds at the end of `req`'s prompt, by the generator's own count."""
    return (await ctx.generator.count_prompt_tokens(req.replace(prefix=req.prefix + text))
            - await ctx.generator.count_prompt_tokens(req))


async def force_thinking(ctx: "Context", req: GenRequest, hold: list[Usage] | None,
                         stream: bool = False) -> AsyncIterator[Trace]:
    """One budget-forced sample of `req` (n=1, `req.forcing` set): think up to the budget in
    continuations from the growing prefix, each stopped at the close marker ("Wait" and go on
    while under the minimum and extensions remain), close the thinking at the budget with the
    close marker and the answer cue, then generate the answer in what max_tokens leaves.

    Yields the sample's trace: once, finished (`stream=False`), or as it grows (one object,
    grown in place). Each continuation is a call of `ctx` charged under `hold` (the whole
    sample's reservation). The trace's text is what followed `req.prefix`, inserted text
    included; `num_tokens`, `thinking_tokens`, `token_ids` and logprobs are the generated ones
    (what the engine counts). `ctx.telemetry["thinking"]` counts waits and forced closes."""
    f = req.forcing
    assert f is not None
    gen = ctx.generator
    markers = need_markers(getattr(gen, "markers", None), gen.model, "budget forcing (thinking_budget)")
    if req.enable_thinking is False:
        raise TTSError("a thinking budget with enable_thinking=False: there is no thinking to budget; "
                       "drop one of them")
    base = req.replace(n=1, forcing=None)
    opened = (markers.prompt_opens and req.enable_thinking is not False) or opens_thinking(req.prefix, markers)
    text = "" if opened else markers.open + "\n"
    close_cue = markers.close + f.answer_cue
    cue_tokens = await _text_tokens(ctx, base.replace(prefix=req.prefix + text), close_cue)
    if f.budget < cue_tokens:
        raise TTSError(f"thinking budget {f.budget} is smaller than the forced close and answer cue "
                       f"{close_cue!r} ({cue_tokens} tokens): raise the budget or shorten answer_cue")
    wait_tokens = await _text_tokens(ctx, base.replace(prefix=req.prefix + text), f.wait) if f.extensions else 0
    out = Trace(text=text, num_tokens=0, prefix=req.prefix)
    used = 0  # the thinking's tokens so far: generated plus inserted
    waits = 0
    tele = ctx.telemetry.setdefault("thinking", {"samples": 0, "waits": 0, "forced_close": 0})
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
        if stream:
            async for t in ctx._stream(r, hold):
                got = t
                grow(t)
                if not t.finished:
                    yield out
        else:
            got = (await ctx._generate(r, hold))[0]
        assert got is not None
        grow(got)
        out.thinking_tokens = k0 + got.thinking_tokens
        out.finish_reason, out.stop_reason = got.finish_reason, got.stop_reason
        yield got

    forced = False
    while True:
        room = min(f.budget - cue_tokens - used, req.max_tokens - out.num_tokens)
        if room <= 0:
            forced = req.max_tokens - out.num_tokens > 0
            break
        r = base.replace(prefix=req.prefix + out.text, max_tokens=room, stop=(markers.close, *req.stop))
        t = None
        async for t in phase(r):
            if t is out:
                yield out
        assert t is not None
        used += t.num_tokens
        if t.finish_reason == "stop" and t.stop_reason == markers.close:  # the model closed its thinking
            if used < f.min_thinking and waits < f.extensions:
                out.text += f.wait
                used += wait_tokens
                waits += 1
                continue
            out.text += markers.close
            break
        if t.finish_reason == "length" and t.num_tokens >= room and out.num_tokens < req.max_tokens:
            forced = True  # the budget is reached: close the thinking for the model
            break
        # it ended otherwise (end of sequence inside its thinking, max_tokens, a stop string): done
        _end(out, markers, opened, tele, waits)
        yield out
        return
    if forced:
        out.text += close_cue
        tele["forced_close"] += 1
    room = req.max_tokens - out.num_tokens
    if room > 0:
        async for t in phase(base.replace(prefix=req.prefix + out.text, max_tokens=room)):
            if t is out:
                yield out
    else:
        out.finish_reason = "length"
    _end(out, markers, opened, tele, waits)
    yield out


def _end(out: Trace, markers: Markers, opened: bool, tele: dict[str, int], waits: int) -> None:
    thinking, answer = split_thinking(out.text, markers, opened)
    out.thinking, out.answer_part = thinking if thinking is not None else "", answer
    out.finish_reason = out.finish_reason or "stop"
    tele["waits"] += waits
