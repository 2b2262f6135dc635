"""`LLMJudgePRM`: any Generator as a process judge, reward P(Yes) per step (what the PRMs share:
`verifiers.prm`)."""

from __future__ import annotations

import asyncio
from typing import Any

from tts.errors import TTSError
from tts.context import Context
from tts.interfaces import Generator
from tts.types import GenRequest, Problem, Score, Trace

from verifiers.prm import AGGREGATES, ProcessVerifier, check_aggregate, yes_probability

JUDGE_PROMPT = (
    "You are checking a step-by-step solution to a math problem.\n\n"
    "Problem:\n{question}\n\n"
    "Previous steps:\n{previous}\n\n"
    "Latest step:\n{step}\n\n"
    "Is the latest step correct? Answer Yes or No."
)


def llm_judge(model: str | None = None, generator: Generator | None = None, **options: Any) -> "LLMJudgePRM":
    """Registry factory: a judge over `generator`; with only `model`, an in-process vLLM judge."""
    if generator is None:
        if model is None:
            raise TTSError("the llm_judge verifier needs a judge: pass generator=... or model=...")
        from tts.backends.vllm import VLLMGenerator

        judge = LLMJudgePRM(VLLMGenerator(model), **options)
        judge._owns_generator = True
        return judge
    return LLMJudgePRM(generator, **options)


class LLMJudgePRM(ProcessVerifier):
    """A Generator as a process judge: for a step, it is shown the question, the previous steps
    and the latest step (`prompt`, formatted with {question}, {previous}, {step}) and asked
    "Answer Yes or No."; the reward is P(Yes) / (P(Yes) + P(No)) over its first token's top-k
    (`top_k`, default 20), summing the variants of each word present ("Yes", " Yes", "yes", ...;
    0.5 when neither is). `steps="all"` judges every step (one request per step, all sent
    together), `steps="last"` only the newest one (its reward is the single step reward).
    Each judge request goes through the context (`Context.judge`): its prompt tokens not served
    from the judge's prefix cache and its completion token are charged as verifier tokens, the
    cached ones as verifier cached tokens. The generator needs to return the top-k tokens'
    strings (`Trace.top_tokens`, filled by the vLLM and OpenAI generators).

    `incremental` (default True): with `steps="all"`, the verdicts on step prefixes already
    judged are remembered (`verifiers.prm.StepMemo`), so a grown path sends only its new steps
    (`Score.path` "incremental"); False judges every step each time ("full-prefix").
    `steps="last"` judges only the newest step anyway ("incremental").

    `batch` (default True): the judge requests of one `score` call (every trace, every step to
    judge, one expansion's candidates in a search) go to the judge as one call
    (`Context.judge_many`: one HTTP request on a vLLM server's batch route), each distinct
    prompt once; False sends one request per step, as many calls.
    """

    name = "llm_judge"
    _owns_generator = False

    def __init__(
        self,
        generator: Generator,
        *,
        steps: str = "all",
        aggregate: str = "last",
        delimiter: str = "\n\n",
        prompt: str = JUDGE_PROMPT,
        top_k: int = 20,
        system_prompt: str | None = None,
        incremental: bool | None = True,
        batch: bool = True,
    ):
        if steps not in ("all", "last"):
            raise TTSError(f"LLMJudgePRM steps must be 'all' or 'last', not '{steps}'")
        if top_k < 1:
            raise TTSError("LLMJudgePRM needs top_k >= 1 to read P(Yes)")
        if not delimiter:
            raise TTSError("LLMJudgePRM needs a non-empty step delimiter (default '\\n\\n')")
        self.generator = generator
        self.model = generator.model
        self.steps = steps
        self.aggregate = check_aggregate(aggregate, AGGREGATES)
        self.delimiter = delimiter
        self.prompt = prompt
        self.top_k = top_k
        self.system_prompt = system_prompt
        self.num_params = generator.num_params
        self.incremental = incremental is not False and steps == "all"
        self.batch = batch

    def requests(self, problem: Problem, trace: Trace) -> list[GenRequest]:
        """One judge request per step to judge (all, or the last), none remembered."""
        steps = [s.strip() for s in self._steps(trace)]
        judged = range(len(steps)) if self.steps == "all" else range(len(steps) - 1, len(steps))
        return [self._request(problem, steps, i) for i in judged]

    def _request(self, problem: Problem, steps: list[str], i: int) -> GenRequest:
        previous = "\n\n".join(steps[:i]) or "(none)"
        content = self.prompt.format(question=problem.question, previous=previous, step=steps[i])
        msgs = ([{"role": "system", "content": self.system_prompt}] if self.system_prompt else [])
        msgs.append({"role": "user", "content": content})
        return GenRequest(messages=msgs, n=1, max_tokens=1, temperature=0.0, logprobs=self.top_k)

    def _plan(self, problem: Problem, trace: Trace) -> tuple[list[bytes], list, list[GenRequest], list[int]]:
        """The memo keys, the verdicts known, and the requests (with their step indices) to send."""
        if self.steps == "last":
            return [], [None], self.requests(problem, trace), [0]
        steps = [s.strip() for s in self._steps(trace)]
        keys, known = self._known(problem, steps)
        todo = [i for i, r in enumerate(known) if r is None]
        return keys, known, [self._request(problem, steps, i) for i in todo], todo

    async def _score_all(self, ctx: Context, traces: list[Trace]) -> list[Score]:
        if not self.batch:
            return await super()._score_all(ctx, traces)
        plans = [self._plan(ctx.problem, t) if self._steps(t) else None for t in traces]
        prompts: dict[tuple, int] = {}  # a prompt -> its place in `reqs`: each judged once
        reqs: list[GenRequest] = []
        for plan in plans:
            for r in plan[2] if plan is not None else ():
                if prompts.setdefault(_prompt(r), len(reqs)) == len(reqs):
                    reqs.append(r)
        verdicts = [self.p_yes(traces[0]) for traces in await ctx.judge_many(self.generator, reqs)]
        scores = []
        for plan in plans:
            if plan is None:
                scores.append(Score(0.0))
                continue
            keys, known, todo_reqs, todo = plan
            rewards = list(known)
            for i, r in zip(todo, todo_reqs):
                rewards[i] = verdicts[prompts[_prompt(r)]]
            self._remember(keys, rewards)
            scores.append(self._score(rewards, "incremental" if self.steps == "last" else self.scoring))
        return scores

    async def _score_one(self, ctx: Context, trace: Trace) -> Score:
        if not self._steps(trace):
            return Score(0.0)
        keys, known, reqs, todo = self._plan(ctx.problem, trace)
        outs = await asyncio.gather(*(ctx.judge(self.generator, r) for r in reqs))
        rewards = list(known)
        for i, traces in zip(todo, outs):
            rewards[i] = self.p_yes(traces[0])
        self._remember(keys, rewards)
        return self._score(rewards, "incremental" if self.steps == "last" else self.scoring)

    def p_yes(self, t: Trace) -> float:
        """P(Yes) / (P(Yes) + P(No)) at the judge's first token; 0.5 when neither word is there."""
        p = yes_probability(t, self.model)
        return 0.5 if p is None else p

    async def close(self) -> None:
        if self._owns_generator:
            await self.generator.close()


def _prompt(req: GenRequest) -> tuple:
    """What a judge request's verdict depends on (its messages; the rest is the same for all)."""
    return tuple((m["role"], m["content"]) for m in req.messages)
