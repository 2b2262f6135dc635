"""The `tts` command: `tts bench|record|sweep|report|serve|view ...`, `tts models prepare|list`.

User mistakes print one line (`error: ...`) and exit 2; no tracebacks.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

from tts.errors import TTSError
from tts.options import BenchConfig, add_flags, given, key_values


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad option as one line `error: ...` (exit 2), like every other input error."""

    def error(self, message: str) -> Any:
        print(f"error: {self.prog}: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="tts", description="Test-time scaling of LLM reasoning on vLLM.")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    b = sub.add_parser("bench", help="run a strategy over a benchmark (resumable)")
    add_flags(b, BenchConfig)  # every option, from its one declaration (tts.options)
    a = b.add_argument_group("a benchmark-wide budget (tts.experiment.allocate)")
    a.add_argument("--total-budget", type=float, metavar="TOTAL",
                   help="one budget for the whole benchmark, allocated per problem by --allocation (a hard cap)")
    a.add_argument("--allocation", default="uniform", help="uniform | oracle | predicted | sequential")
    a.add_argument("--candidate", action="append", default=[], metavar="STRATEGY:N[,N...]",
                   help="configurations a problem may get (repeat); default: --strategy at n = 1, 2, 4, ... up to -n")
    a.add_argument("--total-unit", default="total_tokens", help="total_tokens | flops")
    a.add_argument("--train-fraction", type=float, default=0.5,
                   help="share of the problems (seeded) held out for the policy to learn on; not recorded")
    a.add_argument("--allocation-param", action="append", default=[], metavar="K=V",
                   help="bins, probe_n, reuse_probe (predicted), batch, max_samples, confidence (sequential)")

    m = sub.add_parser("models", help="embedded models")
    msub = m.add_subparsers(dest="models_cmd", required=True)
    prep = msub.add_parser("prepare", help="build an embedded model folder (once; cached)")
    prep.add_argument("name", nargs="?", help="embedded model name (default: the default model)")
    prep.add_argument("--force", action="store_true")
    msub.add_parser("list", help="embedded model names")

    r = sub.add_parser("record", help="record a trace bank: N samples per problem, for replay (resumable)")
    r.add_argument("--task", help="a registered task (an unknown name lists them)")
    r.add_argument("--model", help="local model folder, hub id, or embedded name (default: the embedded model)")
    r.add_argument("-n", type=int, default=8, help="samples per problem (default 8)")
    r.add_argument("--logprobs", type=int, help="record per-token logprobs and the top-k (k >= 0)")
    r.add_argument("--prm", help="process reward model to score each sample's steps (needs verifiers/prm.py)")
    r.add_argument("--data", help="local JSONL file instead of the dataset hub")
    r.add_argument("--limit", type=int, help="first N problems")
    r.add_argument("--out", required=True, help="bank folder (created, or resumed if it holds this configuration)")
    r.add_argument("--max-tokens", type=int, default=1024, help="per sample")
    r.add_argument("--temperature", type=float, default=0.7)
    r.add_argument("--top-p", type=float, default=1.0)
    r.add_argument("--seed", type=int, default=0, help="engine seed")
    r.add_argument("--concurrency", type=int, default=64, help="problems in flight")
    r.add_argument("--max-model-len", type=int, default=4096)
    r.add_argument("--import-math100", metavar="FILE", help="instead: import the math100 samples file into --out")

    sw = sub.add_parser("sweep", help="run a YAML sweep file (resumable); `tts sweep schema` prints its schema")
    sw.add_argument("file", help="the sweep file (see experiments/), or `schema`")
    sw.add_argument("--dry-run", action="store_true", help="validate and print the plan; run nothing")
    sw.add_argument("--shard", metavar="i/k", help="run only every k-th job starting at job i (0 <= i < k)")
    sw.add_argument("--executor", default="local", choices=("local", "ray"))
    sw.add_argument("--actors", type=int, help="--executor ray: engine actors (default: one per GPU, else 1)")
    sw.add_argument("--out", help="output folder (default: the file's `output`, else results/<file name>)")

    rp = sub.add_parser("report", help="accuracy-vs-compute table, CSV, Markdown and PNG plots of a sweep folder")
    rp.add_argument("dir", help="the sweep's output folder")
    rp.add_argument("--prices", metavar="FILE", help="YAML/JSON {model: {input, cached_input, output}} in $ per "
                    "million tokens: adds cost and cost-of-pass in dollars")
    rp.add_argument("--compare", nargs=2, metavar=("A", "B"), help="pair two configurations (label 'config n=N' "
                    "or config-hash prefix) on their common problems: paired bootstrap and McNemar")
    rp.add_argument("--epsilon", type=float, default=0.01, help="saturation points (TTSPM): the accuracy gain "
                    "per extra unit (one sample; one --budget-unit of thinking) below which scaling has saturated")
    rp.add_argument("--budget-unit", type=int, metavar="TOKENS", help="the thinking budget's unit for its "
                    "saturation point (default: each curve's smallest budget)")

    from tts.serve import add_arguments as serve_arguments  # light: the app loads only when serving

    serve_arguments(sub.add_parser("serve", help="serve every strategy behind an OpenAI-compatible endpoint"))

    from tts.view import add_arguments as view_arguments

    view_arguments(sub.add_parser("view", help="a run as a static site: traces, votes, search trees, cost (browser)"))

    it = sub.add_parser("itas", help="architecture search over pipelines (Archon's ITAS): a sweep file with a "
                        "`search:` block; the best under a per-problem budget, on held-out problems (resumable)")
    it.add_argument("file", help="a search file (see tts/experiment/architecture.py and experiments/)")
    it.add_argument("--out", help="output folder (default: the file's `output`, else results/<file name>)")
    it.add_argument("--dry-run", action="store_true", help="validate and list the configurations; run nothing")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.cmd](args)
    except TTSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _serve(args: argparse.Namespace) -> int:
    from tts.serve import main as serve  # the app (FastAPI) loads only when serving

    return serve(args)


