# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""KIC 3.x weight translation (forward) and backend_weights (inverse): property-style round trips."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import itertools
import random
from fractions import Fraction

import pytest

from ansible_collections.mixedrun.kong.plugins.module_utils import _kic
from ansible_collections.mixedrun.kong.plugins.module_utils._weights import WeightPlanError, plan_weights


def vm_targets(count, offset=0):
    return ["10.1.%d.%d:8080" % ((i + offset) // 250, (i + offset) % 250 + 1) for i in range(count)]


def pod_targets(count):
    return ["10.244.%d.%d:8080" % (i // 250, i % 250 + 1) for i in range(count)]


def round_trip(vm_count, container_count, vm_weight, container_weight, lists=True):
    """backend_weights then translate; with ``lists=False`` the endpoints are given as counts (faster)."""
    if lists:
        vms, pods = vm_targets(vm_count), pod_targets(container_count)
    else:
        vms, pods = ["backend0/%d" % i for i in range(vm_count)], ["backend1/%d" % i for i in range(container_count)]
        backend = _kic.backend_weights(vm_count, container_count, vm_weight, container_weight)
        targets = _kic.translate([{"weight": backend["vm"], "endpoints": vm_count}, {"weight": backend["container"], "endpoints": container_count}])
        return backend, targets, vms, pods
    backend = _kic.backend_weights(vms, pods, vm_weight, container_weight)
    targets = _kic.translate([{"weight": backend["vm"], "endpoints": vms}, {"weight": backend["container"], "endpoints": pods}])
    return backend, targets, vms, pods


# ---------------------------------------------------------------- forward rules


def test_forward_integer_division_minimum_one_and_zero():
    assert _kic.backend_target_weight(10, 3) == 3          # 10 // 3
    assert _kic.backend_target_weight(2, 3) == 1           # 0 -> minimum 1
    assert _kic.backend_target_weight(1, 1000) == 1
    assert _kic.backend_target_weight(0, 3) == 0           # weight 0 kept as 0
    assert _kic.backend_target_weight(None, 3) is None     # unset: Kong's default
    assert _kic.backend_target_weight(50, 0) is None       # no targets


def test_forward_single_backend_is_divided_too():
    # one backendRef or several: the same rule (translate_upstreams.go getUpstreams has no special case)
    assert _kic.translate([{"weight": 90, "endpoints": ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]}]) == \
        {"10.0.0.1:80": 30, "10.0.0.2:80": 30, "10.0.0.3:80": 30}
    assert _kic.translate([{"weight": None, "endpoints": ["10.0.0.1:80"]}]) == {"10.0.0.1:80": 100}


def test_forward_duplicates_summed_and_unset_counts_100():
    result = _kic.translate([{"weight": 10, "endpoints": ["10.0.0.1:80", "10.0.0.2:80"]},
                             {"weight": 9, "endpoints": ["10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"]},
                             {"weight": None, "endpoints": ["10.0.0.4:80"]}])
    assert result == {"10.0.0.1:80": 5, "10.0.0.2:80": 8, "10.0.0.3:80": 3, "10.0.0.4:80": 103}


def test_forward_duplicate_endpoint_within_a_service_counted_once():
    assert _kic.translate([{"weight": 10, "endpoints": ["10.0.0.1:80", "10.0.0.1:80", "10.0.0.2:80"]}]) == {"10.0.0.1:80": 5, "10.0.0.2:80": 5}


def test_slice_endpoints_reads_as_kic_does():
    slices = [
        {"ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "metrics", "port": 9090, "protocol": "TCP"}],
         "endpoints": [{"addresses": ["10.0.0.1", "10.0.0.9"], "conditions": {"ready": True}},
                       {"addresses": ["10.0.0.2"], "conditions": {"ready": False}},
                       {"addresses": ["10.0.0.3"]}]},
        {"ports": [{"name": "http", "port": 8080}], "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["fd00::1"]}]},
        {"ports": [{"name": "http", "port": 8080, "protocol": "UDP"}], "endpoints": [{"addresses": ["10.0.0.7"]}]},
    ]
    assert _kic.slice_endpoints(slices, "http") == ["10.0.0.1:8080", "10.0.0.3:8080", "[fd00::1]:8080"]
    assert _kic.slice_endpoints(slices, "metrics") == ["10.0.0.1:9090", "10.0.0.3:9090"]


# ---------------------------------------------------------------- inverse, round trip


COUNTS = [0, 1, 2, 3, 5, 7, 10, 64, 999, 1000, 1201]
WEIGHTS = [0, 1, 2, 3, 7, 100, 398, 999, 1000]


@pytest.mark.parametrize("vm_count,container_count", [(m, n) for m, n in itertools.product(COUNTS, COUNTS) if m or n][::3])
def test_round_trip_exact_for_many_counts_and_weights(vm_count, container_count):
    for vm_weight, container_weight in itertools.product(WEIGHTS, WEIGHTS):
        try:
            backend, targets, vms, pods = round_trip(vm_count, container_count, vm_weight, container_weight, lists=False)
        except _kic.KicWeightError as exc:
            assert max(vm_weight * vm_count, container_weight * container_count) > _kic.MAX_BACKEND_WEIGHT, str(exc)
            continue
        assert 0 <= backend["vm"] <= _kic.MAX_BACKEND_WEIGHT and 0 <= backend["container"] <= _kic.MAX_BACKEND_WEIGHT
        assert all(targets[t] == vm_weight for t in vms)
        assert all(targets[t] == container_weight for t in pods)


def test_round_trip_random():
    rng = random.Random(13)
    for _round in range(500):
        vm_count, container_count = rng.randint(0, 300), rng.randint(0, 300)
        vm_weight, container_weight = rng.randint(0, 3000), rng.randint(0, 3000)
        try:
            backend, targets, vms, pods = round_trip(vm_count, container_count, vm_weight, container_weight)
        except _kic.KicWeightError:
            assert max(vm_weight * vm_count, container_weight * container_count) > _kic.MAX_BACKEND_WEIGHT
            continue
        assert [targets[t] for t in vms] == [vm_weight] * vm_count
        assert [targets[t] for t in pods] == [container_weight] * container_count


@pytest.mark.parametrize("vm_count,container_count", [(3, 2), (2, 3), (7, 2), (1, 9), (10, 10), (25, 4), (3, 1000)])
@pytest.mark.parametrize("share", [0, 0.5, 12.5, 50, 100])
def test_split_shares_come_out_exactly(vm_count, container_count, share):
    try:
        plan = plan_weights(vm_count, container_count, share, max_error=0)
    except WeightPlanError:
        pytest.skip("Kong cannot express %s %% exactly with %d/%d" % (share, vm_count, container_count))
    backend, targets, vms, pods = round_trip(vm_count, container_count, plan["vm_weight"], plan["container_weight"])
    total = sum(targets.values())
    assert Fraction(100 * sum(targets[t] for t in pods), total) == Fraction(str(share))
    if share == 0:
        assert backend["container"] == 0
    if share == 100:
        assert backend["vm"] == 0


def test_12_5_percent_with_3_vms_2_pods():
    plan = plan_weights(3, 2, 12.5, max_error=0)
    assert (plan["vm_weight"], plan["container_weight"]) == (14, 3)
    assert _kic.backend_weights(3, 2, 14, 3) == {"vm": 42, "container": 6}
    targets = _kic.translate([{"weight": 42, "endpoints": 3}, {"weight": 6, "endpoints": 2}])
    assert sorted(targets.values()) == [3, 3, 14, 14, 14]


def test_weight_one_over_many_endpoints_and_counts():
    assert _kic.backend_weights(1000, 1, 1, 65535) == {"vm": 1000, "container": 65535}


def test_over_gateway_limit_is_a_clear_error():
    with pytest.raises(_kic.KicWeightError) as info:
        _kic.backend_weights(1000, 2, 1001, 1)
    message = str(info.value)
    assert "1001000" in message and "1000000" in message and "max_weight <= 1000" in message


def test_out_of_range_and_shared_targets_refused():
    with pytest.raises(_kic.KicWeightError, match="vm_target_weight must be"):
        _kic.backend_weights(1, 1, 65536, 1)
    with pytest.raises(_kic.KicWeightError, match="container_target_weight must be"):
        _kic.backend_weights(1, 1, 1, -1)
    with pytest.raises(_kic.KicWeightError, match="both the VM Service and the container Service"):
        _kic.backend_weights(["10.0.0.1:80"], ["10.0.0.1:80"], 1, 1)


def test_no_endpoints_gives_zero():
    assert _kic.backend_weights(0, 3, 5, 2) == {"vm": 0, "container": 6}
