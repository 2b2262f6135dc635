"""The public types every part of the framework speaks.

Plain dataclasses on the hot path (traces, requests, usage); pydantic only where a user writes
input (see `tts.options`). One name per concept: a *Trace* is one sampled reasoning path, a *Step*
one delimited piece of it, *Usage* what something cost, a *Budget* the cap on it.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from dataclasses import dataclass, field
from typing import Any, Literal

from tts.errors import TTSError

FinishReason = Literal["stop", "length", "abort", "max_steps", "budget", "error"]
StoppedBy = Literal["done", "budget", "early_stop", "error"]

STEP_DELIMITER = "\n\n"

DEFAULT_SYSTEM_PROMPT = (
    "Please reason step by step, and put your final answer within \\boxed{}."
)


@dataclass(slots=True)
class Problem:
    """One question of a task. `answer` is the gold answer (None when unknown)."""

    id: str
    question: str
    answer: str | None = None
    task: str = "math"
    meta: dict[str, Any] = field(default_factory=dict)

    def messages(self, system: str | None = DEFAULT_SYSTEM_PROMPT) -> list[dict[str, str]]:
        """The chat messages that pose this problem (system prompt + question)."""
        msgs = [{"role": "system", "content": system}] if system else []
        msgs.append({"role": "user", "content": self.question})
        return msgs


@dataclass(slots=True)
class Step:
    """A delimited piece of a trace (a reasoning step), with its optional verifier score."""

    text: str
    num_tokens: int = 0
    score: float | None = None


@dataclass(slots=True)
class Trace:
    """One sampled completion.

    `logprobs[i]` is the log-probability of the i-th generated token; `top_logprobs[i]` the
    log-probabilities of the k most likely tokens at that position (requested with
    `GenRequest.logprobs=k`). Both are empty unless asked for. `token_ids` are the generated
    token ids where the backend reports them (vLLM in process does; empty otherwise).
    `top_tokens[i]` are the strings of the tokens in `top_logprobs[i]`, in the same order
    (filled by the vLLM and OpenAI generators with the top logprobs; empty otherwise).

    A reasoning model's trace is split (`tts.thinking`): `thinking` is its thinking part
    (markers removed; None when the trace has none, then the whole text is the answer),
    `answer_part` the text after the close marker (None when the thinking never closed: a trace
    cut inside it), `thinking_tokens` the generated tokens up to and including the close marker
    (a subset of `num_tokens`; the answer's are the rest). `answer_from` says which part the
    answer was extracted from: "answer", "thinking" (no answer part) or "" (no split).
    `stop_reason`: the stop string that ended the trace, when one did. `tokens[i]` is the
    string of the i-th generated token, aligned with `logprobs` (filled with them by the vLLM
    and OpenAI generators; empty otherwise).
    """

    text: str
    num_tokens: int
    finish_reason: FinishReason | None = None
    logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[list[float]] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    answer: str | None = None
    score: float | None = None
    prefix: str = ""  # partial assistant text this trace continued (step-level search)
    token_ids: list[int] = field(default_factory=list)
    top_tokens: list[list[str]] = field(default_factory=list)  # aligned with top_logprobs
    thinking: str | None = None
    answer_part: str | None = None
    thinking_tokens: int = 0
    answer_from: str = ""
    stop_reason: str | None = None
    tokens: list[str] = field(default_factory=list)

    @property
    def answer_tokens(self) -> int:
        return self.num_tokens - self.thinking_tokens

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def split_steps(self, delimiter: str = STEP_DELIMITER) -> list[Step]:
        """Cut the text into steps at `delimiter` (see `split_steps`); stores and returns them."""
        self.steps = [Step(p) for p in split_steps(self.text, delimiter)]
        return self.steps


def split_steps(text: str, delimiter: str = STEP_DELIMITER) -> list[str]:
    """`text` cut at `delimiter`, whitespace-only pieces dropped (the pieces are not stripped):
    the one step splitter of traces, PRMs and judges."""
    return [p for p in text.split(delimiter) if p.strip()]


@dataclass(slots=True)
class Sampling:
    """Run-wide sampling defaults (the one place they are written); a strategy overrides fields
    per request."""

    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 1024
    # Reasoning models (tts.thinking): the chat template's thinking switch (None: the template's
    # default), and a cap on each sample's thinking tokens, after which the thinking is closed
    # for the model and the answer generated (None: uncapped).
    enable_thinking: bool | None = None
    thinking_budget: int | None = None


_DEFAULT_SAMPLING = Sampling()


def stopped_by(budget: bool = False, early: bool = False) -> "StoppedBy":
    """The one `Result.stopped_by` rule: "budget" when the budget refused or cut any call the
    strategy made (it wins: the run did not get what it asked for), else "early_stop" when the
    strategy's own rule stopped it before its size, else "done"."""
    return "budget" if budget else "early_stop" if early else "done"

DEFAULT_WAIT = "Wait"
DEFAULT_ANSWER_CUE = "\n\nFinal Answer:"


@dataclass(frozen=True, slots=True)
class Forcing:
    """Budget forcing of one sample's thinking (s1; run by `tts.thinking.force_thinking`).
    `thinking_budget`: the thinking's tokens at most (what the model generated and the "Wait"s
    inserted); there the thinking is closed for the model (close marker + `answer_cue`, not
    counted in the budget) and only the answer is generated. When the model ends its thinking
    before `min_thinking` tokens, `wait` replaces its end and it goes on, up to `extensions`
    times. The request's max_tokens caps thinking and answer together. The sampling field
    `thinking_budget` is Forcing(thinking_budget) alone: cap and answer, no extension."""

    thinking_budget: int
    min_thinking: int = 0
    extensions: int = 0
    wait: str = DEFAULT_WAIT
    answer_cue: str = DEFAULT_ANSWER_CUE

    def __post_init__(self) -> None:
        if not (self.thinking_budget >= 1 and 0 <= self.min_thinking <= self.thinking_budget
                and self.extensions >= 0):
            raise TTSError(f"budget forcing needs thinking_budget >= 1, 0 <= min_thinking <= thinking_budget and "
                           f"extensions >= 0 (got thinking_budget={self.thinking_budget}, "
                           f"min_thinking={self.min_thinking}, extensions={self.extensions})")
        if self.extensions and not self.wait:
            raise TTSError("budget forcing with extensions needs a non-empty wait text (e.g. 'Wait')")

    @property
    def calls(self) -> int:
        """Generator calls one sample can take: thinking, one per extension, the answer."""
        return self.extensions + 2


@dataclass(slots=True)
class GenRequest:
    """What a strategy asks a generator for: `n` samples continuing `messages`.

    `prefix` is a partial assistant message to continue (step-level search); the chat template
    is applied with the generation prompt and the prefix appended after it. `enable_thinking`
    goes to the chat template's thinking switch (None: the template's default); `forcing`
    makes each sample a budget-forced one (the context runs it).
    """

    messages: list[dict[str, str]]
    n: int = 1
    max_tokens: int = _DEFAULT_SAMPLING.max_tokens
    temperature: float = _DEFAULT_SAMPLING.temperature
    top_p: float = _DEFAULT_SAMPLING.top_p
    stop: tuple[str, ...] = ()
    logprobs: int | None = None
    prefix: str = ""
    enable_thinking: bool | None = None
    forcing: Forcing | None = None

    def replace(self, **changes: Any) -> "GenRequest":
        return dataclasses.replace(self, **changes)


@dataclass(slots=True)
class TextRequest:
    """A raw-text completion (no chat template): `n` samples continuing `prompt` (text, or token
    ids). `logprobs`: the top-k log-probabilities of each generated token (None: none); `echo`:
    the prompt's tokens and, with `logprobs`, their log-probabilities too (the loglikelihood
    scoring of evaluation harnesses); `max_tokens` may then be 0 (score the prompt only: one token is
    generated all the same, as vLLM does, and its answer leaves it out)."""

    prompt: str | list[int]
    n: int = 1
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    logprobs: int | None = None
    echo: bool = False


@dataclass(slots=True)
class TextCompletion:
    """What `Generator.complete` returns: the prompt as the model read it and the `choices`
    (traces with `token_ids`, and with `tokens`, `logprobs`, `top_logprobs`/`top_tokens` when
    asked). With `echo`, `prompt_tokens[i]` is the string of prompt token i; with echo and
    logprobs, `prompt_logprobs[i]` its log-probability (None for the first token, which has no
    context) and `prompt_top[i]` the top-k tokens there with theirs, the prompt token among them
    (None likewise), as vLLM reports them."""

    prompt_text: str
    prompt_ids: list[int]
    choices: list[Trace]
    usage: Usage
    prompt_tokens: list[str] = field(default_factory=list)
    prompt_logprobs: list[float | None] = field(default_factory=list)
    prompt_top: list[dict[str, float] | None] = field(default_factory=list)


@dataclass(slots=True)
class Score:
    """A verifier's judgement of one trace: one value, and per-step values for process
    verifiers (what computing it cost is charged by the context, never carried here). `path` is
    how a process verifier scored it: "incremental" (only the steps whose reward was not known
    yet, the prefix read from the cache) or "full-prefix" (every step, the whole prefix computed
    again); "" for verifiers without the distinction."""

    value: float
    steps: tuple[float, ...] = ()
    path: str = ""


_USAGE_FIELDS = (
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "verifier_tokens",
    "verifier_cached_tokens",
    "generator_calls",
    "verifier_calls",
    "generator_flops",
    "verifier_flops",
    "wall_seconds",
    "thinking_tokens",
    "exec_seconds",
)
# The accountant adds and subtracts Usages several times per call (a replayed race: ~10^6 per
# sweep); one C-level getter of all fields keeps that off the profile.
_usage_values = operator.attrgetter(*_USAGE_FIELDS)


@dataclass(slots=True)
class Usage:
    """What a run cost. `prompt_tokens` includes `cached_tokens` (served from the prefix cache).

    Prompt tokens count once per sample, as the engine prefills each sample's prompt (the
    shared part mostly from the cache, which `cached_tokens` shows); this is what vLLM's own
    counters report, so totals can be checked against the engine.

    `verifier_tokens` are the tokens the verifier's models computed (what FLOPs, budgets and
    `total_tokens` count); `verifier_cached_tokens` the verifier prompt tokens their engines
    served from the prefix cache instead (not in `total_tokens`: nothing was computed for
    them). Their sum is what the verifier's engine counts as prompt (+ judge completion) tokens.

    `thinking_tokens` are the completion tokens a reasoning model spent thinking (a subset of
    `completion_tokens`, so totals still equal the engine's; `answer_tokens` are the rest).

    FLOPs are estimated as 2 x parameters x tokens actually computed: prompt tokens not served
    from the cache, plus completion tokens (generator) or computed tokens (verifier).

    `exec_seconds` are the wall seconds model-written programs ran in the sandbox for the run
    (an execution verifier's or a strategy's runs, `Context.execute`; concurrent runs add up):
    compute that is neither tokens nor FLOPs, so it has its own field and cap.
    """

    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    verifier_tokens: int = 0
    verifier_cached_tokens: int = 0
    generator_calls: int = 0
    verifier_calls: int = 0
    generator_flops: float = 0.0
    verifier_flops: float = 0.0
    wall_seconds: float = 0.0
    thinking_tokens: int = 0
    exec_seconds: float = 0.0

    @property
    def answer_tokens(self) -> int:
        return self.completion_tokens - self.thinking_tokens

    @property
    def generator_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens + self.verifier_tokens

    @property
    def calls(self) -> int:
        return self.generator_calls + self.verifier_calls

    @property
    def flops(self) -> float:
        return self.generator_flops + self.verifier_flops

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(*map(operator.add, _usage_values(self), _usage_values(other)))

    def __sub__(self, other: "Usage") -> "Usage":
        return Usage(*map(operator.sub, _usage_values(self), _usage_values(other)))

    def min(self, other: "Usage") -> "Usage":
        """Field by field, the smaller of the two."""
        return Usage(*map(min, _usage_values(self), _usage_values(other)))

    def to_dict(self) -> dict[str, float]:
        d = {f: getattr(self, f) for f in _USAGE_FIELDS}
        d["total_tokens"] = self.total_tokens
        if self.thinking_tokens:
            d["answer_tokens"] = self.answer_tokens
        else:
            del d["thinking_tokens"]  # a run without thinking records what it always did
        if not self.exec_seconds:
            del d["exec_seconds"]  # nor does a run that executed nothing
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Usage":
        return cls(**{f: d[f] for f in _USAGE_FIELDS if f in d})


@dataclass(slots=True, frozen=True)
class Budget:
    """Caps on a run's cost; None means uncapped. Checked by the accountant before every call."""

    completion_tokens: int | None = None
    total_tokens: int | None = None
    verifier_tokens: int | None = None
    calls: int | None = None
    flops: float | None = None
    wall_seconds: float | None = None
    exec_seconds: float | None = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool)
                                      and math.isfinite(v) and v >= 0):
                raise TTSError(f"budget cap {f.name} must be a finite number >= 0 (or None: uncapped), got {v!r}")

    def exceeded_by(self, usage: Usage) -> str | None:
        """The name of the first cap `usage` goes over, or None."""
        for name, value in (
            ("completion_tokens", usage.completion_tokens),
            ("total_tokens", usage.total_tokens),
            ("verifier_tokens", usage.verifier_tokens),
            ("calls", usage.calls),
            ("flops", usage.flops),
            ("wall_seconds", usage.wall_seconds),
            ("exec_seconds", usage.exec_seconds),
        ):
            cap = getattr(self, name)
            if cap is not None and value > cap + (1e-9 if isinstance(cap, float) else 0):
                return name
        return None

    def is_unlimited(self) -> bool:
        return all(getattr(self, f.name) is None for f in dataclasses.fields(self))


