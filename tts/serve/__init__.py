"""`tts serve`: every strategy behind an OpenAI-compatible endpoint, with the whole bill in usage.

    tts serve --model tiny --strategy self_consistency -n 8 --port 8000

Then any OpenAI client asks `model="MODEL"` (the default strategy), `model="beam_search/MODEL"`,
or `extra_body={"tts": {"strategy": ..., "n": ..., "params": {...}, "budget": {...}}}`. See
docs/serve.md. Needs the `serve` extra (FastAPI, uvicorn, prometheus_client), which vLLM brings.
This module is light (the CLI imports it to build its parser); the app lives in `app`. Its
options are `tts bench`'s blocks (`tts.options`: model, sampling, strategy, budget) plus the
server's own (`ServeOptions`), so every model, sampling, thinking, budget and request-policy
flag of `tts bench` is a flag here too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tts.errors import TTSError
from tts.options import ModelOptions, add_flags, given, one_line, option_name
from tts.serve.schema import API_KEY_ENV, ServeOptions

BLOCKS = (ModelOptions, ServeOptions)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `tts serve`: `tts bench`'s model, sampling, strategy and budget options
    (derived from the same declarations) and the server's."""
    add_flags(p, *BLOCKS)


def options(args: argparse.Namespace) -> tuple[ModelOptions, ServeOptions]:
    """The validated options of the command line (TTSError on a bad value)."""
    settings = given(args, ServeOptions)
    if "api_key" not in settings and os.environ.get(API_KEY_ENV):
        settings["api_key"] = os.environ[API_KEY_ENV]
    try:
        return ModelOptions(**given(args, ModelOptions)), ServeOptions(**settings)
    except ValidationError as e:
        raise TTSError(one_line(e, option_name)) from None


def served_name(model: str) -> str:
    """A model folder is served under its folder name; anything else under its own name (a
    description after it, as an imported bank's model has, left out: a client's output folder
    or tokenizer is named by it)."""
    path = Path(model).expanduser()
    return path.name if model.startswith(("/", ".", "~")) or path.exists() else (model.split() or [model])[0]


def main(args: argparse.Namespace) -> int:
    """Validate everything cheap, start the backend, serve until Ctrl-C."""
    try:
        import uvicorn

        from tts.serve.app import Service  # noqa: F401 - fails now when FastAPI is missing
    except ImportError as e:
        raise TTSError(f"`tts serve` needs FastAPI, uvicorn and prometheus_client ({e}); "
                       "install the 'serve' extra: pip install 'ttscale[serve]'") from None
    from tts.experiment.build import backend, build_strategy
    from tts.registry import lookup

    model, opts = options(args)
    cls = backend(model)  # an unknown backend fails now, naming the registered ones
    bank = cls.open_bank(model) if model.backend == "replay" else None
    if bank is not None:  # a replayed bank answers only what it was recorded with: its sampling and prompt
        sampling = opts.resolve(bank.sampling)
        system = (bank.system_prompt or "") if opts.system_prompt is None else opts.system_prompt
        opts = ServeOptions(**{**opts.model_dump(), "temperature": sampling.temperature, "top_p": sampling.top_p,
                               "max_tokens": sampling.max_tokens, "system_prompt": system, "api_key": opts.api_key})
    build_strategy(opts.strategy, opts.n, opts.params)  # bad defaults fail before the engine starts
    if opts.verifier:
        lookup("verifier", opts.verifier)
    if opts.api_key is None and opts.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {opts.host} with no API key (set --api-key or ${API_KEY_ENV})", file=sys.stderr)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        asyncio.run(_serve(model, opts, uvicorn))
    except KeyboardInterrupt:
        pass
    return 0


async def _serve(model: ModelOptions, opts: ServeOptions, uvicorn: Any) -> None:
    from tts.experiment.build import build_generator
    from tts.serve.app import create_app

    generator = build_generator(model, opts, opts.seed)  # in the serving loop: the engine's tasks live on it
    try:
        if not opts.served_model_name:
            opts.served_model_name = served_name(generator.model)  # validated on assignment
        app = create_app(generator, opts)
        server = uvicorn.Server(uvicorn.Config(app, host=opts.host, port=opts.port, log_level="info"))
        print(f"serving {opts.served_model_name} (default {opts.strategy} n={opts.n}) on "
              f"http://{opts.host}:{opts.port}/v1" + (" (API key required)" if opts.api_key else ""), file=sys.stderr)
        await server.serve()
    finally:
        await generator.close()
