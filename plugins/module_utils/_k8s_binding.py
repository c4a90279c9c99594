# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Kubernetes binding of a mixed service (Kong Ingress Controller, Gateway API HTTPRoute).

* Pure parts: ``validate(params)`` (every input checked before any API call, the error naming the option and the
  fix) and ``desired_objects(...)`` (the Service ``<name>-vms``, the EndpointSlices, the HTTPRoute).
* ``K8sApi``: raw JSON requests through the official ``kubernetes`` client's ``ApiClient`` (built as discovery
  builds it, ``_k8s_discovery.build_api_client``); every failure is one ``K8sBindingError``.
* ``ensure_binding(api, spec, check_mode)``: GET what is there, compare only the fields the collection writes,
  server-side apply (field manager ``mixedrun.kong``) only what differs, delete only the EndpointSlices it owns
  that are no longer needed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import json
import re

from ansible_collections.mixedrun.kong.plugins.module_utils._kic import (
    MAX_TARGET_WEIGHT,
    KicWeightError,
    backend_weight_for,
    backend_weights,
    format_target,
    slice_endpoints,
    translate,
)

FIELD_MANAGER = "mixedrun.kong"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MAX_ENDPOINTS_PER_SLICE = 1000
GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_VERSION = "v1"
CRD_HINT = ("install the Gateway API v1 standard CRDs (kubectl apply -f gateway-api-v1.2.1-standard.yaml, from the Gateway API "
            "release or the lab's ../shared/realk8s/crds), then install or point to the Kong Gateway")

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_HOSTNAME = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_CONFLICT_MANAGER = re.compile(r'conflict with "([^"]+)"')


class BindingInputError(ValueError):
    """Bad input, found before any API call."""


class K8sBindingError(Exception):
    """An API failure; ``status`` is the HTTP status, ``managers`` the conflicting field managers (409)."""

    def __init__(self, message, status=None, managers=None):
        super(K8sBindingError, self).__init__(message)
        self.status = status
        self.managers = managers or []


# ---------------------------------------------------------------------------------------------------------
# Input


def _parse_endpoint(text, index):
    field = "vm_endpoints[%d].target" % index
    if not isinstance(text, str) or not text:
        raise BindingInputError("%s must be an IP:port such as 10.0.0.5:8080 or [fd00::5]:8080, got %r" % (field, text))
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    try:
        address = ipaddress.ip_address(host)
        if not sep or not port.isdigit() or not 1 <= int(port) <= 65535 or (address.version == 6 and not text.startswith("[")):
            raise ValueError(text)
    except ValueError:
        raise BindingInputError("%s must be an IP:port such as 10.0.0.5:8080 or [fd00::5]:8080 (an IP address, not a host name; IPv6 in "
                                "brackets), got %r" % (field, text))
    if address.is_loopback or address.is_unspecified or address.is_link_local or address.is_multicast:
        raise BindingInputError("%s: %s is not an address an EndpointSlice may hold (the API server refuses loopback, unspecified, "
                                "link-local and multicast addresses); give the VM's routable address" % (field, text))
    return address.compressed, int(port), address.version


