"""Answer extraction from model text (no evaluation of model output, ever: pure string work)."""

from __future__ import annotations

import re

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def extract_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} in `text` (nested braces kept), or None.

    Linear time: every brace is matched once, in one pass (scanning from each \\boxed{ took
    minutes on model output with thousands of unclosed ones)."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    if not starts:
        return None
    close: dict[int, int] = {}  # index after an opening brace -> index of its closing brace
    stack: list[int] = []
    for i in range(starts[0] - 1, len(text)):
        c = text[i]
        if c == "{":
            stack.append(i + 1)
        elif c == "}" and stack:
            close[stack.pop()] = i
    for s in reversed(starts):
        if s in close:
            return normalize(text[s : close[s]])
    return None


_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")


def normalize(answer: str) -> str | None:
    """Cheap canonical form used to group answers before any symbolic comparison."""
    a = answer.strip().strip("$").strip()
    a = _TEXT.sub(r"\1", a)
    # Drop thin spaces (\! \, and backslash-space) but keep LaTeX row breaks (\\), as in matrices.
    a = re.sub(r"\\\\|\\[!, ]", lambda m: m.group() if m.group() == "\\\\" else "", a)
    a = a.replace("\\left", "").replace("\\right", "")
    a = a.replace("dfrac", "frac").replace("tfrac", "frac")
    a = re.sub(r"\s+", " ", a).rstrip(".").strip()
    if re.fullmatch(r"-?[\d,]+(\.\d+)?", a) and "," in a and re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", a):
        a = a.replace(",", "")  # 1,000 -> 1000 (thousands separators, not tuples)
    if re.fullmatch(r"-?\d+\.\d+", a):
        a = a.rstrip("0").rstrip(".")  # 72.00 -> 72
    return a or None
