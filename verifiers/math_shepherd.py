"""`MathShepherdPRM`: a Math-Shepherd-style process reward model (a causal LM read at its step tag),
in process (what the PRMs share: `verifiers.prm`)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from tts.errors import TTSError
from tts.context import Context
from tts.interfaces import Generator
from tts.types import Problem, Score, Trace, Usage

from verifiers.prm import AGGREGATES, ProcessVerifier, check_aggregate, softmax_pair

MATH_SHEPHERD_DEFAULT = "peiyi9979/math-shepherd-mistral-7b-prm"


def math_shepherd_prm(model: str, generator: Generator | None = None, **options: Any) -> "MathShepherdPRM":
    """Registry factory: a MathShepherdPRM on `model` (a folder or hub id, e.g.
    peiyi9979/math-shepherd-mistral-7b-prm: named, never fetched by default)."""
    return MathShepherdPRM(model, **options)


class MathShepherdPRM(ProcessVerifier):
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
    prefix cache; each request goes through the context (`Context.verify`), charged its prompt
    tokens computed and those served from the cache.

    `incremental` (default True): rewards of step prefixes already scored are remembered
    (`verifiers.prm.StepMemo`), so a grown path sends only its new steps (`Score.path`
    "incremental"); False scores every step each time ("full-prefix"; the prefixes still come
    from the cache).

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
        incremental: bool | None = True,
        **engine_kwargs: Any,
    ):
        self.incremental = incremental is not False
        if model is None and engine is None:
            model = MATH_SHEPHERD_DEFAULT
        self.model = model if model is not None else engine.model
        self.aggregate = check_aggregate(aggregate, AGGREGATES)
        if not delimiter:
            raise TTSError("MathShepherdPRM needs a non-empty step delimiter (default '\\n\\n')")
        self.delimiter = delimiter
        self.step_tag = step_tag
        self.good_token = good_token
        self.bad_token = bad_token
        self._tag_id, self._good_id, self._bad_id = self._attach(
            engine, None, num_params, engine_kwargs, self._check_tokens
        )

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

    async def _score_one(self, ctx: Context, trace: Trace) -> Score:
        steps = self._steps(trace)
        if not steps:
            return Score(0.0)
        keys, known = self._known(ctx.problem, steps)
        rewards = list(known)
        todo = [i for i, r in enumerate(known) if r is None]
        if todo:
            prompts = self.tag_prompts(ctx.problem, steps)
            *rest, newest = todo
            # the newest step first: its prompt holds every other's, so they read it from the cache
            last = await self._label_logprobs(ctx, prompts[newest])
            others = await asyncio.gather(*(self._label_logprobs(ctx, prompts[i]) for i in rest))
            for i, (good, bad) in zip([*rest, newest], [*others, last]):
                rewards[i] = softmax_pair(good, bad)
            self._remember(keys, rewards)
        return self._score(rewards, self.scoring)

    async def _label_logprobs(self, ctx: Context, ids: list[int]) -> tuple[float, float]:
        """log p(good), log p(bad) of the token after `ids` (one call through the context,
        charged its prompt tokens computed and those served from the prefix cache)."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        params = SamplingParams(
            max_tokens=1, temperature=0.0, detokenize=False,
            logprob_token_ids=[self._good_id, self._bad_id], output_kind=RequestOutputKind.FINAL_ONLY,
        )

        async def work() -> tuple[tuple[float, float], Usage]:
            final = await self._final(ids, params)
            row = final.outputs[0].logprobs[0]
            usage = Usage(prompt_tokens=len(ids), cached_tokens=final.num_cached_tokens or 0)
            return (row[self._good_id].logprob, row[self._bad_id].logprob), usage

        return await ctx.verify(work, len(ids), self.num_params)
