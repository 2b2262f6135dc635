"""The TTSPM saturation points (tts/experiment/ttspm.py) and the report of a sweep over
n x thinking budget: fit, saturation rule worked by hand, grouping per axis, the table, the
Markdown section, saturation.csv and the two-panel plot, through a real plan of a sweep file."""

from __future__ import annotations

import csv
import math

import pytest
import yaml

from tts.errors import TTSError
from tts.experiment import report
from tts.experiment.execute import write_plan
from tts.experiment.plan import plan
from tts.experiment.store import SweepStore
from tts.experiment.ttspm import Fit, fit, saturation_points


def test_saturation_point_worked_by_hand():
    # F(x) = 0.8 (1 - 0.7^x): the gain of the unit after x is 0.8 * 0.3 * 0.7^x
    #   x = 8: 0.24 * 0.0576 = 0.01384 >= 0.01;  x = 9: 0.24 * 0.04035 = 0.00968 < 0.01
    f = Fit(0.8, 0.3, 0.0)
    assert f.gain(8) == pytest.approx(0.013836, abs=1e-6) and f.gain(9) == pytest.approx(0.009685, abs=1e-6)
    assert f.saturation(0.01) == 9
    # closed form: floor(ln(0.01 / 0.24) / ln(0.7)) + 1 = floor(8.91) + 1
    assert math.floor(math.log(0.01 / 0.24) / math.log(0.7)) + 1 == 9
    assert Fit(0.8, 0.3, 0.0).saturation(0.05) == 5  # 0.24 * 0.7^4 = 0.0576 >= 0.05, 0.24 * 0.7^5 = 0.0403
    assert Fit(0.05, 0.5, 0.0).saturation(0.01) == 2  # gain(1) = 0.0125, gain(2) = 0.00625
    assert Fit(0.02, 0.5, 0.0).saturation(0.01) == 1  # the second unit already gains 0.005
    assert Fit(0.0, 0.5, 0.0).saturation(0.01) == 1  # nothing to gain
    with pytest.raises(TTSError, match="epsilon"):
        f.saturation(0)


def test_fit_recovers_the_model_and_is_deterministic():
    true = Fit(0.7, 0.25, 0.0)
    xs = [1, 2, 4, 8, 16, 32]
    got = fit(xs, [true.accuracy(x) for x in xs])
    assert got.f_max == pytest.approx(0.7, abs=1e-6) and got.p == pytest.approx(0.25, abs=1e-6)
    assert got.rmse < 1e-9 and got.saturation(0.01) == true.saturation(0.01)
    noisy = [true.accuracy(x) + d for x, d in zip(xs, (0.02, -0.015, 0.01, -0.02, 0.015, -0.01))]
    a, b = fit(xs, noisy), fit(list(reversed(xs)), list(reversed(noisy)))
    assert a == b  # order of the points does not matter
    assert a.f_max == pytest.approx(0.7, abs=0.04) and a.p == pytest.approx(0.25, abs=0.06)
    assert abs(a.saturation(0.01) - true.saturation(0.01)) <= 2
    flat = fit([1, 2, 4], [0.0, 0.0, 0.0])  # a model that never answers right: saturated at once
    assert flat.f_max == 0.0 and flat.saturation(0.01) == 1
    with pytest.raises(TTSError, match="2 distinct"):
        fit([4, 4], [0.1, 0.2])
    with pytest.raises(TTSError, match="> 0"):
        fit([0, 1, 2], [0.0, 0.1, 0.2])


def _row(config, n, acc, budget=None, thinking_curve=None, task="t"):
    return {"task": task, "config": config, "n": n, "accuracy": acc, "records": 10, "thinking_budget": budget,
            "thinking_curve": thinking_curve}


def test_saturation_points_per_axis():
    model = lambda n, b: 0.9 * (1 - (1 - 0.1 * b / 64) ** n)  # noqa: E731  (p grows with the budget)
    table = [_row(f"bf budget={b}", n, model(n, b), b, f"bf n={n}") for b in (64, 128, 256) for n in (1, 2, 4, 8)]
    table.append(_row("sc", 1, 0.3))  # a curve with too few points has no saturation point
    table.append(_row("sc", 2, 0.4))
    table.append(_row("bf budget=64", 16, float("nan"), 64, "bf n=16") | {"records": 0})  # nothing answered
    points = saturation_points(table, epsilon=0.01)
    by = {(p["axis"], p["curve"]): p for p in points}
    assert set(by) == {("n", f"bf budget={b}") for b in (64, 128, 256)} | {
        ("thinking_budget", f"bf n={n}") for n in (1, 2, 4, 8)}
    for b in (64, 128, 256):
        p = by[("n", f"bf budget={b}")]
        assert p["f_max"] == pytest.approx(0.9, abs=1e-6) and p["p"] == pytest.approx(0.1 * b / 64, abs=1e-6)
        assert p["saturation"] == Fit(0.9, 0.1 * b / 64, 0).saturation(0.01) and p["unit"] == 1
        assert p["measured_up_to"] == 8 and p["extrapolated"] == (p["saturation"] > 8)
    # the budget axis: in units of the curve's smallest budget (64 tokens), saturation in tokens
    p = by[("thinking_budget", "bf n=1")]
    assert p["unit"] == 64 and p["saturation"] % 64 == 0 and p["points"] == 3
    assert saturation_points(table, epsilon=0.01, unit=32)[-1]["unit"] == 32


