# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The traffic split of a mixed service bound through the Kong Ingress Controller (``binding: kubernetes``).

Under KIC the split is the two backendRef weights of the service's HTTPRoute (the VM Service ``<name>-vms`` and
the containers' Service), which KIC divides over each Service's ready endpoints (``_kic.translate``). This module
reads the binding as KIC sees it (the HTTPRoute, both Services' ports and EndpointSlices), plans the per-target
weights with the same arithmetic as the Admin API binding (``_weights.plan_weights``), turns them into backendRef
weights (``_kic.backend_weights``), writes them with server-side apply under the collection's field manager (a
weight owned by another manager is reported, not taken over), and finds what each Kong node routes with: the route
whose hosts are the HTTPRoute's hostnames, its service's host (the upstream, which KIC renames on every weight
change) and that upstream's targets, read from each DB-less node's read-only Admin API.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.mixedrun.kong.plugins.module_utils._k8s_binding import (
    FIELD_MANAGER,
    SERVICE_NAME_LABEL,
    K8sBindingError,
    _path,
    covers,
    desired_route,
    vm_service_name,
)
from ansible_collections.mixedrun.kong.plugins.module_utils._kic import (
    MAX_BACKEND_WEIGHT,
    MAX_TARGET_WEIGHT,
    KicWeightError,
    backend_weights,
    slice_endpoints,
    translate,
)
from ansible_collections.mixedrun.kong.plugins.module_utils._kong_api import KongApiError
from ansible_collections.mixedrun.kong.plugins.module_utils._targets import target_key
from ansible_collections.mixedrun.kong.plugins.module_utils._weights import (
    WeightPlanError,
    as_float,
    plan_weights,
    share_from_totals,
)

VERIFY_INTERVAL = 0.5

# Options of the ``kubernetes`` dict of the modules that work in both bindings (kong_traffic_split, rollout_gate).
KUBERNETES_OPTIONS = dict(
    name=dict(type="str"),
    namespace=dict(type="str"),
    route_name=dict(type="str"),
    force_conflicts=dict(type="bool", default=False),
    request_timeout=dict(type="float", default=30.0),
    kubeconfig=dict(type="path"),
    context=dict(type="str"),
    host=dict(type="str"),
    api_key=dict(type="str", no_log=True),
    ca_cert=dict(type="path", aliases=["ssl_ca_cert"]),
    validate_certs=dict(type="bool", aliases=["verify_ssl"]),
)
AUTH_KEYS = ("kubeconfig", "context", "host", "api_key", "ca_cert", "validate_certs")


class KicSplitError(Exception):
    """The split cannot be read, planned or written in the Kubernetes binding; the message says what to do."""

    def __init__(self, message, result=None):
        super(KicSplitError, self).__init__(message)
        self.result = result or {}


def binding_target(params, default_name):
    """(namespace, service name, route name) of the ``kubernetes`` option; raises KicSplitError naming the field."""
    options = params.get("kubernetes") or {}
    name = options.get("name") or default_name
    if not options.get("namespace"):
        raise KicSplitError("kubernetes.namespace is required with binding: kubernetes (the namespace of the service's HTTPRoute, "
                            "its VM Service %s and the containers' Service)" % vm_service_name(name or "<name>"))
    if not name:
        raise KicSplitError("kubernetes.name is required with binding: kubernetes (the mixed service's name)")
    return options["namespace"], name, options.get("route_name") or name


