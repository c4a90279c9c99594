# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure share <-> weights arithmetic for a VM/container traffic split (no I/O).

Kong balances over targets by weight. With ``m`` VM targets of weight ``a`` each and ``n`` container
targets of weight ``b`` each, containers receive ``n*b / (m*a + n*b)`` of the traffic. Given a planned
container share ``s`` (percent) and an allowed error ``e`` (percentage points), the weights must satisfy

    s - e <= 100 * n*b / (m*a + n*b) <= s + e,    0 <= a, b <= 65535, integers.

That is an interval for the ratio ``b/a``. The simplest fraction in an interval (the first one met on the
Stern-Brocot tree) has both the smallest numerator and the smallest denominator of every fraction in it, so
it gives the smallest, most readable weights that meet the error; when even it exceeds Kong's 65535 limit,
no pair of weights can meet the plan and the error says what the closest achievable share is.

Rules that make a split safe to act on:
- share 0 and 100 are exact: the other kind gets weight 0;
- a share strictly between 0 and 100 never rounds to "no traffic" for either kind (both weights >= 1),
  even when the allowed error would permit it: a 0.01 % canary step must reach the canary.

All arithmetic is exact (``fractions.Fraction``); shares given as floats are read by their decimal text
(``0.1`` is one tenth, not the nearest binary double), and a share may be given as a fraction text such as
``"300/498"`` (the exact share some weights give, so a re-plan from it is not blurred by rounding).

Fewest writes: given the weights the targets hold now, ``plan_weights(..., current_vm=[...],
current_container=[...])`` prefers, among every pair that meets the plan, the one that changes the fewest of
those targets: the current pair itself when it already meets the plan (nothing to write), else a pair that
keeps one kind's weight (7 VMs at 27 and 3 containers at 7 -> 50 %: the VMs stay at 27, the 3 containers go
to 63), else the smallest readable pair.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
from fractions import Fraction

MAX_WEIGHT = 65535
DEFAULT_MAX_ERROR = 0.05
_HUNDRED = Fraction(100)


class WeightPlanError(ValueError):
    """The plan cannot be met (or an input is invalid); the message says why and what to change."""


def to_fraction(value, field):
    """Read a number (int, float, decimal string) exactly; raise WeightPlanError naming ``field``."""
    if isinstance(value, bool) or value is None:
        raise WeightPlanError("%s must be a number, got %r" % (field, value))
    if isinstance(value, Fraction):
        return value
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise WeightPlanError("%s must be a finite number, got %r" % (field, value))
        return Fraction(repr(value))
    if isinstance(value, str):
        text = value.strip().rstrip("%").strip()
        try:
            result = Fraction(text)
        except (ValueError, ZeroDivisionError):
            raise WeightPlanError("%s must be a number such as 25 or 0.5, got %r" % (field, value))
        return result
    raise WeightPlanError("%s must be a number, got %r" % (field, value))


def validate_share(share, field="container_share"):
    """Return ``share`` as an exact Fraction in 0..100 or raise WeightPlanError naming ``field``."""
    value = to_fraction(share, field)
    if value < 0 or value > 100:
        raise WeightPlanError("%s must be between 0 and 100 (percent of the traffic sent to containers), got %s"
                              % (field, _fmt(value)))
    return value


def validate_max_error(max_error, field="max_error"):
    value = to_fraction(max_error, field)
    if value < 0 or value > 100:
        raise WeightPlanError("%s must be between 0 and 100 percentage points, got %s" % (field, _fmt(value)))
    return value


def _fmt(value, digits=6):
    """A Fraction/number as a short decimal for messages and results."""
    number = round(float(value), digits)
    if number == int(number):
        return str(int(number))
    return repr(number)


def as_float(value, digits=6):
    """Round an exact value for results (None stays None)."""
    if value is None:
        return None
    return round(float(value), digits)


def share_from_totals(vm_total, container_total, other_total=0):
    """Container share (exact Fraction, percent) of the traffic, or None when no target receives any."""
    vm_total = int(vm_total)
    container_total = int(container_total)
    other_total = int(other_total)
    total = vm_total + container_total + other_total
    if total <= 0:
        return None
    return _HUNDRED * container_total / total


def achieved_share(vm_count, container_count, vm_weight, container_weight):
    """Exact container share for equal weights within each kind, or None when no traffic flows."""
    return share_from_totals(vm_count * vm_weight, container_count * container_weight)


def _ratio_for_share(share, vm_count, container_count):
    """The ratio container_weight / vm_weight that gives exactly ``share`` (None = infinite)."""
    if share >= 100:
        return None
    return share * vm_count / (container_count * (_HUNDRED - share))


