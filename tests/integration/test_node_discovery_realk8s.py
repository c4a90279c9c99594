# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kubernetes discovery against a real Kubernetes v1.26 control plane (the kit in ../shared/realk8s, or
$MIXEDRUN_REALK8S_KIT): the lab with ``k8s.engine: real`` (tests/integration/lab-realk8s.yml), where real
ReplicaSets create the pods, the lab binds them and writes their status, and kube-controller-manager writes the
EndpointSlices.

The engine-neutral tests of test_node_discovery_k8s.py run here again on the real control plane; the tests below them
need it: one endpoint in two EndpointSlices of a Service (issue 12), a pod behind two Services, scaling and the
terminating fault. Skipped, with the reason printed, where the kit is absent.

Run: cd /work/main && PYTHONPATH=.:.tmp/collections .venv/bin/pytest -q -rs tests/integration/test_node_discovery_realk8s.py
(``MIXEDRUN_LAB_JSON=/path/lab.json`` reuses a running lab whose lab.json says ``k8s_engine: real``.)
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import sys
import time

import pytest
import requests
import yaml

from ansible_collections.mixedrun.kong.plugins.module_utils._discovery import DiscoveryError, assemble
from tests.integration import test_node_discovery_k8s as engine_neutral
from tests.integration.test_node_discovery_k8s import (  # noqa: F401  pylint: disable=unused-import
    K8sLab,
    targets,
    test_context_namespace_is_the_default,
    test_endpoints_mode_finds_the_lab_containers,
    test_forbidden,
    test_node_port_mode,
    test_pods_mode_named_port,
    test_service_mode,
    test_task_through_ansible_playbook,
    test_unauthorized,
    test_unhealthy_container_leaves_and_comes_back,
    wait_for,
)
from tests.lab import config as labconfig
from tests.lab.pytest_plugin import LAB_JSON_ENV, start_lab, stop_lab

pytest_plugins = ["tests.lab.pytest_plugin"]

NS = engine_neutral.NS
LAB_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lab-realk8s.yml")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A lab on the real control plane: MIXEDRUN_LAB_JSON when it is one, else started for this module."""
    path = os.environ.get(LAB_JSON_ENV)
    if path:
        with open(path, encoding="utf-8") as fh:
            info = json.load(fh)
        if info.get("k8s_engine") == "real":
            yield info
            return
    if not labconfig.realk8s_kit():
        reason = "the real Kubernetes kit is absent (neither $%s nor ../shared/realk8s holds k8s-cluster.sh)" % labconfig.REALK8S_KIT_ENV
        print("test_node_discovery_realk8s: skipped: " + reason, file=sys.stderr)
        pytest.skip(reason)
    with open(LAB_CONFIG, encoding="utf-8") as fh:
        extra = yaml.safe_load(fh)
    # free ports (the addresses stay): `make test` may run this module in two integration slots at once
    extra["node_port"] = "auto"
    for svc in extra["services"]:
        svc["node_port"] = "auto"
    state_dir = str(tmp_path_factory.mktemp("lab-realk8s"))
    started = time.monotonic()
    info = start_lab(state_dir, extra_config=extra, kong_engine="simulator")     # Kong is not what these tests are about
    print("lab with the real control plane up in %.1f s (%s)" % (time.monotonic() - started, info.get("k8s_version")), file=sys.stderr)
    try:
        yield info
    finally:
        stop_lab(state_dir)


class RealK8sLab(K8sLab):
    """K8sLab on the real API: objects are written through the API instead of the stand-in's /_lab/objects."""

    def request(self, method, path, body=None, ok=(200, 201), **params):
        resp = requests.request(method, self.url + path, json=body, params=params or None, headers=self._headers(), verify=self.verify, timeout=30)
        assert resp.status_code in ok, "%s %s -> %d %s" % (method, path, resp.status_code, resp.text[:500])
        return resp.json() if resp.content else None

    def clear(self, **params):
        """Delete the test namespace (and wait until it is gone: bound pods need the kubelet's confirmation)."""
        self.request("DELETE", "/api/v1/namespaces/%s" % NS, ok=(200, 202, 404))
        assert wait_for(lambda: requests.get(self.url + "/api/v1/namespaces/%s" % NS, headers=self._headers(), verify=self.verify,
                                             timeout=30).status_code == 404, timeout=60), "namespace %s was not deleted" % NS


@pytest.fixture(scope="module")
def k8s(lab):  # pylint: disable=redefined-outer-name
    handle = RealK8sLab(lab)
    assert lab["k8s_engine"] == "real"
    handle.clear()
    handle.request("POST", "/api/v1/namespaces", {"metadata": {"name": NS}})
    yield handle
    handle.clear()
    handle.request("DELETE", "/api/v1/namespaces/shop/services/shop-alt", ok=(200, 404))
    for name in list_slices(handle, "shop", "mixedrun-test"):
        handle.request("DELETE", "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices/%s" % name, ok=(200, 404))
    if handle.verify is not True:
        os.unlink(handle.verify)