def connect(params):
    """A K8sApi for the ``kubernetes`` option's connection (K8S_AUTH_* environment variables as fallbacks)."""
    # pylint: disable=import-outside-toplevel
    import os
    from ansible_collections.mixedrun.kong.plugins.module_utils._k8s_binding import K8sApi
    from ansible_collections.mixedrun.kong.plugins.module_utils._k8s_discovery import HAS_K8S, build_api_client
    if not HAS_K8S:
        raise KicSplitError("binding: kubernetes needs the kubernetes Python library on the task's host (pip install kubernetes)")
    options = params.get("kubernetes") or {}
    env = {"kubeconfig": "K8S_AUTH_KUBECONFIG", "context": "K8S_AUTH_CONTEXT", "host": "K8S_AUTH_HOST", "api_key": "K8S_AUTH_API_KEY",
           "ca_cert": "K8S_AUTH_SSL_CA_CERT", "validate_certs": "K8S_AUTH_VERIFY_SSL"}
    auth = {}
    for key in AUTH_KEYS:
        value = options.get(key)
        if value is None and os.environ.get(env[key]):
            value = os.environ[env[key]]
            if key == "validate_certs":
                value = value.lower() in ("1", "true", "yes", "on")
        auth[key] = value
    api_client, _namespace, _described = build_api_client(auth)
    return K8sApi(api_client, timeout=options.get("request_timeout") or 30.0, secret=auth.get("api_key")), api_client


def _service_targets(api, namespace, ref):
    """(port dict, [ready targets as KIC counts them]) of one backendRef's Service."""
    name = ref.get("name")
    service = api.request("GET", _path("Service", namespace, name))
    if service is None:
        raise KicSplitError("Service %s/%s, a backendRef of the HTTPRoute, does not exist: bind the service again" % (namespace, name))
    port = None
    for candidate in (service.get("spec") or {}).get("ports") or []:
        if candidate.get("port") == ref.get("port"):
            port = candidate
    if port is None:
        raise KicSplitError("Service %s/%s has no port %s, the HTTPRoute's backendRef port: bind the service again" % (namespace, name, ref.get("port")))
    listed = api.request("GET", _path("EndpointSlice", namespace), query={"labelSelector": "%s=%s" % (SERVICE_NAME_LABEL, name)})
    targets = slice_endpoints((listed or {}).get("items") or [], port.get("name") or "", port.get("protocol") or "TCP")
    return port, [target_key(t) for t in targets]


def read_binding(api, namespace, name, route_name):
    """What KIC sees of the service: the HTTPRoute, the two backendRefs, their weights and ready endpoints."""
    route = api.request("GET", _path("HTTPRoute", namespace, route_name))
    if route is None:
        raise KicSplitError("HTTPRoute %s/%s does not exist: bind the service first (role mixedrun.kong.mixed_service with binding: "
                            "kubernetes, or mixedrun.kong.kong_k8s_binding)" % (namespace, route_name))
    rules = (route.get("spec") or {}).get("rules") or []
    refs = (rules[0].get("backendRefs") or []) if len(rules) == 1 else []
    vm_name = vm_service_name(name)
    vm_refs = [r for r in refs if r.get("name") == vm_name]
    ct_refs = [r for r in refs if r.get("name") != vm_name]
    if len(refs) != 2 or len(vm_refs) != 1:
        raise KicSplitError("HTTPRoute %s/%s is not a mixed service's route (one rule with two backendRefs, %s and the containers' Service; "
                            "it has %d rule(s) and backendRefs %s): bind the service with binding: kubernetes, or fix kubernetes.name/route_name"
                            % (namespace, route_name, vm_name, len(rules), [r.get("name") for r in refs] or "none"))
    state = {"route": route, "namespace": namespace, "name": name, "route_name": route_name,
             "hostnames": list((route.get("spec") or {}).get("hostnames") or []),
             "resource_version": (route.get("metadata") or {}).get("resourceVersion")}
    for kind, ref in (("vm", vm_refs[0]), ("container", ct_refs[0])):
        port, targets = _service_targets(api, namespace, ref)
        state[kind] = {"service": ref.get("name"), "port": ref.get("port"), "port_name": port.get("name") or "",
                       "weight": ref.get("weight", 1), "targets": targets}
    shared = sorted(set(state["vm"]["targets"]) & set(state["container"]["targets"]))
    if shared:
        raise KicSplitError("target(s) %s are endpoints of both %s and %s: KIC sums their weights, so no split is exact; remove them from one side"
                            % (", ".join(shared[:5]), vm_name, state["container"]["service"]))
    return state