def _simplest_between(low, low_open, high):
    """Simplest fraction p/q (q >= 1) with low < (or <=) p/q <= high; ``high`` None means no upper bound.

    A Stern-Brocot walk that takes whole runs of same-direction steps at once, so it finishes in a number of
    rounds logarithmic in the answer's size. Returns (p, q)."""
    p0, q0, p1, q1 = 0, 1, 1, 0  # left bound 0/1, right bound 1/0 (infinity)

    def below(p, q):
        value = Fraction(p, q)
        return value < low or (low_open and value == low)

    def above(p, q):
        return high is not None and Fraction(p, q) > high

    while True:
        p, q = p0 + p1, q0 + q1
        if below(p, q):
            # Largest k with (p0 + k*p1) / (q0 + k*q1) still below the interval.
            limit = (low * q0 - p0) / (p1 - low * q1)
            k = int(math.floor(limit)) if low_open else int(math.ceil(limit)) - 1
            k = max(k, 1)
            p0, q0 = p0 + k * p1, q0 + k * q1
        elif above(p, q):
            # Largest k with (p1 + k*p0) / (q1 + k*q0) still above the interval.
            limit = (p1 - high * q1) / (high * q0 - p0)
            k = max(int(math.ceil(limit)) - 1, 1)
            p1, q1 = p1 + k * p0, q1 + k * q0
        else:
            return p, q


def _convergents(ratio):
    """Continued-fraction convergents (p, q) of a positive Fraction, smallest first; the last is ``ratio``."""
    h0, h1 = 0, 1
    k0, k1 = 1, 0
    num, den = ratio.numerator, ratio.denominator
    while den:
        term, rem = divmod(num, den)
        h0, h1 = h1, term * h1 + h0
        k0, k1 = k1, term * k1 + k0
        yield h1, k1
        num, den = den, rem


def _closest_within_limit(ratio, max_weight):
    """Best (container_weight, vm_weight) approximation of ``ratio`` with both weights in 1..max_weight."""
    if ratio <= 1:
        approx = ratio.limit_denominator(max_weight)
        container, vm = approx.numerator, approx.denominator
    else:
        inverse = (1 / ratio).limit_denominator(max_weight)
        container, vm = inverse.denominator, inverse.numerator
    if vm == 0:
        # The ratio is above max_weight/1: the most the containers can get is max_weight against 1.
        container, vm = max_weight, 1
    elif container == 0:
        # The ratio is below 1/max_weight: the least the containers can get is 1 against max_weight.
        container, vm = 1, max_weight
    return max(1, min(container, max_weight)), max(1, min(vm, max_weight))


def _describe_counts(vm_count, container_count):
    return "%d VM target%s and %d container target%s" % (
        vm_count, "" if vm_count == 1 else "s", container_count, "" if container_count == 1 else "s")


