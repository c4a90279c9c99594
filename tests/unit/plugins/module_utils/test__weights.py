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


# -- fewest writes: keep the current weights when they meet the plan -------------------------------------------
def valid_partners(m, n, share, max_error, vm_weight):
    """Independent: every container weight 0..65535 that meets the plan with the VMs kept at ``vm_weight``."""
    s, e = Fraction(share), Fraction(max_error)
    if s == 0:
        return [0] if vm_weight >= 1 else []
    if s == 100:
        return list(range(1, MAX_WEIGHT + 1)) if vm_weight == 0 else []
    if vm_weight < 1:
        return []
    lo_s, hi_s = max(Fraction(0), s - e), min(Fraction(100), s + e)
    lo = lo_s * m * vm_weight / (n * (100 - lo_s))
    low = max(1, -(-lo.numerator // lo.denominator))
    if hi_s == 100:
        high = MAX_WEIGHT
    else:
        hi = hi_s * m * vm_weight / (n * (100 - hi_s))
        high = min(MAX_WEIGHT, hi.numerator // hi.denominator)
    return list(range(low, high + 1)) if low <= high else []


def check_replan(m, n, share, max_error=0.05, current_vm=None, current_container=None):
    """A plan with current weights keeps every invariant of a plan and never writes more than the default."""
    plan = plan_weights(m, n, share, max_error=max_error, current_vm=current_vm, current_container=current_container)
    a, b = plan["vm_weight"], plan["container_weight"]
    planned = Fraction(share) if not isinstance(share, float) else Fraction(repr(share))
    real = Fraction(100 * n * b, m * a + n * b)
    assert 0 <= a <= MAX_WEIGHT and 0 <= b <= MAX_WEIGHT
    assert abs(real - planned) <= Fraction(repr(float(max_error)))
    if 0 < planned < 100:
        assert a >= 1 and b >= 1
    if planned == 0:
        assert b == 0
    if planned == 100:
        assert a == 0
    default = plan_weights(m, n, share, max_error=max_error)
    expected_writes = (sum(1 for w in current_vm or [] if w != a) + sum(1 for w in current_container or [] if w != b))
    assert plan["writes"] == expected_writes
    default_writes = (sum(1 for w in current_vm or [] if w != default["vm_weight"])
                      + sum(1 for w in current_container or [] if w != default["container_weight"]))
    assert plan["writes"] <= default_writes
    return plan


@pytest.mark.parametrize("m,n,share", [(3, 3, 0.6), (9, 20, 21), (7, 3, 33.3), (1, 1, 0.5), (5, 7, 0.01)])
def test_replanning_from_the_achieved_share_writes_nothing(m, n, share):
    """The audit's cases: a re-plan from Kong's (rounded) achieved share used to pick another pair
    (3+3 at 0.6 %: 165/1 -> 164/1; 9+20 at 21 %: 92/11 -> 67/8, all 29 rewritten)."""
    first = check_plan(m, n, share)
    exact = "%d/%d" % (100 * n * first["container_weight"], m * first["vm_weight"] + n * first["container_weight"])
    for again_share in (first["achieved_share"], exact):
        again = check_replan(m, n, again_share, current_vm=[first["vm_weight"]] * m,
                             current_container=[first["container_weight"]] * n)
        assert (again["vm_weight"], again["container_weight"]) == (first["vm_weight"], first["container_weight"])
        assert again["writes"] == 0


def test_the_old_replan_did_pick_another_pair():
    """Proof that the test above can fail: without the current weights the re-plan moves (the audit's bug)."""
    first = plan_weights(3, 3, 0.6)
    blind = plan_weights(3, 3, first["achieved_share"])
    assert (blind["vm_weight"], blind["container_weight"]) != (first["vm_weight"], first["container_weight"])


def test_property_second_run_writes_nothing():
    """Many counts and shares: plan, then plan again from the achieved share (rounded as the module reports it,
    and exact) with the weights Kong now holds: the same pair, no write."""
    rng = random.Random(4711)
    cases = [(m, n, s) for m in (1, 2, 3, 7, 9) for n in (1, 3, 20) for s in (0, 0.5, 0.6, 1, 10, 21, 33.3, 50, 99.5, 100)]
    cases += [(rng.randint(1, 300), rng.randint(1, 300), round(rng.uniform(0, 100), rng.randint(0, 3))) for _unused in range(250)]
    for m, n, share in cases:
        for max_error in (0.05, 0.5):
            try:
                first = plan_weights(m, n, share, max_error=max_error)
            except WeightPlanError:
                continue
            a, b = first["vm_weight"], first["container_weight"]
            exact = "%d/%d" % (100 * n * b, m * a + n * b)
            for again_share in (first["achieved_share"], exact):
                again = check_replan(m, n, again_share, max_error, current_vm=[a] * m, current_container=[b] * n)
                assert (again["vm_weight"], again["container_weight"], again["writes"]) == (a, b, 0), (m, n, share, max_error)


def test_keeps_one_kind_when_it_can():
    # 7 VMs at 27 + 3 containers at 7 (10 %) -> 50 %: VMs keep 27, containers 63: 3 writes, not 7 or 10
    plan = check_replan(7, 3, 50, current_vm=[27] * 7, current_container=[7] * 3)
    assert (plan["vm_weight"], plan["container_weight"], plan["writes"]) == (27, 63, 3)
    assert plan["exact"]
    # and the default (smallest) pair would have rewritten every target
    assert (plan_weights(7, 3, 50)["vm_weight"], plan_weights(7, 3, 50)["container_weight"]) == (3, 7)
    # share 0 from VMs at 100 / containers at 0: nothing to write
    plan = check_replan(7, 3, 0, current_vm=[100] * 7, current_container=[0] * 3)
    assert (plan["vm_weight"], plan["container_weight"], plan["writes"]) == (100, 0, 0)
    # 100 %: the containers keep their weight, only the VMs drop to 0
    plan = check_replan(7, 3, 100, current_vm=[27] * 7, current_container=[63] * 3)
    assert (plan["vm_weight"], plan["container_weight"], plan["writes"]) == (0, 63, 7)
    # back to 0 %: the VMs are at 0, so each VM needs a weight; the containers go to 0 as well
    plan = check_replan(7, 3, 0, current_vm=[0] * 7, current_container=[63] * 3)
    assert plan["container_weight"] == 0 and plan["vm_weight"] >= 1 and plan["writes"] == 10
    # 3 containers are fewer than 7 VMs: keeping the VMs is preferred when both are possible
    plan = check_replan(7, 3, 25, current_vm=[9] * 7, current_container=[7] * 3)
    assert plan["vm_weight"] == 9 and plan["writes"] == 0  # 21 / 84 = 25 % exactly, already there


def test_current_weights_within_the_error_are_kept():
    # 165/1 over 3+3 gives 0.60241 %, within 0.05 of 0.6: keep
    plan = check_replan(3, 3, 0.6, current_vm=[165] * 3, current_container=[1] * 3)
    assert plan["writes"] == 0 and plan["error"] <= 0.05 and not plan["exact"]
    # not within 0.001 of 0.6: rewritten (to the exact 0.6 %: 497/3)
    plan = check_replan(3, 3, 0.6, max_error=0.001, current_vm=[165] * 3, current_container=[1] * 3)
    assert plan["writes"] > 0 and plan["error"] <= 0.001


def test_no_kept_weight_fits_falls_back_to_the_smallest_pair():
    # VMs at 1, containers at 0 -> 10 % over 7+3: 1 VM weight allows no container weight (1 gives 30 %)
    plan = check_replan(7, 3, 10, current_vm=[1] * 7, current_container=[0] * 3)
    assert (plan["vm_weight"], plan["container_weight"], plan["writes"]) == (27, 7, 10)


def test_uneven_current_weights_fix_only_the_odd_one():
    plan = check_replan(7, 3, 10, current_vm=[27] * 6 + [99], current_container=[7] * 3)
    assert (plan["vm_weight"], plan["container_weight"], plan["writes"]) == (27, 7, 1)


def test_new_targets_are_not_writes():
    """current_* lists only the targets that exist; a node that joins is created anyway (one POST)."""
    # 3 VMs x 3 + 3 containers x 1 = 25 %; a 4th VM joins: keeping the VMs at 3 needs containers at 4/3, keeping
    # the containers at 1 needs VMs at 9/4: neither is a whole number within the error -> the smallest pair 9/4,
    # 6 writes (the new VM is a create, not counted)
    plan = check_replan(4, 3, 25, current_vm=[3] * 3, current_container=[1] * 3)
    assert (plan["vm_weight"], plan["container_weight"], plan["writes"]) == (9, 4, 6)
    # 2 VMs x 3 + 3 containers x 1 = 33.3.. %, one more container: 2 x 3 + 4 x 1 = 40 %: planned 40 keeps all
    plan = check_replan(2, 4, 40, current_vm=[3] * 2, current_container=[1] * 3)
    assert (plan["vm_weight"], plan["container_weight"], plan["writes"]) == (3, 1, 0)


def test_fewest_writes_is_minimal_against_brute_force():
    """For random current weights, no pair keeping the VM weight (or the container weight) would write fewer."""
    rng = random.Random(99)
    for _unused in range(300):
        m, n = rng.randint(1, 12), rng.randint(1, 12)
        share = rng.choice([0, 100, rng.randint(1, 99), round(rng.uniform(0.1, 99.9), 2)])
        a0, b0 = rng.randint(0, 200), rng.randint(0, 200)
        try:
            plan = check_replan(m, n, share, 0.5, current_vm=[a0] * m, current_container=[b0] * n)
        except WeightPlanError:
            continue
        if valid_partners(m, n, share, 0.5, a0):
            assert plan["writes"] <= n, (m, n, share, a0, b0, plan)
        if b0 in valid_partners(m, n, share, 0.5, a0):
            assert plan["writes"] == 0, (m, n, share, a0, b0, plan)


def test_one_kind_only_keeps_its_weight():
    plan = check_replan(0, 3, 100, current_container=[5] * 3)
    assert (plan["vm_weight"], plan["container_weight"], plan["writes"]) == (0, 5, 0)
    plan = check_replan(3, 0, 0, current_vm=[7] * 3)
    assert (plan["vm_weight"], plan["container_weight"], plan["writes"]) == (7, 0, 0)


def test_exact_fraction_share_text():
    plan = plan_weights(3, 3, "300/498")
    assert plan["planned_share"] == round(float(Fraction(300, 498)), 6)
    assert (plan["vm_weight"], plan["container_weight"]) == (165, 1) and plan["exact"]


@pytest.mark.parametrize("current,pattern", [
    ("27", "must be a list"), ([70000], r"current_vm\[0\] must be a weight"), ([-1], "must be a weight"),
    ([True], "must be a weight"), ([1.5], "whole number"), (["x"], "must be a weight"),
])
def test_bad_current_weights(current, pattern):
    with pytest.raises(WeightPlanError, match=pattern):
        plan_weights(3, 3, 10, current_vm=current)