def validate(params):
    """Check every option; return the normalised spec (a dict) or raise BindingInputError naming the option."""
    name = params.get("name") or ""
    if not _DNS_LABEL.match(name) or len(name) > 59:
        raise BindingInputError("name must be a DNS label of at most 59 characters (lowercase letters, digits, '-'; the VM Service is "
                                "'<name>-vms'), got %r" % name)
    namespace = params.get("namespace")
    if namespace is not None and (not _DNS_LABEL.match(namespace) or len(namespace) > 63):
        raise BindingInputError("namespace must be a DNS label (lowercase letters, digits, '-'), got %r" % namespace)
    route_name = params.get("route_name") or name
    if not _DNS_LABEL.match(route_name) or len(route_name) > 63:
        raise BindingInputError("route_name must be a DNS label, got %r" % route_name)
    domains = params.get("domains") or []
    if not domains:
        raise BindingInputError("domains must list at least one host name, for example [shop.example.com]")
    hostnames = []
    for index, domain in enumerate(domains):
        text = domain.lower() if isinstance(domain, str) else domain
        is_ip = False
        try:
            ipaddress.ip_address(text)
            is_ip = True
        except ValueError:
            pass
        if not isinstance(text, str) or len(text) > 253 or is_ip or not _HOSTNAME.match(text):
            raise BindingInputError("domains[%d] must be a host name such as shop.example.com (or *.example.com; no IP address, "
                                    "port, scheme or path), got %r" % (index, domain))
        if text not in hostnames:
            hostnames.append(text)
    container_service = params.get("container_service") or ""
    if not _DNS_LABEL.match(container_service):
        raise BindingInputError("container_service must be the name of the containers' Service in the namespace, got %r" % container_service)
    if container_service == name + "-vms":
        raise BindingInputError("container_service must not be '%s-vms': that is the VM Service this module writes" % name)
    port_name = params.get("port_name")
    if port_name is not None and port_name != "" and (not _DNS_LABEL.match(port_name) or len(port_name) > 15):
        raise BindingInputError("port_name must be an IANA service name (at most 15 lowercase letters, digits, '-'), got %r" % port_name)
    endpoints = []
    seen = {}
    for index, entry in enumerate(params.get("vm_endpoints") or []):
        address, port, version = _parse_endpoint(entry.get("target"), index)
        key = (address, port)
        if key in seen:
            raise BindingInputError("vm_endpoints[%d].target %s repeats vm_endpoints[%d]; list each VM node once" % (index, entry["target"], seen[key]))
        seen[key] = index
        endpoints.append({"address": address, "port": port, "family": "IPv%d" % version, "ready": not entry.get("drained"),
                          "target": format_target(address, port)})
    for field in ("vm_target_weight", "container_target_weight"):
        value = params.get(field)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TARGET_WEIGHT:
            raise BindingInputError("%s must be a per-target weight 0..%d (as kong_traffic_split plans it), got %r" % (field, MAX_TARGET_WEIGHT, value))
    count = params.get("container_endpoints")
    if count is not None and (isinstance(count, bool) or count < 0):
        raise BindingInputError("container_endpoints must be a count >= 0 (or unset: counted from the Service's EndpointSlices), got %r" % count)
    gateway = params.get("gateway") or {}
    if not _DNS_LABEL.match(gateway.get("name") or ""):
        raise BindingInputError("gateway.name must be the name of the Kong Gateway (a Gateway object), got %r" % gateway.get("name"))
    for field in ("namespace", "section_name"):
        if gateway.get(field) is not None and not _DNS_LABEL.match(gateway[field]):
            raise BindingInputError("gateway.%s must be a DNS label, got %r" % (field, gateway[field]))
    try:    # what can be checked of the Gateway API weight limit without the cluster
        backend_weight_for(params["vm_target_weight"], sum(1 for e in endpoints if e["ready"]), "vm_target_weight")
        if count is not None:
            backend_weight_for(params["container_target_weight"], count, "container_target_weight")
    except KicWeightError as exc:
        raise BindingInputError(str(exc))
    container_port = params.get("container_port")
    if container_port is not None and not 1 <= container_port <= 65535:
        raise BindingInputError("container_port must be a port 1..65535, got %r" % container_port)
    return {
        "name": name, "namespace": namespace, "route_name": route_name, "hostnames": hostnames,
        "container_service": container_service, "port_name": port_name, "container_port": container_port,
        "vm_endpoints": endpoints, "vm_target_weight": params["vm_target_weight"],
        "container_target_weight": params["container_target_weight"], "container_endpoints": count,
        "gateway": {"name": gateway["name"], "namespace": gateway.get("namespace"), "section_name": gateway.get("section_name")},
        "force_conflicts": bool(params.get("force_conflicts")),
    }


# ---------------------------------------------------------------------------------------------------------
# Desired objects (pure)


def vm_service_name(name):
    return name + "-vms"


def desired_service(spec, port):
    """The selector-less VM Service; ``port`` is the container Service's port (dict with name/port)."""
    entry = {"name": port.get("name") or "", "port": port["port"], "protocol": port.get("protocol") or "TCP"}
    if not entry["name"]:
        del entry["name"]
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": vm_service_name(spec["name"]), "namespace": spec["namespace"],
                     "labels": {"app.kubernetes.io/managed-by": FIELD_MANAGER, "mixedrun.kong/service": spec["name"]}},
        "spec": {"ports": [entry]},
    }