def plan_weights(vm_count, container_count, share, max_error=DEFAULT_MAX_ERROR, max_weight=MAX_WEIGHT,
                 current_vm=None, current_container=None):
    """Per-target weights for a planned container share.

    ``current_vm`` / ``current_container``: the weights the targets of each kind that already exist hold now
    (a list, one entry per existing target; targets still to be created are not listed). With them, the pair
    that meets the plan with the fewest changes to those targets is chosen (see the module docstring).

    Returns a dict: ``vm_weight``, ``container_weight`` (ints, equal within a kind), ``planned_share``,
    ``achieved_share``, ``error`` (floats, percent / percentage points), ``exact`` (bool), ``counts`` and
    ``writes`` (how many of the listed current targets change weight; 0 without current weights).
    Raises WeightPlanError (with the reason and the fix) when no weights meet the plan.
    """
    share = validate_share(share)
    max_error = validate_max_error(max_error)
    for field, count in (("VM target count", vm_count), ("container target count", container_count)):
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise WeightPlanError("%s must be a whole number >= 0, got %r" % (field, count))
    if not isinstance(max_weight, int) or max_weight < 1 or max_weight > MAX_WEIGHT:
        raise WeightPlanError("max_weight must be between 1 and %d, got %r" % (MAX_WEIGHT, max_weight))
    if vm_count == 0 and container_count == 0:
        raise WeightPlanError("there are no VM targets and no container targets: nothing can receive traffic; "
                              "bind the service's nodes first")

    if share == 0 or share == 100 or vm_count == 0 or container_count == 0:
        vm_weight, container_weight = _edge_weights(vm_count, container_count, share, max_error)
    else:
        low_share = max(Fraction(0), share - max_error)
        high_share = min(_HUNDRED, share + max_error)
        low = _ratio_for_share(low_share, vm_count, container_count)
        high = _ratio_for_share(high_share, vm_count, container_count)
        container_weight, vm_weight = _pick_ratio(share, max_error, vm_count, container_count, low, high, max_weight)
        if container_weight > max_weight or vm_weight > max_weight:
            ratio = _ratio_for_share(share, vm_count, container_count)
            best_c, best_v = _closest_within_limit(ratio, max_weight)
            best_c, best_v = max(best_c, 1), max(best_v, 1)
            best = achieved_share(vm_count, container_count, best_v, best_c)
            raise WeightPlanError(
                "a container share of %s%% within %s points with %s needs weights of %d per container target "
                "and %d per VM target, over Kong's maximum of %d; the closest possible is %s%% (container weight "
                "%d, VM weight %d, error %s points): raise max_error to at least %s or plan a share Kong can "
                "express" % (_fmt(share), _fmt(max_error), _describe_counts(vm_count, container_count),
                             container_weight, vm_weight, max_weight, _fmt(best), best_c, best_v,
                             _fmt(abs(best - share)), _fmt(abs(best - share))))

    current_vm = _current_weights(current_vm, "current_vm")
    current_container = _current_weights(current_container, "current_container")
    if current_vm or current_container:
        vm_weight, container_weight = _fewest_writes(vm_count, container_count, share, max_error, max_weight,
                                                     (vm_weight, container_weight), current_vm, current_container)
    achieved = achieved_share(vm_count, container_count, vm_weight, container_weight)
    error = abs(achieved - share)
    return {
        "vm_weight": int(vm_weight),
        "container_weight": int(container_weight),
        "planned_share": as_float(share),
        "achieved_share": as_float(achieved),
        "error": as_float(error),
        "exact": error == 0,
        "counts": {"vm": vm_count, "container": container_count},
        "writes": _writes(vm_weight, container_weight, current_vm, current_container),
    }


def _current_weights(values, field):
    """The current weights as a list of ints 0..65535 (None -> [])."""
    if values is None:
        return []
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
        raise WeightPlanError("%s must be a list of weights, got %r" % (field, values))
    out = []
    for index, value in enumerate(values):
        if isinstance(value, bool):
            raise WeightPlanError("%s[%d] must be a weight 0..%d, got %r" % (field, index, MAX_WEIGHT, value))
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise WeightPlanError("%s[%d] must be a weight 0..%d, got %r" % (field, index, MAX_WEIGHT, value))
        if number != value and str(number) != str(value).strip():
            raise WeightPlanError("%s[%d] must be a whole number, got %r" % (field, index, value))
        if number < 0 or number > MAX_WEIGHT:
            raise WeightPlanError("%s[%d] must be a weight 0..%d, got %r" % (field, index, MAX_WEIGHT, value))
        out.append(number)
    return out


def _writes(vm_weight, container_weight, current_vm, current_container):
    return (sum(1 for weight in current_vm if weight != vm_weight)
            + sum(1 for weight in current_container if weight != container_weight))


def meets_plan(vm_count, container_count, share, max_error, vm_weight, container_weight, max_weight=MAX_WEIGHT):
    """Whether the pair is a valid plan: weights in 0..max_weight, some traffic flows, the share is within
    ``max_error``, 0 and 100 are exact and a share strictly between them gives both kinds traffic.
    ``share``/``max_error`` are exact Fractions (validate them first)."""
    for weight in (vm_weight, container_weight):
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0 or weight > max_weight:
            return False
    if vm_count and container_count:
        if share == 0:
            if container_weight != 0 or vm_weight < 1:
                return False
        elif share == 100:
            if vm_weight != 0 or container_weight < 1:
                return False
        elif vm_weight < 1 or container_weight < 1:
            return False
    achieved = achieved_share(vm_count, container_count, vm_weight, container_weight)
    return achieved is not None and abs(achieved - share) <= max_error


def _nearest(exact, max_weight):
    """The integers next to an exact weight, clipped to 1..max_weight."""
    low = int(math.floor(exact))
    return sorted(set(max(1, min(max_weight, value)) for value in (low, low + 1)))


