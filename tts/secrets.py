"""Keeping credentials out of everything shown or stored: a URL's `user:password@` is split off
before any client sees the URL (`split_credentials`), and text built from what a server or a
library said is redacted (`redact`) before it reaches a message, a log, a record or a metric."""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit, urlunsplit


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """`url` without the `user:password@` in it, and those credentials (None when there are
    none). Backends connect to the clean URL and send the credentials as an Authorization
    header, so no URL any library builds, logs or puts in an exception holds the password; the
    clean URL is what messages, logs and metrics show."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=host)), (unquote(user), unquote(password))


_USERINFO = re.compile(r"(?<=://)[^/\s@'\"<>]+@")


def redact(text: str, secrets: Sequence[str] = ()) -> str:
    """`text` with the credentials of every URL in it (`scheme://user:password@`) and each of
    `secrets` (an API key) replaced by "***": for messages built from what a server or a
    library said, which may echo them."""
    text = _USERINFO.sub("***@", text)
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text
