"""GSM8K (Cobbe et al., 2021): grade-school word problems with a whole-number answer."""

from __future__ import annotations

import re
from typing import Any

from tts.answers import extract_boxed, normalize

from tasks.base import Task

_NUM = r"(-?[\d,]*\.?\d+)"
# Possessive quantifiers (*+): adjacent optional runs of spaces would otherwise backtrack
# combinatorially on model output with long blank runs (400 spaces after "answer is": 67 s).
_HASHES = re.compile(r"####\s*+\$?\s*+" + _NUM)  # the dataset's own solution format
_THE_ANSWER = re.compile(r"answer is[:\s]*+\\?\$?\s*+\**+\s*+\\?\$?\s*+" + _NUM, re.IGNORECASE)


class GSM8K(Task):
    name = "gsm8k"
    hub_id = "openai/gsm8k"  # fields: question, answer ("...worked solution...\n#### 72"); no id
    hub_config = "main"
    hub_split = "test"

    def gold(self, row: dict[str, Any]) -> str:
        """The number after "####" (thousands commas removed); a file of bare answers works too."""
        text = str(row["answer"])
        if "####" in text:
            m = _HASHES.search(text)
            if m is None:
                raise ValueError(f"no number after '####' in the answer {text[-60:]!r}")
            text = m.group(1)
        gold = normalize(text.replace(",", ""))
        if gold is None:
            raise ValueError("empty answer")
        return gold

    def extract(self, text: str) -> str | None:
        """The last \\boxed{}; else the last "#### N"; else the last "The answer is N"."""
        boxed = extract_boxed(text)
        if boxed is not None:
            return boxed
        for pattern in (_HASHES, _THE_ANSWER):
            found = pattern.findall(text)
            if found:
                return normalize(found[-1])
        return None
