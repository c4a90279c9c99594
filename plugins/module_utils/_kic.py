# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kong Ingress Controller (KIC 3.x) weight translation for Gateway API HTTPRoute backendRefs, and its inverse.
Pure logic, no I/O.

The forward rules, as read in Kong/kubernetes-ingress-controller (v3):

* ``internal/dataplane/translator/subtranslator/backendref.go``, ``backendRefsToKongStateBackends``: every
  backendRef of the rule becomes one backend of the Kong service; its weight is set only when the backendRef has
  one (``backendRef.Weight != nil``). Gateway API v1 defaults an absent weight to 1 in the CRD, so on a real API
  server every backendRef has one. One backendRef or several makes no difference to the rules below.
* ``internal/dataplane/translator/translate_upstreams.go``, ``getEndpoints``: a Service's endpoints are read from
  its EndpointSlices: only slice ports whose name equals the Service port's name (and protocol); an endpoint whose
  ``conditions.ready`` is ``false`` is skipped (unset counts as ready); only ``addresses[0]`` is used; duplicates
  (same address and port, e.g. one endpoint in two slices) are counted once. ``targetsForEndpoints`` writes
  ``address:port`` (IPv6 in brackets).
* ``translate_upstreams.go``, ``getUpstreams``: with a weight and at least one endpoint, each target of the
  backend gets ``weight / len(targets)`` (Go integer division), at least 1, except that a backendRef weight of 0
  gives every target weight 0. Without a weight the targets keep Kong's default (100).
* ``translate_upstreams.go``, ``updateTargetMap`` / ``targetWeightOrDefault``: a target that two backends share
  (the same ``address:port``) appears once, with the sum of both weights (an unset weight counting 100).
* ``subtranslator/httproute.go``, ``getKongServiceNameByBackendRefs``: the Kong service (and upstream) name is
  built from the backendRefs' namespace, name, port AND weight, so a weight change gives the Kong service a new
  name: what the status/verification side must look up after every change.

The inverse (``backend_weights``): a per-target weight ``t >= 1`` over ``n`` ready endpoints comes out of KIC's
division exactly when the backendRef weight ``W`` satisfies ``W // n == t``; we choose ``W = t * n`` (the weights
stay proportional to the traffic). ``t = 0`` needs ``W = 0``. The result must stay within Gateway API v1's
``0..1000000`` for a backendRef weight; when it does not, ``KicWeightError`` says what to change.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress

MAX_TARGET_WEIGHT = 65535           # Kong's maximum target weight
MAX_BACKEND_WEIGHT = 1000000        # Gateway API v1 BackendRef.weight: minimum 0, maximum 1000000, default 1
KONG_DEFAULT_TARGET_WEIGHT = 100    # translate_upstreams.go targetWeightOrDefault


class KicWeightError(ValueError):
    """The wanted per-target weights cannot come out of KIC's translation; the message says what to change."""


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def format_target(address, port):
    """``address:port`` as KIC's ``targetsForEndpoints`` writes it (IPv6 in brackets, the address as given)."""
    try:
        if ipaddress.ip_address(address).version == 6:
            return "[%s]:%s" % (address, port)
    except ValueError:
        pass
    return "%s:%s" % (address, port)


def slice_endpoints(endpoint_slices, port_name, protocol="TCP"):
    """The endpoints KIC uses for a Service port named ``port_name``, read from its EndpointSlices (plain API
    dicts), as a list of ``address:port`` targets in first-seen order (``translate_upstreams.go getEndpoints``)."""
    seen = set()
    targets = []
    for endpoint_slice in endpoint_slices or []:
        for port in endpoint_slice.get("ports") or []:
            number = port.get("port")
            if number is None or number < 0 or (port.get("protocol") or "TCP") != protocol or (port.get("name") or "") != (port_name or ""):
                continue
            for endpoint in endpoint_slice.get("endpoints") or []:
                if (endpoint.get("conditions") or {}).get("ready") is False:
                    continue
                addresses = endpoint.get("addresses") or []
                if not addresses:
                    continue
                target = format_target(addresses[0], number)
                if target not in seen:
                    seen.add(target)
                    targets.append(target)
    return targets


