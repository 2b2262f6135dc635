"""FAKES for step-level search tests: a generator that walks a known tree of reasoning steps and
a process reward model that scores steps from a table. Algorithm tests only (the real engine
runs in test_search_engine.py).

`TreeGenerator(tree)`: `tree` maps a continuation prefix (the solution so far plus the
delimiter; "" for the problem itself) to the possible next steps. A request that stops at the
delimiter gets one step per sample: the i-th sample ever drawn at a prefix is
``steps[i % len(steps)]``; a prefix with no entry ends at once (an empty step, as a model that
emits end-of-sequence). A request without the delimiter as a stop string (Best-of-N, a search's
last step) walks the tree the same way to a leaf (or until it has max_tokens words) and returns
the steps joined by the delimiter. One "token" per whitespace-separated word; max_tokens
truncates (finish_reason "length").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator

from tts.interfaces import Generator
from tts.context import Context, Verifier
from tts.types import GenRequest, Score, Trace, Usage

DELIM = "\n\n"


class TreeGenerator(Generator):
    def __init__(self, tree: dict[str, list[str]], delimiter: str = DELIM, num_params: int = 1000):
        self.tree = tree
        self.delimiter = delimiter
        self.model = "scripted-tree"
        self.num_params = num_params
        self.calls = 0
        self.samples = 0
        self.requests: list[tuple[str, int, float]] = []  # (prefix, n, temperature) per call
        self.stops: list[tuple[str, ...]] = []  # the stop strings of each call
        self._seen: dict[str, int] = defaultdict(int)

    def _next(self, prefix: str) -> str | None:
        steps = self.tree.get(prefix)
        if not steps:
            return None
        step = steps[self._seen[prefix] % len(steps)]
        self._seen[prefix] += 1
        return step

    def _one(self, req: GenRequest) -> Trace:
        if self.delimiter in req.stop:
            text = self._next(req.prefix) or ""
        else:
            parts, prefix = [], req.prefix
            words = 0
            while words <= req.max_tokens and (step := self._next(prefix)) is not None:
                parts.append(step)
                words += len(step.split())
                prefix = prefix + step + self.delimiter
            text = self.delimiter.join(parts)
        words = text.split()
        finish = "stop"
        if len(words) > req.max_tokens:
            text, finish = " ".join(words[: req.max_tokens]), "length"
            words = words[: req.max_tokens]
        n = len(words)
        lp = [-0.5] * n if req.logprobs is not None else []
        return Trace(text, n, finish, lp, prefix=req.prefix)

    async def count_prompt_tokens(self, req: GenRequest) -> int:
        words = sum(len(m["content"].split()) for m in req.messages) + len(req.prefix.split())
        return words + 2 * len(req.messages)

    async def generate(self, req: GenRequest) -> tuple[list[Trace], Usage]:
        self.calls += 1
        self.samples += req.n
        self.requests.append((req.prefix, req.n, req.temperature))
        self.stops.append(tuple(req.stop))
        traces = [self._one(req) for _ in range(req.n)]
        prompt = await self.count_prompt_tokens(req)
        return traces, Usage(
            prompt_tokens=prompt * req.n,
            cached_tokens=prompt * (req.n - 1),
            completion_tokens=sum(t.num_tokens for t in traces),
        )

    async def stream(self, req: GenRequest) -> AsyncIterator[tuple[Trace, Usage]]:
        traces, usage = await self.generate(req.replace(n=1))
        yield traces[0], usage


class TablePRM(Verifier):
    """Rewards each step from a table (unknown steps get `default`); the value is the latest
    step's reward. Charges one verifier token per word scored."""

    name = "table_prm"

    def __init__(self, rewards: dict[str, float], delimiter: str = DELIM, default: float = 0.1):
        self.rewards = rewards
        self.delimiter = delimiter
        self.default = default
        self.calls = 0
        self.scored: list[str] = []

    def _steps(self, t: Trace) -> list[str]:
        return [p for p in (t.prefix + t.text).split(self.delimiter) if p.strip()]

    async def score(self, ctx: Context, traces: list[Trace]) -> list[Score]:
        words = sum(len((t.prefix + t.text).split()) for t in traces)

        async def work() -> tuple[list[Score], Usage]:  # one scoring call, one token per word
            self.calls += 1
            out = []
            for t in traces:
                self.scored.append(t.prefix + t.text)
                steps = tuple(self.rewards.get(s, self.default) for s in self._steps(t))
                out.append(Score(steps[-1] if steps else 0.0, steps))
            return out, Usage(prompt_tokens=words)

        return await ctx.verify(work, words)
