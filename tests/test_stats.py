"""Report statistics (issue 16): cluster-bootstrap intervals over problems, the paired comparison
with McNemar's exact test, and cost-of-pass with a prices table — each against values worked by
hand."""

from __future__ import annotations

import math

import pytest
import yaml

from tts.errors import TTSError
from tts.experiment import report, stats


def recs(outcomes: dict[str, list[int]]) -> list[dict]:
    return [{"problem_id": p, "seed": s, "correct": bool(c)} for p, cs in outcomes.items() for s, c in enumerate(cs)]


def test_cluster_ci_resamples_problems_not_records():
    """Five identical seeds of each of 10 problems are 10 problems of evidence, not 50: the
    interval equals the one of the 10 problems with a single seed each (the old record-level
    bootstrap made it about sqrt(5) times narrower)."""
    outcomes = [1, 0, 1, 1, 0, 1, 1, 1, 0, 1]
    one = stats.cluster_ci(recs({f"p{i}": [c] for i, c in enumerate(outcomes)}))
    five = stats.cluster_ci(recs({f"p{i}": [c] * 5 for i, c in enumerate(outcomes)}))
    assert one == five and one[0] < 0.7 < one[1]
    assert stats.cluster_ci(list(reversed(recs({f"p{i}": [c] * 5 for i, c in enumerate(outcomes)})))) == five
    assert stats.cluster_ci(recs({"a": [1, 1], "b": [1]})) == (1.0, 1.0)


def test_mcnemar_exact_by_hand():
    # b=1, c=5: two-sided exact p = 2 * P(X <= 1), X ~ Bin(6, 1/2) = 2 * (1 + 6) / 64
    assert stats.mcnemar_p(1, 5) == pytest.approx(14 / 64)
    assert stats.mcnemar_p(3, 3) == 1.0 and stats.mcnemar_p(0, 0) == 1.0
    assert stats.mcnemar_p(0, 10) == pytest.approx(2 / 1024)


def test_paired_on_common_problems_only():
    a = recs({"p1": [1, 1], "p2": [1, 0], "p3": [0, 0], "p4": [1, 1]})
    b = recs({"p1": [1, 0], "p2": [0, 0], "p3": [0, 1]})  # no p4: it is not compared
    res = stats.paired(a, b)
    assert (res["problems"], res["pairs"]) == (3, 6)
    assert res["accuracy_a"] == pytest.approx(3 / 6) and res["accuracy_b"] == pytest.approx(2 / 6)
    assert (res["only_a"], res["only_b"]) == (2, 1) and res["mcnemar_p"] == pytest.approx(1.0)
    assert res["difference"] == pytest.approx(1 / 6) and res["ci_low"] <= res["difference"] <= res["ci_high"]
    with pytest.raises(TTSError, match="share no"):
        stats.paired(a, recs({"q": [1]}))


def test_dollars_and_cost_of_pass_by_hand(tmp_path):
    f = tmp_path / "prices.yaml"
    f.write_text(yaml.safe_dump({"gen": {"input": 1.0, "cached_input": 0.25, "output": 4.0}, "prm": {"input": 0.5}}))
    prices = stats.load_prices(f)
    usage = {"prompt_tokens": 1_000_000, "cached_tokens": 400_000, "completion_tokens": 500_000,
             "verifier_tokens": 2_000_000}
    # 600k uncached x $1/M + 400k cached x $0.25/M + 500k x $4/M + 2M verifier x $0.5/M
    assert stats.dollars(usage, prices["gen"], prices["prm"]) == pytest.approx(0.6 + 0.1 + 2.0 + 1.0)
    assert stats.cost_of_pass(3.7, 0.5) == pytest.approx(7.4) and stats.cost_of_pass(1.0, 0.0) == math.inf
    with pytest.raises(TTSError, match="no entry for model 'other'"):
        stats.price_of(prices, "other", "here")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"gen": {"input": -1}}))
    with pytest.raises(TTSError, match="gen.input"):
        stats.load_prices(bad)


def test_frontier_cost_of_pass_picks_the_cheapest_correct_answer():
    table = [{"task": "t", "config": "sc", "n": n, "cop_tokens": c, "cop_flops": 0.0, "cop_usd": None}
             for n, c in ((1, 900.0), (4, 700.0), (16, 1500.0))]
    front = report.frontier_cost_of_pass(table)
    assert front["t"]["cop_tokens"] == (700.0, "sc n=4") and "cop_usd" not in front["t"]
