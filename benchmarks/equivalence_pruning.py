"""EquivPruner's token saving: the same step searches with and without merging equivalent sibling
steps (`prune_equivalent=JUDGE`), on the same engine, problems, seed and step judge. Prints, per
search and judge, the generated tokens, the verifier tokens (the PRM's, plus the model judge's
when it judges), all tokens, the saving of each against the unpruned run (1 - pruned / plain),
the steps merged, the judge calls, and the accuracy.

    python benchmarks/equivalence_pruning.py                       # embedded model, 6 GSM8K problems, math judge
    python benchmarks/equivalence_pruning.py --judges math model --problems 10
    python benchmarks/equivalence_pruning.py --searches mcts phi_decoding --problems 3

The step rewards come from the generator judging its own steps (`llm_judge`), so every token here
is the embedded model's; the math judge costs nothing (math-verify in this process), the model
judge is the same engine asked "are these two steps equivalent?" (charged as verifier tokens).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]
SHARED = ROOT.parent / "shared" / "data" / "gsm8k_test.jsonl"


def searches(args):
    from strategies import MCTS, REBASE, BeamSearch, PhiDecoding

    common = {"max_steps": args.max_steps}
    return {
        "beam_search": lambda **kw: BeamSearch(4, beam_width=2, **common, **kw),
        "mcts": lambda **kw: MCTS(args.simulations, k=4, **common, **kw),
        "rebase": lambda **kw: REBASE(4, **common, **kw),
        "phi_decoding": lambda **kw: PhiDecoding(2, num_rollout=3, num_foresight=args.max_steps - 1,
                                                 least_foresight_num=2, delimiter="\n\n", **kw),
    }


async def run(strategy, task, problems, gen, judge, sampling):
    import tts


    t0 = time.perf_counter()
    results = await tts.run_many(problems, strategy, generator=gen, verifier=judge, sampling=sampling,
                                 concurrency=len(problems), task=task, seed=0)
    wall = time.perf_counter() - t0
    usage = sum((r.usage for r in results), tts.Usage())
    correct = [bool(r.correct) for r in results]
    merged = sum(r.telemetry.get("equivalent", {}).get("merged", 0) for r in results)
    calls = sum(r.telemetry.get("equivalent", {}).get("judge_calls", 0) for r in results)
    errors = [r.error for r in results if getattr(r, "error", None)]
    return {"wall": wall, "usage": usage, "correct": sum(correct), "merged": merged, "calls": calls, "errors": errors}


def saved(pruned: int, plain: int) -> str:
    """1 - pruned / plain as a signed percentage; none to save (a search with no verifier): "-"."""
    return f"{1 - pruned / plain:+.1%}" if plain else "-"


async def main(args) -> None:
    import tts
    from tasks.gsm8k import GSM8K
    from tts.backends.vllm import VLLMGenerator
    from tts.models import resolve_model
    from verifiers.llm_judge import llm_judge

    task = GSM8K()
    problems = task.load(args.data, limit=args.problems)
    gen = VLLMGenerator(resolve_model(args.model), seed=0, max_model_len=4096)
    judge = llm_judge(generator=gen)
    sampling = tts.Sampling(temperature=0.8, max_tokens=args.max_tokens)
    rows = []
    try:
        for name, make in searches(args).items():
            if args.searches and name not in args.searches:
                continue
            plain = await run(make(), task, problems, gen, judge, sampling)
            rows.append((name, "-", plain, plain))
            for j in args.judges:
                pruned = await run(make(prune_equivalent=j), task, problems, gen, judge, sampling)
                rows.append((name, j, pruned, plain))
            for _, jn, r, base in rows[-1 - len(args.judges):]:
                u, b = r["usage"], base["usage"]
                total, base_total = u.total_tokens + u.verifier_tokens, b.total_tokens + b.verifier_tokens
                print(f"{name:13s} {jn:6s} generated {u.completion_tokens:6d} ({saved(u.completion_tokens, b.completion_tokens)} saved)"
                      f"  verifier {u.verifier_tokens:6d} ({saved(u.verifier_tokens, b.verifier_tokens)})"
                      f"  all {total:7d} ({saved(total, base_total)})  merged {r['merged']:3d}"
                      f"  judge calls {r['calls']:4d}  correct {r['correct']}/{len(problems)}  {r['wall']:.0f} s"
                      + (f"  errors {len(r['errors'])}" if r["errors"] else ""), flush=True)
    finally:
        await gen.close()
    print(f"\n{len(problems)} GSM8K problems, model {args.model or 'embedded default'}, step rewards llm_judge, "
          f"temperature 0.8, max_tokens {args.max_tokens} per step, max_steps {args.max_steps}, seed 0. "
          "Saving = 1 - pruned / plain (negative: the pruned run spent more).")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="generator: model folder or embedded name (default: embedded)")
    p.add_argument("--data", default=str(SHARED))
    p.add_argument("--problems", type=int, default=6)
    p.add_argument("--judges", nargs="+", default=["math"], help="registered judges: math, embedding, model")
    p.add_argument("--searches", nargs="+", help="a subset of: beam_search mcts rebase phi_decoding")
    p.add_argument("--simulations", type=int, default=8, help="MCTS simulations")
    p.add_argument("--max-steps", type=int, default=6)
    p.add_argument("--max-tokens", type=int, default=96)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    asyncio.run(main(p.parse_args()))
