"""`tts report`: the table (bootstrap CI, means), CSV / Markdown, and the PNG plots checked through
the matplotlib figure (labelled axes, one line per strategy configuration, the Pareto frontier)."""

from __future__ import annotations

import csv

import pytest
import yaml

from tts.experiment import report, sweep
from tts.bank import import_math100
from tts.cli import main


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A replayed sweep of the math100 bank: best_of_n (recorded scores) and self-consistency."""
    from conftest import SHARED_DATA

    src = SHARED_DATA / "math100_qwen25math_8samples_rm.jsonl"
    if not src.exists():
        pytest.skip(f"{src} not found")
    root = tmp_path_factory.mktemp("report")
    bank = import_math100(src, root / "m100", tokenizer=None, limit=10)
    f = root / "s.yaml"
    f.write_text(yaml.safe_dump({
        "model": {"backend": "replay", "bank": str(bank.path)}, "tasks": [{"name": "math500"}],
        "strategies": [{"name": "best_of_n", "verifier": "recorded"}, {"name": "self_consistency"}],
        "grid": {"n": [1, 2, 4, 8]}, "seeds": [0, 1], "output": str(root / "out"),
    }))
    sweep.run_sweep(sweep.plan(f))
    return root / "out", f


def test_pareto_frontier():
    pts = [(10, 0.5), (20, 0.4), (20, 0.6), (40, 0.6), (80, 0.9), (5, 0.1)]
    assert report.pareto(pts) == [5, 0, 2, 4]


def test_table_csv_markdown(swept):
    out, _ = swept
    table = report.rows(out)
    assert len(table) == 8 and {r["config"] for r in table} == {"best_of_n verifier=recorded", "self_consistency"}
    for r in table:
        assert r["records"] == 20 and r["seeds"] == 2 and r["source"] == "replay"
        assert r["ci_low"] <= r["accuracy"] <= r["ci_high"]
        assert r["gen_tokens"] >= r["completion_tokens"] > 0 and r["verifier_tokens"] == 0  # no prompt counts: no tokenizer
    bon = sorted((r for r in table if r["strategy"] == "best_of_n"), key=lambda r: r["n"])
    assert [r["n"] for r in bon] == [1, 2, 4, 8] and bon[-1]["gen_tokens"] > 6 * bon[0]["gen_tokens"]
    # the unbiased pass@k over each row's samples: k = 1, 2, 4, 8 at n = 8; pass@8 bounds any selection
    ks = dict(kv.split(":") for kv in bon[-1]["pass_at_k"].split())
    assert list(ks) == ["1", "2", "4", "8"] and float(ks["8"]) >= bon[-1]["accuracy"] >= 0
    assert [r["pass_at_k"].split()[0].split(":")[0] for r in bon] == ["1"] * 4
    assert all(r["exec_seconds"] == 0 for r in table)  # nothing executed
    paths = report.write(out, table)
    with open(out / "report.csv") as f:
        assert len(list(csv.DictReader(f))) == 8
    md = (out / "report.md").read_text()
    table_md, saturation_md = md.split("## Saturation points (TTSPM)")
    assert table_md.count("\n| math500 |") == 8 and "bootstrap" in table_md
    assert saturation_md.count("\n| math500 | n |") == 2  # each curve swept over 4 values of n: fitted
    # the imported bank has no parameter count: no FLOPs plot, one tokens plot
    assert [p.name for p in paths if p.suffix == ".png"] == ["acc_vs_tokens_math500.png"]  # no thinking budgets


def test_png_and_figure(swept):
    out, _ = swept
    table = report.rows(out)
    fig = report.plot(table, "gen_tokens", out / "check.png", title="t")
    assert (out / "check.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (ax,) = fig.axes
    assert "tokens" in ax.get_xlabel() and "accuracy" in ax.get_ylabel()
    curves = [line for line in ax.get_lines() if line.get_label() != report.PARETO]
    assert sorted(line.get_label() for line in curves) == ["best_of_n verifier=recorded", "self_consistency"]
    assert all(len(line.get_xdata()) == 4 for line in curves)  # n = 1, 2, 4, 8 along each curve
    (front,) = [line for line in ax.get_lines() if line.get_label() == report.PARETO]
    best = max(r["accuracy"] for r in table)
    assert max(front.get_ydata()) == best
    flops = report.plot([{**r, "flops": r["gen_tokens"] * 2e9} for r in table], "flops")
    assert "FLOPs" in flops.axes[0].get_xlabel()


def test_report_reads_only_the_current_plan(swept, tmp_path, capsys):
    out, f = swept
    doc = yaml.safe_load(f.read_text())
    doc["grid"] = {"n": [2, 4]}
    g = tmp_path / "edited.yaml"
    g.write_text(yaml.safe_dump(doc))
    sweep.write_plan(sweep.plan(g))  # the edited plan, nothing run: its records all exist already
    assert sorted({r["n"] for r in report.rows(out)}) == [2, 4]
    assert main(["report", str(out)]) == 0
    assert "acc_vs_tokens_math500.png" in capsys.readouterr().out
    assert main(["report", str(tmp_path)]) == 2
    assert "not a sweep folder" in capsys.readouterr().err


def test_compare_and_cost_of_pass_from_the_cli(swept, capsys):
    """`tts report DIR --compare A B` pairs two configurations of the real replayed sweep; the
    table carries cost-of-pass = (generator + verifier tokens per problem) / accuracy."""
    out, _ = swept
    table = report.rows(out)
    for r in table:
        assert r["cop_tokens"] == pytest.approx((r["gen_tokens"] + r["verifier_tokens"]) / r["accuracy"])
    assert main(["report", str(out), "--compare", "self_consistency n=4", "best_of_n verifier=recorded n=4"]) == 0
    text = capsys.readouterr().out
    assert "20 (problem, seed) pairs" in text and "McNemar exact p" in text
    assert main(["report", str(out), "--compare", "self_consistency n=3", "best_of_n verifier=recorded n=4"]) == 2
    assert "names 0 configurations" in capsys.readouterr().err
