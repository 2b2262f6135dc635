"""Process reward models: one reward per reasoning step, served by vLLM.

- `QwenPRM`: Qwen2.5-Math-PRM style, a pooling model (vLLM's `Qwen2ForProcessRewardModel`)
  read at the step token `<extra_0>` after every step, in process or behind a vLLM server's
  `/pooling` route.
- `MathShepherdPRM`: Math-Shepherd style, a causal LM asked at the step tag "ки" after every
  step how likely "+" (good) is against "-" (bad).
- `LLMJudgePRM`: any Generator asked "is the latest step correct? Answer Yes or No.",
  reward P(Yes) from the logprobs of its first token.

A trace's steps are its full text (`trace.prefix + trace.text`) cut at `delimiter` (empty
pieces dropped). Each verifier returns one `Score` per trace: `steps` the per-step rewards in
[0, 1], `value` their aggregate (`aggregate()`), `tokens` what the reward model processed for
that trace, which the accountant charges as verifier tokens. A trace with no step text gets
value 0.0, no step rewards, and costs nothing.

All requests of a call (every trace, every step) go to the engine together and are gathered, so
concurrent `score()` calls from many problems are batched by the engine; nothing is locked.
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from tts.errors import TTSError
from tts.interfaces import Generator, Verifier
from tts.registry import register
from tts.types import DEFAULT_SYSTEM_PROMPT, GenRequest, Problem, Score, Trace

AGGREGATES = ("last", "min", "prod", "mean")

QWEN_PRM_DEFAULT = "Qwen/Qwen2.5-Math-PRM-7B"
MATH_SHEPHERD_DEFAULT = "peiyi9979/math-shepherd-mistral-7b-prm"


def aggregate(step_rewards: Sequence[float], how: str) -> float:
    """One value from per-step rewards: the `last` one, the `min`, the `prod`uct or the `mean`.

    No steps give 0.0 (an empty solution is the worst, whatever the aggregate)."""
    if how not in AGGREGATES:
        raise TTSError(f"unknown step aggregate '{how}'; valid: {', '.join(AGGREGATES)}")
    if not step_rewards:
        return 0.0
    if how == "last":
        return float(step_rewards[-1])
    if how == "min":
        return float(min(step_rewards))
    if how == "prod":
        return float(math.prod(step_rewards))
    return float(sum(step_rewards) / len(step_rewards))


def split_steps(text: str, delimiter: str = "\n\n") -> list[str]:
    """`text` cut at `delimiter`, whitespace-only pieces dropped (the pieces are not stripped)."""
    return [p for p in text.split(delimiter) if p.strip()]


def _check_aggregate(how: str, allowed: Sequence[str]) -> str:
    if how not in allowed:
        raise TTSError(f"unknown step aggregate '{how}'; valid: {', '.join(allowed)}")
    return how


def _softmax_pair(a: float, b: float) -> float:
    """exp(a) / (exp(a) + exp(b)), computed stably."""
    return 1.0 / (1.0 + math.exp(b - a)) if b - a < 700 else 0.0


def _in_process(model: str, engine: Any, runner: str | None, engine_kwargs: dict[str, Any]) -> Any:
    """The `VLLMGenerator` whose engine serves the reward model: `engine` when given (shared,
    never closed here), else a new one (its model checks, tokenizer, parameter count and error
    messages are the generator's)."""
    from tts.backends.vllm import VLLMGenerator

    if engine is not None:
        if not hasattr(engine, "engine") or not hasattr(engine, "tokenizer"):
            raise TTSError("engine= must be an in-process tts.VLLMGenerator serving the reward model")
        return engine
    if runner is not None:
        engine_kwargs = dict(engine_kwargs, runner=runner)
    return VLLMGenerator(model, **engine_kwargs)


def _load_tokenizer(model: str) -> Any:
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(model)
    except Exception as e:
        raise TTSError(f"cannot load a tokenizer from {model}: {e}") from e


class _PRM(Verifier):
    """What the model-backed PRMs share: step splitting, the engine's lifetime, and requests
    whose prompt the engine rejects (e.g. longer than the context) turned into a TTSError."""

    model: str
    delimiter: str
    aggregate: str
    _owner: Any = None  # the VLLMGenerator this PRM started (closed by close())

    def _steps(self, trace: Trace) -> list[str]:
        return split_steps(trace.prefix + trace.text, self.delimiter)

    async def score(self, problem: Problem, traces: list[Trace]) -> list[Score]:
        return list(await asyncio.gather(*(self._score_one(problem, t) for t in traces)))

    async def _score_one(self, problem: Problem, trace: Trace) -> Score:  # pragma: no cover
        raise NotImplementedError

    async def _final(self, outputs: Any, n_ids: int) -> Any:
        """The last output of an engine request, vLLM's request validation errors (e.g. a prompt
        longer than max_model_len) turned into a TTSError."""
        final = None
        try:
            async for out in outputs:
                final = out
        except ValueError as e:
            raise TTSError(f"PRM {self.model} could not score a {n_ids}-token prompt: {e}") from e
        return final

    def _score(self, rewards: Sequence[float], tokens: int) -> Score:
        how = "last" if self.aggregate == "model" else self.aggregate
        return Score(aggregate(rewards, how), tuple(rewards), tokens)

    async def close(self) -> None:
        owner, self._owner = self._owner, None
        if owner is not None:
            await owner.close()


# ---------------------------------------------------------------------------------------------
@register("verifier", "qwen_prm")
def qwen_prm(model: str | None = None, generator: Generator | None = None, **options: Any) -> "QwenPRM":
    """Registry factory: a QwenPRM on `model` (default Qwen2.5-Math-PRM-7B); `generator` unused."""
    return QwenPRM(model or QWEN_PRM_DEFAULT, **options)


class QwenPRM(_PRM):
    """Qwen2.5-Math-PRM: the prompt is built exactly as the model card's reference code does —
    the chat template over [system, user=question, assistant=steps joined with `<extra_0>` and
    ending with one], tokenized with `tokenizer.encode` — and each step's reward is the softmax
    over the two labels' logits at its `<extra_0>`, index 1 (the "correct" label).

    `aggregate`: "last" | "min" | "prod" | "mean" over the step rewards, or "model": the whole
    response scored as ONE step (one `<extra_0>`, at the end), its reward the value.

    In process (default): a vLLM AsyncLLM with the pooling runner (task `token_classify`,
    STEP pooling at the step token's id). `engine=` shares an existing
    `VLLMGenerator(model, runner="pooling")` instead of starting one; other keyword arguments go
    to vLLM's engine (e.g. `enforce_eager`, `max_model_len`, `gpu_memory_utilization`).

    `base_url`: a vLLM server of this model started with `--runner pooling` (a string or a list
    of replicas, e.g. "http://host:8000/v1"), asked through its `POST /pooling` route with the
    chat messages, under the same retry policy as `OpenAIGenerator`. vLLM's server reads the
    rows at `--pooler-config '{"step_tag_id": ID}'` (default 151651, Qwen's `<extra_0>`): a
    model whose step token has another id needs that flag, and a mismatch is reported.

    `Score.tokens` is the PRM prompt's length (vLLM never reads the prefix cache for
    token_classify, so every prompt token is computed).
    """

    name = "qwen_prm"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | list[str] | None = None,
        aggregate: str = "last",
        delimiter: str = "\n\n",
        step_token: str = "<extra_0>",
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        num_params: int | None = None,
        engine: Any = None,
        api_key: str | None = None,
        max_retries: int = 5,
        backoff: float = 0.5,
        timeout: float = 600,
        max_concurrency: int = 64,
        **engine_kwargs: Any,
    ):
        self.model = model
        self.aggregate = _check_aggregate(aggregate, AGGREGATES + ("model",))
        if not delimiter:
            raise TTSError("QwenPRM needs a non-empty step delimiter (default '\\n\\n')")
        self.delimiter = delimiter
        self.step_token = step_token
        self.system_prompt = system_prompt
        self._prompts: OrderedDict[tuple[str, tuple[str, ...]], list[int]] = OrderedDict()
        self._server = None
        self._step_id: int | None = None
        if base_url is not None:
            from tts.backends.openai import OpenAIGenerator
            from tts.backends.vllm import model_parameters

            # The OpenAIGenerator is only the HTTP client: replicas, retries, API key, concurrency.
            self._server = OpenAIGenerator(
                model, base_url, api_key=api_key, max_concurrency=max_concurrency,
                max_retries=max_retries, backoff=backoff, timeout=timeout,
            )
            self.num_params = num_params or model_parameters(model)
            return
        if engine is None:
            self._tokenizer = _load_tokenizer(model)  # checked before an engine is started
            self._step_id = self._check_step_token(self._tokenizer)
        owner = _in_process(model, engine, "pooling", dict(engine_kwargs, num_params=num_params))
        if engine is None:
            self._owner = owner
        else:
            self._tokenizer = owner.tokenizer
            self._step_id = self._check_step_token(self._tokenizer)
        self._gen = owner
        self.num_params = num_params or owner.num_params

    def _check_step_token(self, tokenizer: Any) -> int:
        ids = tokenizer.encode(self.step_token, add_special_tokens=False)
        if len(ids) != 1 or tokenizer.convert_ids_to_tokens(ids[0]) != self.step_token:
            raise TTSError(
                f"the tokenizer of {self.model} has no '{self.step_token}' token (it splits into "
                f"{len(ids)} pieces): QwenPRM needs a Qwen2.5-Math-PRM-style model whose step token "
                "is one token; pass step_token=... if this model marks steps with another"
            )
        return ids[0]

    # -- prompts -----------------------------------------------------------------------------
    def pieces(self, trace: Trace) -> list[str]:
        """The steps the PRM scores: the trace's steps, or its whole text for aggregate="model"."""
        if self.aggregate == "model":
            text = trace.prefix + trace.text
            return [text] if text.strip() else []
        return self._steps(trace)

    def messages(self, problem: Problem, steps: Sequence[str]) -> list[dict[str, str]]:
        tag = self.step_token
        return [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": problem.question},
            {"role": "assistant", "content": tag.join(steps) + tag},
        ]

    def prompt_ids(self, problem: Problem, steps: Sequence[str]) -> list[int]:
        """The reference code's tokens: chat template (no generation prompt), then encode."""
        key = (problem.question, tuple(steps))
        ids = self._prompts.get(key)
        if ids is None:
            text = self._tokenizer.apply_chat_template(
                self.messages(problem, steps), tokenize=False, add_generation_prompt=False
            )
            ids = self._tokenizer.encode(text)
            self._prompts[key] = ids
            if len(self._prompts) > 1024:
                self._prompts.popitem(last=False)
        else:
            self._prompts.move_to_end(key)
        return ids

    async def estimate_tokens(self, problem: Problem, traces: list[Trace]) -> int:
        total = 0
        for t in traces:
            steps = self.pieces(t)
            if not steps:
                continue
            if self._server is None:
                total += len(self.prompt_ids(problem, steps))
            else:
                # Without the tokenizer here: every token is at least one byte (byte-level BPE),
                # plus room for the chat template's special tokens.
                msgs = self.messages(problem, steps)
                total += sum(len(m["content"].encode()) for m in msgs) + 16 * (len(msgs) + 1)
        return total

    # -- scoring -------------------------------------------------------------------------------
    async def _score_one(self, problem: Problem, trace: Trace) -> Score:
        steps = self.pieces(trace)
        if not steps:
            return Score(0.0, (), 0)
        if self._server is not None:
            rows, tokens = await self._pool_server(problem, steps)
        else:
            rows, tokens = await self._pool_in_process(problem, steps)
        if len(rows) != len(steps):
            hint = (
                f"; start the server with --pooler-config '{{\"step_tag_id\": ID}}', ID the id of "
                f"'{self.step_token}' in its tokenizer (vLLM's default is 151651, Qwen's)"
                if self._server is not None
                else f"; does a step contain '{self.step_token}'?"
            )
            raise TTSError(
                f"PRM {self.model} returned {len(rows)} step rewards for {len(steps)} steps{hint}"
            )
        rewards = [_softmax_pair(float(r[1]), float(r[0])) for r in rows]
        return self._score(rewards, tokens)

    async def _pool_in_process(self, problem: Problem, steps: Sequence[str]) -> tuple[list, int]:
        from vllm import PoolingParams

        ids = self.prompt_ids(problem, steps)
        # Raw logits (we take the softmax, as the reference does), rows at our step token's id.
        params = PoolingParams(task="token_classify", step_tag_id=self._step_id, use_activation=False)
        final = await self._final(self._gen.engine.encode({"prompt_token_ids": ids}, params, self._gen._rid()), len(ids))
        return final.outputs.data.tolist(), len(ids)

    async def _pool_server(self, problem: Problem, steps: Sequence[str]) -> tuple[list, int]:
        body = {
            "model": self.model,
            "messages": self.messages(problem, steps),
            "task": "token_classify",
            "use_activation": False,
            "add_generation_prompt": False,
            "add_special_tokens": True,  # as the reference's tokenizer.encode
        }
        resp = await self._server.post("/pooling", body)
        try:
            rows = resp["data"][0]["data"]
            tokens = int(resp["usage"]["prompt_tokens"])
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise TTSError(f"unexpected /pooling reply from the server of {self.model}: {str(resp)[:200]}") from e
        return rows, tokens

    async def close(self) -> None:
        await super().close()
        server, self._server = self._server, None
        if server is not None:
            await server.close()


