"""`tts report DIR`: the accuracy-versus-compute table and plots of a sweep folder.

Reads `plan.json` (the runs of the sweep file as last run) and every `results*.jsonl`; only
records whose config hash and problem are in the plan count, so an edited sweep over an old
folder reports exactly the current file. One row per (task, strategy configuration), seeds
pooled: accuracy with a seeded 95% interval that resamples problems (`stats.cluster_ci`), mean
generator tokens (prompt + completion), completion tokens, verifier tokens, FLOPs and wall
seconds per problem, the failed records (backend faults, counted apart and never as answers;
a re-run retries them), cost-of-pass (mean cost per problem / accuracy) in tokens and FLOPs, and
in dollars with a prices table, and where the numbers come from (live, replay, or subsampled
from one generation at the largest n). `compare` pairs two configurations on their common
problems. Writes report.csv, report.md and, per task, accuracy-vs-tokens
and accuracy-vs-FLOPs PNGs: one curve per strategy configuration (n varying along it), the
Pareto frontier over all rows dashed.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tts.errors import TTSError
from tts.experiment import stats
from tts.experiment.plan import PLAN_FILE as PLAN
from tts.experiment.store import is_failed, load_records
from tts.experiment.ttspm import saturation_points

COLUMNS = ("task", "config", "strategy", "n", "thinking_budget", "source", "seeds", "records", "failed", "accuracy", "ci_low",
           "ci_high", "gen_tokens", "completion_tokens", "verifier_tokens", "flops", "wall_seconds", "cop_tokens",
           "cop_flops", "cost_usd", "cop_usd", "config_hash")
PARETO = "Pareto frontier"


def rows(out: str | Path, prices: dict[str, stats.Price] | None = None) -> list[dict[str, Any]]:
    """One row per (task, configuration) of the current plan; `prices` adds the dollar columns."""
    return [row for row, _ in _grouped(out, prices)]


def _grouped(out: str | Path, prices: dict[str, stats.Price] | None) -> list[tuple[dict[str, Any], list]]:
    out = Path(out)
    if not (out / PLAN).exists():
        raise TTSError(f"{out} has no {PLAN}: it is not a sweep folder (run `tts sweep FILE` first)")
    try:
        plan = json.loads((out / PLAN).read_text(encoding="utf-8"))
        runs = [(r["config_hash"], r["seed"], r["task_index"]) for r in plan["runs"]]
        tasks = [set(t["problems"]) for t in plan["tasks"]]
        if not all(isinstance(i, int) and 0 <= i < len(tasks) for _, _, i in runs):
            raise ValueError("a run's task_index names no task")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise TTSError(f"{out / PLAN} is not a sweep plan ({type(e).__name__}: {e}); run the sweep again "
                       "(`tts sweep FILE`) to rewrite it") from None
    return grouped(plan, load_records(out), prices, str(out))


def grouped(plan: dict[str, Any], records: Sequence[dict[str, Any]], prices: dict[str, stats.Price] | None = None,
            where: str = "") -> list[tuple[dict[str, Any], list]]:
    """The table of `records` under `plan` (plan.json's content): one (row, its records) per
    (task, configuration) of the plan, in plan order; records outside the plan are left out."""
    wanted = {(r["config_hash"], r["seed"]): r for r in plan["runs"]}
    ids = [set(t["problems"]) for t in plan["tasks"]]
    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for rec in records:
        run = wanted.get((rec["config_hash"], rec["seed"]))
        if run is not None and rec["problem_id"] in ids[run["task_index"]]:
            groups.setdefault((run["task_index"], run["config_hash"]), []).append(rec)
    table = []
    for run in plan["runs"]:
        key = (run["task_index"], run["config_hash"])
        recs = groups.pop(key, None)  # one row per configuration, seeds pooled
        if not recs:
            continue
        # In key order, not file order: a resumed, sharded or concurrent run appends records in
        # another order, and the seeded bootstrap below would otherwise give another interval.
        recs.sort(key=lambda r: (r["problem_id"], r["seed"]))
        failed = sum(map(is_failed, recs))  # a backend fault: counted, never answered (a re-run retries it)
        recs = [r for r in recs if not is_failed(r)]
        k = len(recs)
        if k == 0:
            table.append(({**{c: float("nan") for c in COLUMNS}, "task": run["task"], "config": run["curve"],
                          "strategy": run["strategy"], "n": run["n"], "source": run["source"], "seeds": 0,
                          "records": 0, "failed": failed, "config_hash": run["config_hash"],
                          "thinking_budget": run.get("thinking_budget"), "thinking_curve": _thinking_curve(run)}, []))
            continue
        mean = lambda f: sum(f(r["usage"]) for r in recs) / k  # noqa: E731
        acc = sum(bool(r.get("correct")) for r in recs) / k
        lo, hi = stats.cluster_ci(recs)
        row = {
            "task": run["task"], "config": run["curve"], "strategy": run["strategy"], "n": run["n"],
            # a plan.json written before thinking budgets has neither key
            "thinking_budget": run.get("thinking_budget"), "thinking_curve": _thinking_curve(run),
            "source": run["source"], "seeds": len({r["seed"] for r in recs}), "records": k,
            "failed": failed,
            "accuracy": acc, "ci_low": lo, "ci_high": hi,
            "gen_tokens": mean(lambda u: u["prompt_tokens"] + u["completion_tokens"]),
            "completion_tokens": mean(lambda u: u["completion_tokens"]),
            "verifier_tokens": mean(lambda u: u["verifier_tokens"]),
            "flops": mean(lambda u: u["generator_flops"] + u["verifier_flops"]),
            "wall_seconds": mean(lambda u: u["wall_seconds"]), "config_hash": run["config_hash"],
        }
        row["cop_tokens"] = stats.cost_of_pass(row["gen_tokens"] + row["verifier_tokens"], acc)
        row["cop_flops"] = stats.cost_of_pass(row["flops"], acc)
        row["cost_usd"] = row["cop_usd"] = None
        if prices is not None:
            at = f"{where}: run {run.get('label', run['config_hash'])}"
            if not run.get("model"):
                raise TTSError(f"{at}: plan.json names no model to price; re-run `tts sweep FILE` "
                               "(it rewrites plan.json) and report again")
            gen = stats.price_of(prices, run["model"], at)
            ver = stats.price_of(prices, run.get("verifier_model") or run["model"], at)
            row["cost_usd"] = mean(lambda u: stats.dollars(u, gen, ver))
            row["cop_usd"] = stats.cost_of_pass(row["cost_usd"], acc)
        table.append((row, recs))
    return table


def frontier_cost_of_pass(table: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per task and cost unit, the least cost-of-pass over configurations and which one it is."""
    out: dict[str, dict[str, Any]] = {}
    for task in dict.fromkeys(r["task"] for r in table):
        sub = [r for r in table if r["task"] == task]
        out[task] = {}
        for col in ("cop_tokens", "cop_flops", "cop_usd"):
            vals = [r for r in sub if r[col] is not None]
            if vals:
                best = min(vals, key=lambda r: r[col])
                out[task][col] = (best[col], f"{best['config']} n={best['n']}")
    return out


def compare(out: str | Path, a: str, b: str) -> dict[str, Any]:
    """Configurations `a` and `b` (a label as `tts report` prints it, `config n=N`, or a config
    hash prefix) paired on their common problems: `stats.paired`."""
    groups = _grouped(out, None)

    def find(name: str) -> tuple[dict[str, Any], list]:
        hits = [(row, recs) for row, recs in groups
                if name in (f"{row['config']} n={row['n']}", row["config_hash"]) or row["config_hash"].startswith(name)]
        if len(hits) != 1:
            names = ", ".join(f"'{row['config']} n={row['n']}'" for row, _ in groups)
            raise TTSError(f"--compare: '{name}' names {len(hits)} configurations of {out}; use one of: {names}"
                           " (or a config hash prefix)")
        return hits[0]

    (ra, recs_a), (rb, recs_b) = find(a), find(b)
    res = stats.paired(recs_a, recs_b)
    res["a"], res["b"] = f"{ra['config']} n={ra['n']}", f"{rb['config']} n={rb['n']}"
    return res


def pareto(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats (x no larger and y no smaller, one strictly),
    in increasing x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    best, out = -float("inf"), []
    for i in order:
        if points[i][1] > best:
            out.append(i)
            best = points[i][1]
    return out


def plot(table: Sequence[dict[str, Any]], x: str = "gen_tokens", path: str | Path | None = None,
         title: str = "", ax: Any = None) -> Any:
    """Accuracy vs `x` (gen_tokens or flops), one line per configuration, the Pareto frontier
    dashed; returns the matplotlib Figure (saved as PNG when `path` is given), or draws on `ax`.
    Rows with nothing answered (only failed records) have no point."""
    import matplotlib

    table = [r for r in table if r["records"]]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4.5))
    else:
        fig = ax.figure
    curves: dict[str, list[dict[str, Any]]] = {}
    for r in table:
        curves.setdefault(r["config"], []).append(r)
    for name, rs in curves.items():
        rs = sorted(rs, key=lambda r: r[x])
        xs, ys = [r[x] for r in rs], [r["accuracy"] for r in rs]
        line, = ax.plot(xs, ys, marker="o", label=name + (" (subsampled)" if rs[0]["source"].startswith("sub") else ""))
        ax.fill_between(xs, [r["ci_low"] for r in rs], [r["ci_high"] for r in rs], alpha=0.12, color=line.get_color())
        for r in rs:
            ax.annotate(f"n={r['n']}", (r[x], r["accuracy"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    front = pareto([(r[x], r["accuracy"]) for r in table])
    if front:
        ax.plot([table[i][x] for i in front], [table[i]["accuracy"] for i in front], "k--", lw=1.5, alpha=0.7,
                marker="o", mfc="none", ms=11, drawstyle="steps-post", label=PARETO, zorder=3)
    if all(r[x] > 0 for r in table) and len(table) > 1:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap on short ranges
    ax.set_xlabel({"gen_tokens": "generator tokens per problem (prompt + completion, mean)",
                   "completion_tokens": "generated tokens per problem (thinking + answer, mean)",
                   "flops": "FLOPs per problem (generator + verifier, mean)",
                   "cost_usd": "US dollars per problem (mean, from the prices table)"}.get(x, x))
    ax.set_ylabel("accuracy (95% bootstrap CI shaded)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, format="png", dpi=120)
    return fig


def plot_ttspm(table: Sequence[dict[str, Any]], points: Sequence[dict[str, Any]], path: str | Path | None = None,
               title: str = "") -> Any:
    """The parallel x sequential Pareto of a sweep over n and thinking budget: left, accuracy vs
    generated tokens, one curve per thinking budget (n along it), the frontier dashed; right,
    accuracy vs n per budget with the fitted TTSPM curve and its saturation point N* dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = [r for r in table if r["records"] and r.get("thinking_budget") is not None]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    plot(table, "completion_tokens", ax=left, title="accuracy vs generated tokens, one curve per thinking budget")
    fits = {p["curve"]: p for p in points if p["axis"] == "n"}
    for curve in dict.fromkeys(r["config"] for r in table):
        rs = sorted((r for r in table if r["config"] == curve), key=lambda r: r["n"])
        line, = right.plot([r["n"] for r in rs], [r["accuracy"] for r in rs], "o", label=curve)
        p = fits.get(curve)
        if p is not None:
            top = max(rs[-1]["n"], min(p["saturation"], 4 * rs[-1]["n"]))
            xs = np.linspace(1, top, 200)
            right.plot(xs, [p["fit"].accuracy(v) for v in xs], "-", color=line.get_color(), alpha=0.7)
            right.axvline(p["saturation"], ls=":", color=line.get_color(), alpha=0.8)
            right.annotate(f"N*={p['saturation']}", (p["saturation"], p["fit"].accuracy(p["saturation"])),
                           fontsize=7, xytext=(3, -10), textcoords="offset points", color=line.get_color())
    right.set_xlabel("n (parallel samples)")
    right.set_ylabel("accuracy")
    right.set_title(f"TTSPM fit F(N) = F_max (1 - (1-p)^N), N* at gain < {points[0]['epsilon'] if points else ''}")
    right.grid(alpha=0.3)
    right.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, format="png", dpi=120)
    return fig


def write(out: str | Path, table: Sequence[dict[str, Any]] | None = None,
          points: Sequence[dict[str, Any]] | None = None) -> list[Path]:
    """report.csv, report.md, saturation.csv (when there are saturation points) and the PNGs, in
    the sweep folder; returns the paths written."""
    import matplotlib.pyplot as plt

    out = Path(out)
    table = rows(out) if table is None else table
    points = saturation_points(table) if points is None else points
    written = [out / "report.csv", out / "report.md"]
    with open(written[0], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(table)
    written[1].write_text(markdown(table) + saturation_markdown(points))
    if points:
        written.append(out / "saturation.csv")
        with open(written[-1], "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=SATURATION_COLUMNS, extrasaction="ignore")
            w.writeheader()
            w.writerows(points)
    for task in dict.fromkeys(r["task"] for r in table):
        sub = [r for r in table if r["task"] == task]
        for x, stem, what in (("gen_tokens", "acc_vs_tokens", "tokens"), ("flops", "acc_vs_flops", "FLOPs"),
                              ("cost_usd", "acc_vs_cost", "cost")):
            if x == "flops" and not any(r["flops"] > 0 for r in sub):
                continue  # parameter count unknown (e.g. an imported bank): no FLOPs to plot
            if x == "cost_usd" and any(r["cost_usd"] is None for r in sub):
                continue  # no prices table
            path = out / f"{stem}_{task}.png"
            plt.close(plot(sub, x, path, title=f"{task}: accuracy vs {what}"))
            written.append(path)
        if len({r.get("thinking_budget") for r in sub} - {None}) >= 2:  # a sweep over thinking budgets
            path = out / f"ttspm_{task}.png"
            plt.close(plot_ttspm(sub, [p for p in points if p["task"] == task], path,
                                 title=f"{task}: parallel x sequential scaling"))
            written.append(path)
    return written


SATURATION_COLUMNS = ("task", "axis", "curve", "points", "f_max", "p", "rmse", "epsilon", "unit", "saturation",
                      "measured_up_to", "extrapolated")


def _saturation_text(p: dict[str, Any]) -> str:
    what = "samples" if p["axis"] == "n" else "thinking tokens"
    beyond = " (beyond the sweep: extrapolated)" if p["extrapolated"] else ""
    return f"{p['saturation']} {what}{beyond}"


def saturation_markdown(points: Sequence[dict[str, Any]]) -> str:
    if not points:
        return ""
    lines = ["", "## Saturation points (TTSPM)", "",
             "F(x) = F_max (1 - (1 - p)^x) fitted by least squares to each curve (x: n, or thinking budget / unit "
             "tokens); the saturation point is the smallest x past which one more unit gains less than epsilon "
             "accuracy (Wang et al. 2025, arXiv 2505.20522; tts/experiment/ttspm.py).", "",
             "| task | axis | curve | points | F_max | p | rmse | unit | saturation point | measured up to |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {p['task']} | {p['axis']} | {p['curve']} | {p['points']} | {p['f_max']:.3f} | {p['p']:.3f} | "
              f"{p['rmse']:.3f} | {p['unit']} | {_saturation_text(p)} | {p['measured_up_to']} |" for p in points]
    return "\n".join(lines) + "\n"


def print_saturation(points: Sequence[dict[str, Any]]) -> None:
    if not points:
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"saturation points (TTSPM fit; one more unit gains < {points[0]['epsilon']} accuracy)")
    for c in ("task", "axis", "curve", "points", "F_max", "p", "rmse", "saturation point", "measured up to"):
        t.add_column(c, justify="left" if c in ("task", "axis", "curve", "saturation point") else "right")
    for p in points:
        t.add_row(p["task"], p["axis"], p["curve"], str(p["points"]), f"{p['f_max']:.3f}", f"{p['p']:.3f}",
                  f"{p['rmse']:.3f}", _saturation_text(p), str(p["measured_up_to"]))
    Console(width=220).print(t)


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) >= 1e4 else f"{v:.3f}"
    return str(v)


def markdown(table: Sequence[dict[str, Any]]) -> str:
    cols = [c for c in COLUMNS if c != "config_hash"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in cols) + " |" for r in table]
    note = ("\nRows whose source is 'subsampled' were evaluated on subsets of one generation at the largest n "
            "(their wall time is replay time). CI: 95% cluster bootstrap over problems (a problem's seeds "
            "resampled together). cop_*: cost-of-pass, mean cost per problem / accuracy (tokens: generator + "
            "verifier).\n")
    front = "".join(f"\nFrontier cost-of-pass, {task}: " + "; ".join(
        f"{col} {_fmt(v)} ({who})" for col, (v, who) in cols.items()) + "\n"
        for task, cols in frontier_cost_of_pass(table).items())
    return "\n".join(lines) + "\n" + note + front


def print_table(table: Sequence[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="accuracy vs compute (per problem means)")
    for c in ("task", "config", "n", "source", "records", "failed", "accuracy", "95% CI", "gen tokens",
              "verifier tokens", "FLOPs", "wall s", "cop tokens", "cop $"):
        t.add_column(c, justify="left" if c in ("task", "config", "source") else "right")
    for r in table:
        t.add_row(r["task"], r["config"], str(r["n"]), r["source"], str(r["records"]), str(r["failed"]),
                  f"{r['accuracy']:.3f}",
                  f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]", f"{r['gen_tokens']:.0f}", f"{r['verifier_tokens']:.0f}",
                  f"{r['flops']:.3g}", f"{r['wall_seconds']:.2f}", f"{r['cop_tokens']:.0f}",
                  "" if r["cop_usd"] is None else f"{r['cop_usd']:.4g}")
    console = Console(width=220)
    console.print(t)
    for task, cols in frontier_cost_of_pass(table).items():
        console.print(f"frontier cost-of-pass, {task}: " + "; ".join(f"{c} {_fmt(v)} ({who})" for c, (v, who) in cols.items()))


def print_compare(res: dict[str, Any]) -> None:
    print(f"A = {res['a']}\nB = {res['b']}\n{res['problems']} problems, {res['pairs']} (problem, seed) pairs")
    print(f"accuracy A {res['accuracy_a']:.3f}, B {res['accuracy_b']:.3f}, A - B {res['difference']:+.3f} "
          f"(95% paired cluster bootstrap [{res['ci_low']:+.3f}, {res['ci_high']:+.3f}])")
    print(f"only A right {res['only_a']}, only B right {res['only_b']}: McNemar exact p = {res['mcnemar_p']:.4g}")


def _thinking_curve(run: dict[str, Any]) -> str | None:
    """A plan.json run's thinking curve (written `budget_curve` by sweeps before it was renamed)."""
    return run.get("thinking_curve", run.get("budget_curve"))
