"""Budget forcing (s1: Muennighoff et al. 2025, "s1: Simple test-time scaling", arXiv 2501.19393).

Sequential scaling of a reasoning model's thinking: a budget of `thinking_budget` thinking
tokens (`budget` is accepted as its alias); when the model ends its thinking (its close marker,
end of sequence) before `min_thinking` tokens, "Wait" (`wait`) replaces the end and it
continues, up to `extensions` times; when the thinking reaches the budget it is closed for the
model (close marker + `answer_cue`) and only the answer is generated. Each continuation is one call from the growing prefix (served from the prefix
cache, and charged so). The sequential routine is `tts.thinking.force_thinking`; this strategy
runs the parallel strategy `over` (default self-consistency: majority of n; n=1 is s1's single
sample) on budget-forced samples, so Best-of-N, DeepConf, first-finish, DeepPrune or ESC over
forced samples are `--param over=...` (with `--verifier` where it needs one), not copies of them.
"""

from __future__ import annotations

from tts.context import Context
from tts.errors import TTSError
from tts.strategy import Strategy
from tts.options import Count, NonNegative
from tts.registry import lookup
from tts.types import DEFAULT_ANSWER_CUE, DEFAULT_WAIT, Forcing
from tts.types import Problem, Result


class BudgetForcing(Strategy):
    name = "budget_forcing"
    aliases = {"budget": "thinking_budget"}  # its name before it was the sampling field's

    def __init__(self, n: Count = 1, thinking_budget: Count = 1024, extensions: NonNegative = 1,
                 min_thinking: NonNegative | None = None, wait: str = DEFAULT_WAIT,
                 answer_cue: str = DEFAULT_ANSWER_CUE, over: str = "self_consistency"):
        if over == self.name:
            raise TTSError("budget_forcing cannot run over itself; over= names a parallel strategy")
        # s1 suppresses the end of thinking `extensions` times whatever its length: the minimum
        # defaults to the budget (extend while extensions remain and the budget allows).
        self.forcing = Forcing(thinking_budget, thinking_budget if min_thinking is None else min_thinking,
                               extensions, wait, answer_cue)
        cls = lookup("strategy", over)
        size = cls.size_param()
        self.inner = cls(**({size: n} if size else {}))
        self.n, self.over = n, over
        self.logprobs = getattr(self.inner, "logprobs", None)  # what the parallel strategy asks

    async def solve(self, problem: Problem, ctx: Context) -> Result:
        ctx.forcing = self.forcing
        try:
            result = await self.inner.solve(problem, ctx)
        finally:
            ctx.forcing = None
        result.telemetry.setdefault("over", self.over)
        return result