@dataclass(slots=True)
class Result:
    """What solving one problem produced: the answer, what it cost, and strategy telemetry."""

    problem_id: str
    answer: str | None
    traces: list[Trace] = field(default_factory=list)
    stopped_by: StoppedBy = "done"
    usage: Usage = field(default_factory=Usage)
    correct: bool | None = None
    strategy: str = ""
    config_hash: str = ""
    seed: int = 0
    telemetry: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    # What only a viewer needs (DeepConf's confidence curves): kept in the run's details file
    # (`tts.experiment.details`), never in the record, so records stay small.
    details: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """The plain, JSON-serialisable record a run stores (traces summarised, not stored)."""
        telemetry = {k: v for k, v in self.telemetry.items() if _jsonable(v)}
        return {
            "problem_id": self.problem_id,
            "config_hash": self.config_hash,
            "seed": self.seed,
            "strategy": self.strategy,
            "answer": self.answer,
            "correct": self.correct,
            "stopped_by": self.stopped_by,
            "usage": self.usage.to_dict(),
            "answers": [t.answer for t in self.traces],
            **({"answer_from": [t.answer_from for t in self.traces]}
               if any(t.answer_from for t in self.traces) else {}),
            "scores": [t.score if t.score is not None and math.isfinite(t.score) else None for t in self.traces],
            "telemetry": telemetry,
            "error": self.error,
        }


def _jsonable(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool, type(None), list, dict))
