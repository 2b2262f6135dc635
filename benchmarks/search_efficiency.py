"""Step-level search efficiency: BeamSearch(n=16, beam_width=4) against BestOfN(n=16) on the
same engine, prompts and PRM. Prints wall seconds per generated token of each, their ratio
(beam / best-of-n; search-and-learn's beam search runs ~20x slower than its Best-of-N, their
issue #26; target <= 1.2), the share of beam search's prompt tokens served from the prefix
cache (target >= 80%), and the PRM tokens beam search computed (not served from the PRM's
prefix cache) per generated token (target <= 2), with the scoring paths that ran.

    python benchmarks/search_efficiency.py                  # embedded model, tiny random PRM
    python benchmarks/search_efficiency.py --model DIR --prm DIR --prompts 8
    python benchmarks/search_efficiency.py --scoring full-prefix   # the PRM without incremental scoring

The PRM defaults to a tiny random-weight Qwen2ForProcessRewardModel built offline with the
generator's tokenizer (as Qwen2.5-Math-PRM shares Qwen's; `--prm-tokenizer tiny`: the 600-token
test tokenizer, which cuts the same text into ~3x more tokens): its scores are meaningless but
its cost is real, so the figures measure the search machinery (batching, continuation, prefix
caching, incremental scoring), not a reward model's speed.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
SHARED = ROOT.parent / "shared" / "data" / "gsm8k_test.jsonl"


async def run(strategy, problems, gen, prm, sampling):
    import tts

    t0 = time.perf_counter()
    results = await tts.run_many(problems, strategy, generator=gen, verifier=prm, sampling=sampling,
                                 concurrency=len(problems))
    wall = time.perf_counter() - t0
    usage = sum((r.usage for r in results), tts.Usage())
    paths: dict[str, int] = {}
    for r in results:
        for k, v in r.telemetry.get("verifier_paths", {}).items():
            paths[k] = paths.get(k, 0) + v
    return wall, usage, paths


async def main(args) -> None:
    import tts
    from strategies import BeamSearch, BestOfN
    from tts.models import resolve_model
    from tts.backends.vllm import VLLMGenerator
    from verifiers.prm import QwenPRM

    rows = [json.loads(line) for line in open(args.data)][: args.prompts]
    problems = [tts.Problem(f"gsm8k/{i}", r["question"]) for i, r in enumerate(rows)]
    model = resolve_model(args.model)
    prm_dir = args.prm
    if prm_dir is None:
        from tiny_models import build_qwen2_prm

        if args.prm_tokenizer == "tiny":
            prm_dir = str(build_qwen2_prm(Path(tempfile.gettempdir()) / "ttscale-bench-tiny-prm"))
        else:
            tag = hashlib.sha1(str(model).encode()).hexdigest()[:8]
            prm_dir = str(build_qwen2_prm(Path(tempfile.gettempdir()) / f"ttscale-bench-tiny-prm-{tag}",
                                          tokenizer_from=model))
    extra = {"block_size": args.block_size} if args.block_size else {}
    gen = VLLMGenerator(model, seed=0, max_model_len=4096, **extra)
    prm = QwenPRM(prm_dir, max_model_len=4096, incremental={"auto": None, "full-prefix": False}[args.scoring],
                  **extra)
    sampling = tts.Sampling(temperature=0.8, max_tokens=args.max_tokens)
    try:
        await run(BestOfN(2), problems[:2], gen, prm, tts.Sampling(max_tokens=8))  # warm-up
        sides = {
            "best_of_n": BestOfN(args.n),
            "beam_search": BeamSearch(args.n, args.beam_width, max_steps=args.max_steps),
        }
        figures = {}
        for name, strategy in sides.items():
            await gen.engine.reset_prefix_cache()
            await prm._gen.engine.reset_prefix_cache()
            wall, usage, paths = await run(strategy, problems, gen, prm, sampling)
            figures[name] = (wall, usage)
            print(f"{name:12s} {usage.completion_tokens:7d} generated tokens {wall:7.1f} s "
                  f"{wall / max(usage.completion_tokens, 1) * 1e3:7.2f} ms/token  "
                  f"prompt {usage.prompt_tokens} (cached {usage.cached_tokens})  "
                  f"verifier tokens computed {usage.verifier_tokens} (+ cached {usage.verifier_cached_tokens})  "
                  f"scoring paths {paths}", flush=True)
    finally:
        await prm.close()
        await gen.close()
    per_token = {k: w / max(u.completion_tokens, 1) for k, (w, u) in figures.items()}
    beam = figures["beam_search"][1]
    print(f"\n{args.prompts} GSM8K prompts, n={args.n}, beam_width={args.beam_width}, max_steps={args.max_steps}, "
          f"max_tokens={args.max_tokens}, model {args.model or 'embedded default'}, PRM "
          f"{args.prm or 'tiny random (' + args.prm_tokenizer + ' tokenizer)'}, scoring {prm.scoring}, "
          f"block size {args.block_size or 'default'}")
    print(f"seconds per generated token: best_of_n {per_token['best_of_n']:.5f}  "
          f"beam_search {per_token['beam_search']:.5f}")
    print(f"ratio (beam / best-of-n): {per_token['beam_search'] / per_token['best_of_n']:.2f}   (target <= 1.2)")
    print(f"beam search prompt tokens from the prefix cache: "
          f"{beam.cached_tokens / max(beam.prompt_tokens, 1):.1%}   (target >= 80%)")
    print(f"beam search PRM tokens computed / generated tokens: "
          f"{beam.verifier_tokens / max(beam.completion_tokens, 1):.2f}   (target <= 2; "
          f"{beam.verifier_cached_tokens / max(beam.verifier_tokens + beam.verifier_cached_tokens, 1):.1%} "
          f"of the PRM's prompt tokens from its prefix cache)")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="generator: model folder or embedded name (default: embedded)")
    p.add_argument("--prm", help="Qwen2.5-Math-PRM-style reward model folder (default: tiny random)")
    p.add_argument("--prm-tokenizer", choices=("generator", "tiny"), default="generator",
                   help="the tiny random PRM's tokenizer: the generator's (default) or the 600-token test one")
    p.add_argument("--scoring", choices=("auto", "full-prefix"), default="auto",
                   help="QwenPRM's scoring: automatic (incremental in process) or forced full-prefix")
    p.add_argument("--data", default=str(SHARED))
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("-n", type=int, default=16)
    p.add_argument("--beam-width", type=int, default=4)
    p.add_argument("--max-steps", type=int, default=10)
    p.add_argument("--max-tokens", type=int, default=256, help="per step (beam) / per sample (best-of-n)")
    p.add_argument("--block-size", type=int, help="KV cache block size (VLLMGenerator's CPU default 32; only "
                   "whole blocks are served from the prefix cache, so smaller blocks cache more of each prefix)")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    asyncio.run(main(p.parse_args()))
