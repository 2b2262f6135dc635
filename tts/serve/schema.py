"""What a client (or the operator) writes to `tts serve`, validated with pydantic, and the
OpenAI-style error every bad input becomes.

A request is an OpenAI body (chat completion, completion or response); the test-time-scaling
choices ride in its `tts` field (the `openai` client's `extra_body={"tts": {...}}`). Every field
is either honoured or refused: a field tts serve cannot honour is accepted only at the value
that means "off" (`OFF`), else a 400 naming it and saying why; a field nobody defined is a 400
naming it, as OpenAI answers ("Unrecognized request argument"). Nothing is silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from tts.options import BudgetCaps, BudgetOptions, Count, Flag, RunOptions, SamplingOptions, StrategyOptions
from tts.types import DEFAULT_SYSTEM_PROMPT, Problem

API_KEY_ENV = "TTS_API_KEY"
MAX_STOP = 4  # stop strings per request, as vLLM (VLLM_MAX_STOP_STRINGS) and OpenAI allow
MAX_LOGPROBS = 20  # top logprobs per token, as OpenAI and vLLM's default --max-logprobs


class APIError(Exception):
    """An HTTP error with an OpenAI-style body: {"error": {message, type, param, code}}."""

    def __init__(self, status: int, message: str, param: str | None = None, *,
                 type: str = "invalid_request_error", code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.type, self.code = status, message, param, type, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


_TAGS = {"str", "int", "float", "bool", "dict", "list", "none"}


def from_validation(e: ValidationError) -> APIError:
    """400 naming the first offending field (its path, e.g. `messages.0.role`; pydantic's names
    of union branches, such as `str` or `list[TextPart]`, left out)."""
    err = e.errors()[0]
    loc = [str(p) for p in err["loc"] if not (isinstance(p, str) and (p in _TAGS or "[" in p))]
    param = ".".join(loc) or None
    if err["type"] == "extra_forbidden":
        return APIError(400, f"Unrecognized request argument supplied: {param}", param, code="unknown_parameter")
    msg = err["msg"].removeprefix("Value error, ")
    return APIError(400, f"{param}: {msg}" if param else msg, param)


# Fields of OpenAI's (and vLLM's) APIs that tts serve cannot honour, with the values that mean
# "off" (None always does): any other value is a 400 saying why. Stated once for every endpoint.
_TOOLS = "tool calling is not supported: strategies answer in text"
_SAMPLING = "not supported: the backends sample with temperature, top_p, max_tokens and stop only"
OFF: dict[str, tuple[tuple[Any, ...], str]] = {
    "tools": ((), _TOOLS),
    "tool_choice": (("none", "auto"), _TOOLS),
    "functions": ((), _TOOLS),
    "function_call": (("none", "auto"), _TOOLS),
    "response_format": (({"type": "text"},), "structured output (JSON mode, schemas) is not supported"),
    "frequency_penalty": ((0, 0.0), _SAMPLING),
    "presence_penalty": ((0, 0.0), _SAMPLING),
    "repetition_penalty": ((1, 1.0), _SAMPLING),
    "logit_bias": (({},), _SAMPLING),
    "top_k": ((0, -1), _SAMPLING),
    "min_p": ((0, 0.0), _SAMPLING),
    "min_tokens": ((0,), _SAMPLING),
    "ignore_eos": ((False,), _SAMPLING),
    "best_of": ((1,), _SAMPLING),
    "suffix": (("",), "suffix (fill-in-the-middle) is not supported"),
    "audio": ((), "audio output is not supported"),
    "modalities": ((["text"],), "only text output is supported"),
    "prediction": ((), "predicted outputs are not supported"),
    "web_search_options": ((), "web search is not supported"),
    "reasoning_effort": ((), "reasoning effort is not supported: use --enable-thinking / --thinking-budget"),
    "reasoning": ((), "reasoning options are not supported: use --enable-thinking / --thinking-budget"),
    "previous_response_id": ((), "responses are not stored: send the whole conversation as input"),
    "background": ((False,), "background responses are not supported"),
    "include": (([],), "included extras are not supported"),
    "truncation": (("disabled",), "truncation is not supported: a prompt over the context is a 400"),
}


def refuse_off(data: Any, fields: tuple[str, ...]) -> Any:
    """400 for a field of `fields` set to anything but its "off" value (see OFF)."""
    if isinstance(data, dict):
        for name in fields:
            v = data.get(name)
            off, why = OFF[name]
            if v is not None and not any(type(v) is type(o) and v == o for o in off):  # 0 is not False
                raise APIError(400, f"{name}: {why}", name, code="unsupported_parameter")
    return data


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(Strict):
    type: Literal["text", "input_text", "output_text"]
    text: str
    annotations: list[Any] | None = None  # an output_text part sent back from an earlier response


class Message(Strict):
    # "developer" is what newer OpenAI clients send instead of "system"; "tool" carries a tool's
    # result back (its text goes to the chat template as it is).
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None  # accepted as OpenAI's; chat templates do not render it
    tool_call_id: str | None = None
    tool_calls: Any = None
    type: Literal["message"] | None = None  # a Responses input item

    @field_validator("tool_calls")
    @classmethod
    def _no_tools(cls, v: Any) -> Any:
        if v:
            raise ValueError(_TOOLS)
        return v

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content)
        return self.content or ""


class TTSOptions(Strict):
    """`extra_body={"tts": {...}}`: the request's test-time-scaling choices."""

    strategy: str | None = None
    n: Count | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    verifier: str | None = None
    budget: BudgetCaps = Field(default_factory=dict)
    return_candidates: bool = False
    telemetry: bool = False


