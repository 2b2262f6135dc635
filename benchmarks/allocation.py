"""Benchmark-wide budget allocation on a replayed bank (issue 16): uniform vs oracle-difficulty vs
predicted-difficulty vs sequential, at equal total tokens, over a range of totals.

    python benchmarks/allocation.py                     # the imported math100 bank (Qwen2.5-Math)
    python benchmarks/allocation.py --bank DIR --task gsm8k

Half of the problems (seeded) are the training split the difficulty policies learn on; the
other half are solved under the total. Replay costs nothing but CPU; accuracy is on the test
half, `spent` is what the allocation actually charged (never above the total).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "math100_qwen25math_8samples_rm.jsonl"


async def run(args: argparse.Namespace) -> None:
    import tasks
    from tts.backends.replay import ReplayGenerator
    from tts.bank import Bank, import_math100
    from tts.types import Sampling
    from tts.experiment.allocate import Candidate, allocate, bank_pass1
    from verifiers import RecordedScore

    bank = Bank(args.bank) if args.bank else import_math100(DATA, Path(tempfile.mkdtemp()) / "m100", tokenizer=None)
    problems = bank.problems()
    random.Random(args.seed).shuffle(problems)
    train, test = problems[: len(problems) // 2], problems[len(problems) // 2:]
    task = tasks.get_task(args.task)
    k = min(bank.num_samples(p.id) for p in problems)
    ns = [n for n in (1, 2, 4, 8, 16, 32) if n <= k]
    cands = [Candidate("self_consistency", n) for n in ns]
    if bank.manifest.get("outcome"):  # a bank with outcome scores (math100): Best-of-N by them too
        cands += [Candidate("best_of_n", n, verifier="recorded") for n in ns[1:]]
    base = bank.sampling_defaults()
    # A hard cap reserves each call's worst case (max_tokens per sample) before sending it.
    sampling = Sampling(temperature=base.temperature, top_p=base.top_p, max_tokens=args.max_tokens)
    gen = ReplayGenerator(bank, seed=args.seed, sampling={"temperature": base.temperature, "top_p": base.top_p})
    pass1 = bank_pass1(bank)
    print(f"bank {bank.path}: {len(train)} train / {len(test)} test problems x {k} samples; max_tokens "
          f"{args.max_tokens}; candidates: {', '.join(c.label for c in cands)}")
    print(f"{'total/problem':>13} {'policy':>10} {'acc':>6} {'spent/problem':>13}  choice")
    for per in args.totals:
        for policy in ("uniform", "oracle", "predicted", "sequential"):
            try:
                a = await allocate(test, cands, total=per * len(test), generator=gen, policy=policy, task=task,
                                   train=train, verifiers={"recorded": RecordedScore()}, sampling=sampling,
                                   oracle_pass1=pass1, max_samples=k, seed=args.seed, probe_n=args.probe_n)
            except Exception as e:  # noqa: BLE001 - a policy that cannot run at this total says why
                print(f"{per:13.0f} {policy:>10}  -- {e}")
                continue
            assert a.spent <= per * len(test)
            choice = a.telemetry.get("per_bin") or (f"{a.telemetry['mean_samples']:.2f} samples/problem"
                                                    if "mean_samples" in a.telemetry else a.chosen[0])
            print(f"{per:13.0f} {policy:>10} {a.accuracy:6.3f} {a.spent / len(test):13.0f}  {choice}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bank", help="a bank folder (default: import the math100 bank from shared/data)")
    ap.add_argument("--task", default="math500")
    ap.add_argument("--totals", type=float, nargs="+", default=[750, 1500, 3000, 6000],
                    help="total tokens per test problem (the benchmark-wide budget / problems)")
    ap.add_argument("--max-tokens", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--probe-n", type=int, default=4, help="predicted policy: samples of its difficulty probe")
    args = ap.parse_args()
    if not args.bank and not DATA.exists():
        sys.exit(f"{DATA} not found: pass --bank DIR")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
