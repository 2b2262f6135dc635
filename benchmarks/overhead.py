"""Framework overhead: the same requests on one engine, sent straight to vLLM and through
`run_many` with Best-of-N. Prints tokens/s of each and their ratio (framework / direct).

    python benchmarks/overhead.py                       # embedded model, 32 prompts x 16 x 256
    python benchmarks/overhead.py --model DIR --prompts 8 --samples 8 --max-tokens 64

The prefix cache is reset before each measured pass and the two passes alternate over
`--rounds`, so neither side profits from the other's cache or from warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k_test.jsonl"


async def direct(gen, prompts, samples, max_tokens, temperature) -> int:
    """Plain vLLM: every prompt as one n-sample request to the same AsyncLLM, all at once."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    params = SamplingParams(
        n=samples, max_tokens=max_tokens, temperature=temperature, logprobs=0,
        output_kind=RequestOutputKind.FINAL_ONLY,
    )

    async def one(i, p):
        ids = gen.prompt_ids(p)
        final = None
        async for out in gen.engine.generate({"prompt_token_ids": ids}, params, f"direct-{time.time()}-{i}"):
            final = out
        return sum(len(o.token_ids) for o in final.outputs)

    return sum(await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts))))


async def framework(gen, problems, samples, max_tokens, temperature) -> int:
    import tts
    from strategies import BestOfN
    from verifiers import Confidence

    results = await tts.run_many(
        problems, BestOfN(samples), generator=gen, verifier=Confidence(),
        sampling=tts.Sampling(temperature=temperature, max_tokens=max_tokens), concurrency=len(problems),
    )
    return sum(r.usage.completion_tokens for r in results)


async def main(args) -> None:
    import tts
    from tts.models import resolve_model
    from tts.backends.vllm import VLLMGenerator

    rows = [json.loads(line) for line in open(args.data)][: args.prompts]
    problems = [tts.Problem(f"gsm8k/{i}", r["question"]) for i, r in enumerate(rows)]
    gen = VLLMGenerator(resolve_model(args.model), seed=0, enforce_eager=args.enforce_eager, max_model_len=2048)
    ctx_requests = [tts.Context(p, gen, tts.Accountant()).request(1) for p in problems]
    try:
        await framework(gen, problems[:2], 2, 8, args.temperature)  # warm-up (compile, caches)
        totals = {"direct": [0, 0.0], "framework": [0, 0.0]}
        for r in range(args.rounds):
            order = ["direct", "framework"] if r % 2 == 0 else ["framework", "direct"]
            for side in order:
                await gen.engine.reset_prefix_cache()
                t0 = time.perf_counter()
                if side == "direct":
                    tokens = await direct(gen, ctx_requests, args.samples, args.max_tokens, args.temperature)
                else:
                    tokens = await framework(gen, problems, args.samples, args.max_tokens, args.temperature)
                dt = time.perf_counter() - t0
                totals[side][0] += tokens
                totals[side][1] += dt
                print(f"round {r} {side:9s} {tokens:7d} tokens {dt:7.1f} s {tokens / dt:8.1f} tok/s", flush=True)
    finally:
        await gen.close()
    d = totals["direct"][0] / totals["direct"][1]
    f = totals["framework"][0] / totals["framework"][1]
    print(f"\n{args.prompts} prompts x {args.samples} samples x <= {args.max_tokens} tokens, model {args.model or 'embedded default'}")
    print(f"direct vLLM : {d:8.1f} tok/s")
    print(f"run_many    : {f:8.1f} tok/s")
    print(f"ratio (framework / direct): {f / d:.3f}   (target >= 0.97)")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model folder or embedded name (default: the embedded model)")
    p.add_argument("--data", default=str(SHARED), help="GSM8K JSONL (question field)")
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--enforce-eager", action="store_true")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    asyncio.run(main(p.parse_args()))
