"""`QwenPRM`: a Qwen2.5-Math-PRM-style process reward model, in process or behind a vLLM server
(what the PRMs share: `verifiers.prm`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tts.backends.common import LRU, byte_bound, chat_prompt_ids
from tts.errors import TTSError
from tts.interfaces import Generator
from tts.registry import register
from tts.types import DEFAULT_SYSTEM_PROMPT, Problem, Score, Trace

from verifiers.prm import AGGREGATES, _check_aggregate, _PRM, _softmax_pair

QWEN_PRM_DEFAULT = "Qwen/Qwen2.5-Math-PRM-7B"


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
            return
        self._step_id = self._attach(engine, "pooling", num_params, engine_kwargs, self._check_step_token)

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

    async def estimate_tokens(self, problem: Problem, traces: list[Trace]) -> int:
        total = 0
        for t in traces:
            steps = self.pieces(t)
            if not steps:
                continue
            if self._server is None:
                total += len(self.prompt_ids(problem, steps))
            else:
                total += byte_bound(self.messages(problem, steps))  # no tokenizer here
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
        final = await self._final(ids, params)
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
