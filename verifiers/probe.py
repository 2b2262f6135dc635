"""Answer probing: ask a partial trace what its answer would be if it stopped now.

Dynasor's certainty probe (Fu et al., 2025, "Efficiently Serving LLM Reasoning Programs with
Certaindex"; hao-ai-lab/Dynasor, dynasor/cot.py): append a forcing suffix that opens
`\\boxed{` to the partial trace, sample a few tokens (temperature 0.6, top-p 0.95, 20 tokens in
the reference), and read the answer up to the first unpaired "}". A probe whose text contains a
hesitation word ("wait", "hmm", ...) is uncertain. The same probe serves DeepPrune's
answer-probing equivalence judge: two prefixes whose probes give equal answers are equivalent.

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
# Dynasor's list; matched as whole words here (the reference matches substrings, so "no" fires
# on "note" and "know").
HESITATION = ("wait", "hold", "but", "okay", "no", "hmm")
_HESITATION = re.compile(r"\b(" + "|".join(HESITATION) + r")\b", re.IGNORECASE)


@dataclass(slots=True)
class Probe:
    answer: str | None  # None: the probe closed no \boxed{...} in its tokens
    certain: bool  # an answer, and no hesitation word in the probe's text
    text: str


def read_probe(text: str) -> Probe:
    """The answer a probe's text gives: everything up to the first unpaired "}"."""
    depth = 0
    for i, c in enumerate(text):
        if c == "{":
            depth += 1
        elif c == "}":
            if depth == 0:
                answer = normalize(text[:i])
                return Probe(answer, answer is not None and not _HESITATION.search(text), text)
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
    return read_probe(out.text)
