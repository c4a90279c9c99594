# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""kong_k8s_binding's logic: input validation (before any API call) and ensure_binding against a fake API that
keeps objects by path and answers server-side apply like the API server (409 naming the conflicting manager)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

import pytest

from ansible_collections.mixedrun.kong.plugins.module_utils import _k8s_binding as kb
from ansible_collections.mixedrun.kong.plugins.module_utils._kic import slice_endpoints, translate

NS = "shop"


class FakeApi:
    def __init__(self, gateway_api=True):
        self.gateway_api = gateway_api
        self.objects = {}
        self.calls = []
        self.requests = []
        self.owners = {}          # path -> manager owning the HTTPRoute rules (conflicts unless forced)

    def put(self, path, obj):
        self.objects[path] = copy.deepcopy(obj)

    def request(self, method, path, query=None, body=None, content_type=None):
        self.requests.append((method, path, dict(query or {})))
        if method != "GET":
            self.calls.append("%s %s" % (method, path))
        if path == "/apis/gateway.networking.k8s.io/v1":
            if self.gateway_api == "gateways-only":
                return {"kind": "APIResourceList", "resources": [{"name": "gateways"}, {"name": "gatewayclasses"}]}
            return {"kind": "APIResourceList", "resources": [{"name": "gateways"}, {"name": "httproutes"}]} if self.gateway_api else None
        if method == "GET":
            if path in self.objects:
                return copy.deepcopy(self.objects[path])
            items = [copy.deepcopy(o) for p, o in sorted(self.objects.items()) if p.rsplit("/", 1)[0] == path]
            if path.rsplit("/", 1)[1] in ("services", "endpointslices", "httproutes"):
                wanted = dict(part.split("=", 1) for part in (query or {}).get("labelSelector", "").split(",") if part)
                items = [o for o in items if all((o["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())]
                for item in items:
                    item.pop("apiVersion", None)
                    item.pop("kind", None)
                return {"items": items}
            return None
        if method == "DELETE":
            return self.objects.pop(path, None)
        assert method == "PATCH" and content_type == "application/apply-patch+yaml"
        assert query["fieldManager"] == "mixedrun.kong"
        if path in self.owners and query.get("force") != "true":
            raise kb.K8sBindingError("PATCH %s: HTTP 409: Apply failed with 1 conflict: conflict with \"%s\": .spec.rules" % (path, self.owners[path]),
                                     status=409, managers=[self.owners[path]])
        self.owners.pop(path, None)
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = "1"
        self.objects[path] = stored
        return stored


def container_service(api, ready=2, not_ready=1):
    api.put("/api/v1/namespaces/shop/services/shop", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "shop", "namespace": NS},
                                                      "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
    api.put("/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices/shop-abc", {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "shop-abc", "labels": {kb.SERVICE_NAME_LABEL: "shop", kb.MANAGED_BY_LABEL: "endpointslice-controller.k8s.io"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.244.0.%d" % i], "conditions": {"ready": i <= ready}} for i in range(1, ready + not_ready + 1)]})


def params(**overrides):
    base = dict(name="shop", namespace=NS, route_name=None, domains=["shop.example.com"], container_service="shop", port_name=None,
                container_port=None, container_endpoints=None,
                vm_endpoints=[{"target": "10.1.0.%d:8080" % i, "drained": False} for i in (1, 2, 3)],
                vm_target_weight=14, container_target_weight=3, gateway={"name": "kong", "namespace": "kong", "section_name": None},
                force_conflicts=False)
    base.update(overrides)
    return base


def spec(**overrides):
    return kb.validate(params(**overrides))


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("overrides,option", [
    ({"name": ""}, "name must be"),
    ({"name": "Shop_1"}, "name must be"),
    ({"domains": []}, "domains must list"),
    ({"domains": ["shop.example.com", "http://x.example.com/"]}, "domains[1] must be a host name"),
    ({"domains": ["10.0.0.1"]}, "domains[0] must be a host name"),
    ({"domains": ["shop.example.com:80"]}, "domains[0]"),
    ({"vm_endpoints": [{"target": "vm1.example.com:8080", "drained": False}]}, "vm_endpoints[0].target must be an IP:port"),
    ({"vm_endpoints": [{"target": "10.0.0.1", "drained": False}]}, "vm_endpoints[0].target must be an IP:port"),
    ({"vm_endpoints": [{"target": "10.0.0.1:0", "drained": False}]}, "vm_endpoints[0].target"),
    ({"vm_endpoints": [{"target": "fd00::1:8080", "drained": False}]}, "IPv6 in brackets"),
    ({"vm_endpoints": [{"target": "127.0.0.1:8080", "drained": False}]}, "refuses loopback"),
    ({"vm_endpoints": [{"target": "10.0.0.1:80", "drained": False}, {"target": "10.0.0.1:80", "drained": True}]}, "repeats vm_endpoints[0]"),
    ({"vm_target_weight": 65536}, "vm_target_weight must be a per-target weight 0..65535"),
    ({"container_target_weight": -1}, "container_target_weight must be"),
    ({"container_service": "shop-vms"}, "container_service must not be"),
    ({"gateway": {"name": "", "namespace": None, "section_name": None}}, "gateway.name"),
    ({"port_name": "much-too-long-port-name"}, "port_name"),
    ({"vm_target_weight": 60000, "vm_endpoints": [{"target": "10.5.0.%d:80" % i, "drained": False} for i in range(1, 21)]},
     "over Gateway API's maximum of 1000000"),
    ({"container_endpoints": 100, "container_target_weight": 20000}, "container_target_weight 20000 per target over 100"),
])
def test_bad_input_fails_naming_the_option(overrides, option):
    with pytest.raises(kb.BindingInputError) as info:
        kb.validate(params(**overrides))
    assert option in str(info.value)


def test_normalised_spec():
    result = spec(domains=["Shop.Example.com", "shop.example.com", "*.shop.example.com"],
                  vm_endpoints=[{"target": "[fd00:0::5]:8080", "drained": True}])
    assert result["hostnames"] == ["shop.example.com", "*.shop.example.com"]
    assert result["vm_endpoints"] == [{"address": "fd00::5", "port": 8080, "family": "IPv6", "ready": False, "target": "[fd00::5]:8080"}]


# ---------------------------------------------------------------- desired objects


def test_slices_split_per_family_port_and_1000():
    vms = [{"target": "10.2.%d.%d:8080" % (i // 200, i % 200 + 1), "drained": i == 5} for i in range(2001)]
    vms += [{"target": "[fd00::%x]:8080" % (i + 1), "drained": False} for i in range(3)]
    vms += [{"target": "10.3.0.1:9090", "drained": False}]
    slices = kb.desired_slices(spec(vm_endpoints=vms, namespace=NS), "http")
    assert [(s["metadata"]["name"], s["addressType"], len(s["endpoints"])) for s in slices] == [
        ("shop-vms-ipv4-8080-0", "IPv4", 1000), ("shop-vms-ipv4-8080-1", "IPv4", 1000), ("shop-vms-ipv4-8080-2", "IPv4", 1),
        ("shop-vms-ipv4-9090-0", "IPv4", 1), ("shop-vms-ipv6-8080-0", "IPv6", 3)]
    assert all(s["ports"] == [{"port": int(s["metadata"]["name"].split("-")[3]), "protocol": "TCP", "name": "http"}] for s in slices)
    assert all(s["metadata"]["labels"] == {kb.SERVICE_NAME_LABEL: "shop-vms", kb.MANAGED_BY_LABEL: "mixedrun.kong"} for s in slices)
    not_ready = [e["addresses"][0] for s in slices for e in s["endpoints"] if not e["conditions"]["ready"]]
    assert not_ready == ["10.2.0.6"]


def test_covers():
    assert kb.covers({"a": [1, {"b": 2}]}, {"a": [1, {"b": 2, "c": 3}], "d": 4})
    assert not kb.covers({"a": [1]}, {"a": [1, 2]})
    assert not kb.covers({"a": {"b": 1}}, {"a": None})


# ---------------------------------------------------------------- ensure


def test_missing_gateway_api_fails_before_any_write():
    api = FakeApi(gateway_api=False)
    container_service(api)
    with pytest.raises(kb.K8sBindingError) as info:
        kb.ensure_binding(api, spec())
    assert "Gateway API" in str(info.value) and "../shared/realk8s/crds" in str(info.value)
    assert api.calls == []


def test_gateway_api_without_httproutes_fails_before_any_write():
    api = FakeApi(gateway_api="gateways-only")
    container_service(api)
    with pytest.raises(kb.K8sBindingError, match="serves no httproutes"):
        kb.ensure_binding(api, spec())
    assert api.calls == []


def test_create_then_idempotent_and_exact_weights():
    api = FakeApi()
    container_service(api)
    checked = kb.ensure_binding(api, spec(), check_mode=True)
    assert checked["changed"] and [o["action"] for o in checked["objects"]] == ["created"] * 3
    assert not any(p.startswith("/api/v1/namespaces/shop/services/shop-vms") for p in api.objects)
    first = kb.ensure_binding(api, spec())
    assert first["weights"] == {"vm_backend": 42, "container_backend": 6, "vm_target": 14, "container_target": 3,
                                "vm_ready_endpoints": 3, "container_ready_endpoints": 2}
    assert first["kic_target_weights"] == {"vm": [14], "container": [3]}
    route = api.objects["/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/shop"]
    assert route["spec"]["hostnames"] == ["shop.example.com"]
    assert route["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "kong", "namespace": "kong"}]
    refs = route["spec"]["rules"][0]["backendRefs"]
    assert [(r["name"], r["port"], r["weight"]) for r in refs] == [("shop-vms", 80, 42), ("shop", 80, 6)]
    service = api.objects["/api/v1/namespaces/shop/services/shop-vms"]
    assert "selector" not in service["spec"] and service["spec"]["ports"] == [{"name": "http", "port": 80, "protocol": "TCP"}]
    # the forward translation of what was written gives the exact per-target weights (12.5 %)
    slices = [o for p, o in api.objects.items() if "/endpointslices/" in p]
    vm = slice_endpoints([s for s in slices if s["metadata"]["labels"][kb.SERVICE_NAME_LABEL] == "shop-vms"], "http")
    pods = slice_endpoints([s for s in slices if s["metadata"]["labels"][kb.SERVICE_NAME_LABEL] == "shop"], "http")
    targets = translate([{"weight": 42, "endpoints": vm}, {"weight": 6, "endpoints": pods}])
    assert 100 * sum(targets[t] for t in pods) / sum(targets.values()) == 12.5
    api.calls[:] = []
    second = kb.ensure_binding(api, spec())
    assert not second["changed"] and second["calls"] == [] and {o["action"] for o in second["objects"]} == {"unchanged"}


def test_diff_and_update_only_what_changed():
    api = FakeApi()
    container_service(api)
    kb.ensure_binding(api, spec())
    api.calls[:] = []
    result = kb.ensure_binding(api, spec(vm_target_weight=1, container_target_weight=1))
    assert [o["action"] for o in result["objects"]] == ["unchanged", "unchanged", "updated"]
    assert result["calls"] == ["PATCH /apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/shop"]
    before = result["diff"]["before"]["HTTPRoute/shop"]["spec"]["rules"][0]["backendRefs"]
    after = result["diff"]["after"]["HTTPRoute/shop"]["spec"]["rules"][0]["backendRefs"]
    assert [r["weight"] for r in before] == [42, 6] and [r["weight"] for r in after] == [3, 2]


def test_deletes_only_owned_surplus_slices_and_warns_about_foreign():
    api = FakeApi()
    container_service(api)
    many = [{"target": "10.2.%d.%d:8080" % (i // 200, i % 200 + 1), "drained": False} for i in range(1200)]
    kb.ensure_binding(api, spec(vm_endpoints=many + [{"target": "[fd00::1]:8080", "drained": False}], vm_target_weight=1, container_target_weight=1))
    foreign_path = "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices/shop-vms-manual"
    api.put(foreign_path, {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                           "metadata": {"name": "shop-vms-manual", "labels": {kb.SERVICE_NAME_LABEL: "shop-vms", kb.MANAGED_BY_LABEL: "someone"}},
                           "addressType": "IPv4", "endpoints": []})
    result = kb.ensure_binding(api, spec())
    assert sorted(o["name"] for o in result["objects"] if o["action"] == "deleted") == ["shop-vms-ipv4-8080-1", "shop-vms-ipv6-8080-0"]
    assert foreign_path in api.objects
    assert "shop-vms-manual" in result["warnings"][0]


def test_foreign_slice_with_our_name_is_refused():
    api = FakeApi()
    container_service(api)
    api.put("/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices/shop-vms-ipv4-8080-0", {
        "metadata": {"name": "shop-vms-ipv4-8080-0", "labels": {kb.SERVICE_NAME_LABEL: "shop-vms", kb.MANAGED_BY_LABEL: "other"}}})
    with pytest.raises(kb.K8sBindingError, match="never takes over"):
        kb.ensure_binding(api, spec())
    assert api.calls == []


def test_conflict_reported_naming_the_manager_then_forced():
    api = FakeApi()
    container_service(api)
    kb.ensure_binding(api, spec())
    path = "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/shop"
    api.objects[path]["spec"]["rules"][0]["backendRefs"][0]["weight"] = 7
    api.owners[path] = "weights-editor"
    with pytest.raises(kb.K8sBindingError) as info:
        kb.ensure_binding(api, spec())
    assert info.value.status == 409 and info.value.managers == ["weights-editor"]
    assert "weights-editor" in str(info.value) and "force_conflicts" in str(info.value)
    assert api.objects[path]["spec"]["rules"][0]["backendRefs"][0]["weight"] == 7
    kb.ensure_binding(api, spec(force_conflicts=True))
    assert api.objects[path]["spec"]["rules"][0]["backendRefs"][0]["weight"] == 42
    assert any(q.get("force") == "true" for m, p, q in api.requests if m == "PATCH")


def test_container_service_missing_or_ambiguous_port():
    api = FakeApi()
    with pytest.raises(kb.BindingInputError, match="does not exist"):
        kb.ensure_binding(api, spec())
    container_service(api)
    api.objects["/api/v1/namespaces/shop/services/shop"]["spec"]["ports"].append({"name": "metrics", "port": 9090})
    with pytest.raises(kb.BindingInputError, match="choose one with port_name"):
        kb.ensure_binding(api, spec())
    with pytest.raises(kb.BindingInputError, match="no port named 'admin'"):
        kb.ensure_binding(api, spec(port_name="admin"))
    assert kb.ensure_binding(api, spec(port_name="http"))["weights"]["container_ready_endpoints"] == 2


def test_weights_over_gateway_limit_are_input_errors():
    api = FakeApi()
    container_service(api)
    many = [{"target": "10.2.%d.%d:8080" % (i // 200, i % 200 + 1), "drained": False} for i in range(1000)]
    with pytest.raises(kb.BindingInputError, match="Gateway API's maximum"):
        kb.ensure_binding(api, spec(vm_endpoints=many, vm_target_weight=1001))
    assert api.calls == []


def test_api_error_parses_conflict_managers():
    class Exc:
        status = 409
        reason = "Conflict"
        body = ('{"message": "Apply failed with 2 conflicts: conflict with \\"kubectl\\" using gateway.networking.k8s.io/v1: .spec.rules",'
                ' "details": {"causes": [{"message": "conflict with \\"kubectl\\" using v1"}, {"message": "conflict with \\"helm\\""}]}}')
    error = kb._api_error(Exc(), "PATCH", "/x", secret=None)
    assert error.status == 409 and error.managers == ["kubectl", "helm"]