@pytest.fixture()
def budget_sweep(tmp_path, shared_data):
    """A real plan of an n x thinking-budget sweep (budget forcing), its plan.json written, and
    records whose accuracy follows F(n) = 0.8 (1 - (1 - p_B)^n) on 20 problems."""
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump({
        "model": {"name": str(tmp_path / "no-model-needed"), "backend": "vllm"},
        "tasks": [{"name": "gsm8k", "data": str(shared_data / "gsm8k_test.jsonl"), "limit": 20}],
        "sampling": {"max_tokens": 64},
        "strategy": {"name": "budget_forcing", "params": {"extensions": 1}},
        "grid": {"n": [1, 2, 4, 8], "budget": [16, 32, 64]}, "seeds": [0], "output": str(tmp_path / "out"),
    }))
    p = plan(f)
    write_plan(p)
    store = SweepStore(p.out)
    rates = {16: 0.3, 32: 0.5, 64: 0.7}
    for run in p.runs:
        acc = 0.8 * (1 - (1 - rates[run.thinking_budget]) ** run.cfg.n)
        for i, prob in enumerate(p.problems[0]):
            store.append({"problem_id": prob.id, "config_hash": run.config_hash, "seed": 0, "strategy": run.cfg.strategy,
                          "status": "ok", "correct": i < round(20 * acc), "usage": {
                              "prompt_tokens": 50, "completion_tokens": run.cfg.n * (run.thinking_budget + 8),
                              "verifier_tokens": 0, "generator_flops": 0, "verifier_flops": 0, "wall_seconds": 0.1}})
    return p, rates


def test_report_of_an_n_by_budget_sweep(budget_sweep, capsys):
    p, rates = budget_sweep
    assert {(r.cfg.n, r.thinking_budget) for r in p.runs} == {(n, b) for n in (1, 2, 4, 8) for b in (16, 32, 64)}
    assert {r.thinking_curve for r in p.runs} == {f"budget_forcing n={n} extensions=1" for n in (1, 2, 4, 8)}
    table = report.rows(p.out)
    assert len(table) == 12 and {r["thinking_budget"] for r in table} == {16, 32, 64}
    points = saturation_points(table)
    n_axis = {pt["curve"]: pt for pt in points if pt["axis"] == "n"}
    for b, rate in rates.items():
        pt = n_axis[f"budget_forcing budget={b} extensions=1"]
        # 20 problems quantize the accuracies to 0.05: the fit is close, not exact
        assert pt["f_max"] == pytest.approx(0.8, abs=0.08) and pt["p"] == pytest.approx(rate, abs=0.08)
        assert abs(pt["saturation"] - Fit(0.8, rate, 0).saturation(0.01)) <= 3
    assert len([pt for pt in points if pt["axis"] == "thinking_budget"]) == 4
    paths = report.write(p.out, table, points)
    names = {path.name for path in paths}
    assert {"saturation.csv", "ttspm_gsm8k.png", "acc_vs_tokens_gsm8k.png"} <= names
    assert (p.out / "ttspm_gsm8k.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(p.out / "saturation.csv") as fh:
        assert len(list(csv.DictReader(fh))) == len(points) == 7
    md = (p.out / "report.md").read_text()
    assert "## Saturation points (TTSPM)" in md and md.count("| gsm8k | n |") == 3
    fig = report.plot_ttspm(table, points)
    left, right = fig.axes
    curves = [line.get_label() for line in left.get_lines() if line.get_label() != report.PARETO]
    assert sorted(curves) == sorted(f"budget_forcing budget={b} extensions=1" for b in rates)  # one per budget
    assert any(line.get_label() == report.PARETO for line in left.get_lines())
    assert "generated tokens" in left.get_xlabel() and "n" in right.get_xlabel()

    from tts.cli import main

    capsys.readouterr()
    assert main(["report", str(p.out), "--epsilon", "0.02"]) == 0
    out = capsys.readouterr().out
    assert "saturation points" in out and "samples" in out and "thinking tokens" in out
    assert main(["report", str(p.out), "--epsilon", "0"]) == 2
    assert "--epsilon must be > 0" in capsys.readouterr().err