class StreamOptions(Strict):
    include_usage: bool = False
    continuous_usage_stats: Literal[False] = False  # vLLM's per-chunk usage: not supported


Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]


class Request(Strict):
    """What every endpoint's body shares: the model, sampling, `stop`, the stream switch, the
    fields accepted as OpenAI's that change nothing here (`user`, `metadata`, `store`,
    `service_tier`, `parallel_tool_calls`: responses are not stored, there is one tier and no
    tools), the refused ones (OFF) and the `tts` block."""

    model: str = ""
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: Int64 | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    parallel_tool_calls: bool | None = None
    tts: TTSOptions = Field(default_factory=TTSOptions)
    # refused unless off (OFF)
    frequency_penalty: Any = None
    presence_penalty: Any = None
    repetition_penalty: Any = None
    logit_bias: Any = None
    top_k: Any = None
    min_p: Any = None
    min_tokens: Any = None
    ignore_eos: Any = None

    @model_validator(mode="before")
    @classmethod
    def _refuse(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("stream_options") is not None and not data.get("stream"):
            raise APIError(400, "stream_options: stream options can only be given with stream=true", "stream_options")
        return refuse_off(data, tuple(k for k in OFF if k in cls.model_fields))

    @field_validator("tts", mode="before")
    @classmethod
    def _no_tts(cls, v: Any) -> Any:
        return {} if v is None else v

    @field_validator("stop", mode="before")
    @classmethod
    def _stop(cls, v: Any) -> Any:
        if isinstance(v, list):
            if not all(isinstance(s, str) and s for s in v):
                raise ValueError("stop strings must be non-empty strings")
            if len(v) > MAX_STOP:
                raise ValueError(f"at most {MAX_STOP} stop strings (got {len(v)})")
        return v

    def stops(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) and self.stop else tuple(self.stop or ())

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


def chat_messages(messages: list[Message], where: str = "messages") -> list[dict[str, str]]:
    """The messages as the chat template takes them (developer -> system), or a 400 when no user
    turn carries text or the conversation does not end with the user's turn (or a tool's
    result)."""
    msgs = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in messages]
    if not any(m["content"].strip() for m in msgs if m["role"] == "user"):
        raise APIError(400, f"{where}: the prompt is empty (no user message has any text)", where)
    if msgs[-1]["role"] not in ("user", "tool"):
        last = f"{where}.{len(msgs) - 1}.role"
        raise APIError(400, f"{last}: the last message must be the user's (or a tool's), not '{msgs[-1]['role']}'", last)
    return msgs


