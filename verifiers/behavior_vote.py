"""`BehaviorVote`: voting by behaviour, as AlphaCode (Li et al., 2022, "Competition-Level Code
Generation with AlphaCode", section 4.5) and CodeT's baselines do: programs are clustered by
what they return on inputs the model generated, and a program's score is its cluster's share of
the programs, so `best_of_n --verifier behavior_vote` answers from the largest cluster (a
majority vote over behaviours rather than over program texts, which rarely repeat).

Pipeline (AlphaCode's): first filter by the examples the prompt shows (`filter_visible`: a
program failing a visible test scores 0, unless no program passes them all, as AlphaCode keeps
everything when nothing passes), then run the survivors on the generated inputs: the calls of
the tests `GeneratedTests` writes (CodeT's prompt, the same model: AlphaCode trains a separate
input generator), each call's value compared as its repr, or the exception it raised. One
sandbox run per program does both, charged as execution seconds; the generation is a verifier
call (`Context.judge`). A program that does not load scores 0. Deviation: AlphaCode samples
10^5-10^6 programs and submits one program from each of the 10 largest clusters; here the one
answer is the largest cluster's first program.
"""

from __future__ import annotations

import ast
from collections import Counter
from typing import Any

from tts.context import Context, Verifier
from tts.interfaces import Generator
from tts.types import Score, Trace

from tasks.code import code_task
from verifiers.codet import GeneratedTests, calls, writer_of


def behavior_vote(model: str | None = None, generator: Generator | None = None, **options: Any) -> "BehaviorVote":
    """Registry factory: inputs written by the generator (or by `model`, in process)."""
    return BehaviorVote(writer_of(model, generator, "behavior_vote"), **options)


def inputs_of(tests: list[str], entry: str, limit: int) -> list[str]:
    """The distinct calls of the entry point in `tests` (an assert's compared value when it is
    one, `f(x)` of `assert f(x) == y`), at most `limit`."""
    out: list[str] = []
    for case in tests:
        node = ast.parse(case).body[0].test  # parse_tests kept single asserts only
        target = node.left if isinstance(node, ast.Compare) and calls(node.left, entry) else calls(node, entry)
        expr = ast.unparse(target)
        if expr not in out:
            out.append(expr)
        if len(out) == limit:
            break
    return out


class BehaviorVote(Verifier):
    name = "behavior_vote"

    def __init__(self, generator: Generator, *, samples: int = 4, max_tokens: int = 160, per_sample: int = 5,
                 max_inputs: int = 20, filter_visible: bool = True, temperature: float = 0.8, top_p: float = 0.95):
        self.tests = GeneratedTests(generator, samples, max_tokens, per_sample, temperature, top_p)
        self.max_inputs = max_inputs
        self.filter_visible = filter_visible
        self.model = generator.model
        self.num_params = generator.num_params

    async def score(self, ctx: Context, traces: list[Trace]) -> list[Score]:
        task = code_task(ctx.problem)
        inputs = inputs_of(list(await self.tests.get(ctx)), task.entry_point(ctx.problem), self.max_inputs)
        visible = task.visible_tests(ctx.problem) if self.filter_visible else []
        outcomes = await task.check_all(ctx, [t.answer for t in traces], visible, inputs)
        loaded = [o is not None and o.loaded for o in outcomes]
        passing = [ok and o.passed for ok, o in zip(loaded, outcomes)]
        keep = passing if any(passing) else loaded  # AlphaCode keeps all when no program passes
        behaviour = [tuple(o.values) if k else None for k, o in zip(keep, outcomes)]
        size = Counter(b for b in behaviour if b is not None)
        ctx.telemetry["behaviours"] = len(size)
        return [Score(size[b] / len(traces) if b is not None else 0.0) for b in behaviour]
