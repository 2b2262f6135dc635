"""A vLLM IO-processor plugin with which a vLLM *server* of a Qwen2.5-Math-PRM-style reward model
scores incrementally, as the in-process `QwenPRM` does (`verifiers/qwen_prm.py`).

vLLM's `/pooling` route never reads the prefix cache for token classification
(`PoolingParams._merge_default_parameters` sets `skip_reading_prefix_cache=True` and the route
takes no such field), so a served PRM computes every prompt in full: a path scored again as it
grows costs its whole prefix each time. Served with this plugin, a request reads the cache:

    python -m vllm.entrypoints.openai.api_server --model PRM --runner pooling \\
        --pooler-config '{"tok_pooling_type": "ALL"}' --enable-prefix-caching \\
        --io-processor-plugin ttscale_prm

(the plugin is registered under the `vllm.io_processor_plugins` entry point group when ttscale is
installed in the server's environment). `POST /pooling` with `{"data": {"prompts": [[ids...],
...]}}` (token ids, the client tokenizes) answers `{"data": [{"rows": [[l0, l1], ...], "cached":
c, "prompt_tokens": p}, ...]}`: per prompt, the label logits of the p - c prompt tokens the engine
computed (the last ones; the first c were served from the prefix cache). `QwenPRM(base_url=...,
incremental=True)` sends that request, cut after the newest step's step token, as in process.
`"read_cache": false` computes every token (each prompt salted apart from the cache), as a PRM
scored full-prefix does (what benchmarks/peers.py gives its_hub's side).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from vllm.outputs import PoolingRequestOutput
from vllm.plugins.io_processors.interface import IOProcessor
from vllm.pooling_params import PoolingParams

NAME = "ttscale_prm"  # the --io-processor-plugin name (pyproject.toml's entry point)


def register() -> str:
    """The entry point vLLM calls: the processor class's qualified name."""
    return "verifiers.prm_plugin.CachedRows"


class CachedRows(IOProcessor[dict[str, Any], list[dict[str, Any]]]):
    """Token-id prompts in, the label rows of their computed tokens out, the cache read."""

    def parse_data(self, data: object) -> dict[str, Any]:
        prompts = data.get("prompts") if isinstance(data, dict) else None
        if not isinstance(prompts, list) or not prompts or not all(
                isinstance(p, list) and p and all(isinstance(x, int) for x in p) for p in prompts):
            raise ValueError('ttscale_prm expects {"prompts": [[token ids], ...]} (non-empty lists of ints)')
        read = data.get("read_cache", True)
        if not isinstance(read, bool):
            raise ValueError('ttscale_prm: "read_cache" must be true or false')
        return {"prompts": prompts, "read_cache": read}

    def merge_pooling_params(self, params: PoolingParams | None = None) -> PoolingParams:
        # raw label logits (the client takes the softmax), the prefix cache read
        return PoolingParams(task="token_classify", use_activation=False, skip_reading_prefix_cache=False)

    def pre_process(self, prompt: dict[str, Any], request_id: str | None = None, **kwargs: Any) -> Sequence[Any]:
        if prompt["read_cache"]:
            return [{"prompt_token_ids": ids} for ids in prompt["prompts"]]
        # a salt of its own keeps a prompt's blocks apart from every cached one: all computed
        return [{"prompt_token_ids": ids, "cache_salt": uuid.uuid4().hex} for ids in prompt["prompts"]]

    def post_process(self, model_output: Sequence[PoolingRequestOutput], request_id: str | None = None,
                     **kwargs: Any) -> list[dict[str, Any]]:
        return [{"rows": out.outputs.data.tolist(), "cached": out.num_cached_tokens or 0,
                 "prompt_tokens": len(out.prompt_token_ids or ())} for out in model_output]
