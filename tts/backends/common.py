"""What the backends and the model-backed verifiers share, written once: loading a tokenizer,
a chat prompt's token ids, the byte bound on a prompt's tokens when no tokenizer is at hand, the
small LRU cache the prompt caches use (step-level search asks for the same prompts again and
again). Keeping credentials out of what is shown or stored: `tts.secrets`."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import Any, Generic, TypeVar

from tts.errors import TTSError
from tts.types import GenRequest

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """A bounded mapping that forgets the least recently used entry first."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> V:
        self._items[key] = value
        if len(self._items) > self.size:
            self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)


def load_tokenizer(model: str) -> Any:
    """The Hugging Face tokenizer of `model` (a folder or a hub id), or a TTSError saying so."""
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(model)
    except Exception as e:  # noqa: BLE001 - any failure to load is the same message to the user
        raise TTSError(f"cannot load a tokenizer from {model}: {e}") from e


def chat_prompt_ids(
    tokenizer: Any,
    messages: Sequence[dict[str, str]],
    *,
    generation_prompt: bool,
    suffix: str = "",
    special_tokens: bool = False,
    template_kwargs: dict[str, Any] | None = None,
) -> list[int]:
    """Token ids of `messages` through the chat template (with the generation prompt or not),
    then `suffix` (a partial assistant message to continue). `special_tokens`: let `encode` add
    the tokenizer's own (BOS) as well, as reference code that encodes the templated text does.
    `template_kwargs`: variables for the template (a reasoning model's thinking switch)."""
    text = chat_prompt_text(tokenizer, messages, generation_prompt=generation_prompt, suffix=suffix,
                            template_kwargs=template_kwargs)
    return tokenizer.encode(text, add_special_tokens=special_tokens)


def chat_prompt_text(tokenizer: Any, messages: Sequence[dict[str, str]], *, generation_prompt: bool,
                     suffix: str = "", template_kwargs: dict[str, Any] | None = None) -> str:
    """The text `chat_prompt_ids` encodes."""
    text = tokenizer.apply_chat_template(list(messages), add_generation_prompt=generation_prompt, tokenize=False,
                                         **(template_kwargs or {}))
    return text + suffix


def thinking_kwargs(req: GenRequest, markers: Any, model: str, template: str | None) -> dict[str, Any]:
    """The chat-template variables of `req`'s thinking switch ({} when it sets none). A switch
    asked of a model whose template has none (`template`: its source, when known) is a
    TTSError naming the model and what to pass instead."""
    if req.enable_thinking is None:
        return {}
    switch = getattr(markers, "switch", None) or "enable_thinking"
    if template is not None and switch not in template:
        raise TTSError(
            f"enable_thinking={req.enable_thinking} asked of model {model!r}, whose chat template has no thinking "
            f"switch ({switch!r}): drop the option (--enable-thinking / sampling.enable_thinking) and control "
            "thinking with thinking_budget, or serve a template that has the switch")
    return {switch: req.enable_thinking}


def prompt_key(req: GenRequest) -> tuple[str, str]:
    """What identifies a request's prompt (its messages, prefix and thinking switch) in a prompt
    cache."""
    head = json.dumps(req.messages, sort_keys=True)
    if req.enable_thinking is not None:
        head += f"\x00thinking={req.enable_thinking}"
    return head, req.prefix


def byte_bound(messages: Sequence[dict[str, Any]], suffix: str = "") -> int:
    """An upper bound on a chat prompt's tokens without its tokenizer: a byte-level BPE token
    covers at least one byte, plus 16 per message for the chat template's special tokens."""
    text = sum(len(str(m.get("content") or "").encode()) for m in messages)
    return text + len(suffix.encode()) + 16 * (len(messages) + 1)
