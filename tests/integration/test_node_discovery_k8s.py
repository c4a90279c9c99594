# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kubernetes discovery with the real ``kubernetes`` client against the lab's Kubernetes API stand-in:
every address mode, the readiness cases, named ports, pagination and the API errors; and the whole task
(action plugin + module) through ansible-playbook.

Run: cd /work/main && PYTHONPATH=.:.tmp/collections .venv/bin/pytest -q -p tests.lab.pytest_plugin \
         tests/integration/test_node_discovery_k8s.py
(``MIXEDRUN_LAB_JSON=/path/lab.json`` reuses a running lab; extra objects go to the namespace ``nd-test`` and are
removed at the end.)
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import pytest
import requests
import yaml

from ansible_collections.mixedrun.kong.plugins.module_utils._k8s_discovery import (
    K8sDiscoveryError,
    KubernetesSource,
    build_api_client,
    discover_containers,
)

pytest_plugins = ["tests.lab.pytest_plugin"]

NS = "nd-test"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class K8sLab:
    """The lab's API stand-in: connection details and loading extra objects."""

    def __init__(self, lab):
        self.lab = lab
        self.kubeconfig = lab["kubeconfig"]
        with open(self.kubeconfig) as handle:
            config = yaml.safe_load(handle)
        self.token = config["users"][0]["user"]["token"]
        cluster = config["clusters"][0]["cluster"]
        self.url = cluster["server"]
        self.verify = True
        if cluster.get("certificate-authority-data"):
            handle = tempfile.NamedTemporaryFile("wb", suffix=".crt", delete=False)
            handle.write(base64.b64decode(cluster["certificate-authority-data"]))
            handle.close()
            self.verify = handle.name

    def _headers(self):
        return {"Authorization": "Bearer " + self.token}

    def get(self, path):
        """An independent read of the stand-in (plain HTTP, not the code under test)."""
        resp = requests.get(self.url + path, headers=self._headers(), verify=self.verify, timeout=30)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def load(self, objects):
        resp = requests.post(self.url + "/_lab/objects", json={"items": objects}, headers=self._headers(), verify=self.verify, timeout=30)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def clear(self, **params):
        params = params or {"namespace": NS}
        resp = requests.delete(self.url + "/_lab/objects", params=params, headers=self._headers(), verify=self.verify, timeout=30)
        assert resp.status_code == 200, resp.text

    def compact(self):
        """Expire every continue token issued so far (the stand-in's etcd compaction)."""
        resp = requests.post(self.url + "/_lab/compact", headers=self._headers(), verify=self.verify, timeout=30)
        assert resp.status_code == 200, resp.text

    def source(self, page_size=500, **auth):
        auth = auth or {"kubeconfig": self.kubeconfig}
        client, namespace = build_api_client(auth)[:2]
        return KubernetesSource(client, page_size=page_size, timeout=10, secret=auth.get("api_key")), namespace

    def discover_with_source(self, page_size=500, auth=None, **options):
        source, namespace = self.source(page_size, **(auth or {}))
        return discover_containers(source, options, default_namespace=namespace), source

    def discover(self, page_size=500, auth=None, **options):
        return self.discover_with_source(page_size, auth, **options)[0]


@pytest.fixture(scope="module")
def k8s(lab):
    handle = K8sLab(lab)
    handle.clear()
    yield handle
    handle.clear()
    if handle.verify is not True:
        os.unlink(handle.verify)


def pod_target(node):
    """The target Kubernetes lists for a container node: its pod IP (the real control plane's, which refuses loopback
    addresses in EndpointSlices: tests/lab/realk8s.py) or, on the stand-in, its address."""
    return "%s:%d" % (node.get("pod_ip") or node["address"], node["port"])


def lab_containers(lab):
    return sorted(pod_target(n) for n in lab["nodes"] if n["kind"] == "container")


def targets(result):
    return sorted(n["target"] for n in result["nodes"])


