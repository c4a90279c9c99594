# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the pure share <-> weights arithmetic."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import itertools
import random
from fractions import Fraction

import pytest

from ansible_collections.mixedrun.kong.plugins.module_utils._weights import (
    MAX_WEIGHT,
    WeightPlanError,
    achieved_share,
    plan_weights,
    share_from_totals,
    share_from_weights,
    validate_share,
)


def exact_share(plan):
    m, n = plan["counts"]["vm"], plan["counts"]["container"]
    return achieved_share(m, n, plan["vm_weight"], plan["container_weight"])


def check_plan(m, n, share, max_error=0.05):
    """Every invariant a plan must hold, checked with exact arithmetic independent of the implementation."""
    plan = plan_weights(m, n, share, max_error=max_error)
    a, b = plan["vm_weight"], plan["container_weight"]
    assert isinstance(a, int) and isinstance(b, int)
    assert 0 <= a <= MAX_WEIGHT and 0 <= b <= MAX_WEIGHT
    real = Fraction(100 * n * b, m * a + n * b)
    planned = Fraction(repr(float(share))) if isinstance(share, float) else Fraction(share)
    assert abs(real - planned) <= Fraction(repr(float(max_error)))
    if 0 < planned < 100:
        # a share strictly inside never starves either kind
        assert a >= 1 and b >= 1
    if planned == 0:
        assert b == 0 and a >= 1
    if planned == 100:
        assert a == 0 and b >= 1
    assert abs(plan["achieved_share"] - float(real)) < 1e-6
    assert abs(plan["error"] - float(abs(real - planned))) < 1e-6
    return plan


@pytest.mark.parametrize("m,n,share,vm_weight,container_weight", [
    (3, 3, 0, 1, 0),
    (3, 3, 100, 0, 1),
    (3, 3, 10, 9, 1),
    (3, 3, 50, 1, 1),
    (7, 3, 10, 27, 7),        # 3*7 / (7*27 + 3*7) = 21/210 = 10 %
    (7, 3, 50, 3, 7),         # 21 / 42
    (1, 1, 0.5, 199, 1),      # exact, not 181:1 at the edge of the error budget
    (7, 3, 0, 1, 0),
    (7, 3, 100, 0, 1),
    (2, 2, 25, 3, 1),
])
def test_known_plans(m, n, share, vm_weight, container_weight):
    plan = check_plan(m, n, share)
    assert (plan["vm_weight"], plan["container_weight"]) == (vm_weight, container_weight)


def test_seven_vms_three_containers_every_step():
    for share in (0.5, 1, 2, 5, 10, 20, 25, 33.3, 50, 66.6, 75, 90, 99, 99.5):
        plan = check_plan(7, 3, share)
        assert plan["error"] <= 0.05


def test_zero_and_hundred_are_exact_for_any_counts():
    for m, n in [(1, 1), (7, 3), (3, 7), (1000, 1), (1, 1000), (65535, 65535)]:
        for share in (0, 100):
            plan = check_plan(m, n, share)
            assert plan["exact"] and plan["error"] == 0
            assert plan["achieved_share"] == share


def test_exact_error_zero_is_exact():
    plan = check_plan(7, 3, 33.3, max_error=0)
    assert plan["exact"]
    assert exact_share(plan) == Fraction(333, 10)
    assert (plan["vm_weight"], plan["container_weight"]) == (667, 777)


def test_smallest_readable_weights():
    """No smaller pair of weights (by the larger of the two) meets the error when the first convergent is used."""
    for m, n, share in [(3, 3, 10), (7, 3, 10), (5, 2, 12.5), (4, 6, 20)]:
        plan = check_plan(m, n, share)
        biggest = max(plan["vm_weight"], plan["container_weight"])
        for a, b in itertools.product(range(1, biggest), repeat=2):
            if max(a, b) >= biggest:
                continue
            real = Fraction(100 * n * b, m * a + n * b)
            assert abs(real - Fraction(repr(float(share)))) > Fraction(5, 100), (m, n, share, a, b)


def test_tiny_share_still_reaches_containers():
    plan = check_plan(5, 7, 0.01)
    assert plan["container_weight"] >= 1
    assert plan["achieved_share"] > 0
    plan = check_plan(1, 1, 0.001)   # convergent too large: the simplest fraction within the error
    assert plan["container_weight"] == 1 and plan["vm_weight"] <= MAX_WEIGHT
    assert 0 < plan["achieved_share"] <= 0.051


