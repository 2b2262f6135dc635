"""`QwenPRM`: a Qwen2.5-Math-PRM-style process reward model, in process or behind a vLLM server
(what the PRMs share: `verifiers.prm`)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from tts.backends.common import LRU, byte_bound, chat_prompt_ids, load_tokenizer
from tts.errors import TTSError
from tts.context import Context
from tts.interfaces import Generator
from tts.types import DEFAULT_SYSTEM_PROMPT, Problem, Score, Trace, Usage

from verifiers.prm import AGGREGATES, ProcessVerifier, check_aggregate, softmax_pair

QWEN_PRM_DEFAULT = "Qwen/Qwen2.5-Math-PRM-7B"


def _reward(row: Any) -> float:
    """The "correct" label's softmax share of one row of label logits (a tensor or a list)."""
    a, b = (float(x) for x in (row.tolist() if hasattr(row, "tolist") else row))
    return softmax_pair(b, a)


def qwen_prm(model: str, generator: Generator | None = None, **options: Any) -> "QwenPRM":
    """Registry factory: a QwenPRM on `model` (a folder or hub id, e.g. Qwen/Qwen2.5-Math-PRM-7B:
    named, never fetched by default); `generator` unused."""
    return QwenPRM(model, **options)


class QwenPRM(ProcessVerifier):
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

    Scoring (`incremental`, default None: automatic; `scoring` tells which was chosen):

    - "incremental" (in process, the default): the engine is started with ALL token pooling
      (`pooler_config=PoolerConfig(tok_pooling_type="ALL")`, with which vLLM 0.32 keeps prefix
      caching for this causal pooling model) and each request sets
      `skip_reading_prefix_cache=False`, so vLLM computes, and returns the label logits of, only
      the prompt tokens not served from its prefix cache, the last one always among them. A
      step's reward is read from the LAST row of a prompt cut just after that step's
      `<extra_0>`: the model is causal, so that row equals the step's row in the whole prompt.
      Rewards of step prefixes already scored are remembered (`StepMemo`), so scoring a grown
      path sends one request, cut after its newest step, whose rows hold the rewards of all its
      new steps: about the new steps' tokens instead of the whole prefix.
    - "incremental" behind a server (`incremental=True` with `base_url`): the same, through a
      server started with ttscale's IO-processor plugin (`verifiers/prm_plugin.py`: `--runner
      pooling --pooler-config '{"tok_pooling_type": "ALL"}' --enable-prefix-caching
      --io-processor-plugin ttscale_prm`), which takes token ids (tokenized here with the
      tokenizer at `model`, so `model` must be the model's folder or hub id, as the server
      names it) and reads the prefix cache.
    - "full-prefix": the whole prompt, every step's row read (STEP pooling at the step token's
      id, or the step rows of ALL pooling without reading the cache). Used behind a vLLM
      server by default (its /pooling route cannot ask to read the cache), on a shared engine started
      with STEP pooling (vLLM 0.32 turns prefix caching off for STEP pooling:
      `ModelConfig.is_prefix_caching_supported`, and token_classify requests default to
      `skip_reading_prefix_cache=True`: `PoolingParams._merge_default_parameters`), or with
      `incremental=False`.

    Each request goes through the context (`Context.verify`), charged the prompt tokens the PRM
    computed and, apart, those its prefix cache served.
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
        incremental: bool | None = None,
        **engine_kwargs: Any,
    ):
        self.model = model
        self.aggregate = check_aggregate(aggregate, AGGREGATES + ("model",))
        if not delimiter:
            raise TTSError("QwenPRM needs a non-empty step delimiter (default '\\n\\n')")
        self.delimiter = delimiter
        self.step_token = step_token
        self.system_prompt = system_prompt
        self._prompts: LRU[tuple[str, tuple[str, ...]], list[int]] = LRU(1024)
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
            self.incremental = bool(incremental)
            if self.incremental:  # through the ttscale_prm plugin: token ids, tokenized here
                self._tokenizer = load_tokenizer(model)
                self._step_id = self._check_step_token(self._tokenizer)
            return
        if engine is None and incremental is not False:
            from vllm.config import PoolerConfig

            engine_kwargs.setdefault("pooler_config", PoolerConfig(tok_pooling_type="ALL"))
        self._step_id = self._attach(engine, "pooling", num_params, engine_kwargs, self._check_step_token)
        pooler = getattr(self._gen.engine.model_config, "pooler_config", None)
        self._pooling = getattr(pooler, "tok_pooling_type", None) or "STEP"
        cache = getattr(getattr(self._gen.engine, "vllm_config", None), "cache_config", None)
        capable = self._pooling == "ALL" and bool(getattr(cache, "enable_prefix_caching", False))
        if incremental and not capable:
            raise TTSError(
                f"QwenPRM cannot score incrementally on this engine ({self._pooling} pooling, prefix "
                f"caching {'on' if getattr(cache, 'enable_prefix_caching', False) else 'off'}): start it "
                "with pooler_config=PoolerConfig(tok_pooling_type='ALL') and prefix caching, or pass "
                "incremental=None to fall back to full-prefix scoring"
            )
        self.incremental = capable if incremental is None else incremental

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
            ids = self._prompts.put(key, chat_prompt_ids(
                self._tokenizer, self.messages(problem, steps), generation_prompt=False, special_tokens=True
            ))
        return ids

    def step_ends(self, ids: Sequence[int], n: int) -> list[int]:
        """For each of the `n` steps, the length of the prompt cut just after its step token."""
        ends = [i + 1 for i, x in enumerate(ids) if x == self._step_id]
        if len(ends) != n:
            raise TTSError(
                f"PRM {self.model} prompt has {len(ends)} '{self.step_token}' tokens for {n} steps; "
                f"does a step contain '{self.step_token}'?"
            )
        return ends

    def _plan(self, problem: Problem, steps: Sequence[str]) -> tuple[list[int], list[bytes], list, list[int]]:
        """The prompt, the memo keys, the rewards known, and the indices of the steps to score."""
        ids = self.prompt_ids(problem, steps)
        keys, known = self._known(problem, steps)
        todo = [i for i, r in enumerate(known) if r is None]
        return ids, keys, known, todo

    # -- scoring -------------------------------------------------------------------------------
    async def _score_one(self, ctx: Context, trace: Trace) -> Score:
        steps = self.pieces(trace)
        if not steps:
            return Score(0.0)
        if self.incremental:
            return await self._score_incremental(ctx, steps)
        if self._server is not None:
            rows = await self._pool_server(ctx, steps)
        else:
            rows = await self._pool_in_process(ctx, steps)
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
        rewards = [softmax_pair(float(r[1]), float(r[0])) for r in rows]
        return self._score(rewards, "full-prefix")

    async def _score_incremental(self, ctx: Context, steps: Sequence[str]) -> Score:
        """Only the steps whose reward is not remembered. The prompt cut after the newest of
        them goes first, reading the prefix cache; it returns the rows of the tokens it computed
        (always its last one), which hold the rewards of every step to score past the cached
        part. A step to score inside the cached part (rare: its prefix was computed but its
        reward not remembered) gets its own cut prompt, mostly served from the cache."""
        plan = self._plan(ctx.problem, steps)
        first = _first_prompt(plan, self.step_ends(plan[0], len(steps))) if plan[3] else None
        got = await self._rows(ctx, first) if first else None
        return await self._finish(ctx, steps, plan, got)

    async def _score_all(self, ctx: Context, traces: list[Trace]) -> list[Score]:
        """Behind a server with the plugin, the first prompts of all the call's traces (one
        expansion's candidates in a search) go as ONE request; otherwise one per trace."""
        if self._server is None or not self.incremental:
            return await super()._score_all(ctx, traces)
        pieces = [self.pieces(t) for t in traces]
        plans = [self._plan(ctx.problem, steps) if steps else None for steps in pieces]
        firsts = [_first_prompt(plan, self.step_ends(plan[0], len(steps))) if plan and plan[3] else None
                  for steps, plan in zip(pieces, plans)]
        got = iter(await self._rows_many(ctx, [f for f in firsts if f]) if any(firsts) else ())
        scores = []
        for steps, plan, first in zip(pieces, plans, firsts):
            scores.append(Score(0.0) if plan is None else await self._finish(ctx, steps, plan,
                                                                              next(got) if first else None))
        return scores

    async def _finish(self, ctx: Context, steps: Sequence[str], plan: tuple, got: tuple[Any, int] | None) -> Score:
        """The rewards of the steps to score, from the rows of the plan's first prompt (`got`:
        rows and cached tokens; None when nothing was to score) and, for a step inside the
        cached part, its own cut prompt."""
        ids, keys, known, todo = plan
        rewards = list(known)
        if todo:
            rows, hit = got
            ends = self.step_ends(ids, len(steps))
            inside = []
            for i in todo:
                if ends[i] - 1 >= hit:
                    rewards[i] = _reward(rows[ends[i] - 1 - hit])
                else:
                    inside.append(i)
            for i, (more, _) in zip(inside, await asyncio.gather(*(self._rows(ctx, ids[: ends[i]]) for i in inside))):
                rewards[i] = _reward(more[-1])
            self._remember(keys, rewards)
        return self._score(rewards, "incremental")

    async def _rows(self, ctx: Context, ids: list[int]) -> tuple[Any, int]:
        """The label logits of the tokens of `ids` the engine computed (the prompt's last ones:
        with ALL pooling and the cache read, vLLM returns one row per computed token) and the
        number of tokens served from the prefix cache; in process or through a server's
        ttscale_prm plugin."""
        if self._server is not None:
            [got] = await self._rows_many(ctx, [ids])
            return got
        from vllm import PoolingParams

        params = PoolingParams(task="token_classify", use_activation=False, skip_reading_prefix_cache=False)

        async def work() -> tuple[tuple[Any, int], Usage]:
            final = await self._final(ids, params)
            hit = final.num_cached_tokens or 0
            return (final.outputs.data, hit), Usage(prompt_tokens=len(ids), cached_tokens=hit)

        return self._checked(ids, *await ctx.verify(work, len(ids), self.num_params))

    def _checked(self, ids: list[int], rows: Any, hit: int) -> tuple[Any, int]:
        if len(rows) + hit != len(ids) or len(rows) == 0:
            raise TTSError(
                f"PRM {self.model} returned {len(rows)} rows for a {len(ids)}-token prompt with {hit} "
                "tokens cached; incremental scoring needs ALL token pooling (pass incremental=False)"
            )
        return rows, hit

    async def _rows_many(self, ctx: Context, prompts: list[list[int]]) -> list[tuple[Any, int]]:
        """`_rows` of several prompts in ONE request to a server with the ttscale_prm plugin
        (verifiers/prm_plugin.py), one verifier call."""
        from tts.errors import BackendError

        async def work() -> tuple[list[tuple[Any, int]], Usage]:
            try:
                resp = await self._server.post("/pooling", {"model": self.model, "data": {"prompts": prompts}})
            except BackendError as e:
                if "IOProcessor" in str(e) or "plugin" in str(e):
                    raise TTSError(
                        f"the server of {self.model} cannot score incrementally: start it with ttscale installed "
                        "and --runner pooling --pooler-config '{\"tok_pooling_type\": \"ALL\"}' "
                        "--enable-prefix-caching --io-processor-plugin ttscale_prm, or pass incremental=None") from e
                raise
            try:
                got = [(out["rows"], int(out["cached"])) for out in resp["data"]]
            except (KeyError, IndexError, TypeError, ValueError) as e:
                raise TTSError(f"unexpected /pooling reply from the server of {self.model}: {str(resp)[:200]}") from e
            if len(got) != len(prompts):
                raise TTSError(f"the server of {self.model} answered {len(got)} of {len(prompts)} prompts")
            return got, Usage(prompt_tokens=sum(map(len, prompts)), cached_tokens=sum(hit for _, hit in got))

        got = await ctx.verify(work, sum(map(len, prompts)), self.num_params)
        return [self._checked(ids, rows, hit) for ids, (rows, hit) in zip(prompts, got)]

    async def _pool_in_process(self, ctx: Context, steps: Sequence[str]) -> list:
        from vllm import PoolingParams

        ids = self.prompt_ids(ctx.problem, steps)
        if self._pooling == "ALL":  # every row, the cache not read; ours are at the step tokens
            params = PoolingParams(task="token_classify", use_activation=False, skip_reading_prefix_cache=True)
        else:  # raw logits (we take the softmax, as the reference does), rows at our step token's id
            params = PoolingParams(task="token_classify", step_tag_id=self._step_id, use_activation=False)

        async def work() -> tuple[Any, Usage]:
            return (await self._final(ids, params)).outputs.data, Usage(prompt_tokens=len(ids))

        data = await ctx.verify(work, len(ids), self.num_params)
        if self._pooling == "ALL":
            return [data[e - 1].tolist() for e in self.step_ends(ids, len(steps))]
        return data.tolist()

    async def _pool_server(self, ctx: Context, steps: Sequence[str]) -> list:
        messages = self.messages(ctx.problem, steps)

        async def work() -> tuple[list, Usage]:
            resp = await self._server.post("/pooling", body)
            try:
                return resp["data"][0]["data"], Usage(prompt_tokens=int(resp["usage"]["prompt_tokens"]))
            except (KeyError, IndexError, TypeError, ValueError) as e:
                raise TTSError(f"unexpected /pooling reply from the server of {self.model}: {str(resp)[:200]}") from e

        body = {
            "model": self.model,
            "messages": messages,
            "task": "token_classify",
            "use_activation": False,
            "add_generation_prompt": False,
            "add_special_tokens": True,  # as the reference's tokenizer.encode
        }
        return await ctx.verify(work, byte_bound(messages), self.num_params)  # no tokenizer here: a byte bound

    async def close(self) -> None:
        await super().close()
        server, self._server = self._server, None
        if server is not None:
            await server.close()


def _first_prompt(plan: tuple, ends: list[int]) -> list[int]:
    """A plan's prompt cut just after the newest step to score."""
    ids, _, _, todo = plan
    return ids[: ends[todo[-1]]]