def _partners(vm_count, container_count, share, vm_weight=None, container_weight=None, max_weight=MAX_WEIGHT):
    """Candidate weights of the other kind when one kind keeps ``vm_weight`` (or ``container_weight``)."""
    if vm_weight is not None:
        if container_count == 0:
            return [0]
        if vm_count == 0 or share == 100:
            return [1] if vm_count == 0 or vm_weight == 0 else []
        if share == 0:
            return [0]
        if vm_weight < 1:
            return []
        return _nearest(share * vm_count * vm_weight / (container_count * (_HUNDRED - share)), max_weight)
    if vm_count == 0:
        return [0]
    if container_count == 0 or share == 0:
        return [1] if container_count == 0 or container_weight == 0 else []
    if share == 100:
        return [0]
    if container_weight < 1:
        return []
    return _nearest(container_count * container_weight * (_HUNDRED - share) / (share * vm_count), max_weight)


def _fewest_writes(vm_count, container_count, share, max_error, max_weight, default, current_vm, current_container):
    """The valid pair that changes the fewest current targets; ties: smaller error, then smaller weights,
    then the default (smallest readable) pair."""
    candidates = [default]
    for vm_weight in sorted(set(current_vm)):
        for container_weight in sorted(set(current_container)):
            candidates.append((vm_weight, container_weight))
        for container_weight in _partners(vm_count, container_count, share, vm_weight=vm_weight, max_weight=max_weight):
            candidates.append((vm_weight, container_weight))
    for container_weight in sorted(set(current_container)):
        for vm_weight in _partners(vm_count, container_count, share, container_weight=container_weight,
                                   max_weight=max_weight):
            candidates.append((vm_weight, container_weight))
    # A kind with no targets has no weight to keep: report the default's (0 or 1) for it.
    if vm_count == 0:
        candidates = [(default[0], c) for _unused, c in candidates]
    if container_count == 0:
        candidates = [(v, default[1]) for v, _unused in candidates]
    best = None
    for rank, (vm_weight, container_weight) in enumerate(candidates):
        if not meets_plan(vm_count, container_count, share, max_error, vm_weight, container_weight, max_weight):
            continue
        error = abs(achieved_share(vm_count, container_count, vm_weight, container_weight) - share)
        key = (_writes(vm_weight, container_weight, current_vm, current_container), error,
               max(vm_weight, container_weight), rank)
        if best is None or key < best[0]:
            best = (key, (vm_weight, container_weight))
    return best[1] if best is not None else default


def _pick_ratio(share, max_error, vm_count, container_count, low, high, max_weight):
    """(container_weight, vm_weight), both >= 1, meeting the error, as small as readable.

    First choice: the first continued-fraction convergent of the exact ratio that meets the error. Convergents
    are best approximations (nothing with smaller weights is closer), so 0.5 % over 1+1 targets gives 199:1
    (exact), not 181:1 at the edge of the error budget. When that convergent is over Kong's limit, fall back
    to the simplest fraction in the allowed interval (the smallest weights of all that meet the error)."""
    ratio = _ratio_for_share(share, vm_count, container_count)
    for container_weight, vm_weight in _convergents(ratio):
        if container_weight < 1:
            continue  # 0/1: containers would get nothing although the plan gives them traffic
        if container_weight > max_weight or vm_weight > max_weight:
            break
        achieved = achieved_share(vm_count, container_count, vm_weight, container_weight)
        if abs(achieved - share) <= max_error:
            return container_weight, vm_weight
    # Both kinds keep traffic: the ratio is > 0 (open at 0) and finite (p/q with q >= 1 always is).
    return _simplest_between(low, low == 0, high)


def _edge_weights(vm_count, container_count, share, max_error):
    """Shares 0 and 100, and groups where one kind has no targets."""
    if vm_count == 0:
        # Every weight lands on containers: 100 % whatever the weight.
        if _HUNDRED - share > max_error:
            raise WeightPlanError("a container share of %s%% is impossible: there are no VM targets, so containers "
                                  "receive 100%% of the traffic; bind the VM targets or plan 100" % _fmt(share))
        return 0, 1
    if container_count == 0:
        if share > max_error:
            raise WeightPlanError("a container share of %s%% is impossible: there are no container targets; bind "
                                  "the container targets first (mixedrun.kong.mixed_service) or plan 0" % _fmt(share))
        return 1, 0
    if share == 0:
        return 1, 0
    return 0, 1


def share_from_weights(weights, kinds):
    """Current container share from Kong's weights.

    weights: dict target -> weight; kinds: dict target -> "vm" | "container" | anything else (other).
    Returns (share Fraction or None, totals dict)."""
    totals = {"vm": 0, "container": 0, "other": 0}
    for target, weight in weights.items():
        kind = kinds.get(target)
        totals[kind if kind in ("vm", "container") else "other"] += int(weight)
    return share_from_totals(totals["vm"], totals["container"], totals["other"]), totals
