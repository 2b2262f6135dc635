"""`tts view` on a big sweep: build time and page load times in headless Chromium.

    python benchmarks/view_speed.py                       # 500 problems x 18 configs x 5 seeds = 45,000
    python benchmarks/view_speed.py --problems 50         # a quicker look

Builds a synthetic sweep folder the way a sweep writes one (plan.json, results.jsonl and
results.details.jsonl through ResultStore, each record with its details): Best-of-N,
self-consistency and first-finish at N = 1, 2, ..., 32, seeds 0-4, over P problems whose samples
are the real math100 samples (texts, answers, reward scores; a run of size N draws N of them).
Then times `tts view` on it and, in Chromium (Debian's `chromium`, `make browser`), the overview
page from navigation to its table drawn (target: under 2 s), the problem list and one problem
page; each page is loaded three times (the first one cold).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the Chromium driver of the page tests

MATH100 = ROOT.parent / "shared" / "data" / "math100_qwen25math_8samples_rm.jsonl"
STRATEGIES = ("best_of_n", "self_consistency", "first_finish")
NS = (1, 2, 4, 8, 16, 32)


def synthetic_sweep(out: Path, problems: int, seeds: int) -> int:
    """Write the sweep folder; returns the number of problem-runs."""
    from tts.experiment.details import DETAILS, details_of
    from tts.experiment.plan import PLAN_FILE
    from tts.experiment.store import RESULTS, ResultStore
    from tts.types import Problem, Result, Trace, Usage

    rows = [json.loads(line) for line in MATH100.read_text().splitlines()]
    qs = [Problem(f"s/{i}", f"{rows[i % len(rows)]['question']} (copy {i // len(rows)})",
                  answer=rows[i % len(rows)]["answer"]) for i in range(problems)]
    configs = [(s, n, f"{s[:2]}{n:02d}".ljust(16, "0")) for s in STRATEGIES for n in NS]
    plan = {"file": "synthetic.yaml", "name": "view-speed", "tasks": [{"name": "math500", "problems": [q.id for q in qs]}],
            "runs": [{"config_hash": h, "seed": seed, "task_index": 0, "task": "math500", "strategy": s, "n": n,
                      "label": f"{s} n={n}", "curve": s, "thinking_budget": None, "budget_curve": None, "source": "replay"}
                     for s, n, h in configs for seed in range(seeds)]}
    out.mkdir(parents=True, exist_ok=True)
    (out / PLAN_FILE).write_text(json.dumps(plan))
    store = ResultStore(out / RESULTS, writer=True)
    rng = random.Random(0)
    count = 0
    for s, n, h in configs:
        spec = {"task": "math500", "strategy": s, "params": {"n": n}, "sampling": {}, "backend": {"kind": "replay"}}
        for seed in range(seeds):
            for i, q in enumerate(qs):
                row = rows[i % len(rows)]
                picks = [rng.randrange(len(row["response"])) for _ in range(n)]
                traces = [Trace(row["response"][j], len(row["response"][j]) // 4, "stop", answer=row["pred"][j],
                                score=row["pred_score"][j][0]) for j in picks]
                answers = [t.answer for t in traces]
                best = max(set(answers), key=answers.count)
                tally = {a: float(answers.count(a)) for a in set(answers)}
                r = Result(q.id, best, traces, usage=Usage(prompt_tokens=100 * n, completion_tokens=sum(t.num_tokens for t in traces),
                                                           generator_calls=1), strategy=s, config_hash=h, seed=seed,
                           telemetry={"votes": tally})
                rec = r.record()
                rec.update(status="finished", correct=bool(row["score"][picks[answers.index(best)]]), gold=q.answer,
                           model="synthetic", task="math500")
                rec[DETAILS] = details_of(r, q, spec)
                store.append(rec)
                count += 1
    store.close()
    return count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", type=int, default=500)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--keep", type=Path, help="build in this folder and keep it (default: a temporary one)")
    args = ap.parse_args()

    from browser import Browser, chromium

    from tts.view import build

    work = args.keep or Path(tempfile.mkdtemp(prefix="view-speed-"))
    sweep = work / "sweep"
    t = time.perf_counter()
    runs = synthetic_sweep(sweep, args.problems, args.seeds)
    size = sum(f.stat().st_size for f in sweep.glob("results*.jsonl"))
    print(f"synthetic sweep: {runs:,} problem-runs, {size / 1e6:.0f} MB of records and details, "
          f"written in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    index = build(sweep, work / "site")
    dt = time.perf_counter() - t
    files = list((work / "site").rglob("*"))
    print(f"tts view build: {dt:.1f} s ({runs / dt:,.0f} problem-runs/s); site {len(files):,} files, "
          f"{sum(f.stat().st_size for f in files if f.is_file()) / 1e6:.0f} MB; "
          f"meta.js {(work / 'site/data/meta.js').stat().st_size / 1e3:.0f} kB, "
          f"matrix.js {(work / 'site/data/matrix.js').stat().st_size / 1e3:.0f} kB")

    exe, why = chromium()
    if exe is None:
        print(f"no browser timing: {why}")
        return
    b = Browser(exe)
    try:
        pages = [("overview", "index.html", "document.querySelectorAll('#overview tbody tr').length === 18"),
                 ("problem list", "problems.html", "document.querySelectorAll('#problems tbody tr').length > 0"),
                 ("problem page", "problem.html?p=7&a=17:0&b=5:0", "document.querySelectorAll('.pane .trace').length > 0")]
        for name, page, ready in pages:
            times = [b.open(index.parent.as_uri() + "/" + page, ready, timeout=60) for _ in range(3)]
            print(f"{name:13} load in headless Chromium: " + ", ".join(f"{x:.2f}" for x in times)
                  + " s (first cold)" + ("  target < 2 s: " + ("met" if max(times) < 2 else "MISSED") if name == "overview" else ""))
        if b.errors:
            print("page errors:", b.errors)
    finally:
        b.close()
    print(f"site: {index}")


if __name__ == "__main__":
    main()