# ---------------------------------------------------------------------------------------------
@register("verifier", "math_shepherd_prm")
def math_shepherd_prm(
    model: str | None = None, generator: Generator | None = None, **options: Any
) -> "MathShepherdPRM":
    """Registry factory: a MathShepherdPRM on `model` (default math-shepherd-mistral-7b-prm)."""
    return MathShepherdPRM(model, **options)


class MathShepherdPRM(_PRM):
    """Math-Shepherd: the model card's input is f"{question} {output}", the output being the
    steps each followed by " ки" and joined by newlines; each step's reward is the softmax over
    the logits of the good and bad label tokens ("+", "-") at its tag, the good one's share.

    The tag's logits predict the token after it, so they are read from the next-token
    distribution of the prompt cut just after each tag: one generation request per step with
    `max_tokens=1` and vLLM's `logprob_token_ids=[good, bad]`, which returns exactly those two
    tokens' log-probabilities (raw, before any sampling processing). Their softmax equals the
    softmax of the two logits. One pass with prompt logprobs would not be exact: vLLM returns
    the actual token and the top k at each position, and "+"/"-" need not be among them
    (and writing a label after each tag would change what later steps see).
    The request for the whole prompt goes first, so the shorter ones find their prefix in vLLM's
    prefix cache; `Score.tokens` is the prompt tokens computed (not served from the cache).

    `step_tag`, `good_token`, `bad_token` default to Math-Shepherd's; each must be one token of
    the model's vocabulary where it stands (after a space). `engine=` shares an existing
    in-process `VLLMGenerator` of the same model; other keyword arguments go to vLLM's engine.
    """

    name = "math_shepherd_prm"

    def __init__(
        self,
        model: str | None = None,
        *,
        aggregate: str = "last",
        delimiter: str = "\n\n",
        step_tag: str = "ки",
        good_token: str = "+",
        bad_token: str = "-",
        num_params: int | None = None,
        engine: Any = None,
        **engine_kwargs: Any,
    ):
        if model is None and engine is None:
            model = MATH_SHEPHERD_DEFAULT
        self.model = model if model is not None else engine.model
        self.aggregate = _check_aggregate(aggregate, AGGREGATES)
        if not delimiter:
            raise TTSError("MathShepherdPRM needs a non-empty step delimiter (default '\\n\\n')")
        self.delimiter = delimiter
        self.step_tag = step_tag
        self.good_token = good_token
        self.bad_token = bad_token
        if engine is None:
            tokenizer = _load_tokenizer(self.model)  # checked before an engine is started
            ids = self._check_tokens(tokenizer)
        owner = _in_process(self.model, engine, None, dict(engine_kwargs, num_params=num_params))
        if engine is None:
            self._owner = owner
        else:
            tokenizer = owner.tokenizer
            ids = self._check_tokens(tokenizer)
        self._tag_id, self._good_id, self._bad_id = ids
        self._tokenizer = tokenizer
        self._gen = owner
        self.num_params = num_params or owner.num_params

    def _check_tokens(self, tokenizer: Any) -> tuple[int, int, int]:
        ids = []
        for what, tok in (("step tag", self.step_tag), ("good label", self.good_token), ("bad label", self.bad_token)):
            # As in the input: after a space ("... step. ки", "+ -" in the card's encode).
            pieces = tokenizer.encode(f"x {tok}", add_special_tokens=False)
            last = pieces[-1] if pieces else None
            if last is None or tokenizer.decode([last]).strip() != tok:
                raise TTSError(
                    f"the tokenizer of {self.model} has no single token for the {what} '{tok}': "
                    "MathShepherdPRM needs a Math-Shepherd-style model; pass step_tag=, good_token=, "
                    "bad_token= that are single tokens of this model"
                )
            ids.append(last)
        if len(set(ids)) != 3:
            raise TTSError(f"step tag and labels must be three different tokens for {self.model}, got ids {ids}")
        return ids[0], ids[1], ids[2]

    def prompt(self, problem: Problem, steps: Sequence[str]) -> str:
        tag = self.step_tag
        clean = [s.replace(tag, "").strip() for s in steps]  # the tag marks step ends only
        return f"{problem.question.replace(tag, '')} " + "\n".join(f"{s} {tag}" for s in clean)

    def tag_prompts(self, problem: Problem, steps: Sequence[str]) -> list[list[int]]:
        """For each step, the prompt's token ids up to and including that step's tag."""
        ids = self._tokenizer.encode(self.prompt(problem, steps))  # BOS as the card's encode
        ends = [i + 1 for i, x in enumerate(ids) if x == self._tag_id]
        if len(ends) != len(steps):
            raise TTSError(
                f"the step tag '{self.step_tag}' of {self.model} tokenized to {len(ends)} tags for "
                f"{len(steps)} steps; it must stay one token after each step"
            )
        return [ids[:e] for e in ends]

    async def estimate_tokens(self, problem: Problem, traces: list[Trace]) -> int:
        # Worst case: no prefix served from the cache.
        return sum(
            sum(len(p) for p in self.tag_prompts(problem, steps))
            for steps in (self._steps(t) for t in traces)
            if steps
        )

    async def _score_one(self, problem: Problem, trace: Trace) -> Score:
        steps = self._steps(trace)
        if not steps:
            return Score(0.0, (), 0)
        prompts = self.tag_prompts(problem, steps)
        last = await self._label_logprobs(prompts[-1])
        rest = await asyncio.gather(*(self._label_logprobs(p) for p in prompts[:-1]))
        results = [*rest, last]
        rewards = [_softmax_pair(good, bad) for good, bad, _ in results]
        return self._score(rewards, sum(computed for _, _, computed in results))

    async def _label_logprobs(self, ids: list[int]) -> tuple[float, float, int]:
        """log p(good), log p(bad) of the token after `ids`, and the prompt tokens computed."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        params = SamplingParams(
            max_tokens=1, temperature=0.0, detokenize=False,
            logprob_token_ids=[self._good_id, self._bad_id], output_kind=RequestOutputKind.FINAL_ONLY,
        )
        final = await self._final(self._gen.engine.generate({"prompt_token_ids": ids}, params, self._gen._rid()), len(ids))
        row = final.outputs[0].logprobs[0]
        computed = len(ids) - (final.num_cached_tokens or 0)
        return row[self._good_id].logprob, row[self._bad_id].logprob, computed


# ---------------------------------------------------------------------------------------------
JUDGE_PROMPT = (
    "You are checking a step-by-step solution to a math problem.\n\n"
    "Problem:\n{question}\n\n"
    "Previous steps:\n{previous}\n\n"
    "Latest step:\n{step}\n\n"
    "Is the latest step correct? Answer Yes or No."
)


@register("verifier", "llm_judge")
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


def yes_probability(t: Trace, model: str = "the judge") -> float | None:
    """P(yes) / (P(yes) + P(no)) at a judge's first generated token, summing the variants of each
    word in its top-k ("Yes", " yes", ...); None when neither word is among them (no verdict).
    Needs the top-k token strings (`Trace.top_tokens`, filled by the vLLM and OpenAI generators)."""
    if t.num_tokens == 0 or not t.top_logprobs:
        return None
    if not t.top_tokens:
        raise TTSError(f"{model} must return its top-k token strings (Trace.top_tokens) to read P(yes)")
    p = {"yes": 0.0, "no": 0.0}
    for tok, lp in zip(t.top_tokens[0], t.top_logprobs[0]):
        word = tok.strip().lower()
        if word in p:
            p[word] += math.exp(lp)
    total = p["yes"] + p["no"]
    return p["yes"] / total if total > 0 else None


class LLMJudgePRM(_PRM):
    """A Generator as a process judge: for a step, it is shown the question, the previous steps
    and the latest step (`prompt`, formatted with {question}, {previous}, {step}) and asked
    "Answer Yes or No."; the reward is P(Yes) / (P(Yes) + P(No)) over its first token's top-k
    (`top_k`, default 20), summing the variants of each word present ("Yes", " Yes", "yes", ...;
    0.5 when neither is). `steps="all"` judges every step (one request per step, all sent
    together), `steps="last"` only the newest one (its reward is the single step reward).
    `Score.tokens` is the judge's prompt + completion tokens; the generator needs to return the
    top-k tokens' strings (`Trace.top_tokens`, filled by the vLLM and OpenAI generators).
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
    ):
        if steps not in ("all", "last"):
            raise TTSError(f"LLMJudgePRM steps must be 'all' or 'last', not '{steps}'")
        if top_k < 1:
            raise TTSError("LLMJudgePRM needs top_k >= 1 to read P(Yes)")
        if not delimiter:
            raise TTSError("LLMJudgePRM needs a non-empty step delimiter (default '\\n\\n')")
        self._judge = generator
        self.model = generator.model
        self.steps = steps
        self.aggregate = _check_aggregate(aggregate, AGGREGATES)
        self.delimiter = delimiter
        self.prompt = prompt
        self.top_k = top_k
        self.system_prompt = system_prompt
        self.num_params = generator.num_params

    def requests(self, problem: Problem, trace: Trace) -> list[GenRequest]:
        """One judge request per step to judge (all, or the last)."""
        steps = [s.strip() for s in self._steps(trace)]
        judged = range(len(steps)) if self.steps == "all" else range(len(steps) - 1, len(steps))
        out = []
        for i in judged:
            previous = "\n\n".join(steps[:i]) or "(none)"
            content = self.prompt.format(question=problem.question, previous=previous, step=steps[i])
            msgs = ([{"role": "system", "content": self.system_prompt}] if self.system_prompt else [])
            msgs.append({"role": "user", "content": content})
            out.append(GenRequest(messages=msgs, n=1, max_tokens=1, temperature=0.0, logprobs=self.top_k))
        return out

    async def estimate_tokens(self, problem: Problem, traces: list[Trace]) -> int:
        reqs = [r for t in traces for r in self.requests(problem, t)]
        counts = await asyncio.gather(*(self._judge.count_prompt_tokens(r) for r in reqs))
        return sum(counts) + sum(r.max_tokens for r in reqs)

    async def _score_one(self, problem: Problem, trace: Trace) -> Score:
        reqs = self.requests(problem, trace)
        if not reqs:
            return Score(0.0, (), 0)
        outs = await asyncio.gather(*(self._judge.generate(r) for r in reqs))
        rewards = [self.p_yes(traces[0]) for traces, _ in outs]
        tokens = sum(u.prompt_tokens + u.completion_tokens for _, u in outs)
        return self._score(rewards, tokens)

    def p_yes(self, t: Trace) -> float:
        """P(Yes) / (P(Yes) + P(No)) at the judge's first token; 0.5 when neither word is there."""
        p = yes_probability(t, self.model)
        return 0.5 if p is None else p

    async def close(self) -> None:
        if self._owns_generator:
            await self._judge.close()
