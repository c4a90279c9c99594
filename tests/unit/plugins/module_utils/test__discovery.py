# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Discovery logic without I/O: VM selection from host variables, option planning, result assembly, and the
Kubernetes address modes over API-shaped objects (a dict-backed source with the same list/get contract as
KubernetesSource). The real client against the lab's API stand-in is in tests/integration."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
from urllib.parse import parse_qsl, urlencode, urlparse

import pytest
import yaml

from ansible_collections.mixedrun.kong.plugins.module_utils._discovery import (
    MISSING,
    DiscoveryError,
    assemble,
    discover_vms,
    plan_parts,
)
from ansible_collections.mixedrun.kong.plugins.module_utils._k8s_discovery import (
    K8sDiscoveryError,
    KubernetesSource,
    build_api_client,
    discover_containers,
)
from ansible_collections.mixedrun.kong.plugins.module_utils._selector import SelectorError, parse_selector


# --------------------------------------------------------------------------------------------------------
# VM discovery


HOSTS = {
    "web-1": {"mixed_labels": {"app": "shop", "tier": "web"}, "ansible_host": "10.0.0.1", "mixed_port": 8080},
    "web-2": {"mixed_labels": {"app": "shop", "tier": "web"}, "ansible_host": "10.0.0.002", "mixed_port": "8080"},
    "web-3": {"mixed_labels": {"app": "shop", "tier": "web"}, "ansible_host": "10.0.0.3", "mixed_drain": True},
    "api-1": {"mixed_labels": {"app": "shop", "tier": "api", "canary": True}, "ansible_host": "2001:db8::1", "mixed_port": 9090},
    "cart-1": {"mixed_labels": {"app": "cart"}, "ansible_host": "10.0.1.1", "mixed_port": 8080},
    "nolabels": {"ansible_host": "10.0.2.1", "mixed_port": 80},
    "name-only": {"mixed_labels": {"app": "shop", "tier": "batch"}, "mixed_port": 7000},
}


def getter(hosts, calls=None):
    def get(host, name):
        if calls is not None:
            calls.append((host, name))
        return hosts[host].get(name, MISSING)
    return get


def vms(selector, hosts=None, options=None, default_port=None, calls=None):
    hosts = HOSTS if hosts is None else hosts
    return discover_vms(list(hosts), getter(hosts, calls), parse_selector(selector), options or {}, default_port=default_port)


def test_vm_selection_drain_and_normalised_targets():
    result = vms("app=shop,tier in (web,api)")
    assert [(n["name"], n["target"], n["address"], n["port"]) for n in result["nodes"]] == [
        ("web-1", "10.0.0.1:8080", "10.0.0.1", 8080),
        ("web-2", "10.0.0.2:8080", "10.0.0.2", 8080),
        ("api-1", "[2001:0db8:0000:0000:0000:0000:0000:0001]:9090", "2001:0db8:0000:0000:0000:0000:0000:0001", 9090),
    ]
    assert result["drained"] == [{"name": "web-3", "kind": "vm", "reason": "mixed_drain is true"}]
    assert all(n["kind"] == "vm" and n["ready"] and n["source"] == "inventory" for n in result["nodes"])
    assert result["nodes"][2]["labels"] == {"app": "shop", "tier": "api", "canary": "true"}


def test_vm_address_falls_back_to_the_hostname_and_default_port():
    result = vms("tier=batch")
    assert result["nodes"][0]["target"] == "name-only:7000"
    result = vms("!app", default_port=8000)
    assert [n["target"] for n in result["nodes"]] == ["10.0.2.1:80"]


def test_vm_only_labels_are_read_for_hosts_that_do_not_match():
    calls = []
    vms("app=cart", calls=calls)
    read_other = set(name for host, name in calls if host != "cart-1")
    assert read_other == {"mixed_labels"}


def test_vm_configurable_variable_names():
    hosts = {"h1": {"labels": {"role": "edge"}, "out": "yes", "ip": "192.0.2.1", "p": 81},
             "h2": {"labels": {"role": "edge"}, "out": "no", "ip": "192.0.2.2", "p": 82}}
    result = vms("role=edge", hosts, {"labels_var": "labels", "drain_var": "out", "address_var": "ip", "port_var": "p"})
    assert [n["target"] for n in result["nodes"]] == ["192.0.2.2:82"]
    assert [d["name"] for d in result["drained"]] == ["h1"]
    assert result["drained"][0]["reason"] == "out is true"


@pytest.mark.parametrize("host, reason", [
    ({"mixed_labels": ["app=shop"], "mixed_port": 80}, "mixed_labels is not usable: labels must be a dict of label: value, not a list"),
    ({"mixed_labels": {"app": "shop", "x": {"y": 1}}, "mixed_port": 80}, "label 'x': a label value must be"),
    ({"mixed_labels": {"app": "shop"}}, "no port: set mixed_port on the host (or its group) or default_port"),
    ({"mixed_labels": {"app": "shop"}, "mixed_port": "http"}, "mixed_port is not a port number"),
    ({"mixed_labels": {"app": "shop"}, "mixed_port": 70000}, "port 70000 is outside 1..65535"),
    ({"mixed_labels": {"app": "shop"}, "mixed_port": True}, "a port must be a number, not a boolean"),
    ({"mixed_labels": {"app": "shop"}, "mixed_port": 80, "ansible_host": "10.0.0.256"}, "is not a valid Kong target"),
    ({"mixed_labels": {"app": "shop"}, "mixed_port": 80, "ansible_host": "bad host"}, "is not a valid Kong target"),
    ({"mixed_labels": {"app": "shop"}, "mixed_port": 80, "mixed_drain": "maybe"}, "mixed_drain must be true or false, got 'maybe'"),
])
def test_vm_skipped_with_reasons(host, reason):
    result = vms("app=shop", {"h": host})
    assert result["nodes"] == []
    assert len(result["skipped"]) == 1
    assert reason in result["skipped"][0]["reason"]
    assert result["skipped"][0]["name"] == "h"


def test_vm_drain_accepts_ansible_booleans():
    hosts = dict(("h%d" % i, {"mixed_labels": {"a": "b"}, "mixed_port": 80, "ansible_host": "10.0.0.%d" % i, "mixed_drain": v})
                 for i, v in enumerate(["yes", "true", 1, "on", "no", False, "0", None]))
    result = vms("a=b", hosts)
    assert [d["name"] for d in result["drained"]] == ["h0", "h1", "h2", "h3"]
    assert [n["name"] for n in result["nodes"]] == ["h4", "h5", "h6", "h7"]


