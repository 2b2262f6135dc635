"""`CodeT`: dual execution agreement (Chen et al., 2022, "CodeT: Code Generation with Generated
Tests", arXiv 2207.10397; code read: microsoft/CodeT, CodeT/src/postprocess.py and agreement.py).

The model writes test cases for the problem (`GeneratedTests`: CodeT's prompt, the function's
signature and docstring without its examples, the body `pass`, then `# check the correctness of
<entry point>` and `assert `, continued; every `assert` that calls the entry point and parses is
a test, the first `per_sample` of each sample, counted with their frequency across samples).
Every program runs against every distinct test in the sandbox (one run per program, each test
under its own time limit); programs that pass exactly the same tests form a consensus set, and
a set S scores sqrt(|programs in S|) x |tests S passes, counted with frequency| as CodeT's code
ranks them (`get_sorted_solutions_without_iter`; the paper writes |S_x| x |S_y|). A program's
score is its set's, divided by its largest possible value (all programs passing every test), so
scores lie in [0, 1]; a program passing no test, or not loading, scores 0 (CodeT ranks it not
at all).

The test generation is the verifier's own model call (`Context.verify`, as `Context.judge`
charges a judge), charged as verifier tokens at the generator's size, so `completion_tokens`
stay the strategy's samples and `total_tokens` / FLOPs count both. Tests are generated once per
run (a strategy that scores again, e.g. a refinement loop, reuses them) and once per problem and
seed across runs (`GeneratedTests`: a sweep over n compares programs on the same tests). Deviations: a chat model
continues the test prompt as an assistant prefix (CodeT prompts a completion model); far fewer
test samples (`samples`, default 4; CodeT: 100); the model's own examples are stripped from the
HumanEval prompt by the task (`CodeTask.spec(examples=False)`), MBPP keeps only the
description and the reference's signature.
"""

from __future__ import annotations

import ast
import asyncio
import math
import weakref
from collections import Counter, OrderedDict
from typing import Any

from tts.context import Accountant, Context, Verifier
from tts.errors import TTSError
from tts.interfaces import Generator
from tts.types import GenRequest, Problem, Score, Trace, Usage

from tasks.code import code_task

TEST_PROMPT = ("Write test cases for the following Python function: assert statements that call it "
               "and check what it returns.\n```python\n{spec}```")
STOP_AT = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")  # CodeT's STOP_TOKEN


def codet(model: str | None = None, generator: Generator | None = None, **options: Any) -> "CodeT":
    """Registry factory: tests written by the generator (or by `model`, in process)."""
    return CodeT(writer_of(model, generator, "codet"), **options)


def writer_of(model: str | None, generator: Generator | None, who: str) -> Generator:
    if model is not None:
        from tts.backends.vllm import VLLMGenerator

        return VLLMGenerator(model)
    if generator is None:
        raise TTSError(f"the {who} verifier needs a model to write tests: the generator (or model=DIR)")
    return generator


def parse_tests(text: str, entry: str, limit: int) -> list[str]:
    """CodeT's test_case_extract: the text (up to a closing fence) split at each `assert `, the parts that name the
    entry point cut at the first stop string; kept when it parses as one assert statement that
    calls the entry point. The first `limit`."""
    out = []
    for part in text.split("```")[0].split("assert "):  # the code block only
        if entry not in part or not part.strip():
            continue
        case = "assert " + part
        for stop in STOP_AT:
            case = case.split(stop)[0]
        case = case.strip()
        try:
            tree = ast.parse(case)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        if len(tree.body) == 1 and isinstance(tree.body[0], ast.Assert) and calls(tree.body[0], entry):
            out.append(case)
        if len(out) == limit:
            break
    return out


def calls(node: ast.AST, entry: str) -> ast.Call | None:
    """The first call of `entry` inside `node`."""
    return next((n for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                 and n.func.id == entry), None)


WRITTEN = 4096  # test generations remembered per generator (problem, seed, sampling)
_written: weakref.WeakKeyDictionary[Generator, OrderedDict[tuple, tuple[list[str], Usage]]] = \
    weakref.WeakKeyDictionary()