def wait_for(check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


# --------------------------------------------------------------------------------------------------------
# The lab's own objects


def test_endpoints_mode_finds_the_lab_containers(k8s, lab):
    service = lab["services"][0]
    result, source = k8s.discover_with_source(namespaces=[service["namespace"]], selector=service["selector"])
    assert targets(result) == lab_containers(lab)
    assert all(n["kind"] == "container" and n["ready"] and n["source"].startswith("k8s:%s/endpointslice/" % service["namespace"])
               for n in result["nodes"])
    assert result["skipped"] == []
    assert source.requests == 2          # one Service list, one EndpointSlice list for all the Services found


def test_context_namespace_is_the_default(k8s, lab):
    result = k8s.discover(selector="app=shop")          # the lab's context namespace is "default": nothing there
    assert result["nodes"] == []
    result = k8s.discover(all_namespaces=True, selector="app=shop")
    assert set(lab_containers(lab)) <= set(targets(result))     # other namespaces of a shared lab may add their own


def test_pods_mode_named_port(k8s, lab):
    result = k8s.discover(namespaces=["shop"], address_mode="pods", selector="app=shop,tier=web", port="http")
    assert targets(result) == lab_containers(lab)
    assert all(n["labels"]["app"] == "shop" and "pod-template-hash" in n["labels"] for n in result["nodes"])


def test_node_port_mode(k8s, lab):
    node_port = k8s.get("/api/v1/namespaces/shop/services/shop")["spec"]["ports"][0]["nodePort"]
    workers = dict((n["metadata"]["name"], [a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP"][0])
                   for n in k8s.get("/api/v1/nodes")["items"])
    assert len(workers) == 3
    result = k8s.discover(namespaces=["shop"], address_mode="node_port", service=["shop"])
    assert targets(result) == sorted("%s:%d" % (address, node_port) for address in workers.values())
    assert [n["name"] for n in result["nodes"]] == ["shop/shop@%s" % name for name in sorted(workers)]
    result = k8s.discover(namespaces=["shop"], address_mode="node_port", service=["shop"], node_selector="kubernetes.io/hostname=lab-worker-2")
    assert targets(result) == ["%s:%d" % (workers["lab-worker-2"], node_port)]


def test_service_mode(k8s):
    cluster_ip = k8s.get("/api/v1/namespaces/shop/services/shop")["spec"]["clusterIP"]
    result = k8s.discover(namespaces=["shop"], address_mode="service", service=["shop"])
    assert [(n["name"], n["target"], n["ready"]) for n in result["nodes"]] == [("shop/shop", "%s:80" % cluster_ip, True)]


def test_unhealthy_container_leaves_and_comes_back(k8s, lab, lab_control):
    victim = sorted((n for n in lab["nodes"] if n["kind"] == "container"), key=lambda n: n["name"])[0]
    victim_target = pod_target(victim)
    lab_control(victim["name"], unhealthy=True)

    def gone():
        result = k8s.discover(namespaces=["shop"], selector="app=shop")
        return result if victim_target not in targets(result) else None

    result = wait_for(gone)
    assert result, "the unhealthy container was still listed as ready"
    assert targets(result) == [t for t in lab_containers(lab) if t != victim_target]
    assert [s["name"] for s in result["skipped"]] == ["shop/" + victim["name"]]
    assert result["skipped"][0]["reason"].startswith("not ready: EndpointSlice condition ready=False")

    result = k8s.discover(namespaces=["shop"], selector="app=shop", include_not_ready=True)
    assert targets(result) == lab_containers(lab)
    assert [n["ready"] for n in result["nodes"] if n["target"] == victim_target] == [False]

    result = k8s.discover(namespaces=["shop"], address_mode="pods", selector="app=shop")
    assert victim_target not in targets(result)
    assert result["skipped"][0]["reason"].startswith("not ready: pod condition Ready is not True")


# --------------------------------------------------------------------------------------------------------
# Extra objects: readiness cases, ports, Service shapes


def _svc(name, ports, selector=None, stype="ClusterIP", cluster_ip="127.0.41.1", ingress=None, labels=None, policy="Cluster"):
    spec = {"type": stype, "ports": ports, "clusterIP": cluster_ip, "clusterIPs": [cluster_ip], "ipFamilies": ["IPv4"],
            "externalTrafficPolicy": policy}
    if selector:
        spec["selector"] = selector
    return {"kind": "Service", "apiVersion": "v1", "metadata": {"name": name, "namespace": NS, "labels": labels or {"suite": "nd"}},
            "spec": spec, "status": {"loadBalancer": {"ingress": ingress} if ingress else {}}}


def _slice(service, endpoints, ports, suffix="x", address_type="IPv4"):
    return {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1", "addressType": address_type,
            "metadata": {"name": "%s-%s" % (service, suffix), "namespace": NS, "labels": {"kubernetes.io/service-name": service}},
            "endpoints": endpoints, "ports": ports}


def _ep(ip, pod, **conditions):
    return {"addresses": [ip], "conditions": conditions, "nodeName": "lab-worker-1", "targetRef": {"kind": "Pod", "namespace": NS, "name": pod}}


def _pod(name, ip, labels, ready=True, ports=None, phase="Running", deleting=False):
    meta = {"name": name, "namespace": NS, "labels": labels}
    if deleting:
        meta["deletionTimestamp"] = "2030-01-01T00:00:00Z"
    return {"kind": "Pod", "apiVersion": "v1", "metadata": meta,
            "spec": {"containers": [{"name": "app", "ports": ports or [{"name": "web", "containerPort": 9443}]}]},
            "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}] if ip else [],
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


@pytest.fixture(scope="module")
def extra(k8s):
    objects = [
        {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": NS}},
        _svc("cond", [{"name": "http", "port": 80, "targetPort": "web"}], selector={"app": "cond"}, labels={"suite": "nd", "case": "cond"}),
        _slice("cond", [_ep("127.0.50.1", "ready", ready=True, serving=True, terminating=False),
                        _ep("127.0.50.2", "not-ready", ready=False, serving=False, terminating=False),
                        _ep("127.0.50.3", "draining", ready=False, serving=True, terminating=True),
                        _ep("127.0.50.4", "unknown")],                                   # nil conditions: ready
               [{"name": "http", "port": 9443}]),
        _svc("multi", [{"name": "http", "port": 80, "targetPort": "web"}, {"name": "admin", "port": 81, "targetPort": 9000}],
             selector={"app": "multi"}, labels={"suite": "nd", "case": "multi"}),
        _slice("multi", [_ep("127.0.51.1", "m1", ready=True)], [{"name": "http", "port": 9443}, {"name": "admin", "port": 9000}]),
        _pod("m1", "127.0.51.1", {"app": "multi"}, ports=[{"name": "web", "containerPort": 9443}, {"name": "adm", "containerPort": 9000}]),
        _pod("m2", "127.0.51.2", {"app": "multi"}, ready=False),
        _pod("m3", None, {"app": "multi"}, ready=False, phase="Pending"),
        _pod("m4", "127.0.51.4", {"app": "multi"}, deleting=True),
        _svc("edge", [{"name": "https", "port": 443, "targetPort": 8443}], selector={"app": "edge"}, stype="LoadBalancer",
             ingress=[{"ip": "127.0.52.100"}], labels={"suite": "nd", "case": "edge"}),
        _slice("edge", [_ep("127.0.52.1", "e1", ready=True)], [{"name": "https", "port": 8443}]),
        _svc("headless", [{"name": "http", "port": 80}], selector={"app": "headless"}, cluster_ip="None", labels={"suite": "nd", "case": "x"}),
        _slice("headless", [_ep("127.0.53.1", "h1", ready=True)], [{"name": "http", "port": 80}]),
        _svc("manual", [{"name": "http", "port": 80}], labels={"suite": "nd", "case": "x"}),
        # two Services selecting the same pod: two endpoints with one target
        _svc("dupa", [{"name": "http", "port": 80, "targetPort": "web"}], selector={"app": "dup"}, labels={"suite": "nd", "case": "dup"}),
        _slice("dupa", [_ep("127.0.55.1", "d1", ready=True), _ep("127.0.55.2", "d2", ready=True)], [{"name": "http", "port": 9443}]),
        _svc("dupb", [{"name": "http", "port": 80, "targetPort": "web"}], selector={"app": "dup"}, labels={"suite": "nd", "case": "dup"}),
        _slice("dupb", [_ep("127.0.55.1", "d1", ready=True)], [{"name": "http", "port": 9443}]),
    ]
    k8s.load(objects)
    return objects


def test_endpoint_conditions(k8s, extra):
    result = k8s.discover(namespaces=[NS], service=["cond"])
    assert [(n["name"], n["target"], n["ready"]) for n in result["nodes"]] == [
        (NS + "/ready", "127.0.50.1:9443", True), (NS + "/unknown", "127.0.50.4:9443", True)]
    reasons = dict((s["name"], s["reason"]) for s in result["skipped"])
    assert reasons[NS + "/draining"] == "terminating (set include_terminating to list it with ready: false)"
    assert reasons[NS + "/not-ready"].startswith("not ready: EndpointSlice condition ready=False serving=False")
    result = k8s.discover(namespaces=[NS], service=["cond"], include_not_ready=True, include_terminating=True)
    assert [(n["name"], n["ready"]) for n in result["nodes"]] == [
        (NS + "/draining", False), (NS + "/not-ready", False), (NS + "/ready", True), (NS + "/unknown", True)]
    assert result["nodes"][0]["labels"] == {"suite": "nd", "case": "cond"}
    result = k8s.discover(namespaces=[NS], service=["cond"], include_terminating=True)          # alone: the draining one too
    assert [(n["name"], n["ready"]) for n in result["nodes"]] == [(NS + "/draining", False), (NS + "/ready", True), (NS + "/unknown", True)]
    assert [s["name"] for s in result["skipped"]] == [NS + "/not-ready"]


def test_ports_by_name_and_number(k8s, extra):
    result = k8s.discover(namespaces=[NS], service=["multi"])
    assert result["nodes"] == [] and "has several ports (http, admin): set port" in result["skipped"][0]["reason"]
    for port, expected in (("admin", "127.0.51.1:9000"), (81, "127.0.51.1:9000"), ("http", "127.0.51.1:9443"), (9443, "127.0.51.1:9443")):
        result = k8s.discover(namespaces=[NS], service=["multi"], port=port)
        assert targets(result) == [expected], port


def test_pods_through_a_service_resolve_named_target_ports(k8s, extra):
    result = k8s.discover(namespaces=[NS], address_mode="pods", service=["multi"], port="http")
    assert targets(result) == ["127.0.51.1:9443"]
    reasons = dict((s["name"], s["reason"]) for s in result["skipped"])
    assert reasons[NS + "/m2"].startswith("not ready: pod condition Ready is not True")
    assert reasons[NS + "/m3"] == "no pod IP yet (phase Pending)"
    assert reasons[NS + "/m4"] == "terminating (set include_terminating to list it with ready: false)"
    result = k8s.discover(namespaces=[NS], address_mode="pods", service=["multi"], port="admin")
    assert targets(result) == ["127.0.51.1:9000"]                       # targetPort 9000 (a number)
    result = k8s.discover(namespaces=[NS], address_mode="pods", selector="app=multi", port="adm", include_not_ready=True)
    assert targets(result) == ["127.0.51.1:9000"]
    assert "no container port named adm" in dict((s["name"], s["reason"]) for s in result["skipped"])[NS + "/m2"]


def test_service_shapes(k8s, extra):
    result = k8s.discover(namespaces=[NS], address_mode="service", service=["edge", "headless", "manual"])
    assert [(n["name"], n["target"]) for n in result["nodes"]] == [(NS + "/edge", "127.0.52.100:443")]
    reasons = dict((s["name"], s["reason"]) for s in result["skipped"])
    assert "has no ClusterIP (headless or ExternalName)" in reasons[NS + "/headless"]
    assert reasons[NS + "/manual"].startswith("not ready: the Service has no ready endpoint")
    result = k8s.discover(namespaces=[NS], address_mode="service", service=["edge"], service_address="cluster_ip")
    assert targets(result) == ["127.0.41.1:443"]
    result = k8s.discover(namespaces=[NS], selector="suite=nd,case in (edge,x)")
    assert targets(result) == ["127.0.52.1:8443", "127.0.53.1:80"]
    assert "without a selector has no managed endpoints" in dict((s["name"], s["reason"]) for s in result["skipped"])[NS + "/manual"]
    result = k8s.discover(namespaces=[NS], address_mode="node_port", service=["edge"])
    assert "has no nodePort on port https" in result["skipped"][0]["reason"]


def test_server_side_selector_and_missing_services(k8s, extra):
    selector = {"matchLabels": {"suite": "nd"}, "matchExpressions": [{"key": "case", "operator": "In", "values": ["cond"]}]}
    result, source = k8s.discover_with_source(namespaces=[NS, "shop"], selector=selector)
    assert targets(result) == ["127.0.50.1:9443", "127.0.50.4:9443"]
    assert source.requests == 3          # Services in each namespace, then the EndpointSlices of the one found
    result = k8s.discover(namespaces=[NS], service=["cond", "nope"], selector="case=cond")
    assert {"name": NS + "/nope", "kind": "container", "reason": "Service %s/nope not found" % NS} in result["skipped"]


# --------------------------------------------------------------------------------------------------------
# Pagination


def test_pagination_follows_continue(k8s, extra):
    pods = [_pod("bulk-%04d" % i, "127.0.%d.%d" % (60 + i // 250, 1 + i % 250), {"app": "bulk"}, ports=[{"name": "http", "containerPort": 8080}])
            for i in range(1050)]
    pods += [_pod("other-%03d" % i, "127.0.70.%d" % (1 + i), {"app": "other"}) for i in range(100)]
    k8s.load(pods)
    result, source = k8s.discover_with_source(page_size=100, namespaces=[NS], address_mode="pods", selector="app=bulk")
    assert len(result["nodes"]) == 1050
    assert len(set(targets(result))) == 1050
    assert source.requests == 11                         # 10 full pages of matching pods and a last one of 50
    result, source = k8s.discover_with_source(page_size=1000, namespaces=[NS], address_mode="pods", selector="app=bulk")
    assert len(result["nodes"]) == 1050 and source.requests == 2
    result, source = k8s.discover_with_source(page_size=7, all_namespaces=True, address_mode="pods", selector="app in (bulk,other)", port=8080)
    assert len(result["nodes"]) == 1150 and source.requests == 165


def test_pagination_of_services_endpointslices_and_nodes(k8s, extra, seeded_nodes):
    objects = []
    for i in range(23):
        name = "pg-%02d" % i
        objects.append(_svc(name, [{"name": "http", "port": 80, "targetPort": "web"}], selector={"app": name}, labels={"suite": "nd", "case": "pg"}))
        objects.append(_slice(name, [_ep("127.0.58.%d" % (i + 1), name + "-pod", ready=True)], [{"name": "http", "port": 8080}]))
    k8s.load(objects)
    result, source = k8s.discover_with_source(page_size=5, namespaces=[NS], selector="suite=nd,case=pg")
    assert targets(result) == sorted("127.0.58.%d:8080" % (i + 1) for i in range(23))
    assert source.requests == 5 + 5                  # 23 Services in pages of 5, then their 23 EndpointSlices in pages of 5
    result, source = k8s.discover_with_source(page_size=3, namespaces=[NS], address_mode="node_port", service=["np-cluster"],
                                              node_selector=SEEDED_NODES, include_not_ready=True)
    assert len(result["nodes"]) == len(seeded_nodes)
    assert source.requests == 1 + 3                  # one Service get, then 7 Nodes in pages of 3


def test_an_expired_continue_token_restarts_the_list(k8s, extra):
    k8s.load([_pod("exp-%02d" % i, "127.0.56.%d" % (i + 1), {"app": "expire"}) for i in range(30)])

    class CompactingSource(KubernetesSource):
        """Compacts the stand-in (every continue token issued so far expires) after the first page, or after every page."""

        compactions = 1

        def _get(self, plural, namespace=None, name=None, query=None):
            body = super(CompactingSource, self)._get(plural, namespace, name, query)
            if self.compactions:
                self.compactions -= 1
                k8s.compact()
            return body

    client = build_api_client({"kubeconfig": k8s.kubeconfig})[0]
    source = CompactingSource(client, page_size=10, timeout=10)
    pods = source.list("pods", NS, "app=expire")
    assert sorted(p["metadata"]["name"] for p in pods) == ["exp-%02d" % i for i in range(30)]
    assert source.requests == 2 + 3                  # a first page, the 410 for the second, then a fresh list of 3 pages
    source = CompactingSource(client, page_size=10, timeout=10)
    source.compactions = 100
    with pytest.raises(K8sDiscoveryError, match="listing pods in namespace nd-test kept failing with 410 Gone"):
        source.list("pods", NS, "app=expire")
    assert source.requests == 3 * 2                  # three attempts, each a first page and a 410


SEEDED_NODES = "mixedrun-test=nd-test"


def _knode(name, address, ready=True):
    return {"kind": "Node", "apiVersion": "v1", "metadata": {"name": name, "labels": {"mixedrun-test": "nd-test", "kubernetes.io/hostname": name}},
            "status": {"addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": name}],
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False", "reason": "KubeletReady" if ready else "NodeStatusUnknown"}]}}


@pytest.fixture
def seeded_nodes(k8s, extra):
    """Seven extra Nodes (np-1 NotReady) and two NodePort Services on them, removed after the test: the lab's own
    workers are all Ready and its Service's policy is Cluster."""
    nodes = [_knode("np-%d" % i, "127.0.57.%d" % (i + 1), ready=(i != 1)) for i in range(7)]
    local = _svc("np-local", [{"name": "http", "port": 80, "targetPort": "web", "nodePort": 30991}], selector={"app": "npl"}, stype="NodePort",
                 policy="Local", labels={"suite": "nd", "case": "np"})
    local_slice = _slice("np-local", [dict(_ep("127.0.59.1", "npl-1", ready=True), nodeName="np-2"),
                                      dict(_ep("127.0.59.2", "npl-2", ready=False), nodeName="np-3"),
                                      dict(_ep("127.0.59.3", "npl-3", ready=True), nodeName="np-1")], [{"name": "http", "port": 9443}])
    cluster = _svc("np-cluster", [{"name": "http", "port": 80, "targetPort": "web", "nodePort": 30992}], selector={"app": "npc"},
                   stype="NodePort", labels={"suite": "nd", "case": "np"})
    k8s.load(nodes + [local, local_slice, cluster])
    yield nodes
    k8s.clear(labelSelector=SEEDED_NODES)


def test_node_port_readiness(k8s, seeded_nodes):
    result = k8s.discover(namespaces=[NS], address_mode="node_port", service=["np-cluster", "np-local"], node_selector=SEEDED_NODES)
    assert [(n["name"], n["target"], n["ready"]) for n in result["nodes"]] == (
        [(NS + "/np-cluster@np-%d" % i, "127.0.57.%d:30992" % (i + 1), True) for i in (0, 2, 3, 4, 5, 6)]
        + [(NS + "/np-local@np-2", "127.0.57.3:30991", True)])       # Local: only the node with a ready endpoint
    reasons = dict((s["name"], s["reason"]) for s in result["skipped"])
    assert reasons[NS + "/np-cluster@np-1"].startswith("not ready: node condition Ready is not True")
    assert reasons[NS + "/np-local@np-1"].startswith("not ready: node condition Ready is not True")      # a ready endpoint, a NotReady node
    for i in (0, 3, 4, 5, 6):                                                    # np-3's endpoint is not ready
        assert reasons[NS + "/np-local@np-%d" % i].startswith("not ready: externalTrafficPolicy is Local and no ready endpoint of "
                                                              "%s/np-local runs on node np-%d" % (NS, i))
    assert len(result["skipped"]) == 7
    result = k8s.discover(namespaces=[NS], address_mode="node_port", service=["np-local"], node_selector=SEEDED_NODES, include_not_ready=True)
    assert [(n["name"].split("@")[1], n["ready"]) for n in result["nodes"]] == [("np-%d" % i, i == 2) for i in range(7)]
    # the lab's own workers are not picked up by the seeded nodes' selector, and vice versa
    result = k8s.discover(namespaces=[NS], address_mode="node_port", service=["np-cluster"], node_selector="!mixedrun-test")
    assert len(result["nodes"]) == len(k8s.get("/api/v1/nodes?labelSelector=!mixedrun-test")["items"]) == 3


def test_terminating_container_of_the_lab(k8s, lab, lab_control):
    leaving = sorted((n for n in lab["nodes"] if n["kind"] == "container"), key=lambda n: n["name"])[1]
    leaving_target = "%s:%d" % (leaving["address"], leaving["port"])
    lab_control(leaving["name"], terminating=True)

    def terminating():
        pod = k8s.get("/api/v1/namespaces/shop/pods/%s" % leaving["name"])
        return pod["metadata"].get("deletionTimestamp") is not None

    assert wait_for(terminating), "the terminating fault did not reach the stand-in"
    result = k8s.discover(namespaces=["shop"], selector="app=shop")
    assert targets(result) == [t for t in lab_containers(lab) if t != leaving_target]
    assert result["skipped"] == [{"name": "shop/" + leaving["name"], "kind": "container",
                                  "reason": "terminating (set include_terminating to list it with ready: false)"}]
    result = k8s.discover(namespaces=["shop"], selector="app=shop", include_terminating=True)       # still serving: listed, not ready
    assert targets(result) == lab_containers(lab)
    assert [n["ready"] for n in result["nodes"] if n["target"] == leaving_target] == [False]
    result = k8s.discover(namespaces=["shop"], address_mode="pods", selector="app=shop")
    assert [s["name"] for s in result["skipped"]] == ["shop/" + leaving["name"]]
    result = k8s.discover(namespaces=["shop"], address_mode="pods", selector="app=shop", include_terminating=True)
    assert sorted((n["target"], n["ready"]) for n in result["nodes"]) == sorted((t, t != leaving_target) for t in lab_containers(lab))
    lab_control(leaving["name"], unhealthy=True)                    # terminating and no longer serving
    result = wait_for(lambda: k8s.discover(namespaces=["shop"], selector="app=shop", include_terminating=True)["skipped"] and
                      k8s.discover(namespaces=["shop"], selector="app=shop", include_terminating=True))
    assert result["skipped"][0]["reason"].startswith("terminating and no longer serving: EndpointSlice condition ready=False serving=False")


# --------------------------------------------------------------------------------------------------------
# Errors


def test_unauthorized(k8s):
    with pytest.raises(K8sDiscoveryError) as info:
        k8s.discover(auth={"host": k8s.url, "api_key": "wrong-token-1234567890", "ca_cert": k8s.verify if k8s.verify is not True else None},
                     namespaces=["shop"])
    message = str(info.value)
    assert "rejected the credentials (401 Unauthorized) while listing services in namespace shop" in message
    assert "fix api_key (K8S_AUTH_API_KEY) or the kubeconfig user" in message
    assert "wrong-token-1234567890" not in message


def test_forbidden(k8s, lab):
    with pytest.raises(K8sDiscoveryError) as info:
        k8s.discover(auth={"kubeconfig": lab["kubeconfig_forbidden"]}, namespaces=["shop"], address_mode="pods")
    message = str(info.value)
    assert "forbids listing pods in namespace shop (403 Forbidden: pods is forbidden: User" in message
    assert "grant the account 'get' and 'list' on pods" in message


def test_unreachable():
    client = build_api_client({"host": "http://127.0.0.1:9", "api_key": "secret-token-abc"})[0]
    source = KubernetesSource(client, timeout=2, secret="secret-token-abc")
    with pytest.raises(K8sDiscoveryError) as info:
        discover_containers(source, {"namespaces": ["shop"]})
    message = str(info.value)
    assert message.startswith("cannot reach the Kubernetes API at http://127.0.0.1:9 while listing services in namespace shop")
    assert "check host/kubeconfig/context" in message
    assert "secret-token-abc" not in message
    assert source.requests == 1


@pytest.fixture
def silent_server():
    """A loopback port that accepts TCP connections (the kernel's backlog) but never answers: an API server that hangs."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield "http://127.0.0.1:%d" % sock.getsockname()[1]
    sock.close()


def test_a_hanging_api_server_fails_after_one_request_timeout(silent_server):
    client = build_api_client({"host": silent_server, "api_key": "secret-token-abc"})[0]
    source = KubernetesSource(client, timeout=1.0, secret="secret-token-abc")
    started = time.monotonic()
    with pytest.raises(K8sDiscoveryError) as info:
        discover_containers(source, {"namespaces": ["shop"]})
    elapsed = time.monotonic() - started
    # one request timeout (1 s), not urllib3's default 3 retries (4 timeouts, 4 s and more); wide margin for a busy machine
    assert 0.9 <= elapsed < 3.5, elapsed
    assert str(info.value).startswith("cannot reach the Kubernetes API at %s while listing services in namespace shop" % silent_server)
    assert "timed out" in str(info.value) and "secret-token-abc" not in str(info.value)


# --------------------------------------------------------------------------------------------------------
# The task: action plugin (inventory) + module (Kubernetes), through ansible-playbook


PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: both kinds
      mixedrun.kong.node_discovery:
        selector: app=shop
        vm:
          groups: [shop_vms]
        kubernetes:
          namespaces: [shop]
        kubeconfig: "{{ lab_kubeconfig }}"
      register: both
    - name: forbidden
      mixedrun.kong.node_discovery:
        kubernetes:
          namespaces: [shop]
      environment:
        K8S_AUTH_KUBECONFIG: "{{ lab_kubeconfig_forbidden }}"
      register: forbidden
      ignore_errors: true
    - name: with skipped nodes
      mixedrun.kong.node_discovery:
        kubernetes:
          namespaces: [shop]
          service: [shop, nope]
        kubeconfig: "{{ lab_kubeconfig }}"
      register: partial
    - name: save
      ansible.builtin.copy:
        content: "{{ {'both': both, 'forbidden': forbidden, 'partial': partial, 'partial_skipped': partial is skipped} | to_json }}"
        dest: "{{ out }}"
      check_mode: false
"""


def _run_playbook(tmp_path, lab, check=False):
    inventory = {"all": {"hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}},
                         "children": {"shop_vms": {"hosts": dict(
                             (n["name"], {"ansible_host": n["address"], "mixed_port": n["port"], "mixed_labels": n["labels"]})
                             for n in lab["nodes"] if n["kind"] == "vm")}}}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    out = tmp_path / "out.json"
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".tmp", "collections"), ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"))
    env.pop("K8S_AUTH_KUBECONFIG", None)
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "play.yml"),
               "-e", json.dumps({"lab_kubeconfig": lab["kubeconfig"], "lab_kubeconfig_forbidden": lab["kubeconfig_forbidden"], "out": str(out)})]
    if check:
        command.append("--check")
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("check", [False, True], ids=["run", "check_mode"])
def test_task_through_ansible_playbook(tmp_path, lab, check):
    results = _run_playbook(tmp_path, lab, check=check)
    both = results["both"]
    assert not both.get("failed") and both["changed"] is False
    expected_vms = sorted("%s:%d" % (n["address"], n["port"]) for n in lab["nodes"] if n["kind"] == "vm")
    assert sorted(n["target"] for n in both["nodes"] if n["kind"] == "vm") == expected_vms
    assert sorted(n["target"] for n in both["nodes"] if n["kind"] == "container") == lab_containers(lab)
    assert both["counts"] == {"vm": len(expected_vms), "container": len(lab_containers(lab)),
                              "total": len(expected_vms) + len(lab_containers(lab)), "ready": len(expected_vms) + len(lab_containers(lab))}
    assert set(both["timings"]) == {"vm", "container", "total"}
    assert results["partial_skipped"] is False                       # skipped_nodes does not mark the task skipped
    assert results["partial"]["skipped_nodes"] == [{"name": "shop/nope", "kind": "container", "reason": "Service shop/nope not found"}]
    assert len(results["partial"]["nodes"]) == len(lab_containers(lab))
    forbidden = results["forbidden"]
    assert forbidden["failed"] is True
    assert forbidden["msg"].startswith("Kubernetes discovery failed: the Kubernetes API at")
    assert "403 Forbidden" in forbidden["msg"]


# --------------------------------------------------------------------------------------------------------
# The task's failure and duplicate paths, through ansible-playbook


EDGE_PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: container duplicates fail
      mixedrun.kong.node_discovery:
        kubernetes:
          namespaces: ["{{ ns }}"]
          selector: case=dup
        kubeconfig: "{{ lab_kubeconfig }}"
      register: c2c
      ignore_errors: true
    - name: container duplicates allowed
      mixedrun.kong.node_discovery:
        kubernetes:
          namespaces: ["{{ ns }}"]
          selector: case=dup
        allow_duplicates: true
        kubeconfig: "{{ lab_kubeconfig }}"
      register: c2c_allowed
    - name: a VM on a container's target fails
      mixedrun.kong.node_discovery:
        selector: app=shop
        vm:
          groups: [dup_vms]
        kubernetes:
          namespaces: [shop]
        kubeconfig: "{{ lab_kubeconfig }}"
      register: v2c
      ignore_errors: true
    - name: a VM on a container's target, allowed
      mixedrun.kong.node_discovery:
        selector: app=shop
        vm:
          groups: [dup_vms]
        kubernetes:
          namespaces: [shop]
        allow_duplicates: true
        kubeconfig: "{{ lab_kubeconfig }}"
      register: v2c_allowed
    - name: no kubernetes library on the task's host
      mixedrun.kong.node_discovery:
        kubernetes:
          namespaces: [shop]
        kubeconfig: "{{ lab_kubeconfig }}"
      vars:
        ansible_python_interpreter: "{{ bare_python }}"
      register: nolib
      ignore_errors: true
    - name: before a refused connection
      ansible.builtin.set_fact:
        refused_started: "{{ now(fmt='%s.%f') }}"
    - name: a refused connection (the module's own start and stop, to compare with)
      mixedrun.kong.node_discovery:
        kubernetes:
          namespaces: [shop]
          request_timeout: 1
        host: http://127.0.0.1:9
        api_key: secret-token-for-the-hang
      register: refused
      ignore_errors: true
    - name: before the hanging API server
      ansible.builtin.set_fact:
        refused_seconds: "{{ now(fmt='%s.%f') | float - refused_started | float }}"
        hang_started: "{{ now(fmt='%s.%f') }}"
    - name: a hanging API server
      mixedrun.kong.node_discovery:
        kubernetes:
          namespaces: [shop]
          request_timeout: 1
        host: "{{ silent_url }}/"
        api_key: secret-token-for-the-hang
      register: hang
      ignore_errors: true
    - name: after the hanging API server
      ansible.builtin.set_fact:
        hang_seconds: "{{ now(fmt='%s.%f') | float - hang_started | float }}"
    - name: save
      ansible.builtin.copy:
        content: "{{ {'c2c': c2c, 'c2c_allowed': c2c_allowed, 'v2c': v2c, 'v2c_allowed': v2c_allowed, 'nolib': nolib,
                      'hang': hang, 'hang_seconds': hang_seconds, 'refused': refused, 'refused_seconds': refused_seconds} | to_json }}"
        dest: "{{ out }}"
      check_mode: false
"""


def test_task_duplicates_and_failures_through_ansible_playbook(tmp_path, lab, extra, silent_server):
    container = sorted((n for n in lab["nodes"] if n["kind"] == "container"), key=lambda n: n["name"])[0]
    bare = tmp_path / "bare-python"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    bare_python = str(bare / "bin" / "python")
    assert subprocess.run([bare_python, "-c", "import kubernetes"], capture_output=True, check=False).returncode != 0
    inventory = {"all": {"hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}},
                         "children": {"dup_vms": {"hosts": {
                             "vm-on-a-pod": {"ansible_host": container["address"], "mixed_port": container["port"], "mixed_labels": {"app": "shop"}},
                             "vm-alone": {"ansible_host": "127.0.54.1", "mixed_port": 8080, "mixed_labels": {"app": "shop"}}}}}}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "play.yml").write_text(EDGE_PLAYBOOK)
    out = tmp_path / "out.json"
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".tmp", "collections"), ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"))
    for name in ("K8S_AUTH_KUBECONFIG", "K8S_AUTH_HOST", "K8S_AUTH_API_KEY"):
        env.pop(name, None)
    extra_vars = {"lab_kubeconfig": lab["kubeconfig"], "ns": NS, "bare_python": bare_python, "silent_url": silent_server, "out": str(out)}
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(tmp_path / "inventory.yml"),
                           str(tmp_path / "play.yml"), "-e", json.dumps(extra_vars)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "secret-token-for-the-hang" not in proc.stdout + proc.stderr
    results = json.loads(out.read_text())
    slices = sorted(s["metadata"]["name"] for s in k8s_get_slices(lab, ("dupa", "dupb")))

    c2c = results["c2c"]                                              # one pod behind two Services
    assert c2c["failed"] is True
    assert c2c["msg"].startswith("1 target(s) found more than once: 127.0.55.1:9443 from %s/d1 (k8s:%s/endpointslice/%s), %s/d1 "
                                 "(k8s:%s/endpointslice/%s)" % (NS, NS, slices[0], NS, NS, slices[1]))
    assert c2c["duplicates"] == [{"target": "127.0.55.1:9443", "nodes": [NS + "/d1", NS + "/d1"], "kept": NS + "/d1",
                                  "sources": ["k8s:%s/endpointslice/%s" % (NS, name) for name in slices]}]
    allowed = results["c2c_allowed"]
    assert not allowed.get("failed")
    assert [n["target"] for n in allowed["nodes"]] == ["127.0.55.1:9443", "127.0.55.2:9443"]
    assert allowed["counts"] == {"vm": 0, "container": 2, "total": 2, "ready": 2}
    assert allowed["duplicates"] == c2c["duplicates"]

    target = "%s:%d" % (container["address"], container["port"])    # a VM on a container's target
    v2c = results["v2c"]
    assert v2c["failed"] is True
    assert v2c["msg"].startswith("1 target(s) found more than once: %s from vm-on-a-pod, shop/%s. " % (target, container["name"]))
    assert [d["nodes"] for d in v2c["duplicates"]] == [["vm-on-a-pod", "shop/" + container["name"]]]
    allowed = results["v2c_allowed"]
    assert not allowed.get("failed")
    kept = [n for n in allowed["nodes"] if n["target"] == target]
    assert [(n["name"], n["kind"]) for n in kept] == [("vm-on-a-pod", "vm")]
    assert allowed["counts"]["vm"] == 2 and allowed["counts"]["container"] == len(lab_containers(lab)) - 1
    shop_slice = [i["metadata"]["name"] for i in K8sLab(lab).get("/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices")["items"]
                  if i["metadata"]["labels"].get("kubernetes.io/service-name") == "shop"]
    assert allowed["duplicates"] == v2c["duplicates"] == [{"target": target, "nodes": ["vm-on-a-pod", "shop/" + container["name"]],
                                                           "kept": "vm-on-a-pod", "sources": ["inventory", "k8s:shop/endpointslice/" + shop_slice[0]]}]

    nolib = results["nolib"]
    assert nolib["failed"] is True
    assert "Failed to import the required Python library (kubernetes)" in nolib["msg"]
    assert "for Kubernetes discovery" in nolib["msg"]

    hang = results["hang"]
    assert hang["failed"] is True
    assert hang["msg"].startswith("Kubernetes discovery failed: cannot reach the Kubernetes API at %s while listing services" % silent_server)
    assert results["refused"]["failed"] is True and "cannot reach the Kubernetes API at http://127.0.0.1:9" in results["refused"]["msg"]
    waited = float(results["hang_seconds"]) - float(results["refused_seconds"])
    assert waited < 2.5, (results["hang_seconds"], results["refused_seconds"])     # one 1 s request timeout, not four


def k8s_get_slices(lab, services):
    handle = K8sLab(lab)
    items = handle.get("/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices" % NS)["items"]
    return [i for i in items if i["metadata"]["labels"].get("kubernetes.io/service-name") in services]
