# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Capacity-aware steps: the pods a share needs."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.mixedrun.kong.plugins.module_utils._capacity import CapacityError, normalize, replicas_for, share_carried


def test_defaults_take_the_vms_as_the_demand():
    cap = normalize({}, 3)
    assert cap["demand"] == 3.0 and cap["headroom"] == 0.25 and cap["min_replicas"] == 1 and cap["max_replicas"] is None
    # 3 VMs, 1 pod: 10 -> 50 -> 100 % need 1, 2, 4 pods with 25 % headroom
    assert [replicas_for(s, cap)["replicas"] for s in (0, 10, 50, 100)] == [1, 1, 2, 4]
    assert replicas_for(0, cap)["needed"] == 0


def test_per_node_capacity_and_measured_demand():
    cap = normalize({"vm": 100, "container": 250, "headroom": 0.2, "demand": "900"}, 7)
    assert cap["demand"] == 900.0 and cap["demand_source"] == "capacity.demand"
    assert replicas_for(50, cap) == {"replicas": 3, "needed": 3, "carries": 83.333333}       # 540 / 250
    assert replicas_for(100, cap)["replicas"] == 5                                           # 1080 / 250
    assert share_carried(2, cap) == 55.555556


def test_min_and_max_replicas():
    cap = normalize({"min_replicas": 2, "max_replicas": 3}, 3)
    assert replicas_for(10, cap)["replicas"] == 2
    with pytest.raises(CapacityError, match=r"100 % needs 4 ready pods .*above capacity.max_replicas 3: raise max_replicas"):
        replicas_for(100, cap)


@pytest.mark.parametrize("settings, match", [
    ({"container": 0}, "capacity.container must be above 0"),
    ({"headroom": -1}, "capacity.headroom must be at least 0"),
    ({"min_replicas": 1.5}, "capacity.min_replicas must be a whole number"),
    ({"max_replicas": 1, "min_replicas": 2}, r"capacity.max_replicas \(1\) is below capacity.min_replicas \(2\)"),
    ({"pods": 3}, "capacity.pods is not a capacity setting"),
    ({"vm": "fast"}, "capacity.vm must be a number"),
])
def test_bad_settings_name_the_field(settings, match):
    with pytest.raises(CapacityError, match=match):
        normalize(settings, 3)


def test_text_values_from_extra_vars():
    cap = normalize({"vm": "2", "container": "1", "headroom": "0", "min_replicas": "1", "max_replicas": "10"}, "3")
    assert replicas_for("50", cap)["replicas"] == 3