def test_vm_empty_selector_takes_every_candidate_even_without_labels():
    hosts = {"a": {"ansible_host": "10.0.0.1", "mixed_port": 80}, "b": {"mixed_labels": "oops", "ansible_host": "10.0.0.2", "mixed_port": 80}}
    result = vms(None, hosts)
    assert [n["name"] for n in result["nodes"]] == ["a", "b"]


# --------------------------------------------------------------------------------------------------------
# Planning


def test_plan_parts_kind_from_sections():
    assert plan_parts({"kind": "auto", "vm": {"groups": ["shop"]}})["kind"] == "vm"
    assert plan_parts({"kind": "auto", "kubernetes": {}})["kind"] == "container"
    both = plan_parts({"kind": "auto", "selector": "app=shop", "vm": {}, "kubernetes": {"selector": "app=shop2"}})
    assert both["kind"] == "both"
    assert both["vm"].to_k8s() == "app=shop"
    assert both["container"].to_k8s() == "app=shop2"
    assert plan_parts({"kind": "both", "selector": "app=shop"})["kind"] == "both"


@pytest.mark.parametrize("params, message", [
    ({"kind": "auto"}, "say which nodes to discover"),
    ({"kind": "vm", "kubernetes": {}, "selector": "a=b"}, "kind is vm but kubernetes options are given"),
    ({"kind": "container", "vm": {}}, "kind is container but vm options are given"),
    ({"kind": "auto", "vm": {}}, "VM discovery needs at least one of selector, vm.selector, vm.groups or vm.hosts_pattern"),
    ({"kind": "auto", "kubernetes": {"page_size": 0}}, "kubernetes.page_size must be between 1 and 10000"),
    ({"kind": "auto", "kubernetes": {"request_timeout": 0}}, "kubernetes.request_timeout must be a number of seconds greater than 0, got 0"),
    ({"kind": "auto", "kubernetes": {}, "default_port": 0}, "default_port must be a port number between 1 and 65535, got 0"),
    ({"kind": "auto", "vm": {"groups": ["shop"]}, "default_port": 65536}, "default_port must be a port number between 1 and 65535, got 65536"),
    ({"kind": "auto", "vm": {"groups": ["shop"]}, "default_port": -80}, "default_port must be a port number between 1 and 65535, got -80"),
])
def test_plan_parts_errors(params, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        plan_parts(params)


def test_plan_parts_accepts_the_port_range_ends():
    for port in (1, 65535, None):
        assert plan_parts({"kind": "auto", "kubernetes": {}, "default_port": port})["kind"] == "container"


def test_plan_parts_selector_errors_name_the_option():
    with pytest.raises(SelectorError) as info:
        plan_parts({"kind": "auto", "vm": {"selector": "app in shop"}})
    assert str(info.value).startswith("invalid vm.selector at column 8: expected '(' after 'in'")
    with pytest.raises(SelectorError, match="invalid kubernetes.selector"):
        plan_parts({"kind": "auto", "kubernetes": {"selector": "app=(x)"}})


# --------------------------------------------------------------------------------------------------------
# Assembly


def node(name, target, kind="vm", ready=True, source="x"):
    return {"name": name, "kind": kind, "address": target.rsplit(":", 1)[0], "port": int(target.rsplit(":", 1)[1]),
            "target": target, "labels": {}, "ready": ready, "source": source}


def test_assemble_counts_and_order():
    result = assemble({"nodes": [node("a", "10.0.0.1:80"), node("b", "10.0.0.2:80")], "drained": [{"name": "c"}], "skipped": []},
                      {"nodes": [node("ns/p", "10.1.0.1:80", "container", ready=False)], "skipped": [{"name": "ns/q"}]})
    assert [n["name"] for n in result["nodes"]] == ["a", "b", "ns/p"]
    assert result["counts"] == {"vm": 2, "container": 1, "total": 3, "ready": 2}
    assert result["drained"] == [{"name": "c"}]
    assert result["skipped_nodes"] == [{"name": "ns/q"}]
    assert "skipped" not in result         # a truthy "skipped" would mark the task skipped
    assert result["duplicates"] == []


def test_assemble_duplicates_fail_by_default_and_are_reported():
    parts = ({"nodes": [node("a", "10.0.0.1:80")]}, {"nodes": [node("ns/p", "10.0.0.1:80", "container")]})
    with pytest.raises(DiscoveryError) as info:
        assemble(*parts)
    assert "1 target(s) found more than once: 10.0.0.1:80 from a, ns/p" in str(info.value)
    assert "allow_duplicates" in str(info.value)
    assert info.value.result["duplicates"] == [{"target": "10.0.0.1:80", "nodes": ["a", "ns/p"], "sources": ["x", "x"], "kept": "a"}]
    result = assemble(*parts, allow_duplicates=True)
    assert [n["name"] for n in result["nodes"]] == ["a"]
    assert result["counts"]["total"] == 1
    assert result["duplicates"][0]["kept"] == "a"


def test_assemble_carries_the_duplicates_a_part_found_before():
    # the container part as the module returns it to the action plugin: one node per target, the others in duplicates
    container = assemble(None, {"nodes": [node("ns/p", "10.0.0.1:80", "container", source="k8s:ns/endpointslice/a-1"),
                                          node("ns/p", "10.0.0.1:80", "container", source="k8s:ns/endpointslice/b-1"),
                                          node("ns/q", "10.0.0.2:80", "container", source="k8s:ns/endpointslice/a-1")]},
                         allow_duplicates=True)
    assert [n["name"] for n in container["nodes"]] == ["ns/p", "ns/q"]
    part = {"nodes": container["nodes"], "skipped": [], "duplicates": container["duplicates"]}
    with pytest.raises(DiscoveryError) as info:                   # container <-> container, nothing else
        assemble(None, part)
    assert str(info.value).startswith("1 target(s) found more than once: 10.0.0.1:80 from ns/p (k8s:ns/endpointslice/a-1), "
                                      "ns/p (k8s:ns/endpointslice/b-1). ")
    assert info.value.result["duplicates"] == [{"target": "10.0.0.1:80", "nodes": ["ns/p", "ns/p"], "kept": "ns/p",
                                                "sources": ["k8s:ns/endpointslice/a-1", "k8s:ns/endpointslice/b-1"]}]
    # a VM on the same target joins the same entry, first, and is the one kept
    vm_part = {"nodes": [node("vm-1", "10.0.0.1:80", source="inventory"), node("vm-2", "10.0.0.2:80", source="inventory")]}
    with pytest.raises(DiscoveryError) as info:
        assemble(vm_part, part)
    assert info.value.result["duplicates"] == [
        {"target": "10.0.0.1:80", "nodes": ["vm-1", "ns/p", "ns/p"], "kept": "vm-1",
         "sources": ["inventory", "k8s:ns/endpointslice/a-1", "k8s:ns/endpointslice/b-1"]},
        {"target": "10.0.0.2:80", "nodes": ["vm-2", "ns/q"], "kept": "vm-2", "sources": ["inventory", "k8s:ns/endpointslice/a-1"]}]
    assert "2 target(s) found more than once" in str(info.value)
    result = assemble(vm_part, part, allow_duplicates=True)
    assert [n["name"] for n in result["nodes"]] == ["vm-1", "vm-2"]
    assert result["counts"] == {"vm": 2, "container": 0, "total": 2, "ready": 2}
    assert len(result["duplicates"]) == 2


def test_assemble_empty_fails_with_a_summary_unless_allowed():
    part = {"nodes": [], "drained": [{"name": "d", "reason": "mixed_drain is true"}],
            "skipped": [{"name": "x", "reason": "no port"}, {"name": "y", "reason": "no port"}]}
    with pytest.raises(DiscoveryError) as info:
        assemble(part)
    assert "no nodes found; 1 drained; skipped: no port (2)" in str(info.value)
    assert "allow_empty" in str(info.value)
    assert assemble(part, allow_empty=True)["counts"] == {"vm": 0, "container": 0, "total": 0, "ready": 0}


# --------------------------------------------------------------------------------------------------------
# Kubernetes address modes over API-shaped objects


class DictSource:
    """The KubernetesSource contract over a list of objects; server-side selectors applied like the API does."""

    def __init__(self, objects):
        self.objects = objects
        self.calls = []

    def list(self, plural, namespace=None, label_selector=None, field_selector=None):
        self.calls.append(("list", plural, namespace, label_selector))
        kind = {"pods": "Pod", "services": "Service", "endpointslices": "EndpointSlice", "nodes": "Node"}[plural]
        selector = parse_selector(label_selector or "")
        return [o for o in self.objects if o["kind"] == kind
                and (namespace is None or o["metadata"].get("namespace") == namespace)
                and selector.matches(o["metadata"].get("labels") or {})]

    def get(self, plural, namespace, name):
        self.calls.append(("get", plural, namespace, name))
        kind = {"pods": "Pod", "services": "Service"}[plural]
        for obj in self.objects:
            if obj["kind"] == kind and obj["metadata"].get("namespace") == namespace and obj["metadata"]["name"] == name:
                return obj
        return None


def service(name, ns="shop", labels=None, ports=None, stype="ClusterIP", cluster_ip="10.96.0.10", families=("IPv4",), selector=True,
            policy="Cluster", ingress=None):
    labels = {"app": name} if labels is None else labels
    spec = {"type": stype, "ports": ports or [{"name": "http", "port": 80, "targetPort": "http"}], "clusterIP": cluster_ip,
            "ipFamilies": list(families), "externalTrafficPolicy": policy}
    if selector:
        spec["selector"] = {"app": name}
    return {"kind": "Service", "metadata": {"name": name, "namespace": ns, "labels": labels}, "spec": spec,
            "status": {"loadBalancer": {"ingress": ingress} if ingress else {}}}


def endpoint(ip, pod, ready=True, serving=None, terminating=None, node_name="worker-1"):
    conditions = {}
    if ready is not None:
        conditions["ready"] = ready
    if serving is not None:
        conditions["serving"] = serving
    if terminating is not None:
        conditions["terminating"] = terminating
    return {"addresses": [ip], "conditions": conditions, "nodeName": node_name, "targetRef": {"kind": "Pod", "name": pod}}


def endpoint_slice(service_name, endpoints, ns="shop", ports=None, address_type="IPv4", suffix="abc"):
    return {"kind": "EndpointSlice", "addressType": address_type,
            "metadata": {"name": "%s-%s" % (service_name, suffix), "namespace": ns, "labels": {"kubernetes.io/service-name": service_name}},
            "endpoints": endpoints, "ports": ports if ports is not None else [{"name": "http", "port": 8080}]}


def pod(name, ip, ns="shop", labels=None, ready=True, phase="Running", ports=None, deleting=False, ips=None):
    meta = {"name": name, "namespace": ns, "labels": labels if labels is not None else {"app": "shop"}}
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    status = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": i} for i in (ips or [ip])]
    if ports is None:
        ports = [{"name": "http", "containerPort": 8080}]
    return {"kind": "Pod", "metadata": meta, "spec": {"containers": [{"name": "app", "ports": ports}]}, "status": status}


def k8s_node(name, ip, ready=True, external=None):
    addresses = [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]
    if external:
        addresses.append({"type": "ExternalIP", "address": external})
    return {"kind": "Node", "metadata": {"name": name, "labels": {"role": "worker" if name != "cp" else "control-plane"}},
            "status": {"addresses": addresses, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def run_with_source(objects, **options):
    options.setdefault("namespaces", ["shop"])
    source = DictSource(objects)
    return discover_containers(source, options), source


def run(objects, **options):
    return run_with_source(objects, **options)[0]


def targets(result):
    return [(n["name"], n["target"], n["ready"]) for n in result["nodes"]]


def test_endpoints_mode_ready_serving_not_terminating_only():
    objects = [service("shop"), endpoint_slice("shop", [
        endpoint("10.42.0.1", "shop-a"),
        endpoint("10.42.0.2", "shop-b", ready=False, serving=False),
        endpoint("10.42.0.3", "shop-c", ready=False, serving=True, terminating=True),
        endpoint("10.42.0.4", "shop-d", ready=None),                      # nil ready means ready
        endpoint("10.42.0.5", "shop-e", ready=True, serving=False),
    ])]
    result = run(objects, selector="app=shop")
    assert targets(result) == [("shop/shop-a", "10.42.0.1:8080", True), ("shop/shop-d", "10.42.0.4:8080", True)]
    reasons = dict((s["name"], s["reason"]) for s in result["skipped"])
    assert reasons["shop/shop-b"].startswith("not ready: EndpointSlice condition ready=False serving=False")
    assert reasons["shop/shop-c"] == "terminating (set include_terminating to list it with ready: false)"
    assert reasons["shop/shop-e"].startswith("not ready: EndpointSlice condition ready=True serving=False")
    node0 = result["nodes"][0]
    assert node0["kind"] == "container" and node0["labels"] == {"app": "shop"} and node0["source"] == "k8s:shop/endpointslice/shop-abc"


def test_endpoints_mode_include_not_ready_and_terminating():
    objects = [service("shop"), endpoint_slice("shop", [endpoint("10.42.0.1", "a"), endpoint("10.42.0.2", "b", ready=False),
                                                        endpoint("10.42.0.3", "c", ready=False, terminating=True)])]
    result = run(objects, service=["shop"], include_not_ready=True)
    assert targets(result) == [("shop/a", "10.42.0.1:8080", True), ("shop/b", "10.42.0.2:8080", False)]
    result = run(objects, service=["shop"], include_not_ready=True, include_terminating=True)
    assert targets(result)[-1] == ("shop/c", "10.42.0.3:8080", False)


def test_endpoints_mode_include_terminating_alone():
    objects = [service("shop"), endpoint_slice("shop", [
        endpoint("10.42.0.1", "a"),
        endpoint("10.42.0.2", "b", ready=False, serving=False),                      # not ready
        endpoint("10.42.0.3", "c", ready=False, serving=True, terminating=True),     # draining, still serving
        endpoint("10.42.0.4", "d", ready=False, serving=False, terminating=True),    # terminating, no longer serving
        endpoint("10.42.0.5", "e", ready=False, terminating=True),                   # nil serving: defers to ready (false)
    ])]
    result = run(objects, service=["shop"], include_terminating=True)
    assert targets(result) == [("shop/a", "10.42.0.1:8080", True), ("shop/c", "10.42.0.3:8080", False)]
    reasons = dict((s["name"], s["reason"]) for s in result["skipped"])
    assert sorted(reasons) == ["shop/b", "shop/d", "shop/e"]
    assert reasons["shop/b"].startswith("not ready: EndpointSlice condition ready=False serving=False")
    assert reasons["shop/d"] == ("terminating and no longer serving: EndpointSlice condition ready=False serving=False "
                                 "(set include_not_ready as well to list it)")
    result = run(objects, service=["shop"], include_terminating=True, include_not_ready=True)
    assert [n["name"] for n in result["nodes"]] == ["shop/a", "shop/b", "shop/c", "shop/d", "shop/e"]
    assert [n["ready"] for n in result["nodes"]] == [True, False, False, False, False]
    result = run(objects, service=["shop"], include_not_ready=True)           # not_ready alone leaves terminating ones out
    assert [n["name"] for n in result["nodes"]] == ["shop/a", "shop/b"]


def test_endpoints_mode_named_and_numeric_ports():
    svc = service("shop", ports=[{"name": "http", "port": 80, "targetPort": "web"}, {"name": "metrics", "port": 9100, "targetPort": 9100}])
    eps = endpoint_slice("shop", [endpoint("10.42.0.1", "a")], ports=[{"name": "http", "port": 8080}, {"name": "metrics", "port": 9100}])
    result = run([svc, eps], service=["shop"])
    assert result["nodes"] == []
    assert result["skipped"][0]["reason"] == "Service shop/shop has several ports (http, metrics): set port to one of them"
    assert targets(run([svc, eps], service=["shop"], port="http")) == [("shop/a", "10.42.0.1:8080", True)]
    assert targets(run([svc, eps], service=["shop"], port=80)) == [("shop/a", "10.42.0.1:8080", True)]      # Service port number
    assert targets(run([svc, eps], service=["shop"], port="9100")) == [("shop/a", "10.42.0.1:9100", True)]
    assert targets(run([svc, eps], service=["shop"], port=8080)) == [("shop/a", "10.42.0.1:8080", True)]    # a target port number
    result = run([svc, eps], service=["shop"], port="grpc")
    assert result["skipped"][0]["reason"] == "Service shop/shop has no port grpc (it has http, metrics)"


def test_endpoints_mode_services_by_selector_names_and_namespaces():
    objects = [service("shop", labels={"app": "shop", "tier": "web"}), service("shop-api", labels={"app": "shop", "tier": "api"}),
               service("cart", labels={"app": "cart"}), service("shop", ns="other", labels={"app": "shop", "tier": "web"}),
               endpoint_slice("shop", [endpoint("10.42.0.1", "a")]), endpoint_slice("shop-api", [endpoint("10.42.1.1", "b")]),
               endpoint_slice("cart", [endpoint("10.42.2.1", "c")]), endpoint_slice("shop", [endpoint("10.43.0.1", "z")], ns="other")]
    result, source = run_with_source(objects, selector="app=shop")
    assert [n["target"] for n in result["nodes"]] == ["10.42.0.1:8080", "10.42.1.1:8080"]
    assert ("list", "endpointslices", "shop", "kubernetes.io/service-name in (shop,shop-api)") in source.calls
    result = run(objects, selector="app=shop", namespaces=[])                                     # [] = all namespaces
    assert [n["name"] for n in result["nodes"]] == ["other/z", "shop/a", "shop/b"]
    result = run(objects, selector="app=shop", all_namespaces=True, service=["shop", "nope"])
    assert [n["name"] for n in result["nodes"]] == ["other/z", "shop/a"]
    assert result["skipped"] == [{"name": "nope", "kind": "container", "reason": "no Service named nope matching the selector in any namespace"}]
    result = run(objects, selector="tier=api", service=["shop", "gone"])
    assert [s["reason"] for s in result["skipped"]] == ["Service shop/shop does not match the selector tier=api", "Service shop/gone not found"]


def test_endpoints_mode_services_without_slices_and_dual_stack():
    objects = [service("ext", selector=False), service("dual", families=("IPv6", "IPv4")),
               endpoint_slice("dual", [endpoint("fd00::1", "a")], address_type="IPv6", suffix="v6"),
               endpoint_slice("dual", [endpoint("10.42.0.1", "a")], address_type="IPv4", suffix="v4")]
    result = run(objects, service=["ext", "dual"])
    assert [n["target"] for n in result["nodes"]] == ["[fd00:0000:0000:0000:0000:0000:0000:0001]:8080"]
    assert "has no EndpointSlices (an ExternalName Service or one without a selector" in result["skipped"][0]["reason"]
    result = run(objects, service=["dual"], address_type="IPv4")
    assert [n["target"] for n in result["nodes"]] == ["10.42.0.1:8080"]


def test_pods_mode_readiness_phases_and_ports():
    objects = [pod("p1", "10.42.0.1"), pod("p2", "10.42.0.2", ready=False), pod("p3", None, phase="Pending", ready=False),
               pod("p4", "10.42.0.4", deleting=True), pod("p5", "10.42.0.5", phase="Succeeded", ready=False),
               pod("p6", "10.42.0.6", labels={"app": "cart"}),
               pod("p7", "10.42.0.7", ports=[{"name": "http", "containerPort": 8080}, {"name": "admin", "containerPort": 9000}])]
    result = run(objects, address_mode="pods", selector="app=shop")
    assert targets(result) == [("shop/p1", "10.42.0.1:8080", True)]
    reasons = dict((s["name"], s["reason"]) for s in result["skipped"])
    assert reasons["shop/p2"].startswith("not ready: pod condition Ready is not True")
    assert reasons["shop/p3"] == "no pod IP yet (phase Pending)"
    assert reasons["shop/p4"] == "terminating (set include_terminating to list it with ready: false)"
    assert reasons["shop/p5"] == "pod phase is Succeeded"
    assert reasons["shop/p7"] == "the pod declares several ports (8080, 9000): set port"
    result = run(objects, address_mode="pods", selector="app=shop", port="admin", include_not_ready=True)
    assert targets(result) == [("shop/p7", "10.42.0.7:9000", True)]
    assert "no container port named admin" in dict((s["name"], s["reason"]) for s in result["skipped"])["shop/p1"]
    result = run(objects, address_mode="pods", selector="app=shop", port=7070, include_not_ready=True)
    assert targets(result) == [("shop/p1", "10.42.0.1:7070", True), ("shop/p2", "10.42.0.2:7070", False), ("shop/p7", "10.42.0.7:7070", True)]
    assert result["nodes"][0]["labels"] == {"app": "shop"}
    assert result["nodes"][0]["source"] == "k8s:shop/pod/p1"


def test_pods_mode_include_terminating_alone():
    objects = [pod("p1", "10.42.0.1"), pod("p2", "10.42.0.2", deleting=True), pod("p3", "10.42.0.3", deleting=True, ready=False)]
    result = run(objects, address_mode="pods", selector="app=shop", include_terminating=True)
    assert targets(result) == [("shop/p1", "10.42.0.1:8080", True), ("shop/p2", "10.42.0.2:8080", False)]
    assert result["skipped"] == [{"name": "shop/p3", "kind": "container", "reason": "terminating and no longer serving: pod condition "
                                  "Ready is not True (phase Running) (set include_not_ready as well to list it)"}]
    result = run(objects, address_mode="pods", selector="app=shop", include_terminating=True, include_not_ready=True)
    assert [n["ready"] for n in result["nodes"]] == [True, False, False]


def test_node_port_mode_terminating_node():
    svc = service("shop", stype="NodePort", ports=[{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080}])
    leaving = k8s_node("worker-2", "192.168.1.2")
    leaving["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    objects = [svc, k8s_node("worker-1", "192.168.1.1"), leaving]
    result = run(objects, address_mode="node_port", service=["shop"])
    assert targets(result) == [("shop/shop@worker-1", "192.168.1.1:30080", True)]
    assert result["skipped"][0]["reason"].startswith("terminating (set include_terminating")
    result = run(objects, address_mode="node_port", service=["shop"], include_terminating=True)
    assert targets(result) == [("shop/shop@worker-1", "192.168.1.1:30080", True), ("shop/shop@worker-2", "192.168.1.2:30080", False)]


def test_pods_mode_default_port_and_no_ports():
    objects = [pod("p1", "10.42.0.1", ports=[])]
    result = run(objects, address_mode="pods")
    assert result["skipped"][0]["reason"] == "the pod declares no container port: set port or default_port"
    result = run(objects, address_mode="pods", default_port=8000)
    assert targets(result) == [("shop/p1", "10.42.0.1:8000", True)]


def test_pods_mode_through_a_service_resolves_named_target_ports():
    svc = service("shop", ports=[{"name": "http", "port": 80, "targetPort": "web"}])
    objects = [svc, pod("p1", "10.42.0.1", ports=[{"name": "web", "containerPort": 8443}]),
               pod("p2", "10.42.0.2", ports=[{"name": "other", "containerPort": 1}]), pod("p3", "10.42.0.3", labels={"app": "cart"})]
    result, source = run_with_source(objects, address_mode="pods", service=["shop"])
    assert targets(result) == [("shop/p1", "10.42.0.1:8443", True)]
    assert result["skipped"] == [{"name": "shop/p2", "kind": "container", "reason": "no container port named web (the Service's targetPort)"}]
    assert ("list", "pods", "shop", "app=shop") in source.calls


def test_pods_mode_ip_family():
    objects = [pod("p1", "10.42.0.1", ips=["10.42.0.1", "fd00::1"])]
    assert targets(run(objects, address_mode="pods", address_type="IPv6")) == [
        ("shop/p1", "[fd00:0000:0000:0000:0000:0000:0000:0001]:8080", True)]
    assert targets(run(objects, address_mode="pods")) == [("shop/p1", "10.42.0.1:8080", True)]


def test_node_port_mode():
    svc = service("shop", stype="NodePort", ports=[{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080}])
    objects = [svc, k8s_node("worker-1", "192.168.1.1", external="203.0.113.1"), k8s_node("worker-2", "192.168.1.2", ready=False),
               k8s_node("cp", "192.168.1.9")]
    result = run(objects, address_mode="node_port", service=["shop"])
    assert targets(result) == [("shop/shop@cp", "192.168.1.9:30080", True), ("shop/shop@worker-1", "192.168.1.1:30080", True)]
    assert result["skipped"][0]["reason"].startswith("not ready: node condition Ready is not True")
    result = run(objects, address_mode="node_port", service=["shop"], node_selector="role=worker", node_address_type="ExternalIP",
                 include_not_ready=True)
    assert targets(result) == [("shop/shop@worker-1", "203.0.113.1:30080", True)]
    assert result["skipped"] == [{"name": "shop/shop@worker-2", "kind": "container", "reason": "node worker-2 has no ExternalIP address"}]
    assert result["nodes"][0]["source"] == "k8s:node/worker-1"


def test_node_port_mode_local_traffic_policy_and_cluster_ip_services():
    svc = service("shop", stype="NodePort", policy="Local", ports=[{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080}])
    objects = [svc, service("internal"), k8s_node("worker-1", "192.168.1.1"), k8s_node("worker-2", "192.168.1.2"),
               endpoint_slice("shop", [endpoint("10.42.0.1", "a", node_name="worker-2")])]
    result = run(objects, address_mode="node_port", service=["shop", "internal"])
    assert targets(result) == [("shop/shop@worker-2", "192.168.1.2:30080", True)]
    reasons = [s["reason"] for s in result["skipped"]]
    assert any("type ClusterIP) has no nodePort on port http" in r for r in reasons)
    assert any("externalTrafficPolicy is Local and no ready endpoint of shop/shop runs on node worker-1" in r for r in reasons)


def test_service_mode_cluster_ip_load_balancer_and_readiness():
    objects = [service("lb", stype="LoadBalancer", ingress=[{"ip": "203.0.113.10"}]), service("plain", cluster_ip="10.96.0.20"),
               service("headless", cluster_ip="None"), service("idle", cluster_ip="10.96.0.30"),
               endpoint_slice("lb", [endpoint("10.42.0.1", "a")]), endpoint_slice("plain", [endpoint("10.42.0.2", "b")]),
               endpoint_slice("headless", [endpoint("10.42.0.3", "c")]), endpoint_slice("idle", [endpoint("10.42.0.4", "d", ready=False)])]
    result = run(objects, address_mode="service", service=["lb", "plain", "headless", "idle"])
    assert targets(result) == [("shop/lb", "203.0.113.10:80", True), ("shop/plain", "10.96.0.20:80", True)]
    reasons = dict((s["name"], s["reason"]) for s in result["skipped"])
    assert reasons["shop/headless"] == "Service shop/headless has no ClusterIP (headless or ExternalName): use address_mode endpoints"
    assert reasons["shop/idle"].startswith("not ready: the Service has no ready endpoint")
    result = run(objects, address_mode="service", service=["lb", "plain"], service_address="cluster_ip")
    assert [n["target"] for n in result["nodes"]] == ["10.96.0.10:80", "10.96.0.20:80"]
    result = run(objects, address_mode="service", service=["lb", "plain"], service_address="load_balancer")
    assert [n["target"] for n in result["nodes"]] == ["203.0.113.10:80"]
    assert result["skipped"][0]["reason"] == "Service shop/plain has no load-balancer ingress address yet"


def test_default_namespace_and_bad_mode():
    source = DictSource([service("shop", ns="team"), endpoint_slice("shop", [endpoint("10.42.0.1", "a")], ns="team")])
    result = discover_containers(source, {"selector": "app=shop"}, default_namespace="team")
    assert [n["name"] for n in result["nodes"]] == ["team/a"]
    with pytest.raises(ValueError, match="address_mode must be one of"):
        discover_containers(source, {"address_mode": "dns"})


# --------------------------------------------------------------------------------------------------------
# Building the client the way kubernetes.core does (no network)


KUBECONFIG = {
    "apiVersion": "v1", "kind": "Config", "current-context": "one",
    "clusters": [{"name": "c1", "cluster": {"server": "https://127.0.0.1:6443"}}, {"name": "c2", "cluster": {"server": "https://127.0.0.2:6443"}}],
    "users": [{"name": "u1", "user": {"token": "token-one"}}, {"name": "u2", "user": {"token": "token-two"}}],
    "contexts": [{"name": "one", "context": {"cluster": "c1", "user": "u1", "namespace": "shop"}},
                 {"name": "two", "context": {"cluster": "c2", "user": "u2"}}],
}


@pytest.fixture
def kubeconfig(tmp_path):
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(KUBECONFIG))
    return str(path)


def bearer(client):
    """The Authorization header the client would send."""
    return client.configuration.auth_settings()["BearerToken"]["value"]


@pytest.fixture
def outside_a_cluster(monkeypatch, tmp_path):
    """No in-cluster service account and no default kubeconfig, whatever the machine running the tests has."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-default-kubeconfig"))


@pytest.fixture
def in_a_cluster(monkeypatch, tmp_path):
    """A pod's service account: the environment and the three files load_incluster_config reads."""
    from kubernetes.config import incluster_config
    from ansible_collections.mixedrun.kong.plugins.module_utils import _k8s_discovery
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("pod-token")
    (account / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    (account / "namespace").write_text("team-a\n")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.70")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(account / "token"))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(account / "ca.crt"))
    monkeypatch.setattr(_k8s_discovery, "IN_CLUSTER_NAMESPACE_FILE", str(account / "namespace"))
    return account


def test_client_from_kubeconfig_and_context(kubeconfig, outside_a_cluster):
    client, namespace, described = build_api_client({"kubeconfig": kubeconfig})
    assert client.configuration.host == "https://127.0.0.1:6443"
    assert bearer(client) == "Bearer token-one"
    assert namespace == "shop"
    assert described.endswith("context one")
    client, namespace = build_api_client({"kubeconfig": kubeconfig, "context": "two", "host": "https://127.0.0.3:6443/",
                                          "validate_certs": False})[:2]
    assert client.configuration.host == "https://127.0.0.3:6443"        # host overrides the context's server, without the '/'
    assert bearer(client) == "Bearer token-two"
    assert client.configuration.verify_ssl is False
    assert namespace == "default"                                          # context two sets none


def test_context_alone_uses_the_default_kubeconfig(kubeconfig, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", kubeconfig)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.70")        # a context given: in-cluster is not tried
    client = build_api_client({"context": "two"})[0]
    assert client.configuration.host == "https://127.0.0.2:6443"


def test_host_and_api_key_are_the_whole_connection(monkeypatch, tmp_path, in_a_cluster):
    broken = tmp_path / "broken-kubeconfig"
    broken.write_text("this is not a kubeconfig")
    # kubernetes.core: host + api_key => no kubeconfig is loaded (not even a given one) and no in-cluster config
    client, namespace, described = build_api_client({"host": "https://127.0.0.4:6443/", "api_key": "t0k", "kubeconfig": str(broken),
                                                     "context": "nope"})
    assert client.configuration.host == "https://127.0.0.4:6443"
    assert bearer(client) == "Bearer t0k"
    assert client.configuration.ssl_ca_cert is None
    assert (namespace, described) == ("default", "host https://127.0.0.4:6443")


def test_host_alone_loads_in_cluster_or_the_default_kubeconfig_then_overrides_the_server(kubeconfig, monkeypatch, in_a_cluster):
    client, namespace, described = build_api_client({"host": "https://127.0.0.5:6443/"})
    assert client.configuration.host == "https://127.0.0.5:6443"
    assert bearer(client) == "bearer pod-token"                            # the service account's credentials
    assert client.configuration.ssl_ca_cert == str(in_a_cluster / "ca.crt")
    assert (namespace, described) == ("team-a", "in-cluster service account, host https://127.0.0.5:6443")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")                          # outside a cluster: the default kubeconfig
    monkeypatch.setenv("KUBECONFIG", kubeconfig)
    client, namespace, described = build_api_client({"host": "https://127.0.0.5:6443"})
    assert client.configuration.host == "https://127.0.0.5:6443"
    assert bearer(client) == "Bearer token-one"
    assert namespace == "shop" and described == "kubeconfig %s, context one, host https://127.0.0.5:6443" % kubeconfig


def test_nothing_given_prefers_in_cluster_over_the_default_kubeconfig(kubeconfig, monkeypatch, in_a_cluster):
    monkeypatch.setenv("KUBECONFIG", kubeconfig)
    client, namespace, described = build_api_client({})
    assert client.configuration.host == "https://127.0.0.70:6443"
    assert (namespace, described) == ("team-a", "in-cluster service account")
    client = build_api_client({"api_key": "explicit"})[0]                  # an explicit token beats the service account's
    assert bearer(client) == "Bearer explicit"
    client = build_api_client({"kubeconfig": kubeconfig})[0]               # a kubeconfig given: in-cluster is not tried
    assert client.configuration.host == "https://127.0.0.1:6443"


def test_requests_are_not_repeated_by_the_http_layer(kubeconfig):
    client = build_api_client({"kubeconfig": kubeconfig})[0]
    assert client.configuration.retries == 0
    assert client.rest_client.pool_manager.connection_pool_kw["retries"].total == 0     # set before the pool was built


def test_client_errors_name_the_fix(outside_a_cluster, tmp_path):
    with pytest.raises(K8sDiscoveryError, match="no Kubernetes credentials found: not running in a cluster .* and no kubeconfig at"):
        build_api_client({})
    with pytest.raises(K8sDiscoveryError, match="no Kubernetes credentials found"):
        build_api_client({"host": "https://127.0.0.6:6443"})              # host alone is no credential
    with pytest.raises(K8sDiscoveryError, match="kubeconfig file .*/missing does not exist: fix the kubeconfig option or K8S_AUTH_KUBECONFIG"):
        build_api_client({"kubeconfig": str(tmp_path / "missing")})
    bad = tmp_path / "bad"
    bad.write_text(yaml.safe_dump(KUBECONFIG))
    with pytest.raises(K8sDiscoveryError, match="cannot load the Kubernetes configuration") as info:
        build_api_client({"kubeconfig": str(bad), "context": "three", "api_key": "s3cr3t"})
    assert "s3cr3t" not in str(info.value)
    assert os.path.exists(str(bad))


def test_missing_kubernetes_library(monkeypatch):
    from ansible_collections.mixedrun.kong.plugins.module_utils import _k8s_discovery
    monkeypatch.setattr(_k8s_discovery, "HAS_K8S", False)
    with pytest.raises(K8sDiscoveryError, match="the 'kubernetes' Python library is required for Kubernetes discovery: install it with "
                                                "'pip install kubernetes'"):
        build_api_client({"kubeconfig": "/nowhere"})


# --------------------------------------------------------------------------------------------------------
# Paging at the transport: a scripted ApiClient (the two calls KubernetesSource makes), no network


class ScriptedResponse:
    def __init__(self, status, body):
        self.status = status
        self.reason = {200: "OK", 410: "Gone", 401: "Unauthorized"}.get(status, "")
        self.data = json.dumps(body).encode()
        self.headers = {}

    def read(self):
        return self.data

    def getheaders(self):
        return self.headers


class ScriptedApiClient:
    """Serves ``pods`` pages; the continue token ``expire`` answers 410 once. The URL carries the query, as the
    real client's param_serialize builds it."""

    def __init__(self, total, expire=None):
        self.items = [{"metadata": {"name": "p%03d" % i, "namespace": "shop"}} for i in range(total)]
        self.expire = expire
        self.urls = []
        self.configuration = type("Configuration", (), {"host": "https://127.0.0.1:6443"})()

    def param_serialize(self, method, resource_path, path_params=None, query_params=None, header_params=None, auth_settings=None, **_):
        path = resource_path.replace("{namespace}", (path_params or {}).get("namespace", ""))
        return method, path + "?" + urlencode(query_params or []), dict(header_params or {}), None, []

    def call_api(self, method, url, header_params=None, _request_timeout=None, **_):
        self.urls.append(url)
        return self.answer(dict(parse_qsl(urlparse(url).query)))

    def answer(self, query):
        token = query.get("continue")
        if token is not None and token == self.expire:
            self.expire = None
            return ScriptedResponse(410, {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"})
        start, limit = int(token or 0), int(query["limit"])
        body = {"items": self.items[start:start + limit], "metadata": {}}
        if start + limit < len(self.items):
            body["metadata"]["continue"] = str(start + limit)
        return ScriptedResponse(200, body)


def test_paging_follows_continue_until_it_is_absent():
    client = ScriptedApiClient(25)
    source = KubernetesSource(client, page_size=10)
    items = source.list("pods", "shop", "app=shop")
    assert [i["metadata"]["name"] for i in items] == ["p%03d" % i for i in range(25)]
    assert source.requests == 3
    assert client.urls == ["/api/v1/namespaces/shop/pods?labelSelector=app%3Dshop&limit=10",
                           "/api/v1/namespaces/shop/pods?labelSelector=app%3Dshop&limit=10&continue=10",
                           "/api/v1/namespaces/shop/pods?labelSelector=app%3Dshop&limit=10&continue=20"]


def test_an_expired_continue_token_restarts_the_list():
    client = ScriptedApiClient(25, expire="20")
    source = KubernetesSource(client, page_size=10)
    items = source.list("pods", "shop")
    assert len(items) == 25 and len(set(i["metadata"]["name"] for i in items)) == 25
    assert source.requests == 3 + 3          # two pages, the 410, then a fresh list of three pages


def test_a_410_that_keeps_coming_gives_up():
    client = ScriptedApiClient(25)
    serve = client.answer
    client.answer = lambda query: ScriptedResponse(410, {"message": "too old"}) if query.get("continue") else serve(query)
    with pytest.raises(K8sDiscoveryError, match="kept failing with 410 Gone"):
        KubernetesSource(client, page_size=10).list("pods", "shop")


def _unlabelled(ip, ready=True, serving=None, terminating=None):
    """An endpoint of a mirrored or user-made slice: no targetRef, no nodeName."""
    entry = endpoint(ip, "x", ready=ready, serving=serving, terminating=terminating)
    del entry["targetRef"], entry["nodeName"]
    return entry


def test_endpoints_mode_one_endpoint_in_two_slices_of_a_service_is_one_node():
    # the controller's slice (named by pod) and a second slice of the same Service without targetRef (issue 12)
    objects = [service("shop"),
               endpoint_slice("shop", [endpoint("10.42.0.%d" % i, "shop-%d" % i) for i in (1, 2, 3)], suffix="ctrl"),
               endpoint_slice("shop", [_unlabelled("10.42.0.%d" % i) for i in (1, 2, 3)], suffix="aa-mirror")]
    result = assemble(None, run(objects, service=["shop"]))
    assert [(n["name"], n["target"], n["ready"], n["source"]) for n in result["nodes"]] == [
        ("shop/shop-%d" % i, "10.42.0.%d:8080" % i, True, "k8s:shop/endpointslice/shop-ctrl") for i in (1, 2, 3)]
    assert result["duplicates"] == []


def test_endpoints_mode_copies_in_two_slices_ready_wins_and_the_pod_names_the_node():
    objects = [service("shop"),
               # the controller's slice says not ready / terminating; the other slice (no targetRef) says ready
               endpoint_slice("shop", [endpoint("10.42.0.1", "shop-1", ready=False, serving=False),
                                       endpoint("10.42.0.2", "shop-2", ready=False, serving=True, terminating=True),
                                       endpoint("10.42.0.3", "shop-3", ready=False, serving=False)], suffix="a"),
               endpoint_slice("shop", [_unlabelled("10.42.0.1"), _unlabelled("10.42.0.2", ready=False, serving=False),
                                       _unlabelled("10.42.0.3", ready=False, serving=False)], suffix="b")]
    result = run(objects, service=["shop"])
    # 10.42.0.1: ready in slice b wins; its name comes from slice a's targetRef
    assert targets(result) == [("shop/shop-1", "10.42.0.1:8080", True)]
    assert result["nodes"][0]["source"] == "k8s:shop/endpointslice/shop-b"
    reasons = dict((s["name"], s["reason"]) for s in result["skipped"])
    # 10.42.0.2: terminating but serving beats not ready; 10.42.0.3: not ready in both, reported once
    assert reasons["shop/shop-2"].startswith("terminating (set include_terminating")
    assert reasons["shop/shop-3"].startswith("not ready: ")
    assert len(result["skipped"]) == 2
    result = run(objects, service=["shop"], include_terminating=True, include_not_ready=True)
    assert targets(result) == [("shop/shop-1", "10.42.0.1:8080", True), ("shop/shop-2", "10.42.0.2:8080", False),
                               ("shop/shop-3", "10.42.0.3:8080", False)]
    assert [n["source"] for n in result["nodes"]] == ["k8s:shop/endpointslice/shop-b", "k8s:shop/endpointslice/shop-a",
                                                      "k8s:shop/endpointslice/shop-a"]


def test_endpoints_mode_same_address_other_port_or_ipv6_spelling():
    objects = [service("shop", families=("IPv6",)),
               endpoint_slice("shop", [endpoint("fd00::1", "a")], address_type="IPv6", suffix="a"),
               endpoint_slice("shop", [_unlabelled("fd00:0:0::1")], address_type="IPv6", suffix="b"),
               endpoint_slice("shop", [_unlabelled("fd00::1")], address_type="IPv6", suffix="c", ports=[{"name": "http", "port": 9090}])]
    result = run(objects, service=["shop"])
    assert targets(result) == [("shop/a", "[fd00:0000:0000:0000:0000:0000:0000:0001]:8080", True),
                               ("shop/fd00::1", "[fd00:0000:0000:0000:0000:0000:0000:0001]:9090", True)]


def test_endpoints_mode_one_pod_behind_two_services_is_still_a_duplicate():
    objects = [service("shop", labels={"app": "shop"}), service("shop-alt", labels={"app": "shop"}),
               endpoint_slice("shop", [endpoint("10.42.0.1", "p")]), endpoint_slice("shop-alt", [endpoint("10.42.0.1", "p")]),
               endpoint_slice("shop-alt", [_unlabelled("10.42.0.1")], suffix="mirror")]
    part = run(objects, selector="app=shop")
    with pytest.raises(DiscoveryError) as info:
        assemble(None, part)
    assert str(info.value).startswith("1 target(s) found more than once: 10.42.0.1:8080 from shop/p (k8s:shop/endpointslice/shop-abc), "
                                      "shop/p (k8s:shop/endpointslice/shop-alt-abc). ")
    # and a VM with the pod's address and port
    vm_part = {"nodes": [{"name": "vm-1", "kind": "vm", "address": "10.42.0.9", "port": 8080, "target": "10.42.0.9:8080",
                          "labels": {}, "ready": True, "source": "inventory"}]}
    objects = [service("shop"), endpoint_slice("shop", [endpoint("10.42.0.9", "p9")]), endpoint_slice("shop", [_unlabelled("10.42.0.9")], suffix="m")]
    with pytest.raises(DiscoveryError) as info:
        assemble(vm_part, run(objects, service=["shop"]))
    assert "1 target(s) found more than once: 10.42.0.9:8080 from vm-1, shop/p9" in str(info.value)
