# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Kubernetes binding's split: reading the binding as KIC sees it, planning, writing and guarding the weights."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

import pytest

from ansible_collections.mixedrun.kong.plugins.module_utils import _kic_split as ks
from ansible_collections.mixedrun.kong.plugins.module_utils._k8s_binding import K8sBindingError, desired_route
from ansible_collections.mixedrun.kong.plugins.module_utils._kong_api import KongApiError

NS = "shop"


def _slice(service, port_name, addresses, port=8080, ready=None):
    return {"metadata": {"name": service + "-x", "labels": {"kubernetes.io/service-name": service}},
            "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [a], "conditions": ({} if ready is None else {"ready": ready.get(a, True)})} for a in addresses]}


class FakeApi:
    """The few API server paths the split reads and writes; applies replace the route's weights."""

    def __init__(self, vm=3, ct=2, vm_weight=12, ct_weight=2, conflict=None):
        spec = {"name": "shop", "namespace": NS, "route_name": "shop", "hostnames": ["shop.lab.test"], "container_service": "shop",
                "gateway": {"name": "kong", "namespace": "kong"}}
        self.route = desired_route(spec, {"port": 80}, {"vm": vm_weight, "container": ct_weight})
        self.route["metadata"]["resourceVersion"] = "1"
        self.services = {"shop-vms": {"spec": {"ports": [{"name": "http", "port": 80}]}},
                         "shop": {"spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}}
        self.slices = {"shop-vms": [_slice("shop-vms", "http", ["10.0.16.%d" % i for i in range(1, vm + 1)])],
                       "shop": [_slice("shop", "http", ["10.0.26.%d" % i for i in range(1, ct + 1)])]}
        self.calls = []
        self.applied = []
        self.conflict = conflict

    def request(self, method, path, query=None, body=None, content_type=None):
        if method != "GET":
            self.calls.append("%s %s" % (method, path))
        if path.endswith("/httproutes/shop"):
            if method == "PATCH":
                if self.conflict:
                    raise K8sBindingError("conflict", status=409, managers=[self.conflict])
                assert content_type == "application/apply-patch+yaml" and query["fieldManager"] == "mixedrun.kong"
                self.applied.append(body)
                self.route = copy.deepcopy(body)
                return self.route
            return copy.deepcopy(self.route)
        if "/httproutes/" in path:
            return None
        if "/services/" in path:
            return self.services.get(path.rsplit("/", 1)[1])
        if path.endswith("/endpointslices"):
            name = query["labelSelector"].split("=", 1)[1]
            return {"items": copy.deepcopy(self.slices.get(name, []))}
        raise AssertionError(path)


class FakeKong:
    """A DB-less node's read-only Admin API: one route for the host, its service, the upstream's targets."""

    def __init__(self, targets=None, upstream="u1", host="shop.lab.test"):
        self.upstream, self.host, self.targets = upstream, host, dict(targets or {})
        self.base_url = "http://kong"

    @staticmethod
    def quote(text):
        return text

    def list(self, path):
        if path == "/routes":
            return [{"hosts": [self.host], "service": {"id": "s1"}}] if self.upstream else []
        if path == "/upstreams/%s/targets" % self.upstream:
            return [{"target": t, "weight": w} for t, w in self.targets.items()]
        raise KongApiError("GET", path, 404, {"message": "Not found"})

    def get(self, path):
        assert path == "/services/s1"
        return {"host": self.upstream}


def test_read_binding_counts_ready_endpoints_as_kic():
    api = FakeApi()
    api.slices["shop"] = [_slice("shop", "http", ["10.0.26.1", "10.0.26.2", "10.0.26.3"], ready={"10.0.26.3": False}),
                          _slice("shop", "other", ["10.0.26.9"])]
    state = ks.read_binding(api, NS, "shop", "shop")
    assert state["vm"]["targets"] == ["10.0.16.1:8080", "10.0.16.2:8080", "10.0.16.3:8080"]
    assert state["container"]["targets"] == ["10.0.26.1:8080", "10.0.26.2:8080"]
    assert state["vm"]["weight"] == 12 and state["container"]["weight"] == 2
    assert float(ks.kic_share(state)) == pytest.approx(100 * 2 / 14.0)


def test_read_binding_refuses_a_missing_or_foreign_route():
    api = FakeApi()
    with pytest.raises(ks.KicSplitError, match="does not exist: bind the service first"):
        ks.read_binding(api, NS, "shop", "other")
    api.route["spec"]["rules"][0]["backendRefs"].append({"name": "third", "port": 80})
    with pytest.raises(ks.KicSplitError, match="not a mixed service's route"):
        ks.read_binding(api, NS, "shop", "shop")


@pytest.mark.parametrize("share", ["0", "0.5", "12.5", "50", "100"])
@pytest.mark.parametrize("counts", [(3, 2), (7, 3), (1, 5), (3, 0), (0, 4)])
def test_plan_round_trips_through_kic_division(share, counts):
    vm, ct = counts
    if (vm == 0 and float(share) < 99.95) or (ct == 0 and float(share) > 0.05):
        return
    state = ks.read_binding(FakeApi(vm=vm, ct=ct), NS, "shop", "shop")
    plan, weights = ks.plan_backends(state, share, 0.05)
    got = ks.kic_share(state, weights)
    assert abs(float(got) - float(share)) <= 0.05
    translated = ks.kic_weights(state, weights)
    assert set(translated[t] for t in state["vm"]["targets"]) <= {plan["vm_weight"]}
    assert set(translated[t] for t in state["container"]["targets"]) <= {plan["container_weight"]}
    assert weights["vm"] <= 1000000 and weights["container"] <= 1000000


def test_apply_writes_only_the_weights_and_reports_a_conflicting_manager():
    api = FakeApi()
    state = ks.read_binding(api, NS, "shop", "shop")
    assert ks.apply_backends(api, state, {"vm": 12, "container": 2}) is False
    assert not api.applied
    assert ks.apply_backends(api, state, {"vm": 3, "container": 2}) is True
    refs = api.applied[0]["spec"]["rules"][0]["backendRefs"]
    assert [(r["name"], r["weight"]) for r in refs] == [("shop-vms", 3), ("shop", 2)]
    assert api.applied[0]["spec"]["hostnames"] == ["shop.lab.test"]
    api = FakeApi(conflict="kubectl-edit")
    state = ks.read_binding(api, NS, "shop", "shop")
    with pytest.raises(ks.KicSplitError, match="another field manager owns its backendRef weights .kubectl-edit."):
        ks.apply_backends(api, state, {"vm": 3, "container": 2})


def test_apply_refuses_a_route_changed_by_another_writer():
    api = FakeApi()
    api.route["spec"]["hostnames"] = ["other.example.com"]
    state = ks.read_binding(api, NS, "shop", "shop")
    state["hostnames"] = ["shop.lab.test"]
    with pytest.raises(ks.KicSplitError, match="differs from what the binding writes"):
        ks.apply_backends(api, state, {"vm": 3, "container": 2})
    assert not api.calls


def test_check_mode_sends_nothing():
    api = FakeApi()
    state = ks.read_binding(api, NS, "shop", "shop")
    assert ks.apply_backends(api, state, {"vm": 3, "container": 2}, check_mode=True) is True
    assert not api.applied and api.calls == ["PATCH /apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/shop (check mode: not sent)"]


def test_guard_corrects_drift_beyond_max_error_only():
    params = {"upstream": "shop", "kubernetes": {"namespace": NS}}
    # 3 VMs x 4 and 2 pods x 1 = 2/14 = 14.29 %: 12.5 % planned is off by 1.79 points
    api = FakeApi(vm=3, ct=2, vm_weight=12, ct_weight=2)
    out = ks.guard_share(api, params, "14.285714", 0.05)
    assert out["corrected"] is False and not api.applied
    # a pod added: KIC divides 2 over 3 pods -> 0 per pod? no: minimum 1 each -> 3/15 = 20 %
    api.slices["shop"] = [_slice("shop", "http", ["10.0.26.1", "10.0.26.2", "10.0.26.3"])]
    out = ks.guard_share(api, params, "14.285714", 0.05)
    assert out["previous_share"] == pytest.approx(20.0)
    assert out["corrected"] is True and abs(out["share"] - 14.285714) <= 0.05
    state = ks.read_binding(api, NS, "shop", "shop")
    assert abs(float(ks.kic_share(state)) - 14.285714) <= 0.05


def test_wait_nodes_follows_a_renamed_upstream_and_names_the_node_behind():
    expected = {"10.0.16.1:8080": 4, "10.0.26.1:8080": 1}
    good = FakeKong(expected, upstream="renamed")
    behind = FakeKong({"10.0.16.1:8080": 1, "10.0.26.1:8080": 1}, upstream="old")
    found, _seconds = ks.wait_nodes([("a", good)], ["shop.lab.test"], expected, 1)
    assert found == {"a": "renamed"}
    clock = iter(range(100))
    with pytest.raises(ks.KicSplitError, match=r"1 of 2 Kong node\(s\).*b routes old with 10.0.16.1:8080 1 \(planned 4\)"):
        ks.wait_nodes([("a", good), ("b", behind)], ["shop.lab.test"], expected, 3, clock=lambda: next(clock), sleep=lambda s: None)
    empty = FakeKong(upstream=None)
    with pytest.raises(ks.KicSplitError, match="no upstream .no route for shop.lab.test yet."):
        ks.wait_nodes([("c", empty)], ["shop.lab.test"], expected, 0, sleep=lambda s: None)


def test_binding_target_names_the_missing_field():
    with pytest.raises(ks.KicSplitError, match="kubernetes.namespace is required"):
        ks.binding_target({"kubernetes": {}}, "shop")
    assert ks.binding_target({"kubernetes": {"namespace": "n", "route_name": "r"}}, "shop") == ("n", "shop", "r")


class FakeKongNode(FakeKong):
    """A DB-less node that follows the HTTPRoute as the controller would, and reports its node id."""

    def __init__(self, api):
        super(FakeKongNode, self).__init__()
        self.api = api
        self.calls = []

    def sync(self):
        state = ks.read_binding(self.api, NS, "shop", "shop")
        self.targets = ks.kic_weights(state)
        self.upstream = "u-%s-%s" % (state["vm"]["weight"], state["container"]["weight"])

    def list(self, path):
        self.sync()
        return super(FakeKongNode, self).list(path)

    def get(self, path):
        return {"host": self.upstream}

    @staticmethod
    def node_info():
        return {"node_id": "n1"}

    def request(self, method, path, params=None):
        assert method == "GET" and path == "/upstreams/%s/health" % self.upstream
        return {"node_id": "n1", "data": {"details": {"hosts": [
            {"host": t.rsplit(":", 1)[0], "port": int(t.rsplit(":", 1)[1]), "nodeWeight": w, "addresses": [{"healthy": True}]}
            for t, w in self.targets.items()]}}}


def test_traffic_split_module_in_the_kubernetes_binding(monkeypatch):
    from ansible_collections.mixedrun.kong.plugins.modules import kong_traffic_split as mod
    api = FakeApi(vm=3, ct=2, vm_weight=3, ct_weight=0)
    node = FakeKongNode(api)
    params = {"upstream": "shop", "container_share": "12.5", "max_error": 0.05, "verify_timeout": 5, "binding": "kubernetes",
              "kubernetes": {"namespace": NS}}
    result = {"changed": False, "verified_nodes": {}, "consistent": True, "balancers": {}}
    mod._split_kic(api, node, [], [("http://kong", node)], ("shop", "shop", "shop"), params, False, True, result)
    assert result["previous_share"] == 0.0 and result["changed"] is True
    assert abs(result["achieved_share"] - 12.5) <= 0.05
    per_vm, per_ct = result["vm_weight"], result["container_weight"]
    assert result["kubernetes"]["backend_weights"] == {"vm": 3 * per_vm, "container": 2 * per_ct}
    assert set(result["weights_after"].values()) == {per_vm, per_ct}
    assert result["balancers"]["http://kong"]["node_id"] == "n1"
    # read-only: the same share, consistent, nothing written
    writes = len(api.applied)
    params["container_share"] = None
    result = {"changed": False, "verified_nodes": {}, "consistent": True, "balancers": {}}
    mod._split_kic(api, node, [], [], ("shop", "shop", "shop"), params, False, False, result)
    assert abs(result["achieved_share"] - 12.5) <= 0.05 and result["consistent"] and len(api.applied) == writes