def list_slices(k8s, namespace, managed_by=None):  # pylint: disable=redefined-outer-name
    selector = "endpointslice.kubernetes.io/managed-by=%s" % managed_by if managed_by else None
    items = k8s.get("/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices%s" % (namespace, "?labelSelector=" + selector if selector else ""))["items"]
    return [s["metadata"]["name"] for s in items]


def containers(lab):  # pylint: disable=redefined-outer-name
    return sorted((n for n in lab["nodes"] if n["kind"] == "container"), key=lambda n: n["name"])


def pod_targets(lab):  # pylint: disable=redefined-outer-name
    return sorted("%s:%d" % (n["pod_ip"], n["port"]) for n in containers(lab))


def controller_slices(k8s):  # pylint: disable=redefined-outer-name
    return [s for s in k8s.get("/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices?labelSelector=kubernetes.io/service-name=shop")["items"]
            if s["metadata"]["labels"].get("endpointslice.kubernetes.io/managed-by") == "endpointslice-controller.k8s.io"]


def ready_addresses(k8s):  # pylint: disable=redefined-outer-name
    return sorted(a for s in controller_slices(k8s) for e in s.get("endpoints") or [] if e["conditions"].get("ready") for a in e["addresses"])


# --------------------------------------------------------------------------------------------------------
# What the real cluster holds


def test_the_real_control_plane_made_the_slices(k8s, lab):  # pylint: disable=redefined-outer-name
    assert lab["k8s_version"] == "v1.26.0"
    assert k8s.get("/version")["gitVersion"] == "v1.26.0"
    slices = controller_slices(k8s)
    assert slices, "kube-controller-manager wrote no EndpointSlice for shop"
    endpoints = [e for s in slices for e in s["endpoints"]]
    assert sorted(e["targetRef"]["name"] for e in endpoints) == [n["name"] for n in containers(lab)]
    assert sorted(a for e in endpoints for a in e["addresses"]) == sorted(n["pod_ip"] for n in containers(lab))
    assert all(e["conditions"] == {"ready": True, "serving": True, "terminating": False} for e in endpoints)
    assert {e["nodeName"] for e in endpoints} == {k["name"] for k in lab["k8s_nodes"]}
    assert [p["name"] for p in slices[0]["ports"]] == ["http"]
    rs_owned = [p for p in k8s.get("/api/v1/namespaces/shop/pods")["items"] if p["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"]
    assert len(rs_owned) == len(containers(lab))
    # each pod's loopback address serves under the pod's name
    for node in containers(lab):
        resp = requests.get("http://%s:%d/" % (node["address"], node["port"]), timeout=5)
        assert resp.headers["X-Node-Name"] == node["name"]


# --------------------------------------------------------------------------------------------------------
# Issue 12: an endpoint in two EndpointSlices of one Service


def _second_slice(lab, ready=True):  # pylint: disable=redefined-outer-name
    """A user-made slice of Service shop (no targetRef, no nodeName) listing the controller's endpoints again."""
    port = containers(lab)[0]["port"]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "shop-extra", "namespace": "shop",
                         "labels": {"kubernetes.io/service-name": "shop", "endpointslice.kubernetes.io/managed-by": "mixedrun-test"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [n["pod_ip"]], "conditions": {"ready": ready}} for n in containers(lab)],
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}]}


def test_one_endpoint_in_two_slices_of_a_service_is_one_node(k8s, lab):  # pylint: disable=redefined-outer-name
    k8s.request("POST", "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices", _second_slice(lab))
    try:
        assert len(list_slices(k8s, "shop")) >= 2
        result = k8s.discover(namespaces=["shop"], selector="app=shop")
        assert targets(result) == pod_targets(lab)
        assert sorted(n["name"] for n in result["nodes"]) == ["shop/" + n["name"] for n in containers(lab)]     # named by the pods
        assembled = assemble(None, result)                          # no "3 target(s) found more than once"
        assert assembled["duplicates"] == [] and assembled["counts"]["container"] == len(containers(lab))
        # the second slice says not ready: ready (the controller's slice) wins
        k8s.request("PUT", "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices/shop-extra",
                    dict(_second_slice(lab, ready=False), metadata=dict(k8s.get("/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices/shop-extra")
                                                                        ["metadata"])))
        result = k8s.discover(namespaces=["shop"], selector="app=shop")
        assert targets(result) == pod_targets(lab) and all(n["ready"] for n in result["nodes"])
        assert all(n["source"].startswith("k8s:shop/endpointslice/shop-") and not n["source"].endswith("shop-extra") for n in result["nodes"])
    finally:
        k8s.request("DELETE", "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices/shop-extra", ok=(200, 404))


