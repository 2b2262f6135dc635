"""Replay speed: sample-based strategies swept over N x seeds on a recorded bank, at zero
generation cost. Prints problem-runs per second per strategy and N, and where the time goes.

    python benchmarks/replay_speed.py                      # the imported math100 bank (N <= 8)
    python benchmarks/replay_speed.py --synthetic 500      # 500 problems x 32 samples from math100
    python benchmarks/replay_speed.py --bank ~/.cache/ttscale/banks/gsm8k_qwen05b_100x32

Strategies: Best-of-N (by the recorded outcome score when the bank has one, else by logprob
confidence), self-consistency, first-finish (replayed streams), and DeepConf-offline (window 64)
when the bank has top-k logprobs.
Each run is `tts.run_many` over all problems with grading (math-verify), as a real sweep does.
`--synthetic P` builds a P-problem bank with 32 samples each from the math100 rows; copies of a
row get textually different answers (integers shifted, others suffixed), so math-verify's
cache does not make copies free.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import random
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MATH100 = Path(__file__).resolve().parents[2] / "shared" / "data" / "math100_qwen25math_8samples_rm.jsonl"


def default_bank(cache: Path) -> Path:
    from tts.bank import import_math100

    out = cache / "math100"
    import_math100(MATH100, out, tokenizer=None)  # resumes: nothing to do once imported
    return out


def synthetic_bank(problems: int, samples: int, out: Path, seed: int = 0) -> Path:
    import numpy as np

    from tts.bank import BankRecord, BankWriter, RecordedTrace

    rows = [json.loads(line) for line in MATH100.read_text().splitlines()]
    w = BankWriter(out, {"model": "synthetic-from-math100", "num_params": None, "task": "math100",
                         "sampling": {"temperature": None, "top_p": None, "max_tokens": None, "stop": []},
                         "logprobs": None, "seed": seed, "system_prompt": rows[0]["system"], "prm": None})
    rng = random.Random(seed)
    for i in range(problems):
        row, copy = rows[i % len(rows)], i // len(rows)
        if f"s/{i}" in w:
            continue
        picks = [rng.randrange(len(row["response"])) for _ in range(samples)]
        w.append(BankRecord(
            key=f"s/{i}", question=f"{row['question']} (copy {copy})", system=row["system"],
            gold=_shift(row["answer"], copy),
            samples=[RecordedTrace(text=row["response"][j], num_tokens=len(row["response"][j]) // 4,
                                   answer=_shift(row["pred"][j], copy), correct=row["score"][j],
                                   score=row["pred_score"][j][0] + rng.uniform(-0.01, 0.01),
                                   token_ids=None, step_ends=np.zeros(0, np.int32)) for j in picks],
        ))
    return out


def _shift(answer: str, copy: int) -> str:
    if copy == 0:
        return answer
    if re.fullmatch(r"-?\d+", answer.strip()):
        return str(int(answer) + 1000 * copy)
    return f"{answer}+{copy}"


def strategies_for(bank) -> list[tuple[str, object, object]]:
    """(label, factory of N, verifier) for every strategy the bank can serve."""
    from strategies import BestOfN, DeepConf, FirstFinish, SelfConsistency
    from verifiers import Confidence
    from verifiers.recorded import RecordedScore

    first = bank.get(bank.keys()[0]).samples[0]
    out = []
    if first.score is not None:
        out.append(("best_of_n(recorded)", BestOfN, RecordedScore()))
    elif bank.logprobs is not None:
        out.append(("best_of_n(confidence)", BestOfN, Confidence()))
    out.append(("self_consistency", SelfConsistency, None))
    out.append(("first_finish", FirstFinish, None))
    if bank.logprobs:
        k = bank.logprobs
        out.append(("deepconf_offline", lambda n: DeepConf(n, mode="offline", top_k=k, window=64), None))
    else:
        print("note: deepconf_offline skipped (the bank has no top-k logprobs)")
    return out


async def sweep(bank_path: Path, ns: list[int], seeds: int, grade: bool) -> None:
    import tasks
    import tts
    from tts.bank import Bank
    from tts.backends.replay import ReplayGenerator

    t0 = time.perf_counter()
    bank = Bank(bank_path)
    gen = ReplayGenerator(bank)
    problems = bank.problems()
    for k in bank.keys():
        gen.record(k)  # decode every record once (load time reported apart)
    have = min(bank.num_samples(k) for k in bank.keys())
    load = time.perf_counter() - t0
    task = tasks.get_task("math500") if grade else None
    sampling = bank.sampling_defaults()
    print(f"bank {bank_path}: {len(problems)} problems x {have} samples; loaded in {load:.2f} s")
    usable = [n for n in ns if n <= have]
    if len(usable) < len(ns):
        print(f"note: N in {[n for n in ns if n > have]} skipped (the bank has {have} samples per problem)")
    total_runs, total_s = 0, 0.0
    print(f"{'strategy':24} {'N':>3} {'runs':>7} {'seconds':>8} {'runs/s':>9}")
    for label, cls, verifier in strategies_for(bank):
        for n in usable:
            t = time.perf_counter()
            for seed in range(seeds):
                gen.reset(seed)
                await tts.run_many(problems, cls(n), generator=gen, verifier=verifier, sampling=sampling, task=task)
            dt = time.perf_counter() - t
            runs = len(problems) * seeds
            total_runs, total_s = total_runs + runs, total_s + dt
            print(f"{label:24} {n:>3} {runs:>7} {dt:>8.2f} {runs / dt:>9.0f}")
    print(f"total: {total_runs} problem-runs in {total_s:.1f} s ({total_runs / total_s:.0f} problem-runs/s; "
          f"+{load:.1f} s loading)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bank", type=Path, help="a bank folder (default: the imported math100 bank)")
    ap.add_argument("--synthetic", type=int, metavar="P", help="build and sweep a P-problem x 32-sample bank")
    ap.add_argument("--ns", default="1,2,4,8,16,32")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--no-grade", action="store_true", help="skip grading answers against the gold answer")
    ap.add_argument("--profile", action="store_true", help="print the top functions by cumulative time")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tts-replay-speed-"))
    if args.bank:
        path = args.bank.expanduser()
    elif args.synthetic:
        t = time.perf_counter()
        path = synthetic_bank(args.synthetic, 32, tmp / f"synthetic{args.synthetic}")
        print(f"built a synthetic bank in {time.perf_counter() - t:.1f} s")
    else:
        path = default_bank(tmp)
    ns = [int(x) for x in args.ns.split(",")]
    coro = sweep(path, ns, args.seeds, not args.no_grade)
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        asyncio.run(coro)
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    else:
        asyncio.run(coro)


if __name__ == "__main__":
    main()