def backend_target_weight(weight, endpoint_count):
    """The weight KIC gives each of a backend's ``endpoint_count`` targets for backendRef ``weight``
    (``translate_upstreams.go getUpstreams``); ``None`` when the weight is unset or there are no targets
    (the targets then keep Kong's default weight)."""
    if weight is None or endpoint_count == 0:
        return None
    if weight == 0:
        return 0
    return max(weight // endpoint_count, 1)


def translate(backends):
    """KIC's forward translation of one rule's backends into Kong targets.

    ``backends``: a list of dicts, one per backendRef in order, with ``weight`` (int, or None when the backendRef
    has none) and ``endpoints`` (the Service's ready endpoints as ``address:port`` strings, duplicates allowed; or
    an int, a count of distinct targets named ``<index>/<n>`` so callers that only care about counts need no
    addresses). Returns a dict ``target -> weight`` (duplicate targets summed, an unset weight counting 100).
    """
    result = {}
    for index, backend in enumerate(backends):
        endpoints = backend.get("endpoints") or []
        if _is_int(endpoints):
            endpoints = ["backend%d/%d" % (index, number) for number in range(endpoints)]
        seen, unique = set(), []
        for target in endpoints:
            if target not in seen:
                seen.add(target)
                unique.append(target)
        weight = backend_target_weight(backend.get("weight"), len(unique))
        for target in unique:
            value = KONG_DEFAULT_TARGET_WEIGHT if weight is None else weight
            if target in result:
                result[target] += value
            else:
                result[target] = value
    return result


def _count(endpoints, field):
    if _is_int(endpoints):
        if endpoints < 0:
            raise KicWeightError("%s must be a count >= 0 or a list of targets, got %r" % (field, endpoints))
        return endpoints, None
    if endpoints is None:
        return 0, set()
    unique = set(endpoints)
    return len(unique), unique


def _check_weight(value, field):
    if not _is_int(value) or value < 0 or value > MAX_TARGET_WEIGHT:
        raise KicWeightError("%s must be a whole number 0..%d (Kong's target weight range), got %r" % (field, MAX_TARGET_WEIGHT, value))


def backend_weight_for(target_weight, endpoint_count, field="weight"):
    """The backendRef weight that KIC divides into exactly ``target_weight`` per target over ``endpoint_count``
    ready endpoints; 0 when there are no endpoints (no target gets a weight then: re-apply when they appear)."""
    _check_weight(target_weight, field)
    if endpoint_count == 0 or target_weight == 0:
        return 0
    weight = target_weight * endpoint_count
    if weight > MAX_BACKEND_WEIGHT:
        raise KicWeightError(
            "%s %d per target over %d ready endpoints needs a backendRef weight of %d, over Gateway API's maximum of %d: "
            "plan the split with max_weight <= %d (the largest per-target weight %d endpoints allow), or use fewer endpoints"
            % (field, target_weight, endpoint_count, weight, MAX_BACKEND_WEIGHT, MAX_BACKEND_WEIGHT // endpoint_count, endpoint_count))
    return weight


def backend_weights(vm_endpoints, container_endpoints, vm_target_weight, container_target_weight):
    """The two backendRef weights (VM Service, container Service) that KIC translates into exactly
    ``vm_target_weight`` on every ready VM endpoint and ``container_target_weight`` on every ready container
    endpoint.

    ``vm_endpoints`` / ``container_endpoints``: the ready endpoints of each Service, as a count or as a list of
    ``address:port`` targets; with lists, a target in both is refused (KIC would sum its two weights).
    Returns ``{"vm": W_vm, "container": W_container}``; raises KicWeightError.
    """
    vm_count, vm_set = _count(vm_endpoints, "vm_endpoints")
    container_count, container_set = _count(container_endpoints, "container_endpoints")
    if vm_set and container_set:
        shared = sorted(vm_set & container_set)
        if shared:
            raise KicWeightError(
                "%d target(s) are endpoints of both the VM Service and the container Service (%s): KIC would give each "
                "the sum of both weights; remove them from one side" % (len(shared), ", ".join(shared[:5])))
    return {
        "vm": backend_weight_for(vm_target_weight, vm_count, "vm_target_weight"),
        "container": backend_weight_for(container_target_weight, container_count, "container_target_weight"),
    }