class GeneratedTests:
    """Test cases the model writes for a problem, once per run (keyed by the run's accountant:
    one per problem-run), as a Counter (test -> how many samples wrote it).

    Written once per problem, seed and sampling for a given generator: another run of the same
    problem and seed (a sweep's runs at several n, which draw their programs from one bank; CodeT
    and behaviour voting side by side) gets the same tests, and is charged what writing them
    cost (the engine's report, through `Context.verify`), as a subsampled run is charged its
    recorded samples. The comparison across n then varies the programs only."""

    def __init__(self, generator: Generator, samples: int = 4, max_tokens: int = 160, per_sample: int = 5,
                 temperature: float = 0.8, top_p: float = 0.95):
        if min(samples, max_tokens, per_sample) < 1:
            raise TTSError("generated tests need samples, max_tokens and per_sample >= 1")
        self.generator = generator
        self.samples, self.max_tokens, self.per_sample = samples, max_tokens, per_sample
        self.temperature, self.top_p = temperature, top_p
        self._runs: weakref.WeakKeyDictionary[Accountant, asyncio.Task] = weakref.WeakKeyDictionary()

    def request(self, problem: Problem) -> GenRequest:
        task = code_task(problem)
        entry = task.entry_point(problem)
        spec = task.spec(problem, examples=False).rstrip() + "\n    pass\n"
        return GenRequest(messages=[{"role": "user", "content": TEST_PROMPT.format(spec=spec)}], n=self.samples,
                          max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p,
                          prefix=f"```python\n# check the correctness of {entry}\nassert ")

    async def get(self, ctx: Context) -> Counter[str]:
        run = self._runs.get(ctx.accountant)
        if run is None:
            run = self._runs[ctx.accountant] = asyncio.ensure_future(self._write(ctx))
        return await asyncio.shield(run)

    async def _write(self, ctx: Context) -> Counter[str]:
        entry = code_task(ctx.problem).entry_point(ctx.problem)
        req = self.request(ctx.problem)
        memo = _written.setdefault(self.generator, OrderedDict())
        key = (ctx.problem.id, ctx.problem.question, ctx.seed, req.n, req.max_tokens, req.temperature, req.top_p)

        async def work() -> tuple[list[str], Usage]:
            if key not in memo:
                traces, usage = await self.generator.generate(req)
                memo[key] = ([t.text for t in traces], usage)
                if len(memo) > WRITTEN:
                    memo.popitem(last=False)
            return memo[key]

        # a judge call's worst case (Context.judge's): the prompt and every sample at max_tokens
        worst = await self.generator.count_prompt_tokens(req) + req.n * req.max_tokens
        texts = await ctx.verify(work, worst, self.generator.num_params)
        tests: Counter[str] = Counter()
        for text in texts:
            tests.update(parse_tests("assert " + text, entry, self.per_sample))
        ctx.telemetry["generated_tests"] = len(tests)
        return tests


class CodeT(Verifier):
    name = "codet"

    def __init__(self, generator: Generator, *, samples: int = 4, max_tokens: int = 160, per_sample: int = 5,
                 temperature: float = 0.8, top_p: float = 0.95):
        self.tests = GeneratedTests(generator, samples, max_tokens, per_sample, temperature, top_p)
        self.model = generator.model
        self.num_params = generator.num_params

    async def score(self, ctx: Context, traces: list[Trace]) -> list[Score]:
        tests = await self.tests.get(ctx)
        cases = list(tests)
        outcomes = await code_task(ctx.problem).check_all(ctx, [t.answer for t in traces], cases)
        passed = [frozenset(i for i, r in enumerate(o.tests) if r.get("passed")) if o is not None and o.loaded
                  else frozenset() for o in outcomes]
        size = Counter(p for p in passed if p)
        top = math.sqrt(len(traces)) * sum(tests.values())
        return [Score(math.sqrt(size[p]) * sum(tests[cases[i]] for i in p) / top if p else 0.0) for p in passed]
