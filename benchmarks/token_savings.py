"""Token savings of the early-stopping strategies against self-consistency@N on the same samples.

    python benchmarks/token_savings.py                 # the GSM8K bank `make bank` records
    python benchmarks/token_savings.py --live          # + strategies that probe (a live engine)
    python benchmarks/token_savings.py --bank DIR --n 32 --seeds 3 --limit 100
    python benchmarks/token_savings.py --live --only probe --seeds 1   # just the probing ones

Every strategy is replayed from one recorded bank (real samples of the embedded model, with
per-token top-k logprobs): the traces cost what they consumed of the recorded tokens, a stopped
trace only up to its stop, so the savings are measured on exactly the samples self-consistency
votes over. Strategies that continue a partial trace (DeepPrune's answer-probing judge,
certainty probing) need the model itself for their probes: with `--live` the bank's model is
started in a vLLM engine and serves only those probes (`ReplayGenerator(continuation=...)`),
charged for real (prompt and completion tokens) on top of the replayed traces.

Printed per strategy: accuracy, its difference from SC@N in points, mean generated tokens
(completion) per problem and the saving against SC@N, mean total tokens (prompt + completion +
verifier), and the issue's target (savings at <= 1 point of accuracy loss). Averaged over
`--seeds` replay orders (which samples a strategy sees first).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_BANK = Path("~/.cache/ttscale/banks/gsm8k_qwen05b_100x32").expanduser()
TARGETS = {"deepprune": 0.80, "deepconf": 0.60, "esc": 0.40, "adaptive_consistency": 0.40, "first_finish": 0.45}


def configs(n: int, k: int, live: bool) -> list[tuple[str, Any]]:
    """(label, strategy) pairs; `k` is the bank's top-k logprobs."""
    from strategies import ESC, AdaptiveConsistency, CertaintyProbe, DeepConf, FirstFinish

    out: list[tuple[str, Any]] = [
        ("first_finish", FirstFinish(n)),
        ("first_finish k=3", FirstFinish(n, k=3)),
        ("esc w=5 (paper)", ESC(n, window=5)),
        ("esc w=8", ESC(n, window=8)),
        ("adaptive_consistency beta", AdaptiveConsistency(n)),
        ("adaptive_consistency dirichlet", AdaptiveConsistency(n, criterion="dirichlet")),
    ]
    if k:  # DeepConf reads the top-k logprobs
        out += [
            ("deepconf offline filtered", DeepConf(n, mode="offline", top_k=k, window=64, keep=0.9)),
            # GSM8K traces are ~200 tokens: the paper's 2048-token window would be the whole trace.
            ("deepconf online low (keep .1)", DeepConf(n, warmup=8, keep=0.1, window=64, top_k=k)),
            ("deepconf online high (keep .9)", DeepConf(n, warmup=8, keep=0.9, window=64, top_k=k)),
            ("deepconf online high +consensus", DeepConf(n, warmup=4, keep=0.9, window=64, top_k=k,
                                                         consensus=0.95, in_flight=4)),
        ]
    from strategies import DeepPrune

    # Prefixes of 64 tokens: a third of a typical trace here (the paper's 500 of much longer ones).
    # The paper's model judge needs a judge model (not in the bank): its embedding baseline here.
    out.append(("deepprune embedding (tau .95)", DeepPrune(n, judge="embedding", tau=0.95, prefix_tokens=64, wait=True)))
    out.append(("deepprune embedding (tau .9)", DeepPrune(n, judge="embedding", tau=0.9, prefix_tokens=64, wait=True)))
    if live:  # their probes run on the live model
        out.append(("deepprune probe (our variant)", DeepPrune(n, judge="probe", prefix_tokens=64, wait=True)))
        out.append(("certainty_probe (k=3, 64)", CertaintyProbe(n=4, chunk=64, k=3)))
    return out


