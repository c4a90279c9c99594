# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How many pods a step's container share needs (capacity-aware rollout steps).

The service's traffic (``demand``) is expressed in the unit of the per-node capacities, for example requests per
second: a VM carries ``vm`` of it, a pod ``container``. Without a measured demand, the VMs are taken to carry the
whole service now at their capacity (``demand = vm_count * vm``), the conservative reading: the containers must be
able to carry what the VMs can. A step that sends ``share`` % of the traffic to containers needs

    ceil(demand * share / 100 * (1 + headroom) / container)

ready pods (at least one for any share above 0), bounded below by ``min_replicas``; a need above ``max_replicas``
is refused before the step, naming the numbers and what to change.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math

DEFAULTS = {"vm": 1.0, "container": 1.0, "headroom": 0.25, "min_replicas": 1, "max_replicas": None, "demand": None}


class CapacityError(ValueError):
    """The capacity settings are invalid, or a share needs more pods than allowed; the message names the field."""


def _number(value, field, minimum=0.0, strictly=False, integer=False):
    if value is None or isinstance(value, bool):
        raise CapacityError("%s must be a number, got %r" % (field, value))
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise CapacityError("%s must be a number, got %r" % (field, value))
    if math.isnan(number) or math.isinf(number) or number < minimum or (strictly and number <= minimum):
        raise CapacityError("%s must be %s %s, got %r" % (field, "above" if strictly else "at least", minimum, value))
    if integer:
        if number != int(number):
            raise CapacityError("%s must be a whole number, got %r" % (field, value))
        return int(number)
    return number


def normalize(capacity, vm_count, field="capacity"):
    """The capacity settings with defaults, checked; ``vm_count``: the VMs serving now (for the default demand)."""
    raw = dict(DEFAULTS)
    for key, value in (capacity or {}).items():
        if key not in DEFAULTS:
            raise CapacityError("%s.%s is not a capacity setting (known: %s)" % (field, key, ", ".join(sorted(DEFAULTS))))
        if value is not None and value != "":
            raw[key] = value
    out = {
        "vm": _number(raw["vm"], field + ".vm", strictly=True),
        "container": _number(raw["container"], field + ".container", strictly=True),
        "headroom": _number(raw["headroom"], field + ".headroom"),
        "min_replicas": _number(raw["min_replicas"], field + ".min_replicas", integer=True),
        "max_replicas": None if raw["max_replicas"] is None else _number(raw["max_replicas"], field + ".max_replicas", minimum=1, integer=True),
    }
    if out["max_replicas"] is not None and out["max_replicas"] < out["min_replicas"]:
        raise CapacityError("%s.max_replicas (%d) is below %s.min_replicas (%d)" % (field, out["max_replicas"], field, out["min_replicas"]))
    if raw["demand"] is None:
        count = _number(vm_count, "the VM count", integer=True)
        out["demand"] = count * out["vm"]
        out["demand_source"] = "%d VM(s) x capacity %s" % (count, _fmt(out["vm"]))
    else:
        out["demand"] = _number(raw["demand"], field + ".demand")
        out["demand_source"] = "%s.demand" % field
    return out


def _fmt(value):
    return ("%.6f" % value).rstrip("0").rstrip(".")


def replicas_for(share, capacity, field="capacity"):
    """``{"replicas", "needed", "carries"}`` for a container ``share`` (percent) under normalized ``capacity``:
    ``needed`` the pods the share needs with the headroom, ``replicas`` that bounded by min_replicas, ``carries`` the
    share (percent) those pods can carry. Raises CapacityError when ``needed`` is above max_replicas."""
    share = _number(share, "share")
    load = capacity["demand"] * share / 100.0 * (1.0 + capacity["headroom"])
    needed = int(math.ceil(load / capacity["container"] - 1e-9)) if load > 0 else 0
    if share > 0:
        needed = max(needed, 1)
    if capacity["max_replicas"] is not None and needed > capacity["max_replicas"]:
        raise CapacityError(
            "a container share of %s %% needs %d ready pods (demand %s from %s, %s %% headroom, %s per pod), above %s.max_replicas %d: "
            "raise max_replicas, or the per-pod capacity (%s.container) if the pods carry more, or plan a smaller share"
            % (_fmt(share), needed, _fmt(capacity["demand"]), capacity["demand_source"], _fmt(100 * capacity["headroom"]),
               _fmt(capacity["container"]), field, capacity["max_replicas"], field))
    replicas = max(needed, capacity["min_replicas"])
    carries = 100.0 if capacity["demand"] <= 0 else min(100.0, 100.0 * replicas * capacity["container"] / capacity["demand"])
    return {"replicas": replicas, "needed": needed, "carries": round(carries, 6)}


def share_carried(ready_pods, capacity):
    """The largest share (percent) ``ready_pods`` can carry, without the headroom (for the report's check)."""
    if capacity["demand"] <= 0:
        return 100.0
    return round(min(100.0, 100.0 * ready_pods * capacity["container"] / capacity["demand"]), 6)