def desired_slices(spec, port_name):
    """The EndpointSlices for the VM endpoints: grouped by address family and port, sorted, at most 1000 each."""
    groups = {}
    for endpoint in spec["vm_endpoints"]:
        groups.setdefault((endpoint["family"], endpoint["port"]), []).append(endpoint)
    slices = []
    service = vm_service_name(spec["name"])
    for (family, port) in sorted(groups):
        members = sorted(groups[(family, port)], key=lambda e: ipaddress.ip_address(e["address"]))
        for index in range(0, len(members), MAX_ENDPOINTS_PER_SLICE):
            chunk = members[index:index + MAX_ENDPOINTS_PER_SLICE]
            # the name always (KIC compares it with the Service port's name; "" for an unnamed port)
            port_entry = {"name": port_name or "", "port": port, "protocol": "TCP"}
            slices.append({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {
                    "name": "%s-%s-%d-%d" % (service, family.lower(), port, index // MAX_ENDPOINTS_PER_SLICE),
                    "namespace": spec["namespace"],
                    "labels": {SERVICE_NAME_LABEL: service, MANAGED_BY_LABEL: FIELD_MANAGER},
                },
                "addressType": family,
                "ports": [port_entry],
                "endpoints": [{"addresses": [e["address"]], "conditions": {"ready": e["ready"]}} for e in chunk],
            })
    return slices


def desired_route(spec, port, weights):
    parent = {"group": GATEWAY_GROUP, "kind": "Gateway", "name": spec["gateway"]["name"]}
    if spec["gateway"].get("namespace"):
        parent["namespace"] = spec["gateway"]["namespace"]
    if spec["gateway"].get("section_name"):
        parent["sectionName"] = spec["gateway"]["section_name"]
    return {
        "apiVersion": "%s/%s" % (GATEWAY_GROUP, GATEWAY_VERSION), "kind": "HTTPRoute",
        "metadata": {"name": spec["route_name"], "namespace": spec["namespace"],
                     "labels": {"app.kubernetes.io/managed-by": FIELD_MANAGER, "mixedrun.kong/service": spec["name"]}},
        "spec": {
            "parentRefs": [parent],
            "hostnames": list(spec["hostnames"]),
            "rules": [{"backendRefs": [
                {"group": "", "kind": "Service", "name": vm_service_name(spec["name"]), "port": port["port"], "weight": weights["vm"]},
                {"group": "", "kind": "Service", "name": spec["container_service"], "port": port["port"], "weight": weights["container"]},
            ]}],
        },
    }


def covers(desired, live):
    """Whether ``live`` already holds every field of ``desired`` (lists: same length, element-wise)."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(covers(value, live.get(key)) for key, value in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(desired) == len(live) and all(covers(d, v) for d, v in zip(desired, live))
    return desired == live


def _project(desired, live):
    """The part of ``live`` that ``desired`` describes (for the diff's ``before``)."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return live
        return dict((key, _project(value, live.get(key))) for key, value in desired.items() if key in live)
    if isinstance(desired, list) and isinstance(live, list):
        return [(_project(desired[i], item) if i < len(desired) else item) for i, item in enumerate(live)]
    return live


# ---------------------------------------------------------------------------------------------------------
# API


class K8sApi:
    """Raw JSON requests with the kubernetes client's ApiClient (no model objects)."""

    def __init__(self, api_client, timeout=30.0, secret=None):
        self.api_client = api_client
        self.timeout = timeout
        self.secret = secret
        self.calls = []

    def request(self, method, path, query=None, body=None, content_type=None):
        """Returns the response body (dict) or None for 404 on GET/DELETE; raises K8sBindingError."""
        from kubernetes.client.exceptions import ApiException  # pylint: disable=import-outside-toplevel
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        if method != "GET":
            self.calls.append("%s %s" % (method, path))
        # the kubernetes client JSON-encodes a body sent with a JSON content type itself (a text would be encoded twice);
        # any other (apply-patch+yaml, yaml) goes as the JSON text, which is YAML too
        json_type = bool(content_type) and content_type.endswith("json")
        payload = body if (body is None or json_type) else json.dumps(body)
        api = self.api_client
        try:
            if hasattr(api, "param_serialize"):     # kubernetes >= 33 (the pydantic-based client)
                method_, url, headers, payload, _post = api.param_serialize(method, path, query_params=list((query or {}).items()),
                                                                            header_params=headers, body=payload, auth_settings=["BearerToken"])
                response = api.call_api(method_, url, header_params=headers, body=payload, _request_timeout=self.timeout)
                response.read()
                if not 200 <= response.status <= 299:
                    raise ApiException.from_response(http_resp=response, body=None, data=None)
            else:
                response = api.call_api(path, method, query_params=list((query or {}).items()), header_params=headers, body=payload,
                                        auth_settings=["BearerToken"], _preload_content=False, _request_timeout=self.timeout)
                response = response[0] if isinstance(response, tuple) else response
            data = response.data
            return json.loads(data) if data else {}
        except ApiException as exc:
            if exc.status == 404 and method in ("GET", "DELETE"):
                return None
            raise _api_error(exc, method, path, self.secret)
        except Exception as exc:  # urllib3 and socket errors
            text = str(exc)
            if self.secret:
                text = text.replace(self.secret, "********")
            raise K8sBindingError("%s %s failed: %s" % (method, path, text))


def _api_error(exc, method, path, secret=None):
    message, managers = exc.reason, []
    try:
        status = json.loads(exc.body)
        message = status.get("message") or message
        for cause in (status.get("details") or {}).get("causes") or []:
            managers.extend(_CONFLICT_MANAGER.findall(cause.get("message") or ""))
        managers.extend(_CONFLICT_MANAGER.findall(message or ""))
    except (TypeError, ValueError, AttributeError):
        pass
    if secret and message:
        message = message.replace(secret, "********")
    unique = []
    for manager in managers:
        if manager not in unique:
            unique.append(manager)
    return K8sBindingError("%s %s: HTTP %s: %s" % (method, path, exc.status, message), status=exc.status, managers=unique)


def _path(kind, namespace, name=None):
    prefix = {
        "Service": "/api/v1/namespaces/%s/services",
        "EndpointSlice": "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices",
        "HTTPRoute": "/apis/%s/%s/namespaces/%%s/httproutes" % (GATEWAY_GROUP, GATEWAY_VERSION),
    }[kind] % namespace
    return prefix + ("/" + name if name else "")


# ---------------------------------------------------------------------------------------------------------
# Ensure


def _container_port(spec, service):
    ports = ((service or {}).get("spec") or {}).get("ports") or []
    if spec["port_name"] is not None or spec["container_port"] is not None:
        for port in ports:
            if (spec["port_name"] is None or (port.get("name") or "") == spec["port_name"]) and \
                    (spec["container_port"] is None or port.get("port") == spec["container_port"]):
                return port
        raise BindingInputError("the container Service %s/%s has no port%s%s (its ports: %s); fix port_name/container_port" % (
            spec["namespace"], spec["container_service"], " named %r" % spec["port_name"] if spec["port_name"] is not None else "",
            " numbered %s" % spec["container_port"] if spec["container_port"] is not None else "",
            ", ".join("%s/%s" % (p.get("name") or "-", p.get("port")) for p in ports) or "none"))
    if len(ports) != 1:
        raise BindingInputError("the container Service %s/%s has %d ports: choose one with port_name"
                                % (spec["namespace"], spec["container_service"], len(ports)))
    return ports[0]


def ensure_binding(api, spec, check_mode=False):
    """Bring the VM Service, its EndpointSlices and the HTTPRoute in line with ``spec``; returns the result dict."""
    namespace = spec["namespace"]
    # Gateway API first: nothing is written on a cluster that cannot take the route.
    resources = api.request("GET", "/apis/%s/%s" % (GATEWAY_GROUP, GATEWAY_VERSION))
    if resources is None:
        raise K8sBindingError("the cluster has no Gateway API %s/%s (HTTPRoute): %s" % (GATEWAY_GROUP, GATEWAY_VERSION, CRD_HINT), status=404)
    served = [r.get("name") for r in resources.get("resources") or []]
    if served and "httproutes" not in served:
        raise K8sBindingError("the cluster's Gateway API %s/%s serves no httproutes (only %s): %s"
                              % (GATEWAY_GROUP, GATEWAY_VERSION, ", ".join(sorted(served)), CRD_HINT), status=404)
    container = api.request("GET", _path("Service", namespace, spec["container_service"]))
    if container is None:
        raise BindingInputError("the container Service %s/%s does not exist: fix container_service or namespace" % (namespace, spec["container_service"]))
    port = _container_port(spec, container)
    port_name = port.get("name") or ""
    if spec["container_endpoints"] is None:
        listed = api.request("GET", _path("EndpointSlice", namespace), query={"labelSelector": "%s=%s" % (SERVICE_NAME_LABEL, spec["container_service"])})
        container_targets = slice_endpoints((listed or {}).get("items") or [], port_name, port.get("protocol") or "TCP")
    else:
        container_targets = spec["container_endpoints"]
    vm_targets = [e["target"] for e in spec["vm_endpoints"] if e["ready"]]
    try:
        weights = backend_weights(vm_targets, container_targets, spec["vm_target_weight"], spec["container_target_weight"])
    except KicWeightError as exc:
        raise BindingInputError(str(exc))
    translated = translate([{"weight": weights["vm"], "endpoints": vm_targets}, {"weight": weights["container"], "endpoints": container_targets}])
    vm_set = set(vm_targets)
    container_count = container_targets if isinstance(container_targets, int) else len(container_targets)

    objects = [desired_service(spec, port)]
    slices = desired_slices(spec, port_name)
    objects.extend(slices)
    route = desired_route(spec, port, weights)
    objects.append(route)

    existing = api.request("GET", _path("EndpointSlice", namespace),
                           query={"labelSelector": "%s=%s" % (SERVICE_NAME_LABEL, vm_service_name(spec["name"]))})
    existing = dict((s["metadata"]["name"], s) for s in (existing or {}).get("items") or [])
    for item in existing.values():      # list items carry no apiVersion/kind
        item.setdefault("apiVersion", "discovery.k8s.io/v1")
        item.setdefault("kind", "EndpointSlice")
    wanted = set(s["metadata"]["name"] for s in slices)
    for slice_name in sorted(wanted):
        other = existing.get(slice_name)
        if other is not None and (other["metadata"].get("labels") or {}).get(MANAGED_BY_LABEL) != FIELD_MANAGER:
            raise K8sBindingError("EndpointSlice %s/%s exists and is managed by %r, not %s: rename or remove it; this module never takes over "
                                  "slices it does not own"
                                  % (namespace, slice_name, (other["metadata"].get("labels") or {}).get(MANAGED_BY_LABEL), FIELD_MANAGER))

    result = {"changed": False, "objects": [], "calls": api.calls, "diff": {"before": {}, "after": {}},
              "weights": {"vm_backend": weights["vm"], "container_backend": weights["container"],
                          "vm_target": spec["vm_target_weight"], "container_target": spec["container_target_weight"],
                          "vm_ready_endpoints": len(vm_targets), "container_ready_endpoints": container_count},
              "kic_target_weights": {"vm": sorted(set(translated[t] for t in vm_targets)),
                                     "container": sorted(set(v for t, v in translated.items() if t not in vm_set))},
              "route": route, "slices": [s["metadata"]["name"] for s in slices]}
    foreign = sorted(n for n, s in existing.items() if (s["metadata"].get("labels") or {}).get(MANAGED_BY_LABEL) != FIELD_MANAGER)
    if foreign:
        result["warnings"] = ["EndpointSlice(s) %s of Service %s are not managed by %s: left untouched, but KIC counts their ready endpoints "
                              "too, which changes its weight division" % (", ".join(foreign), vm_service_name(spec["name"]), FIELD_MANAGER)]
    query = {"fieldManager": FIELD_MANAGER}
    if spec["force_conflicts"]:
        query["force"] = "true"
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        live = existing.get(name) if kind == "EndpointSlice" else api.request("GET", _path(kind, namespace, name))
        key = "%s/%s" % (kind, name)
        if live is not None and covers(obj, live):
            result["objects"].append({"kind": kind, "name": name, "action": "unchanged"})
            continue
        action = "created" if live is None else "updated"
        result["changed"] = True
        result["diff"]["before"][key] = _project(obj, live) if live is not None else None
        result["diff"]["after"][key] = obj
        result["objects"].append({"kind": kind, "name": name, "action": action})
        path = _path(kind, namespace, name)
        if check_mode:
            api.calls.append("PATCH %s (check mode: not sent)" % path)
            continue
        try:
            api.request("PATCH", path, query=query, body=obj, content_type="application/apply-patch+yaml")
        except K8sBindingError as exc:
            if exc.status == 409:
                raise K8sBindingError("%s %s/%s: another field manager owns fields this module writes (%s): %s; the module does not "
                                      "overwrite them silently: stop that writer, or set force_conflicts=true to take the fields over"
                                      % (kind, namespace, name, ", ".join(exc.managers) or "unknown manager", exc), status=409, managers=exc.managers)
            if exc.status == 404 and kind == "HTTPRoute":
                raise K8sBindingError("cannot write HTTPRoute %s/%s: %s; %s" % (namespace, name, exc, CRD_HINT), status=404)
            raise
    for slice_name in sorted(set(existing) - wanted):
        labels = existing[slice_name]["metadata"].get("labels") or {}
        if labels.get(MANAGED_BY_LABEL) != FIELD_MANAGER:
            continue
        result["changed"] = True
        key = "EndpointSlice/%s" % slice_name
        result["diff"]["before"][key] = {"metadata": {"name": slice_name}}
        result["diff"]["after"][key] = None
        result["objects"].append({"kind": "EndpointSlice", "name": slice_name, "action": "deleted"})
        path = _path("EndpointSlice", namespace, slice_name)
        if check_mode:
            api.calls.append("DELETE %s (check mode: not sent)" % path)
        else:
            api.request("DELETE", path)
    return result