class ChatRequest(Request):
    """POST /v1/chat/completions. `n` is the number of choices, each one run of the strategy;
    the strategy's own size is `tts.n` (or the server's -n)."""

    messages: list[Message] = Field(min_length=1)
    n: Annotated[int, Field(ge=1)] = 1
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: Annotated[int, Field(ge=0, le=MAX_LOGPROBS)] | None = None
    tools: Any = None
    tool_choice: Any = None
    functions: Any = None
    function_call: Any = None
    response_format: Any = None
    audio: Any = None
    modalities: Any = None
    prediction: Any = None
    web_search_options: Any = None
    reasoning_effort: Any = None

    @model_validator(mode="after")
    def _logprobs(self) -> "ChatRequest":
        if self.top_logprobs and not self.logprobs:
            raise APIError(400, "top_logprobs: needs logprobs=true", "top_logprobs")
        return self

    def chat(self) -> list[dict[str, str]]:
        return chat_messages(self.messages)

    @property
    def max_new(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def k(self) -> int | None:
        """The top logprobs asked (None: no logprobs)."""
        return (self.top_logprobs or 0) if self.logprobs else None


TokenIds = list[Annotated[int, Field(ge=0)]]


class CompletionRequest(Request):
    """POST /v1/completions: raw text (or token-id) prompts, no chat template."""

    prompt: str | list[str] | TokenIds | list[TokenIds]
    n: Annotated[int, Field(ge=1)] = 1
    max_tokens: Annotated[int, Field(ge=0)] = 16  # OpenAI's and vLLM's default
    echo: bool = False
    logprobs: Annotated[int, Field(ge=0, le=MAX_LOGPROBS)] | None = None
    suffix: Any = None
    best_of: Any = None

    @field_validator("max_tokens", mode="before")
    @classmethod
    def _null_max(cls, v: Any) -> Any:
        return 16 if v is None else v  # as vLLM: null is the default

    @model_validator(mode="after")
    def _prompts(self) -> "CompletionRequest":
        if self.max_tokens == 0 and not self.echo:
            raise APIError(400, "max_tokens: 0 generates nothing; use it with echo=true (score the prompt)", "max_tokens")
        if self.stream and self.echo and self.logprobs is not None:
            raise APIError(400, "logprobs: the prompt's logprobs (echo) are not available when stream=true", "logprobs")
        if not self.prompts() or any(len(p) == 0 for p in self.prompts()):
            raise APIError(400, "prompt: an empty prompt (give at least one token)", "prompt")
        return self

    def prompts(self) -> list[str | list[int]]:
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if p and all(isinstance(x, int) for x in p):
            return [p]  # type: ignore[list-item]
        return list(p)  # type: ignore[arg-type]


class ResponsesRequest(Request):
    """POST /v1/responses, the minimal text subset: `input` (a string, or messages with text
    content), `instructions` (the system message), `max_output_tokens`, streaming events and
    usage. Tools, stored conversations and structured output are refused (OFF)."""

    input: str | list[Message]
    instructions: str | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    text: dict[str, Any] | None = None
    tools: Any = None
    tool_choice: Any = None
    reasoning: Any = None
    previous_response_id: Any = None
    background: Any = None
    include: Any = None
    truncation: Any = None
    top_logprobs: Literal[0] | None = Field(None, description="logprobs are not supported on /v1/responses")
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None

    @field_validator("text")
    @classmethod
    def _text(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        fmt = (v or {}).get("format")
        if fmt is not None and fmt != {"type": "text"}:
            raise ValueError("structured output (text.format other than text) is not supported")
        return v

    def chat(self) -> list[dict[str, str]]:
        items = [Message(role="user", content=self.input)] if isinstance(self.input, str) else self.input
        msgs = chat_messages(items, "input")
        return ([{"role": "system", "content": self.instructions}] if self.instructions else []) + msgs


class ServeOptions(RunOptions, BudgetOptions, SamplingOptions, StrategyOptions):
    """The operator's settings (`tts serve`'s options, from the same blocks as `tts bench`'s):
    the defaults of every request (strategy, sampling, per-request budget cap, seed), the
    server's own, and its limits. Sampling fields left None are the defaults (replay: the
    bank's; max_tokens: the rest of the context, as vLLM)."""

    strategy: str = Field("self_consistency", description="default strategy (requests may pick another; "
                          "'none' is one plain sample, a drop-in for a vLLM endpoint)")
    n: Annotated[Count, Flag("-n")] = Field(8, description="default size of the strategy (a request's `tts.n` "
                                            "overrides it)")
    budget: BudgetCaps = Field(default_factory=dict, description="per-request cap for every request (repeat), e.g. "
                               "total_tokens=20000; requests may ask for less")
    served_model_name: str | None = Field(None, description="the model name clients use (default: the model's name)")
    system_prompt: str | None = Field(None, description="added to conversations without a system message (default: "
                                      "reason step by step, answer in \\boxed{}, for every strategy but 'none'; "
                                      "replay: the bank's; '' adds none)")
    host: str = Field("127.0.0.1", description="address to bind (127.0.0.1: this machine only)")
    port: Annotated[int, Field(ge=1, le=65535)] = Field(8000, description="port to bind")
    api_key: SecretStr | None = Field(None, description=f"require `Authorization: Bearer KEY` (default: ${API_KEY_ENV}, "
                                      "else none)")
    max_concurrent: Count = Field(64, description="requests solved at once")
    max_queue: Annotated[int, Field(ge=0)] = Field(256, description="requests waiting for a slot; more get 429")
    keepalive: Annotated[float, Field(gt=0, allow_inf_nan=False)] = Field(
        5.0, description="seconds between keep-alive comments of a stream")
    max_n: Count = Field(64, description="largest strategy size (tts.n) a request may ask; more is a 400")
    max_choices: Count = Field(16, description="largest number of choices (n) a request may ask; more is a 400")
    max_body_bytes: Count = Field(4 * 2**20, description="largest request body; more is a 413")
    max_depth: Count = Field(32, description="deepest JSON nesting of a request body; more is a 400")
    max_seconds: Annotated[float, Field(gt=0, allow_inf_nan=False)] = Field(
        600.0, description="wall time a request may take; past it its work is stopped and it gets a 408")

    @model_validator(mode="after")
    def _within_limits(self) -> "ServeOptions":
        if self.n > self.max_n:
            raise ValueError(f"-n {self.n} is above --max-n {self.max_n}: raise --max-n or lower -n")
        return self


@dataclass(slots=True)
class ChatProblem(Problem):
    """A Problem posed by a chat conversation: `question` is the last user message (what judges
    and reward models read), `chat` the whole conversation the generator continues."""

    chat: list[dict[str, str]] = field(default_factory=list)

    def messages(self, system: str | None = DEFAULT_SYSTEM_PROMPT) -> list[dict[str, str]]:
        if not system or any(m["role"] == "system" for m in self.chat):
            return list(self.chat)
        return [{"role": "system", "content": system}, *self.chat]


@dataclass(slots=True)
class ChatTask:
    """What `tts.solve` takes as a task for chat requests: the system prompt and the answer
    extraction voting uses. There is no gold answer, so nothing is ever graded."""

    system_prompt: str | None
    name: str = "chat"

    def extract(self, text: str) -> str | None:
        from tts.answers import extract_boxed

        return extract_boxed(text)

    async def grade(self, problem: Problem, answer: str | None) -> bool:  # pragma: no cover - no gold
        raise AssertionError("chat problems have no gold answer")