def test_huge_counts():
    check_plan(10000, 1, 0.5)
    check_plan(1, 10000, 99.5)
    check_plan(50000, 50000, 37.5)
    check_plan(65535, 1, 1)


def test_impossible_plans_fail_and_say_why():
    with pytest.raises(WeightPlanError) as err:
        plan_weights(1000000, 1, 50)
    text = str(err.value)
    assert "65535" in text and "closest possible" in text and "max_error" in text
    with pytest.raises(WeightPlanError, match="closest possible is 51.6"):
        plan_weights(1, 70000, 0.001)


@pytest.mark.parametrize("m,n,share,pattern", [
    (0, 3, 50, "no VM targets"),
    (3, 0, 50, "no container targets"),
    (0, 3, 0, "no VM targets"),
    (0, 0, 0, "nothing can receive traffic"),
])
def test_missing_kind(m, n, share, pattern):
    with pytest.raises(WeightPlanError, match=pattern):
        plan_weights(m, n, share)


def test_one_kind_only_at_its_edge():
    assert plan_weights(0, 3, 100)["container_weight"] == 1
    assert plan_weights(3, 0, 0)["vm_weight"] == 1


@pytest.mark.parametrize("share", [-1, 100.5, "abc", None, True, float("nan"), float("inf")])
def test_bad_share(share):
    with pytest.raises(WeightPlanError, match="container_share"):
        plan_weights(3, 3, share)


@pytest.mark.parametrize("max_error", [-0.1, 101, "x"])
def test_bad_max_error(max_error):
    with pytest.raises(WeightPlanError, match="max_error"):
        plan_weights(3, 3, 10, max_error=max_error)


@pytest.mark.parametrize("count", [-1, 1.5, "3", True])
def test_bad_counts(count):
    with pytest.raises(WeightPlanError, match="count"):
        plan_weights(count, 3, 10)


def test_share_text_is_read_exactly():
    assert validate_share("0.1") == Fraction(1, 10)
    assert validate_share(0.1) == Fraction(1, 10)
    assert validate_share("25%") == 25


def assert_impossible(m, n, share, max_error):
    """Independent check that no weights 1..65535 give a share within max_error (b/a in a ratio interval)."""
    s = Fraction(repr(float(share)))
    e = Fraction(repr(float(max_error)))
    lo_s, hi_s = max(Fraction(0), s - e), min(Fraction(100), s + e)
    lo = lo_s * m / (n * (100 - lo_s))
    hi = None if hi_s == 100 else hi_s * m / (n * (100 - hi_s))
    if hi is not None and hi < Fraction(1, MAX_WEIGHT):
        return  # even container 1 against VM 65535 gives too much
    if lo > MAX_WEIGHT:
        return  # even container 65535 against VM 1 gives too little
    for a in range(1, MAX_WEIGHT + 1):
        b_min = max(1, -(-lo.numerator * a // lo.denominator))
        b_max = MAX_WEIGHT if hi is None else min(MAX_WEIGHT, hi.numerator * a // hi.denominator)
        assert b_min > b_max, "weights %d:%d would meet the plan" % (a, b_min)


def test_impossible_check_is_sound():
    with pytest.raises(AssertionError):
        assert_impossible(7, 3, 10, 0.05)


def test_property_random_combinations():
    rng = random.Random(20240601)
    for _unused in range(3000):
        m = rng.choice([1, 2, 3, 7, rng.randint(1, 50), rng.randint(1, 2000)])
        n = rng.choice([1, 2, 3, rng.randint(1, 50), rng.randint(1, 2000)])
        share = rng.choice([0, 100, 0.5, round(rng.uniform(0, 100), rng.randint(0, 3)), rng.randint(0, 100)])
        max_error = rng.choice([0.05, 0.01, 0.5, 1])
        try:
            check_plan(m, n, share, max_error)
        except WeightPlanError as exc:
            # Only allowed when no pair of weights within Kong's limit meets the plan.
            assert "Kong's maximum" in str(exc)
            assert_impossible(m, n, share, max_error)


def test_share_from_totals_and_weights():
    assert share_from_totals(0, 0) is None
    assert share_from_totals(90, 10) == 10
    assert share_from_totals(90, 10, 100) == 5
    share, totals = share_from_weights({"a:1": 9, "b:1": 1, "c:1": 0}, {"a:1": "vm", "b:1": "container"})
    assert share == 10 and totals == {"vm": 9, "container": 1, "other": 0}
