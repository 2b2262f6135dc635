"""Serving overhead: the same problems, same engine, same strategy, solved by `run_many` in
process and through `tts serve` by 32 concurrent `openai` clients. Prints the throughput of each
(completion tokens per second), their ratio (served / in process; target >= 0.95) and the p50 /
p95 latency per problem.

    python benchmarks/serve_overhead.py                     # embedded model (`tts models list`)
    python benchmarks/serve_overhead.py --model DIR --problems 32 -n 4 --max-tokens 64

The server is `tts serve`'s app under uvicorn on 127.0.0.1, in this process, on the engine
`run_many` uses (one engine, so both sides see the same hardware and batching). The prefix cache
is reset before each measured pass and the passes alternate over `--rounds`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# ../shared/data beside the checkout (a worktree's may be one level further up)
SHARED = next((p / "shared" / "data" / "gsm8k_test.jsonl" for p in Path(__file__).resolve().parents[1:4]
               if (p / "shared" / "data" / "gsm8k_test.jsonl").exists()), "gsm8k_test.jsonl")


async def in_process(gen, problems, strategy, sampling, clients):
    import tts

    t0 = time.perf_counter()
    results = await tts.run_many(problems, strategy, generator=gen, sampling=sampling, concurrency=clients)
    wall = time.perf_counter() - t0
    return sum(r.usage.completion_tokens for r in results), wall, [r.usage.wall_seconds for r in results]


async def served(url, problems, args, clients):
    """`clients` openai clients, each sending one problem at a time until none is left."""
    import openai

    queue: asyncio.Queue = asyncio.Queue()
    for p in problems:
        queue.put_nowait(p)
    tokens, latencies = [0], []

    async def worker() -> None:
        c = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=3600)
        while not queue.empty():
            p = queue.get_nowait()
            t = time.perf_counter()
            r = await c.chat.completions.create(model="bench", messages=[{"role": "user", "content": p.question}],
                                                max_tokens=args.max_tokens, temperature=args.temperature,
                                                extra_body={"tts": {"n": args.n}})  # the strategy's size
            latencies.append(time.perf_counter() - t)
            tokens[0] += r.usage.completion_tokens
        await c.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return tokens[0], time.perf_counter() - t0, latencies


async def main(args) -> None:
    import uvicorn

    import tts
    from tts.backends.vllm import VLLMGenerator
    from tts.models import resolve_model
    from tts.experiment.build import build_strategy
    from tts.serve.app import create_app
    from tts.serve.schema import ServeOptions

    rows = [json.loads(line) for line in open(args.data)][: args.problems]
    problems = [tts.Problem(f"gsm8k/{i}", r["question"]) for i, r in enumerate(rows)]
    sampling = tts.Sampling(temperature=args.temperature, max_tokens=args.max_tokens)
    gen = VLLMGenerator(resolve_model(args.model), seed=0, max_model_len=2048)
    opts = ServeOptions(served_model_name="bench", strategy=args.strategy, n=args.n, temperature=args.temperature,
                        max_tokens=args.max_tokens, max_concurrent=args.clients)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(gen, opts), host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    totals = {"run_many": [0, 0.0, []], "served": [0, 0.0, []]}
    try:
        await served(url, problems[:2], argparse.Namespace(**{**vars(args), "max_tokens": 8}), 2)  # warm-up
        for r in range(args.rounds):
            order = ["run_many", "served"] if r % 2 == 0 else ["served", "run_many"]
            for side in order:
                await gen.engine.reset_prefix_cache()
                if side == "run_many":
                    strategy = build_strategy(args.strategy, args.n, {})
                    tokens, wall, lat = await in_process(gen, problems, strategy, sampling, args.clients)
                else:
                    tokens, wall, lat = await served(url, problems, args, args.clients)
                t = totals[side]
                t[0] += tokens
                t[1] += wall
                t[2] += lat
                print(f"round {r} {side:8s} {tokens:7d} tokens {wall:7.1f} s {tokens / wall:8.1f} tok/s", flush=True)
    finally:
        server.should_exit = True
        await serving
        await gen.close()
    print(f"\n{args.problems} problems, {args.strategy} n={args.n}, <= {args.max_tokens} tokens per sample, "
          f"{args.clients} clients, model {args.model or 'embedded default'}")
    for side, (tokens, wall, lat) in totals.items():
        q = statistics.quantiles(lat, n=20)
        print(f"{side:8s}: {tokens / wall:8.1f} tok/s   latency p50 {statistics.median(lat):6.2f} s  p95 {q[18]:6.2f} s")
    ratio = (totals["served"][0] / totals["served"][1]) / (totals["run_many"][0] / totals["run_many"][1])
    print(f"throughput ratio (served / run_many): {ratio:.3f}   (target >= 0.95)")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model folder or embedded name (default: the embedded model)")
    p.add_argument("--data", default=str(SHARED), help="GSM8K JSONL (question field)")
    p.add_argument("--problems", type=int, default=64)
    p.add_argument("--strategy", default="self_consistency")
    p.add_argument("-n", type=int, default=4, help="the strategy's size")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--clients", type=int, default=32, help="concurrent openai clients (and run_many's concurrency)")
    p.add_argument("--rounds", type=int, default=2)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    asyncio.run(main(p.parse_args()))
