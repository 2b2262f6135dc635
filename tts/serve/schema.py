"""What a client (or the operator) writes to `tts serve`, validated with pydantic, and the
OpenAI-style error every bad input becomes.

A request is an OpenAI chat-completion body; the test-time-scaling choices ride in its `tts`
field (the `openai` client's `extra_body={"tts": {...}}`). Unknown OpenAI fields are ignored,
as OpenAI-compatible servers do; an unknown key under `tts` is an error (a typo there would
otherwise silently run another configuration).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from tts.types import DEFAULT_SYSTEM_PROMPT, Problem


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
    return APIError(400, f"{param}: {err['msg']}" if param else err["msg"], param)


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
    n: int | None = Field(None, ge=1)
    params: dict[str, Any] = Field(default_factory=dict)
    verifier: str | None = None
    budget: dict[str, int | float] = Field(default_factory=dict)
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


class ServeOptions(BaseModel):
    """The operator's settings (`tts serve` options)."""

    model_config = ConfigDict(extra="forbid")
    served_model_name: str
    strategy: str = "self_consistency"
    n: int = Field(8, ge=1)
    params: dict[str, Any] = Field(default_factory=dict)
    verifier: str | None = None
    verifier_model: str | None = None
    budget_cap: dict[str, int | float] = Field(default_factory=dict)  # per request; requests may ask for less
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 1024
    seed: int = 0
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT  # added when a request has no system message
    max_model_len: int | None = None  # prompts this long or longer are refused (None: not checked)
    api_key: SecretStr | None = None
    max_concurrent: int = Field(64, ge=1)
    max_queue: int = Field(256, ge=0)
    keepalive_s: float = Field(5.0, gt=0)


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
