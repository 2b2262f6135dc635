"""The unbiased pass@k estimator (Chen et al., 2021) against hand-worked values."""

from __future__ import annotations

import math

import pytest

from tts.experiment.stats import pass_at_k, pass_at_k_table


@pytest.mark.parametrize("n, c, k, expected", [
    (5, 2, 1, 2 / 5),           # pass@1 is the fraction correct
    (5, 2, 2, 1 - 3 / 10),      # 1 - C(3,2)/C(5,2)
    (5, 2, 3, 1 - 1 / 10),      # 1 - C(3,3)/C(5,3)
    (5, 2, 4, 1.0),             # only 3 wrong samples: any 4 hold a correct one
    (4, 1, 2, 1 - 3 / 6),       # 1 - C(3,2)/C(4,2)
    (10, 0, 5, 0.0),
    (10, 10, 1, 1.0),
    (1, 1, 1, 1.0),
    (1, 0, 1, 0.0),
    (8, 3, 4, 1 - 5 / 70),      # 1 - C(5,4)/C(8,4)
])
def test_hand_worked_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_matches_the_binomial_formula_where_the_binomials_are_huge():
    n = 200
    for c in (1, 7, 100, 193):
        for k in (1, 10, 100):
            exact = 1 - math.comb(n - c, k) / math.comb(n, k)  # exact integers, one rounding
            assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-9, abs=1e-12)


def test_the_table_lists_powers_of_two_and_n():
    assert pass_at_k_table(1, 1) == {"1": 1.0}
    assert list(pass_at_k_table(8, 3)) == ["1", "2", "4", "8"]
    assert list(pass_at_k_table(5, 2)) == ["1", "2", "4", "5"]
    assert pass_at_k_table(5, 2)["2"] == pytest.approx(0.7)
    assert pass_at_k_table(0, 0) == {}


@pytest.mark.parametrize("n, c, k", [(3, 4, 1), (3, 1, 0), (3, 1, 4), (3, -1, 1)])
def test_impossible_counts_are_refused(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)
