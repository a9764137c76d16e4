"""How sure a comparison is (hf_reservoir/utils/intervals.py): t intervals over seeds, sign tests, rate intervals,
words."""

import math
import statistics

import pytest

from hf_reservoir.utils.intervals import describe_interval, rate_interval, ratio_words, sign_test, t_interval


def test_the_t_interval_of_three_seeds_uses_t_4_30():
    low, high = t_interval([1.0, 1.2, 1.4])
    assert (low + high) / 2 == pytest.approx(1.2)
    assert (high - low) / 2 == pytest.approx(4.303 * statistics.stdev([1.0, 1.2, 1.4]) / math.sqrt(3))
    assert t_interval([1.3]) is None and t_interval([1.0, None, float("nan")]) is None  # one value: no interval


def test_the_interval_narrows_with_more_seeds_of_the_same_spread():
    three = t_interval([0.9, 1.0, 1.1])
    six = t_interval([0.9, 1.0, 1.1] * 2)
    assert six[1] - six[0] < three[1] - three[0]


def test_the_sign_test_is_one_sided_on_the_larger_side():
    assert sign_test(0, 3) == pytest.approx(0.125) and sign_test(3, 3) == pytest.approx(0.125)
    assert sign_test(1, 3) == pytest.approx(0.5) and sign_test(0, 5) == pytest.approx(1 / 32)
    assert sign_test(0, 0) is None


def test_clopper_pearson_against_known_values():
    assert rate_interval(0, 30)[0] == 0 and rate_interval(0, 30)[1] == pytest.approx(0.1157, abs=1e-4)
    low, high = rate_interval(5, 15)
    assert low == pytest.approx(0.1182, abs=1e-4) and high == pytest.approx(0.6162, abs=1e-4)
    assert rate_interval(3, 3) == (pytest.approx(0.2924, abs=1e-4), 1.0) and rate_interval(0, 0) is None


def test_words_match_the_interval():
    assert ratio_words((0.5, 1.5), 3) == "no difference detected (n = 3)"
    assert ratio_words((1.1, 1.5), 3) == "slower (n = 3)" and ratio_words((0.7, 0.95), 5) == "faster (n = 5)"
    assert ratio_words(None, 1) == "no interval (n = 1)"
    # A bound that rounds to 1.00 shows on which side of 1 it lies.
    assert describe_interval((1.0031, 1.56)) == "[1.003, 1.56]" and describe_interval((0.5, 1.52)) == "[0.50, 1.52]"