def _view(args: argparse.Namespace) -> int:
    from tts.view import main as view

    return view(args)


def _itas(args: argparse.Namespace) -> int:
    from tts.experiment.architecture import main as itas

    return itas(args)


def _models(args: argparse.Namespace) -> int:
    from tts.models import DEFAULT_MODEL, EMBEDDED, prepare

    if args.models_cmd == "list":
        for name in EMBEDDED:
            print(name + ("  (default)" if name == DEFAULT_MODEL else ""))
        return 0
    print(prepare(args.name or DEFAULT_MODEL, force=args.force))
    return 0


class _Progress:
    """A rich progress bar fed by `bench` as records land."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"), TimeElapsedColumn(),
        )
        self.fresh: list[dict[str, Any]] = []
        self.tokens = 0
        self.t_ready: float | None = None

    def start(self, total: int, done: int) -> None:
        self.bar.start()
        self.id = self.bar.add_task("solving", total=total, completed=done, stats="")

    def ready(self) -> None:
        self.t_ready = time.perf_counter()

    def advance(self, rec: dict[str, Any]) -> None:
        self.fresh.append(rec)
        answered = [r for r in self.fresh if r.get("status") != "failed"]
        failed = len(self.fresh) - len(answered)
        self.tokens += rec["usage"]["completion_tokens"] if "usage" in rec else 0
        acc = sum(bool(r["correct"]) for r in answered) / len(answered) if answered else 0.0
        self.bar.update(self.id, advance=1, stats=f"acc {acc:.2f}  {self.tokens} tokens"
                        + (f"  {failed} failed (a re-run retries them)" if failed else ""))

    def stop(self) -> None:
        self.bar.stop()


def _candidates(args: argparse.Namespace, cfg: BenchConfig) -> tuple[Any, ...]:
    """--candidate STRATEGY:N[,N...] (repeated), else --strategy at powers of two up to -n."""
    from tts.experiment.allocate import Candidate

    if not args.candidate:
        ns = sorted({*(2 ** i for i in range(cfg.n.bit_length()) if 2 ** i <= cfg.n), cfg.n})
        return tuple(Candidate(cfg.strategy, n, tuple(sorted(cfg.params.items()))) for n in ns)
    out = []
    for item in args.candidate:
        name, _, sizes = item.partition(":")
        try:
            ns = [int(x) for x in sizes.split(",")]
        except ValueError:
            ns = []
        if not name or not ns or min(ns) < 1:
            raise TTSError(f"--candidate '{item}' must look like STRATEGY:N[,N...] with each N >= 1, "
                           "e.g. self_consistency:1,2,4,8")
        out += [Candidate(name.strip(), n) for n in ns]
    return tuple(out)


def _bench(args: argparse.Namespace) -> int:
    from tts.experiment.evaluate import bench, bench_allocated, summarize

    cfg = BenchConfig.from_options(**given(args, BenchConfig))
    run = bench
    title = f"{cfg.task} / {cfg.strategy} n={cfg.n}"
    if args.total_budget is not None:
        from functools import partial

        from tts.experiment.allocate import AllocationSpec

        options = key_values(args.allocation_param, "--allocation-param")
        try:
            alloc = AllocationSpec(policy=args.allocation, total=args.total_budget, candidates=_candidates(args, cfg),
                                   unit=args.total_unit, train_fraction=args.train_fraction, **options)
        except TypeError:
            raise TTSError(f"--allocation-param takes bins, probe_n, reuse_probe, batch, max_samples, confidence (the training "
                           f"share is --train-fraction); got {', '.join(sorted(options))}") from None
        run = partial(bench_allocated, alloc=alloc)
        title = f"{cfg.task} / allocation {alloc.policy}, total {alloc.total:g} {alloc.unit}"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # keep the progress bar readable
    progress = _Progress()
    try:
        store, chash, problems = asyncio.run(run(cfg, progress=progress))
    except KeyboardInterrupt:
        progress.stop()
        print(f"interrupted: {len(progress.fresh)} new records kept in {cfg.out or 'results/'}; "
              "run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        if hasattr(progress, "id"):
            progress.stop()
    wall = time.perf_counter() - progress.t_ready if progress.t_ready else None
    ids = {p.id for p in problems}
    records = [r for r in store.for_config(chash, cfg.seed) if r["problem_id"] in ids]
    summary = summarize(records, wall, progress.fresh)
    if args.total_budget is not None:
        from tts.experiment.allocate import cost
        from tts.types import Usage

        summary["total_spent"] = sum(cost(Usage.from_dict(r["usage"]), args.total_unit) for r in records if "usage" in r)
    _print_summary(title, summary, store, len(progress.fresh))
    return _report_failures([r for r in records if r.get("status") == "failed"])


def _report_failures(failed: list[dict[str, Any]]) -> int:
    """Exit 1 when problems failed (backend faults): stored as failed, retried by a re-run."""
    if not failed:
        return 0
    print(f"{len(failed)} problems failed (first: {failed[0]['problem_id']}: {failed[0]['error']}); "
          "run the same command again to retry them", file=sys.stderr)
    return 1


def _print_summary(title: str, s: dict[str, Any], store: Any, fresh: int) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in s.items():
        t.add_row(k.replace("_", " "), f"{v:.3f}" if isinstance(v, float) else str(v))
    Console().print(t)
    print(f"{fresh} new records; {len(store.records)} in {store.path}")


def _sweep(args: argparse.Namespace) -> int:
    import json

    from tts.experiment import sweep

    if args.file == "schema":
        print(json.dumps(sweep.schema(), indent=2))
        return 0
    shard = sweep.parse_shard(args.shard)
    if args.actors is not None and args.actors < 1:
        raise TTSError(f"--actors must be >= 1, got {args.actors}")
    if args.out is not None:
        from tts.options import check_writable

        try:
            check_writable(args.out)
        except ValueError as e:
            raise TTSError(f"--out: {e}") from None
    # The whole file validates before anything starts; a dry run downloads nothing.
    plan = sweep.plan(args.file, out=args.out, offline=args.dry_run)
    sweep.print_plan(plan, shard, file=sys.stderr)
    if args.dry_run:
        return 0
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    store = sweep.store_for(plan, shard)
    runs = [r for j in plan.shard(*shard) for r in j.runs]
    total = sum(len(plan.problems[r.task_index]) for r in runs)
    done = sum(store.done((p.id, r.config_hash, r.cfg.seed)) for r in runs for p in plan.problems[r.task_index])
    del store  # run_sweep opens its own
    bar = Progress(TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[last]}"),
                   TimeElapsedColumn())
    tid = bar.add_task("sweep", total=total, completed=done, last="")
    fresh = [0]

    def on_result(rec: dict[str, Any]) -> None:
        fresh[0] += 1
        bar.update(tid, advance=1, last=f"{rec['strategy']} {rec['problem_id']}")

    try:
        with bar:
            store = sweep.run_sweep(plan, shard, args.executor, args.actors, on_result)
    except KeyboardInterrupt:
        print(f"interrupted: {fresh[0]} new records kept in {plan.out}; run the same command again to resume",
              file=sys.stderr)
        return 130
    print(f"{fresh[0]} new records; {len(store.records)} in {store.path}; `tts report {plan.out}` for the table",
          file=sys.stderr)
    return _report_failures([r for r in store.records.values() if r.get("status") == "failed"])


def _report(args: argparse.Namespace) -> int:
    from tts.experiment import report

    from tts.experiment.stats import load_prices

    if not os.path.isdir(args.dir):
        raise TTSError(f"{args.dir}: no such folder; pass a sweep's output folder")
    if args.epsilon <= 0 or (args.budget_unit is not None and args.budget_unit < 1):
        raise TTSError("--epsilon must be > 0 and --budget-unit >= 1 (tokens)")
    prices = load_prices(args.prices) if args.prices else None
    table = report.rows(args.dir, prices)
    if not table:
        raise TTSError(f"{args.dir}: no records of the current plan yet; run the sweep first")
    if args.compare:
        report.print_compare(report.compare(args.dir, *args.compare))
        return 0
    report.print_table(table)
    points = report.saturation_points(table, args.epsilon, args.budget_unit)
    report.print_saturation(points)
    for path in report.write(args.dir, table, points):
        print(path)
    return 0


def _record(args: argparse.Namespace) -> int:
    from tts.experiment.record import run_record_command

    return run_record_command(args)


COMMANDS = {"bench": _bench, "record": _record, "sweep": _sweep, "report": _report, "serve": _serve,
            "view": _view, "models": _models, "itas": _itas}


if __name__ == "__main__":
    sys.exit(main())
