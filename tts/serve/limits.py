"""A request body read within the server's limits, or the 4xx that says which one it broke.

Everything a client can send is answered in OpenAI's error shape, never a plain-text 500: a body
over `max_body_bytes` is a 413 (read no further than the limit), bytes that are not UTF-8, JSON
that does not parse, NaN or Infinity (not JSON, and NaN passes every range check), nesting
deeper than `max_depth` and strings that cannot be encoded (lone surrogates, which tokenizers
choke on) are 400s.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from tts.serve.schema import APIError


async def read_json(request: Request, max_bytes: int, max_depth: int) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise _too_large(max_bytes)
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as e:
        raise APIError(400, f"the request body is not UTF-8 text (byte {e.start}); send JSON in UTF-8") from None
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise APIError(400, f"malformed JSON in the request body: {e}") from None
    except RecursionError:
        raise _too_deep(max_depth) from None
    if not isinstance(data, dict):
        raise APIError(400, f"the request body must be a JSON object, not {type(data).__name__}")
    _check(data, max_depth)
    return data


def _no_constant(name: str) -> Any:
    raise APIError(400, f"{name} is not JSON (numbers must be finite): send a number or null")


def _check(data: Any, max_depth: int) -> None:
    """Nesting at most `max_depth` deep, and every string encodable as UTF-8 (iterative: a deep
    body must not exhaust the stack that checks it)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > max_depth:
                raise _too_deep(max_depth)
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for k, v in items:
                if isinstance(k, str):
                    _encodable(k)
                stack.append((v, depth + 1))
        elif isinstance(value, str):
            _encodable(value)


def _encodable(s: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        raise APIError(400, f"a string in the request holds an unpaired surrogate ({s[e.start]!r} escaped as "
                       "\\u" f"{ord(s[e.start]):04x}); send valid Unicode") from None


def _too_large(limit: int) -> APIError:
    return APIError(413, f"the request body is over this server's limit of {limit} bytes (--max-body-bytes)",
                    code="request_too_large")


def _too_deep(limit: int) -> APIError:
    return APIError(400, f"the request body nests deeper than this server's limit of {limit} (--max-depth)",
                    code="too_deep")
