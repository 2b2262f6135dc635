"""`tts serve`: every strategy behind an OpenAI-compatible endpoint, with the whole bill in usage.

    tts serve --model tiny --strategy self_consistency -n 8 --port 8000

Then any OpenAI client asks `model="MODEL"` (the default strategy), `model="beam_search/MODEL"`,
or `extra_body={"tts": {"strategy": ..., "n": ..., "params": {...}, "budget": {...}}}`. See
docs/serve.md. Needs the `serve` extra (FastAPI, uvicorn, prometheus_client), which vLLM brings.
This module is light (the CLI imports it to build its parser); the app lives in `app`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from tts.errors import TTSError

API_KEY_ENV = "TTS_API_KEY"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `tts serve` (the model options are those of `tts bench`)."""
    p.add_argument("--model", help="local model folder, hub id, or embedded name (default: the embedded model)")
    p.add_argument("--backend", default="vllm", help="vllm (in process) | openai (a server) | replay (a bank)")
    p.add_argument("--base-url", action="append", default=[], help="--backend openai: server URL (repeat for replicas)")
    p.add_argument("--bank", help="--backend replay: the trace bank folder to serve samples from")
    p.add_argument("--served-model-name", help="the model name clients use (default: the model's name)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--strategy", default="self_consistency", help="default strategy (requests may pick another)")
    p.add_argument("-n", type=int, default=8, help="default size of the strategy (a request's `n` overrides it)")
    p.add_argument("--param", action="append", default=[], metavar="K=V", help="default strategy parameter")
    p.add_argument("--verifier", help="default strategy's verifier (default: as `tts bench`)")
    p.add_argument("--verifier-model", help="the reward model folder or hub id a PRM verifier loads")
    p.add_argument("--budget", action="append", default=[], metavar="CAP=V",
                   help="per-request cap for every request, e.g. total_tokens=20000; requests may ask for less")
    p.add_argument("--seed", type=int, default=0, help="engine seed (and the default request seed)")
    p.add_argument("--temperature", type=float, help="default sampling temperature: 0.7 (replay: the bank's)")
    p.add_argument("--top-p", type=float, help="default top-p: 1.0 (replay: the bank's)")
    p.add_argument("--max-tokens", type=int, help="default max tokens per sample: 1024 (replay: the bank's)")
    p.add_argument("--system-prompt", help="added to conversations without a system message "
                   "(default: reason step by step, answer in \\boxed{}; replay: the bank's; '' adds none)")
    p.add_argument("--max-model-len", type=int, default=4096, help="longest prompt + completion (vllm backend)")
    p.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=None,
                   help="skip graph capture (default: on for the CPU, off on a GPU)")
    p.add_argument("--api-key", help=f"require `Authorization: Bearer KEY` (default: ${API_KEY_ENV}, else none)")
    p.add_argument("--max-concurrent", type=int, default=64, help="requests solved at once")
    p.add_argument("--max-queue", type=int, default=256, help="requests waiting for a slot; more get 429")
    p.add_argument("--keepalive", type=float, default=5.0, help="seconds between keep-alive comments of a stream")


def options(args: argparse.Namespace, sampling: Any, max_model_len: int | None, bank: Any = None) -> Any:
    """The validated `ServeOptions` of the command line (TTSError on a bad value)."""
    from pydantic import ValidationError

    from tts.cli import _kv
    from tts.serve.schema import ServeOptions
    from tts.types import DEFAULT_SYSTEM_PROMPT

    key = args.api_key or os.environ.get(API_KEY_ENV) or None
    system = args.system_prompt
    if system is None:  # a replayed bank answers only the prompt it was recorded with
        system = (bank.system_prompt or "") if bank is not None else DEFAULT_SYSTEM_PROMPT
    try:
        return ServeOptions(
            served_model_name=args.served_model_name or "-", strategy=args.strategy, n=args.n, params=_kv(args.param, "--param"),
            verifier=args.verifier, verifier_model=args.verifier_model, budget_cap=_kv(args.budget, "--budget"),
            temperature=sampling.temperature, top_p=sampling.top_p, max_tokens=sampling.max_tokens, seed=args.seed,
            system_prompt=system,
            max_model_len=max_model_len, api_key=key, max_concurrent=args.max_concurrent,
            max_queue=args.max_queue, keepalive_s=args.keepalive,
        )
    except ValidationError as e:
        err = e.errors()[0]
        raise TTSError(f"--{'-'.join(str(p) for p in err['loc']).replace('_', '-')}: {err['msg']}") from None


def served_name(model: str) -> str:
    """A model folder is served under its folder name; anything else under its own name."""
    path = Path(model).expanduser()
    return path.name if model.startswith(("/", ".", "~")) or path.exists() else model


def main(args: argparse.Namespace) -> int:
    """Validate everything cheap, start the backend, serve until Ctrl-C."""
    try:
        import uvicorn

        from tts.serve.app import Service  # noqa: F401 - fails now when FastAPI is missing
    except ImportError as e:
        raise TTSError(f"`tts serve` needs FastAPI, uvicorn and prometheus_client ({e}); "
                       "install the 'serve' extra: pip install 'ttscale[serve]'") from None
    from tts.serve._build import BACKENDS, build_budget, build_strategy, generator_config, open_bank, resolve_sampling

    if args.backend not in BACKENDS:
        raise TTSError(f"unknown backend '{args.backend}'; valid: {', '.join(BACKENDS)}")
    cfg = generator_config(
        model=args.model, backend=args.backend, base_urls=args.base_url, bank=args.bank, seed=args.seed,
        temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens,
        max_model_len=args.max_model_len, enforce_eager=args.enforce_eager,
    )
    bank = open_bank(cfg) if args.backend == "replay" else None
    opts = options(args, resolve_sampling(cfg, bank), args.max_model_len if args.backend == "vllm" else None, bank)
    build_strategy(opts.strategy, opts.n, opts.params)  # bad defaults fail before the engine starts
    build_budget(opts.budget_cap)
    if args.verifier:
        from tts.registry import lookup

        lookup("verifier", args.verifier)
    if opts.api_key is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {args.host} with no API key (set --api-key or ${API_KEY_ENV})", file=sys.stderr)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        asyncio.run(_serve(args, cfg, opts, uvicorn))
    except KeyboardInterrupt:
        pass
    return 0


async def _serve(args: argparse.Namespace, cfg: Any, opts: Any, uvicorn: Any) -> None:
    from tts.serve._build import build_generator
    from tts.serve.app import create_app

    generator = build_generator(cfg)  # in the serving loop: the engine's tasks live on it
    try:
        if not args.served_model_name:
            opts = opts.model_copy(update={"served_model_name": served_name(generator.model)})
        app = create_app(generator, opts)
        server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="info"))
        print(f"serving {opts.served_model_name} (default {opts.strategy} n={opts.n}) on "
              f"http://{args.host}:{args.port}/v1" + (" (API key required)" if opts.api_key else ""), file=sys.stderr)
        await server.serve()
    finally:
        await generator.close()