def kic_weights(state, weights=None):
    """{target: weight} KIC makes of the backendRef weights (``weights``: {"vm", "container"}; default: the live ones)."""
    weights = weights or {"vm": state["vm"]["weight"], "container": state["container"]["weight"]}
    return translate([{"weight": weights["vm"], "endpoints": state["vm"]["targets"]},
                      {"weight": weights["container"], "endpoints": state["container"]["targets"]}])


def kic_share(state, weights=None):
    """The containers' share (a Fraction) that KIC's translation of the weights gives, None when every weight is 0."""
    translated = kic_weights(state, weights)
    vm_total = sum(translated.get(t, 0) for t in state["vm"]["targets"])
    ct_total = sum(translated.get(t, 0) for t in state["container"]["targets"])
    return share_from_totals(vm_total, ct_total)


def plan_backends(state, share, max_error):
    """(plan, backend weights) for ``share``: per-target weights planned with the fewest changes from what KIC makes
    of the live weights, each kind's backendRef weight within Gateway API's maximum."""
    vm_targets, ct_targets = state["vm"]["targets"], state["container"]["targets"]
    now = kic_weights(state)
    largest = max(len(vm_targets), len(ct_targets), 1)
    max_weight = min(MAX_TARGET_WEIGHT, MAX_BACKEND_WEIGHT // largest)
    try:
        plan = plan_weights(len(vm_targets), len(ct_targets), share, max_error=max_error, max_weight=max_weight,
                            current_vm=[now.get(t, 0) for t in vm_targets], current_container=[now.get(t, 0) for t in ct_targets])
        weights = backend_weights(vm_targets, ct_targets, plan["vm_weight"], plan["container_weight"])
    except (KicWeightError, WeightPlanError) as exc:
        raise KicSplitError("cannot split %s/%s (%d ready VM endpoint(s) of %s, %d ready container endpoint(s) of %s): %s"
                            % (state["namespace"], state["route_name"], len(vm_targets), state["vm"]["service"], len(ct_targets),
                               state["container"]["service"], exc))
    return plan, weights


def apply_backends(api, state, weights, check_mode=False, force=False):
    """Server-side apply of the two weights on the HTTPRoute, as the binding wrote it; False when they are the live ones."""
    live = {"vm": state["vm"]["weight"], "container": state["container"]["weight"]}
    if live == weights:
        return False
    route = state["route"]
    parent = dict(((route.get("spec") or {}).get("parentRefs") or [{}])[0])
    spec = {"name": state["name"], "namespace": state["namespace"], "route_name": state["route_name"], "hostnames": state["hostnames"],
            "container_service": state["container"]["service"],
            "gateway": {"name": parent.get("name"), "namespace": parent.get("namespace"), "section_name": parent.get("sectionName")}}
    body = desired_route(spec, {"port": state["vm"]["port"]}, weights)
    # only the weights may differ from the live route: anything else means the route is not the binding's any more
    unchanged = desired_route(spec, {"port": state["vm"]["port"]}, live)
    if state["container"]["port"] != state["vm"]["port"] or not covers(unchanged, route):
        raise KicSplitError("HTTPRoute %s/%s differs from what the binding writes (parentRefs, hostnames or backendRefs were changed by another "
                            "writer): bind the service again (binding: kubernetes) before splitting" % (state["namespace"], state["route_name"]))
    path = _path("HTTPRoute", state["namespace"], state["route_name"])
    if check_mode:
        api.calls.append("PATCH %s (check mode: not sent)" % path)
        return True
    query = {"fieldManager": FIELD_MANAGER}
    if force:
        query["force"] = "true"
    try:
        api.request("PATCH", path, query=query, body=body, content_type="application/apply-patch+yaml")
    except K8sBindingError as exc:
        if exc.status == 409:
            raise KicSplitError("HTTPRoute %s/%s: another field manager owns its backendRef weights (%s): %s. The split does not overwrite "
                                "them silently: stop that writer, or set kubernetes.force_conflicts: true to take them over"
                                % (state["namespace"], state["route_name"], ", ".join(exc.managers) or "unknown manager", exc),
                                {"conflicting_managers": exc.managers})
        raise KicSplitError("cannot write the weights of HTTPRoute %s/%s: %s" % (state["namespace"], state["route_name"], exc))
    return True


# -- what Kong routes with ------------------------------------------------------------------------------------
def kong_upstream(client, hostnames):
    """The upstream a Kong node sends the hostnames' requests to (route by host -> service -> host), None when the node
    has no such route yet (the controller has not pushed the binding)."""
    wanted = set(hostnames)
    for route in client.list("/routes"):
        if wanted & set(route.get("hosts") or []) and route.get("service"):
            service = client.get("/services/%s" % client.quote(route["service"]["id"]))
            return (service or {}).get("host")
    return None


def kong_targets(client, upstream):
    """{target: weight} of the upstream on one node ({} when it has none)."""
    if not upstream:
        return {}
    try:
        return dict((target_key(t["target"]), int(t.get("weight", 100))) for t in client.list("/upstreams/%s/targets" % client.quote(upstream)))
    except KongApiError as exc:
        if exc.status == 404:
            return {}
        raise


def wait_nodes(clients, hostnames, expected, timeout, clock=time.monotonic, sleep=time.sleep):
    """Poll each node until the hostnames' upstream holds exactly ``expected`` ({target: weight}); returns
    ({url: upstream}, seconds). Raises KicSplitError naming the nodes behind and what they show."""
    started = clock()
    pending = list(clients)
    seen = {}
    done = {}
    while True:
        still = []
        for url, client in pending:
            upstream = kong_upstream(client, hostnames)
            targets = kong_targets(client, upstream)
            seen[url] = (upstream, targets)
            if targets == expected:
                done[url] = upstream
            else:
                still.append((url, client))
        pending = still
        if not pending:
            return done, round(clock() - started, 2)
        if clock() - started >= timeout:
            none_yet = "no upstream (no route for %s yet)" % ", ".join(hostnames)
            detail = "; ".join("%s routes %s with %s" % (url, seen[url][0] or none_yet, _describe(seen[url][1], expected))
                               for url, _client in pending)
            raise KicSplitError("%d of %d Kong node(s) do not route with the planned targets %.1f s after the HTTPRoute was written: %s. The "
                                "ingress controller pushes a change at its next sync; raise verify_timeout if it is slower, else check the "
                                "controller's log and the HTTPRoute's status" % (len(pending), len(clients), clock() - started, detail),
                                {"verified_nodes": dict(done)})
        sleep(VERIFY_INTERVAL)


def _describe(targets, expected, limit=6):
    wrong = ["%s %s (planned %s)" % (t, targets.get(t, "absent"), expected.get(t, "absent"))
             for t in sorted(set(targets) | set(expected)) if targets.get(t) != expected.get(t)]
    return ", ".join(wrong[:limit]) + (", ..." if len(wrong) > limit else "") if wrong else "the planned weights"


def guard_share(api, params, share, max_error, check_mode=False):
    """The rollout's re-check at a gate evaluation: the share KIC's division gives now (endpoints may have come or gone
    since the step) and, when it is more than ``max_error`` points from ``share``, the weights written again.
    Returns {"share", "corrected", "previous_share", "backend_weights", "vm_endpoints", "container_endpoints"}."""
    namespace, name, route_name = binding_target(params, params.get("upstream"))
    state = read_binding(api, namespace, name, route_name)
    now = kic_share(state)
    out = {"previous_share": as_float(now) if now is not None else None, "share": as_float(now) if now is not None else None,
           "corrected": False, "vm_endpoints": len(state["vm"]["targets"]), "container_endpoints": len(state["container"]["targets"]),
           "backend_weights": {"vm": state["vm"]["weight"], "container": state["container"]["weight"]}}
    if now is not None and abs(float(now) - float(share)) <= float(max_error):
        return out
    plan, weights = plan_backends(state, share, max_error)
    forced = bool((params.get("kubernetes") or {}).get("force_conflicts"))
    out["corrected"] = apply_backends(api, state, weights, check_mode=check_mode, force=forced)
    out["share"] = as_float(plan["achieved_share"])
    out["backend_weights"] = weights
    return out
