"""Answer probing: ask a partial trace what its answer would be if it stopped now.

Dynasor's certainty probe (Fu et al., 2025, "Efficiently Serving LLM Reasoning Programs with
Certaindex"; hao-ai-lab/Dynasor, dynasor/cot.py): append a forcing suffix that opens
`\\boxed{` to the partial trace, sample a few tokens (temperature 0.6, top-p 0.95, 20 tokens in
the reference), and read the answer up to the first unpaired "}". A probe whose text contains a
hesitation word ("wait", "hmm", ...) is uncertain: by default, as in the reference, a word counts
when it occurs anywhere in the lower-cased probe text, as a substring ("no" fires on "note" and
"know", "but" on "button"); `hesitation="word"` matches whole words only (our variant). The same
probe serves DeepPrune's answer-probing judge (our variant, verifiers/equivalence.py).
References and deviations: docs/references.md.

A probe is a continuation of the trace on the context's generator, so it is charged like any
generation (its prompt mostly from the prefix cache: the trace's own tokens were just computed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tts.answers import normalize
from tts.context import Context
from tts.types import Trace

DYNASOR_SUFFIX = "... Oh, I suddenly got the answer to the whole problem, **Final Answer**\n\n\\[ \\boxed{"
# Dynasor's list (dynasor/cot.py uncertain_words).
HESITATION = ("wait", "hold", "but", "okay", "no", "hmm")
HESITATION_RULES = ("substring", "word")
_WORD = re.compile(r"\b(" + "|".join(HESITATION) + r")\b", re.IGNORECASE)


def hesitates(text: str, rule: str = "substring") -> bool:
    """Whether a probe's text holds a hesitation word: anywhere in the lower-cased text
    ("substring", the reference's test) or as a whole word ("word")."""
    if rule == "substring":
        low = text.lower()
        return any(w in low for w in HESITATION)
    if rule == "word":
        return _WORD.search(text) is not None
    raise ValueError(f"hesitation must be one of {HESITATION_RULES}, got '{rule}'")


@dataclass(slots=True)
class Probe:
    answer: str | None  # None: the probe closed no \boxed{...} in its tokens
    certain: bool  # an answer, and no hesitation word in the probe's text
    text: str


def read_probe(text: str, hesitation: str = "substring") -> Probe:
    """The answer a probe's text gives: everything up to the first unpaired "}"; certain when
    it has one and no hesitation word (`hesitation`: the rule, see `hesitates`)."""
    depth = 0
    for i, c in enumerate(text):
        if c == "{":
            depth += 1
        elif c == "}":
            if depth == 0:
                answer = normalize(text[:i])
                return Probe(answer, answer is not None and not hesitates(text, hesitation), text)
            depth -= 1
    return Probe(None, False, text)


async def probe_answer(
    ctx: Context,
    trace: Trace,
    *,
    suffix: str = DYNASOR_SUFFIX,
    max_tokens: int = 20,
    temperature: float = 0.6,
    top_p: float = 0.95,
    hesitation: str = "substring",
) -> Probe:
    """Probe `trace` (partial or not) once; raises BudgetExceeded when the budget refuses it."""
    req = ctx.request(
        1,
        prefix=trace.prefix + trace.text + suffix,
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        logprobs=None,
        stop=(),
    )
    (out,) = await ctx.generate(req)
    return read_probe(out.text, hesitation)