def test_one_pod_behind_two_services_is_a_duplicate(k8s, lab):  # pylint: disable=redefined-outer-name
    shop = k8s.get("/api/v1/namespaces/shop/services/shop")
    alt = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "shop-alt", "namespace": "shop", "labels": shop["metadata"]["labels"]},
           "spec": {"selector": shop["spec"]["selector"], "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}
    k8s.request("POST", "/api/v1/namespaces/shop/services", alt)
    try:
        assert wait_for(lambda: [s for s in k8s.get("/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices?labelSelector="
                                                    "kubernetes.io/service-name=shop-alt")["items"]
                                 if len(s.get("endpoints") or []) == len(containers(lab))], timeout=20)
        result = k8s.discover(namespaces=["shop"], selector="app=shop")
        with pytest.raises(DiscoveryError) as info:
            assemble(None, result)
        assert str(info.value).startswith("%d target(s) found more than once: " % len(containers(lab)))
        assert "k8s:shop/endpointslice/shop-alt-" in str(info.value)
    finally:
        k8s.request("DELETE", "/api/v1/namespaces/shop/services/shop-alt", ok=(200, 404))


# --------------------------------------------------------------------------------------------------------
# The kubelet player: scaling and the terminating fault


def _scale(k8s, replicas):  # pylint: disable=redefined-outer-name
    resp = requests.patch(k8s.url + "/apis/apps/v1/namespaces/shop/deployments/shop/scale", data=json.dumps({"spec": {"replicas": replicas}}),
                          headers=dict(k8s._headers(), **{"Content-Type": "application/merge-patch+json"}),  # pylint: disable=protected-access
                          verify=k8s.verify, timeout=30)
    assert resp.status_code == 200, resp.text


def _fleet_nodes(lab):  # pylint: disable=redefined-outer-name
    return {n["name"]: n for n in requests.get(lab["control_url"] + "/nodes", timeout=10).json()["nodes"] if n["kind"] == "container"}


def test_scaling_up_and_down(k8s, lab):  # pylint: disable=redefined-outer-name
    before = {n["name"] for n in containers(lab)}
    started = time.monotonic()
    _scale(k8s, len(before) + 1)
    try:
        assert wait_for(lambda: len(ready_addresses(k8s)) == len(before) + 1, timeout=30), ready_addresses(k8s)
        up_seconds = time.monotonic() - started
        fleet = _fleet_nodes(lab)
        new = sorted(set(fleet) - before)
        assert len(new) == 1, fleet
        node = fleet[new[0]]
        addresses = sorted(n["address"] for n in containers(lab))
        assert node["address"] not in addresses and node["ready"]
        resp = requests.get("http://%s:%d/" % (node["address"], node["port"]), timeout=5)
        assert resp.headers["X-Node-Name"] == new[0]
        result = k8s.discover(namespaces=["shop"], selector="app=shop")
        assert len(result["nodes"]) == len(before) + 1 and "shop/" + new[0] in [n["name"] for n in result["nodes"]]
        print("scaled up: the new pod was ready in the EndpointSlice after %.1f s" % up_seconds, file=sys.stderr)
    finally:
        _scale(k8s, len(before))
    assert wait_for(lambda: len(ready_addresses(k8s)) == len(before) and len(_fleet_nodes(lab)) == len(before), timeout=30)
    left = set(_fleet_nodes(lab))
    pods = {p["metadata"]["name"] for p in k8s.get("/api/v1/namespaces/shop/pods")["items"]}
    assert left == pods


def test_terminating_fault_deletes_gracefully(k8s, lab):  # pylint: disable=redefined-outer-name
    before = set(_fleet_nodes(lab))
    leaving = sorted(before)[0]
    resp = requests.post(lab["control_url"] + "/nodes/" + leaving, json={"terminating": True}, timeout=10)
    assert resp.status_code == 200, resp.text

    def terminating_endpoint():
        for s in controller_slices(k8s):
            for endpoint in s["endpoints"]:
                if endpoint.get("targetRef", {}).get("name") == leaving and endpoint["conditions"].get("terminating"):
                    return endpoint
        return None

    endpoint = wait_for(terminating_endpoint, timeout=30)
    assert endpoint and endpoint["conditions"] == {"ready": False, "serving": True, "terminating": True}
    result = k8s.discover(namespaces=["shop"], selector="app=shop")
    assert {"name": "shop/" + leaving, "kind": "container", "reason": "terminating (set include_terminating to list it with ready: false)"} \
        in result["skipped"]
    # the ReplicaSet replaced it: as many ready endpoints as before, on a new pod the lab started a node for
    assert wait_for(lambda: len(ready_addresses(k8s)) == len(before), timeout=30)
    resp = requests.post(lab["control_url"] + "/nodes/" + leaving + "/reset", timeout=10)       # the fault ends: the pod goes
    assert resp.status_code == 200
    assert wait_for(lambda: leaving not in _fleet_nodes(lab) and terminating_endpoint() is None, timeout=30)
    assert len(_fleet_nodes(lab)) == len(before) and len(ready_addresses(k8s)) == len(before)
