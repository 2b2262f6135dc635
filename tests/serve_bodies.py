"""Hypothesis strategies of what a client may send `tts serve`: well-formed and mangled OpenAI
bodies for the three endpoints, with every field it knows, fields it refuses, unknown fields,
values of wrong types, sizes and signs, and raw bytes that are not JSON at all. Shared by the
fuzz test (tests/test_serve_fuzz.py) and the long campaign (benchmarks/serve_fuzz.py)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/responses")
STRATEGIES = ("", "none/", "self_consistency/", "first_finish/", "esc/", "adaptive_consistency/", "best_of_n/",
              "beam_search/", "deepconf/", "budget_forcing/", "nope/")

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=8), inner, max_size=4), max_leaves=12)
small = st.one_of(st.integers(-3, 80), st.none(), st.floats(-1, 3, allow_nan=False), st.text(max_size=3))


def texts(questions: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(questions), st.text(max_size=80), st.just(""))


def messages(questions: list[str]) -> st.SearchStrategy[Any]:
    content = st.one_of(texts(questions), st.lists(st.fixed_dictionaries(
        {"type": st.sampled_from(["text", "input_text", "image_url"]), "text": texts(questions)}), max_size=2), values)
    message = st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "user", "system", "assistant", "tool", "developer", "robot"]),
         "content": content},
        optional={"name": st.text(max_size=5), "tool_calls": values})
    return st.one_of(st.lists(message, min_size=1, max_size=3), values)


def tts_block() -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), values, st.fixed_dictionaries({}, optional={
        "strategy": st.sampled_from(["none", "self_consistency", "first_finish", "esc", "beam_search", "x"]),
        "n": small, "params": st.one_of(values, st.fixed_dictionaries({}, optional={"n": small, "k": small})),
        "verifier": st.sampled_from(["confidence", "recorded", "oracle"]),
        "budget": st.one_of(values, st.dictionaries(st.sampled_from(["completion_tokens", "calls", "wall_seconds", "x"]),
                                                    small, max_size=2)),
        "return_candidates": st.booleans(), "telemetry": st.booleans()}))


def common() -> dict[str, st.SearchStrategy[Any]]:
    return {"temperature": small, "top_p": small, "n": small, "seed": small, "user": values, "metadata": values,
            "stop": st.one_of(st.text(max_size=4), st.lists(st.text(max_size=4), max_size=6), values),
            "stream": st.booleans(), "stream_options": st.one_of(values, st.fixed_dictionaries(
                {"include_usage": st.booleans()})),
            "frequency_penalty": small, "tools": values, "response_format": values, "top_k": small,
            "tts": tts_block()}


def body(questions: list[str]) -> st.SearchStrategy[tuple[str, Any]]:
    """(endpoint, body): half the time a valid request (a recorded question, so it is solved) with
    up to two fields replaced by anything; else any mix of fields, or any JSON value."""
    return st.sampled_from(ENDPOINTS).flatmap(lambda p: st.tuples(st.just(p), st.one_of(
        _mutated(p, questions), _wild(p, questions), values)))


@st.composite
def _mutated(draw: Any, path: str, questions: list[str]) -> dict[str, Any]:
    question = draw(st.sampled_from(questions))
    valid: dict[str, Any] = {"model": draw(st.sampled_from(["m", "none/m", "self_consistency/m", "first_finish/m",
                                                            "esc/m", "adaptive_consistency/m"]))}
    if path == "/v1/chat/completions":
        valid["messages"] = [{"role": "user", "content": question}]
        valid["n"] = draw(st.integers(1, 3))
    elif path == "/v1/completions":
        valid["prompt"] = question
    else:
        valid["input"] = question
    if draw(st.booleans()):
        valid["stream"] = True
        if draw(st.booleans()):
            valid["stream_options"] = {"include_usage": draw(st.booleans())}
    if draw(st.booleans()) and not valid["model"].startswith("none"):
        valid["tts"] = {"n": draw(st.integers(1, 8)), "return_candidates": draw(st.booleans()),
                        "telemetry": draw(st.booleans())}
    if draw(st.booleans()):
        valid["stop"] = draw(st.sampled_from(["\n\n", ["The", "answer"], "$"]))
    wild = _fields(path, questions)
    for key in draw(st.lists(st.sampled_from(sorted(wild)), max_size=2)):
        valid[key] = draw(wild[key])
    return valid


def _fields(path: str, questions: list[str]) -> dict[str, st.SearchStrategy[Any]]:
    model = st.sampled_from(STRATEGIES).map(lambda s: s + "m") | st.text(max_size=6)
    fields = {**common(), "x_unknown": values, "model": model}
    if path == "/v1/chat/completions":
        fields.update(messages=messages(questions), max_tokens=small, max_completion_tokens=small,
                      logprobs=values | st.booleans(), top_logprobs=small)
    elif path == "/v1/completions":
        fields.update(prompt=st.one_of(texts(questions), st.lists(st.integers(-5, 200_000), max_size=8),
                                       st.lists(texts(questions), max_size=3), values),
                      max_tokens=small, echo=st.booleans(), logprobs=small, suffix=values)
    else:
        fields.update(input=st.one_of(texts(questions), messages(questions)), instructions=values,
                      max_output_tokens=small, previous_response_id=values, text=values)
    return fields


def _wild(path: str, questions: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    fields = _fields(path, questions)
    required = {"model": fields.pop("model"), {"/v1/chat/completions": "messages", "/v1/completions": "prompt",
                                                "/v1/responses": "input"}[path]: None}
    key = next(k for k in required if k != "model")
    required[key] = fields.pop(key)
    return st.fixed_dictionaries(required, optional=fields)


def raw() -> st.SearchStrategy[bytes]:
    """Bodies that are not (plain) JSON: bytes, NaN and infinities, deep nesting, surrogates."""
    return st.one_of(
        st.binary(max_size=64),
        st.integers(1, 3000).map(lambda d: b"[" * d + b"]" * d),
        st.integers(1, 3000).map(lambda d: b'{"a":' * d + b"1" + b"}" * d),
        st.sampled_from([b'{"model": "m", "messages": [], "temperature": NaN}', b'{"tts": {"n": Infinity}}',
                         b'{"messages": [{"role": "user", "content": "\\udc80"}]}', b'{"messages": "\xc3\x28"}',
                         b"", b"null", b'"text"', b"{", b'{"messages": [{"role": "user", "content": "a"}]}']))


def encode(obj: Any) -> bytes:
    return json.dumps(obj).encode()
