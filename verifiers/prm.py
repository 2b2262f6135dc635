"""Process reward models: one reward per reasoning step. This module holds what they share (the
step aggregates, the base class with its engine call, P(yes) of a judge); each verifier has its
own module, and its names are importable from here as before:

- `QwenPRM` (verifiers/qwen_prm.py): Qwen2.5-Math-PRM style, a pooling model (vLLM's `Qwen2ForProcessRewardModel`)
  read at the step token `<extra_0>` after every step, in process or behind a vLLM server's
  `/pooling` route.
- `MathShepherdPRM` (verifiers/math_shepherd.py): Math-Shepherd style, a causal LM asked at the step tag "ки" after every
  step how likely "+" (good) is against "-" (bad).
- `LLMJudgePRM` (verifiers/llm_judge.py): any Generator asked "is the latest step correct? Answer Yes or No.",
  reward P(Yes) from the logprobs of its first token.

A trace's steps are its full text (`trace.prefix + trace.text`) cut at `delimiter` (empty
pieces dropped). Each verifier returns one `Score` per trace: `steps` the per-step rewards in
[0, 1], `value` their aggregate (`aggregate()`). Every request to the reward model goes through
the context (`Context.verify`, `Context.judge`), which reserves its worst case before it is
sent and charges the tokens the model computed as verifier tokens, the prompt tokens its engine
served from the prefix cache as verifier cached tokens. A trace with no step text gets value
0.0, no step rewards, and costs nothing.

Incremental scoring (`Score.path`): a step's reward depends only on the question and the steps
up to it (the models are causal and read each step at its own tag), and step-level search
scores a path again and again as it grows. So each PRM remembers the reward of every step
prefix it scored (`StepMemo`, keyed by the question and the steps up to that one) and sends only
the steps it does not know yet, each as a prompt cut just after that step's tag that reads the
engine's prefix cache: the newest step of a beam costs about its own tokens, not the whole
prefix again ("incremental"). Where the engine cannot read its cache for the model ("full-
prefix": QwenPRM on a STEP-pooling engine or a vLLM server), or with `incremental=False`, every
step is scored again. The choice is automatic; `Context.score` counts it per trace in
`telemetry["verifier_paths"]`, and the accountant records cached and computed tokens apart.

All requests of a call (every trace, every step) go to the engine together and are gathered, so
concurrent `score()` calls from many problems are batched by the engine; nothing is locked.
Identical traces in one call (the same partial solution sampled twice, common for short steps)
are scored once (`dedupe`, default True): a reward is a function of the question and the text.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from tts.backends.common import LRU, load_tokenizer
from tts.context import Context, Verifier
from tts.errors import BackendError, TTSError
from tts.types import Problem, Score, Trace, split_steps

AGGREGATES = ("last", "min", "prod", "mean")
T = TypeVar("T")

_SUBMODULES = {"QwenPRM": "qwen_prm", "QWEN_PRM_DEFAULT": "qwen_prm", "MathShepherdPRM": "math_shepherd",
               "MATH_SHEPHERD_DEFAULT": "math_shepherd", "LLMJudgePRM": "llm_judge", "JUDGE_PROMPT": "llm_judge"}


def __getattr__(name: str) -> Any:
    """`verifiers.prm.QwenPRM` and the like, from their own modules (imported on first use: they
    import this one)."""
    if name in _SUBMODULES:
        import importlib

        return getattr(importlib.import_module(f"verifiers.{_SUBMODULES[name]}"), name)
    raise AttributeError(f"module 'verifiers.prm' has no attribute '{name}'")


def aggregate(step_rewards: Sequence[float], how: str) -> float:
    """One value from per-step rewards: the `last` one, the `min`, the `prod`uct or the `mean`.

    No steps give 0.0 (an empty solution is the worst, whatever the aggregate)."""
    check_aggregate(how, AGGREGATES)
    if not step_rewards:
        return 0.0
    if how == "last":
        return float(step_rewards[-1])
    if how == "min":
        return float(min(step_rewards))
    if how == "prod":
        return float(math.prod(step_rewards))
    return float(sum(step_rewards) / len(step_rewards))



def check_aggregate(how: str, allowed: Sequence[str]) -> str:
    if how not in allowed:
        raise TTSError(f"unknown step aggregate '{how}'; valid: {', '.join(allowed)}")
    return how


def softmax_pair(a: float, b: float) -> float:
    """exp(a) / (exp(a) + exp(b)), computed stably."""
    return 1.0 / (1.0 + math.exp(b - a)) if b - a < 700 else 0.0


def yes_probability(t: Trace, model: str = "the judge") -> float | None:
    """P(yes) / (P(yes) + P(no)) at a judge's first generated token, summing the variants of each
    word in its top-k ("Yes", " yes", ...); None when neither word is among them (no verdict).
    Needs the top-k token strings (`Trace.top_tokens`, filled by the vLLM and OpenAI generators).
    A verdict token that came back without the logprobs asked for is a backend fault
    (BackendError), never a neutral verdict: a server that drops them would judge blind."""
    if t.num_tokens == 0:
        return None
    if not t.top_logprobs:
        raise BackendError(f"{model} answered without the top-k logprobs its verdict is read from; serve it "
                           "with logprobs enabled (vLLM: --max-logprobs at least the judge's top_k)")
    if not t.top_tokens:
        raise TTSError(f"{model} must return its top-k token strings (Trace.top_tokens) to read P(yes)")
    p = {"yes": 0.0, "no": 0.0}
    for tok, lp in zip(t.top_tokens[0], t.top_logprobs[0]):
        word = tok.strip().lower()
        if word in p:
            p[word] += math.exp(lp)
    total = p["yes"] + p["no"]
    return p["yes"] / total if total > 0 else None


class StepMemo:
    """The rewards of step prefixes already scored: (question, steps[:k]) -> the k-th step's
    reward, bounded (LRU). Keys are digests of the texts, so memory stays small."""

    def __init__(self, size: int = 1 << 16):
        self._lru: LRU[bytes, float] = LRU(size)

    @staticmethod
    def keys(question: str, steps: Sequence[str]) -> list[bytes]:
        """One key per step: the digest of the question and the steps up to it (length-prefixed,
        so no two different step lists share a key)."""
        out: list[bytes] = []
        h = hashlib.blake2b(digest_size=16)
        data = question.encode()
        h.update(len(data).to_bytes(8, "little") + data)
        for step in steps:
            data = step.encode()
            h.update(len(data).to_bytes(8, "little") + data)
            out.append(h.copy().digest())
        return out

    def get(self, keys: Sequence[bytes]) -> list[float | None]:
        return [self._lru.get(k) for k in keys]

    def put(self, keys: Sequence[bytes], rewards: Sequence[float]) -> None:
        for k, r in zip(keys, rewards):
            self._lru.put(k, float(r))

    def __len__(self) -> int:
        return len(self._lru)


class ProcessVerifier(Verifier):
    """What the model-backed PRMs share: step splitting, the engine's lifetime, and requests
    whose prompt the engine rejects (e.g. longer than the context) turned into a TTSError."""

    model: str
    delimiter: str
    aggregate: str
    _owner: Any = None  # the VLLMGenerator this PRM started (closed by close())
    _gen: Any = None  # the VLLMGenerator whose engine serves the model (`_owner` or a shared one)

    def _attach(
        self, engine: Any, runner: str | None, num_params: int | None, engine_kwargs: dict[str, Any],
        check: Callable[[Any], T],
    ) -> T:
        """Start the `VLLMGenerator` whose engine serves `self.model` (closed by `close()`), or
        share `engine` (an in-process VLLMGenerator of it, never closed here); its model checks,
        tokenizer, parameter count and error messages are the generator's. `check(tokenizer)`
        validates the model's special tokens, before an engine is started when we start one;
        its result is returned."""
        from tts.backends.vllm import VLLMGenerator

        if engine is None:
            self._tokenizer = load_tokenizer(self.model)
            checked = check(self._tokenizer)
            kwargs = dict(engine_kwargs, num_params=num_params, **({"runner": runner} if runner else {}))
            self._gen = self._owner = VLLMGenerator(self.model, **kwargs)
        else:
            if not hasattr(engine, "final_output") or not hasattr(engine, "tokenizer"):
                raise TTSError("engine= must be an in-process tts.VLLMGenerator serving the reward model")
            self._gen, self._tokenizer = engine, engine.tokenizer
            checked = check(self._tokenizer)
        self.num_params = num_params or self._gen.num_params
        return checked

    def _steps(self, trace: Trace) -> list[str]:
        return split_steps(trace.prefix + trace.text, self.delimiter)

    dedupe: bool = True  # identical traces of one call scored once (see the module doc)

    async def score(self, ctx: Context, traces: list[Trace]) -> list[Score]:
        if not self.dedupe:
            return await self._score_all(ctx, traces)
        index: dict[str, int] = {}  # text -> its first trace's place in `unique`
        unique: list[Trace] = []
        for t in traces:
            if index.setdefault(t.prefix + t.text, len(unique)) == len(unique):
                unique.append(t)
        where = [index[t.prefix + t.text] for t in traces]
        scores = await self._score_all(ctx, unique)
        return [scores[i] for i in where]

    async def _score_all(self, ctx: Context, traces: list[Trace]) -> list[Score]:
        """One Score per trace (all distinct when `dedupe`)."""
        return list(await asyncio.gather(*(self._score_one(ctx, t) for t in traces)))

    async def _score_one(self, ctx: Context, trace: Trace) -> Score:  # pragma: no cover
        raise NotImplementedError

    async def _final(self, ids: list[int], params: Any) -> Any:
        """The last output of one request on the reward model's engine (`params`: vLLM sampling
        or pooling parameters), vLLM's request validation errors (e.g. a prompt longer than
        max_model_len) turned into a TTSError."""
        try:
            return await self._gen.final_output(ids, params)
        except ValueError as e:
            raise TTSError(f"PRM {self.model} could not score a {len(ids)}-token prompt: {e}") from e

    def _score(self, rewards: Sequence[float], path: str = "") -> Score:
        how = "last" if self.aggregate == "model" else self.aggregate
        return Score(aggregate(rewards, how), tuple(rewards), path)

    # -- incremental scoring -----------------------------------------------------------------
    incremental: bool = False
    _memo: StepMemo | None = None

    def _known(self, problem: Problem, steps: Sequence[str]) -> tuple[list[bytes], list[float | None]]:
        """The memo keys of `steps` and the rewards already known for them (None: unknown; all
        unknown when scoring is not incremental)."""
        if not self.incremental:
            return [], [None] * len(steps)
        if self._memo is None:
            self._memo = StepMemo()
        keys = self._memo.keys(problem.question, steps)
        return keys, self._memo.get(keys)

    def _remember(self, keys: Sequence[bytes], rewards: Sequence[float]) -> None:
        if self.incremental and self._memo is not None:
            self._memo.put(keys, rewards)

    @property
    def scoring(self) -> str:
        """"incremental" or "full-prefix": how this PRM scores a trace (see the module doc)."""
        return "incremental" if self.incremental else "full-prefix"

    async def close(self) -> None:
        owner, self._owner = self._owner, None
        if owner is not None:
            await owner.close()
