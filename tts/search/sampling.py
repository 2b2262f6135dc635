"""Independent sampling under a budget, shared by the sample-then-select strategies."""

from __future__ import annotations

from typing import Any

from tts.context import Context
from tts.types import StoppedBy, Trace


async def sample(ctx: Context, n: int, **overrides: Any) -> tuple[list[Trace], StoppedBy]:
    """Up to `n` independent traces in one engine request; fewer when the budget cannot cover
    `n` (then stopped_by is "budget")."""
    req = ctx.request(n, **overrides)
    k = await ctx.affordable(req)
    if k == 0:
        return [], "budget"
    traces = await ctx.generate(req.replace(n=k))
    return traces, "done" if k == n else "budget"
