"""What a client (or the operator) writes to `tts serve`, validated with pydantic, and the
OpenAI-style error every bad input becomes.

A request is an OpenAI chat-completion body; the test-time-scaling choices ride in its `tts`
field (the `openai` client's `extra_body={"tts": {...}}`). Unknown OpenAI fields are ignored,
as OpenAI-compatible servers do; an unknown key under `tts` is an error (a typo there would
otherwise silently run another configuration).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from tts.options import (BudgetCaps, BudgetOptions, Count, Flag, RunOptions, SamplingOptions, StrategyOptions)
from tts.types import DEFAULT_SYSTEM_PROMPT, Problem

API_KEY_ENV = "TTS_API_KEY"


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


def from_validation(e: ValidationError) -> APIError:
    """400 naming the first offending field (its path, e.g. `messages.0.role`)."""
    err = e.errors()[0]
    param = ".".join(str(p) for p in err["loc"]) or None
    msg = err["msg"].removeprefix("Value error, ")
    return APIError(400, f"{param}: {msg}" if param else msg, param)


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    # "developer" is what newer OpenAI clients send instead of "system".
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content)
        return self.content or ""


class TTSOptions(BaseModel):
    """`extra_body={"tts": {...}}`: the request's test-time-scaling choices."""

    model_config = ConfigDict(extra="forbid")
    strategy: str | None = None
    n: Count | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    verifier: str | None = None
    budget: BudgetCaps = Field(default_factory=dict)
    return_candidates: bool = False
    telemetry: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str = ""
    messages: list[Message] = Field(min_length=1)
    n: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    seed: int | None = None
    stream: bool = False
    tts: TTSOptions = Field(default_factory=TTSOptions)

    @field_validator("tts", mode="before")
    @classmethod
    def _no_tts(cls, v: Any) -> Any:
        return {} if v is None else v

    def chat(self) -> list[dict[str, str]]:
        """The messages as the chat template takes them (developer -> system), or a 400 when no
        user turn carries text or the conversation does not end with one."""
        msgs = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in self.messages]
        if not any(m["content"].strip() for m in msgs if m["role"] == "user"):
            raise APIError(400, "messages: the prompt is empty (no user message has any text)", "messages")
        if msgs[-1]["role"] != "user":
            raise APIError(400, f"messages.{len(msgs) - 1}.role: the last message must be the user's, "
                           f"not '{msgs[-1]['role']}'", f"messages.{len(msgs) - 1}.role")
        return msgs


class ServeOptions(RunOptions, BudgetOptions, SamplingOptions, StrategyOptions):
    """The operator's settings (`tts serve`'s options, from the same blocks as `tts bench`'s):
    the defaults of every request (strategy, sampling, per-request budget cap, seed) and the
    server's own. Sampling fields left None are the defaults (replay: the bank's)."""

    strategy: str = Field("self_consistency", description="default strategy (requests may pick another)")
    n: Annotated[Count, Flag("-n")] = Field(8, description="default size of the strategy (a request's `n` overrides it)")
    budget: BudgetCaps = Field(default_factory=dict, description="per-request cap for every request (repeat), e.g. "
                               "total_tokens=20000; requests may ask for less")
    served_model_name: str | None = Field(None, description="the model name clients use (default: the model's name)")
    system_prompt: str | None = Field(None, description="added to conversations without a system message (default: "
                                      "reason step by step, answer in \\boxed{}; replay: the bank's; '' adds none)")
    host: str = Field("127.0.0.1", description="address to bind (127.0.0.1: this machine only)")
    port: Annotated[int, Field(ge=1, le=65535)] = Field(8000, description="port to bind")
    api_key: SecretStr | None = Field(None, description=f"require `Authorization: Bearer KEY` (default: ${API_KEY_ENV}, "
                                      "else none)")
    max_concurrent: Count = Field(64, description="requests solved at once")
    max_queue: Annotated[int, Field(ge=0)] = Field(256, description="requests waiting for a slot; more get 429")
    keepalive: Annotated[float, Field(gt=0, allow_inf_nan=False)] = Field(
        5.0, description="seconds between keep-alive comments of a stream")


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
    """What `tts.solve` takes as a task for chat requests: the server's system prompt and the
    answer extraction voting uses. There is no gold answer, so nothing is ever graded."""

    system_prompt: str | None
    name: str = "chat"

    def extract(self, text: str) -> str | None:
        from tts.answers import extract_boxed

        return extract_boxed(text)

    async def grade(self, problem: Problem, answer: str | None) -> bool:  # pragma: no cover - no gold
        raise AssertionError("chat problems have no gold answer")