async def run(args: argparse.Namespace) -> None:
    import tasks
    import tts
    from strategies import SelfConsistency
    from tts.bank import Bank
    from tts.backends.replay import ReplayGenerator

    bank = Bank(args.bank)
    problems = bank.problems()[: args.limit]
    have = min(bank.num_samples(p.id) for p in problems)
    if have < args.n:
        raise SystemExit(f"the bank has {have} samples per problem; use --n {have} or less")
    if not bank.logprobs:
        print("note: the bank has no top-k logprobs (record it with --logprobs 5): DeepConf is skipped")
    task = tasks.get_task(args.task or bank.task or "gsm8k")
    sampling = bank.sampling_defaults()
    live = None
    if args.live:
        from tts.models import resolve_model
        from tts.backends.vllm import VLLMGenerator

        live = VLLMGenerator(resolve_model(args.live_model), name=bank.model, seed=0)
    print(f"bank {args.bank}: {len(problems)} problems x {have} samples, model {bank.model}, "
          f"top-{bank.logprobs} logprobs; N = {args.n}, seeds = {args.seeds}")

    async def evaluate(strategy: Any, seeds: int) -> dict[str, float]:
        acc, gen_tokens, total, wall = 0.0, 0.0, 0.0, 0.0
        for seed in range(seeds):
            gen = ReplayGenerator(bank, seed=seed, continuation=live)
            t = time.perf_counter()
            rs = await tts.run_many(problems, strategy, generator=gen, sampling=sampling, task=task, seed=seed,
                                    concurrency=args.concurrency)
            wall += time.perf_counter() - t
            acc += sum(bool(r.correct) for r in rs) / len(rs)
            gen_tokens += sum(r.usage.completion_tokens for r in rs) / len(rs)
            total += sum(r.usage.total_tokens for r in rs) / len(rs)
        return {"acc": acc / seeds, "gen": gen_tokens / seeds, "total": total / seeds, "wall": wall / seeds}

    # All N samples, but over the same seeds: vote ties go to the answer seen first, so order counts.
    base = await evaluate(SelfConsistency(args.n), args.seeds)
    print(f"\n{'strategy':34} {'acc':>6} {'Δ pts':>6} {'gen tok':>8} {'saved':>6} {'total tok':>9} "
          f"{'target':>7} {'s/run':>6}")
    print(f"{'self_consistency@' + str(args.n):34} {base['acc']:6.3f} {0:6.1f} {base['gen']:8.0f} {0:6.0%} "
          f"{base['total']:9.0f} {'':>7} {base['wall']:6.1f}")
    for label, strategy in configs(args.n, bank.logprobs, live is not None):
        if args.only and not any(word in label for word in args.only.split(",")):
            continue
        try:
            m = await evaluate(strategy, args.seeds)
        except tts.TTSError as e:
            print(f"{label:34} failed: {e}")
            continue
        saved = 1 - m["gen"] / base["gen"]
        d = 100 * (m["acc"] - base["acc"])
        target = TARGETS.get(strategy.name)
        verdict = "" if target is None else f"{target:.0%}{'✓' if saved >= target and d >= -1 else '✗'}"
        print(f"{label:34} {m['acc']:6.3f} {d:6.1f} {m['gen']:8.0f} {saved:6.0%} {m['total']:9.0f} "
              f"{verdict:>7} {m['wall']:6.1f}")
    if live is not None:
        await live.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bank", type=Path, default=DEFAULT_BANK)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--limit", type=int, default=None, help="first P problems of the bank")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--live", action="store_true", help="start the bank's model for probes (DeepPrune probe "
                    "judge, certainty probing)")
    ap.add_argument("--task", help="grade as this task (default: the bank's; the math100 import: math500)")
    ap.add_argument("--only", help="comma-separated parts of strategy labels to run (e.g. probe,certainty)")
    ap.add_argument("--live-model", default=None, help="model folder or embedded name (default: embedded default)")
    args = ap.parse_args()
    args.bank = args.bank.expanduser()
    if not (args.bank / "index.jsonl").exists():
        raise SystemExit(f"no bank at {args.bank}: run `make bank` first (hours of CPU; resumable)")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
