"""The Kubernetes API stand-in, exercised with the official ``kubernetes`` Python client."""

import json
import time

import pytest
import requests
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

from tests.lab.nodes import FAULT_DEFAULTS

pytest_plugins = ["tests.lab.pytest_plugin"]


@pytest.fixture(scope="module")
def api_client(lab_fleet):
    """An ApiClient built from the lab's kubeconfig (context mixedrun-lab)."""
    return k8s_config.new_client_from_config(config_file=lab_fleet.kubeconfig, context="mixedrun-lab")


@pytest.fixture(scope="module")
def core(api_client):
    """CoreV1Api."""
    return k8s.CoreV1Api(api_client)


@pytest.fixture(scope="module")
def discovery(api_client):
    """DiscoveryV1Api."""
    return k8s.DiscoveryV1Api(api_client)


def _containers(lab_fleet):
    return [n for n in lab_fleet.nodes if n.kind == "container"]


def _status(exc):
    body = json.loads(exc.body)
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure"
    assert body["code"] == exc.status
    return body


def _seed(lab_fleet, objects):
    resp = requests.post(lab_fleet.k8s_url + "/_lab/objects", json={"items": objects},
                         headers={"Authorization": "Bearer " + lab_fleet.token}, timeout=60)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _pod(name, namespace, labels, ip="127.0.99.1"):
    return {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"containers": [{"name": "app", "image": "x"}]},
            "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}}


def test_version_and_discovery(api_client, lab_fleet):
    version = k8s.VersionApi(api_client).get_code()
    assert version.major == "1" and version.git_version.startswith("v1.")
    groups = k8s.ApisApi(api_client).get_api_versions()
    assert "discovery.k8s.io" in [g.name for g in groups.groups]
    resources = k8s.CoreV1Api(api_client).get_api_resources()
    assert {"pods", "services", "nodes", "namespaces"} <= {r.name for r in resources.resources}
    # /version is public like on a real apiserver; discovery needs authentication
    assert requests.get(lab_fleet.k8s_url + "/version", timeout=5).status_code == 200
    assert requests.get(lab_fleet.k8s_url + "/api", timeout=5).status_code == 401


def test_pods_follow_the_lab(core, lab_fleet):
    containers = _containers(lab_fleet)
    pods = core.list_namespaced_pod("shop", label_selector="app=shop,tier=web")
    assert sorted(p.metadata.name for p in pods.items) == sorted(n.name for n in containers)
    by_name = {p.metadata.name: p for p in pods.items}
    for node in containers:
        pod = by_name[node.name]
        assert pod.status.pod_ip == node.address
        assert pod.status.phase == "Running"
        assert pod.spec.containers[0].ports[0].name == "http" and pod.spec.containers[0].ports[0].container_port == node.port
        assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "True"
        assert pod.metadata.owner_references[0].kind == "ReplicaSet"
        assert pod.metadata.resource_version
    one = core.read_namespaced_pod(containers[0].name, "shop")
    assert one.metadata.uid == by_name[containers[0].name].metadata.uid
    everywhere = core.list_pod_for_all_namespaces(label_selector="app=shop")
    assert len(everywhere.items) >= len(containers)
    assert int(pods.metadata.resource_version) > 0


def test_service_endpointslice_and_nodes(core, discovery, lab_fleet):
    svc = core.read_namespaced_service("shop", "shop")
    assert svc.spec.type == "NodePort" and svc.spec.selector == {"app": "shop", "tier": "web"}
    port = svc.spec.ports[0]
    assert (port.port, port.target_port, port.name) == (80, "http", "http") and port.node_port
    assert svc.spec.cluster_ip.startswith("127.")
    slices = discovery.list_namespaced_endpoint_slice("shop", label_selector="kubernetes.io/service-name=shop")
    assert len(slices.items) == 1
    eps = slices.items[0]
    assert eps.address_type == "IPv4" and eps.ports[0].name == "http" and eps.ports[0].port == lab_fleet.config.node_port
    got = {e.target_ref.name: e for e in eps.endpoints}
    for node in _containers(lab_fleet):
        endpoint = got[node.name]
        assert endpoint.addresses == [node.address] and endpoint.node_name == node.k8s_node
        assert (endpoint.conditions.ready, endpoint.conditions.serving, endpoint.conditions.terminating) == (True, True, False)
    assert discovery.list_endpoint_slice_for_all_namespaces().items
    nodes = core.list_node()
    addrs = {n.metadata.name: [a.address for a in n.status.addresses if a.type == "InternalIP"][0] for n in nodes.items}
    assert addrs == {k.name: k.address for k in lab_fleet.config.k8s_nodes}
    assert core.read_node(nodes.items[0].metadata.name).status.conditions[0].type == "Ready"
    assert "shop" in [ns.metadata.name for ns in core.list_namespace().items]


def test_stopped_or_unhealthy_container_turns_not_ready(core, discovery, lab_fleet):
    node = _containers(lab_fleet)[0]
    url = "%s/nodes/%s" % (lab_fleet.control_url, node.name)

    def ready():
        pod = core.read_namespaced_pod(node.name, "shop")
        eps = discovery.list_namespaced_endpoint_slice("shop", label_selector="kubernetes.io/service-name=shop").items[0]
        endpoint = [e for e in eps.endpoints if e.target_ref.name == node.name][0]
        return {c.type: c.status for c in pod.status.conditions}["Ready"] == "True", endpoint.conditions.ready, endpoint.conditions.serving

    def wait_for(expected, within=1.0):
        deadline = time.monotonic() + within
        while True:
            state = ready()
            if state == expected or time.monotonic() > deadline:
                return state

    before = core.read_namespaced_pod(node.name, "shop").metadata.resource_version
    try:
        assert requests.post(url, json={"down": True}, timeout=5).status_code == 200
        assert wait_for((False, False, False)) == (False, False, False)
        pod = core.read_namespaced_pod(node.name, "shop")
        assert int(pod.metadata.resource_version) > int(before)
        assert pod.status.container_statuses[0].state.waiting.reason == "CrashLoopBackOff"
        assert requests.post(url, json={"down": False}, timeout=5).status_code == 200
        assert wait_for((True, True, True)) == (True, True, True)
        assert requests.post(url, json={"unhealthy": True}, timeout=5).status_code == 200
        assert wait_for((False, False, False)) == (False, False, False)
    finally:
        requests.post(url, json=dict(FAULT_DEFAULTS), timeout=5)
    assert wait_for((True, True, True)) == (True, True, True)


def test_terminating_container(core, discovery, lab_fleet):
    node = _containers(lab_fleet)[1]
    url = "%s/nodes/%s" % (lab_fleet.control_url, node.name)

    def state():
        pod = core.read_namespaced_pod(node.name, "shop")
        eps = discovery.list_namespaced_endpoint_slice("shop", label_selector="kubernetes.io/service-name=shop").items[0]
        endpoint = [e for e in eps.endpoints if e.target_ref.name == node.name][0]
        conditions = endpoint.conditions
        return (pod.metadata.deletion_timestamp is not None, {c.type: c.status for c in pod.status.conditions}["Ready"],
                (conditions.ready, conditions.serving, conditions.terminating))

    try:
        assert requests.post(url, json={"terminating": True}, timeout=5).json()["faults"]["terminating"] is True
        # the EndpointSlice controller's view of a pod being deleted that still passes its readiness probe
        assert state() == (True, "True", (False, True, True))
        pod = core.read_namespaced_pod(node.name, "shop")
        assert pod.metadata.deletion_grace_period_seconds == 30
        assert requests.post(url, json={"unhealthy": True}, timeout=5).status_code == 200
        assert state() == (True, "False", (False, False, True))
        other = _containers(lab_fleet)[0]
        assert [e.conditions.ready for e in discovery.list_namespaced_endpoint_slice(
            "shop", label_selector="kubernetes.io/service-name=shop").items[0].endpoints if e.target_ref.name == other.name] == [True]
    finally:
        requests.post(url, json=dict(FAULT_DEFAULTS), timeout=5)
    assert state() == (False, "True", (True, True, False))


SELECTOR_PODS = {
    "sel-a": {"app": "web", "env": "prod", "tier": "1"},
    "sel-b": {"app": "web", "env": "dev", "tier": "5"},
    "sel-c": {"app": "db", "env": "prod"},
    "sel-d": {"app": "db"},
    "sel-e": {"team": "x", "example.com/owner": "me"},
}


@pytest.fixture(scope="module")
def selector_ns(lab_fleet):
    """Namespace 'selectors' with SELECTOR_PODS."""
    _seed(lab_fleet, [{"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "selectors"}}]
          + [_pod(n, "selectors", labels) for n, labels in SELECTOR_PODS.items()])
    yield "selectors"
    requests.delete(lab_fleet.k8s_url + "/_lab/objects", params={"namespace": "selectors"},
                    headers={"Authorization": "Bearer " + lab_fleet.token}, timeout=10)


@pytest.mark.parametrize("selector, expected", [
    ("", "abcde"),
    ("app=web", "ab"),
    ("app==web", "ab"),
    ("app = web", "ab"),
    ("app!=web", "cde"),           # != also matches pods without the key
    ("app in (web, db)", "abcd"),
    ("app in (db),env", "c"),
    ("env notin (prod)", "bde"),   # notin also matches pods without the key
    ("env", "abc"),
    ("!env", "de"),
    ("app,!env", "d"),
    ("tier>2", "b"),
    ("tier<2", "a"),
    ("example.com/owner=me", "e"),
    ("app=web,env=prod", "a"),
    ("app=", ""),
    ("in=x", ""),                  # 'in' is a valid key name
    ("app in ()", ""),             # apimachinery: "()" is the set of the empty value
    ("app notin ()", "abcde"),
    ("app in (web,)", "ab"),       # a trailing comma adds the empty value
    ("env in (,dev)", "b"),
    ("app in (db,,web)", "abcd"),
])
def test_label_selector_operators(core, selector_ns, selector, expected):
    pods = core.list_namespaced_pod(selector_ns, label_selector=selector)
    assert sorted(p.metadata.name for p in pods.items) == ["sel-" + c for c in expected]


@pytest.mark.parametrize("selector, fragment", [
    ("app in (web", "expected: ',' or ')'"),
    ("app in (,,)", "expected: ',', or identifier"),
    ("app in (web,,)", "expected: ',', or identifier"),
    ("app=web,", "identifier after ','"),
    ("!app=web", "expected: ',' or 'end of string'"),
    ("app=(web)", "expected: identifier"),
    ("-bad=x", "Invalid value"),
    ("app=we b", "expected: ',' or 'end of string'"),
    ("tier>x", "must be an integer"),
    ("app=" + "v" * 64, "Invalid value"),
])
def test_bad_label_selector_is_a_400_status(core, selector_ns, selector, fragment):
    with pytest.raises(ApiException) as info:
        core.list_namespaced_pod(selector_ns, label_selector=selector)
    assert info.value.status == 400
    body = _status(info.value)
    assert body["reason"] == "BadRequest" and fragment in body["message"] and "labelSelector" in body["message"]


def test_field_selector(core, selector_ns, lab_fleet):
    assert [p.metadata.name for p in core.list_namespaced_pod(selector_ns, field_selector="metadata.name=sel-b").items] == ["sel-b"]
    assert len(core.list_namespaced_pod(selector_ns, field_selector="metadata.name!=sel-b").items) == 4
    node = _containers(lab_fleet)[0]
    on_node = core.list_pod_for_all_namespaces(field_selector="spec.nodeName=%s,status.phase=Running" % node.k8s_node).items
    assert node.name in [p.metadata.name for p in on_node]
    with pytest.raises(ApiException) as info:
        core.list_namespaced_pod(selector_ns, field_selector="spec.color=red")
    assert info.value.status == 400 and "field label not supported: spec.color" in _status(info.value)["message"]


def test_pagination(core, lab_fleet):
    _seed(lab_fleet, [_pod("page-%02d" % i, "paging", {"app": "paged"}) for i in range(25)])
    names, token, remaining = [], None, []
    for _attempt in range(10):
        page = core.list_namespaced_pod("paging", limit=10, _continue=token)
        names += [p.metadata.name for p in page.items]
        remaining.append(page.metadata.remaining_item_count)
        token = page.metadata._continue  # pylint: disable=protected-access
        if not token:
            break
    assert names == ["page-%02d" % i for i in range(25)]
    assert remaining == [15, 5, None]
    # selectors combine with pagination; like a real apiserver, a filtered list does not count the rest
    page = core.list_pod_for_all_namespaces(label_selector="app=paged", limit=20)
    assert len(page.items) == 20 and page.metadata.remaining_item_count is None and page.metadata._continue  # pylint: disable=protected-access
    page = core.list_namespaced_pod("paging", field_selector="metadata.name!=page-00", limit=20)
    assert len(page.items) == 20 and page.metadata.remaining_item_count is None
    with pytest.raises(ApiException) as info:
        core.list_namespaced_pod("paging", limit=10, _continue="not-a-token")
    assert info.value.status == 400 and "continue" in _status(info.value)["message"]


def _all_pages(list_call, limit, **kwargs):
    names, token, pages = [], None, 0
    while True:
        page = list_call(limit=limit, _continue=token, **kwargs)
        pages += 1
        names += ["%s/%s" % (p.metadata.namespace, p.metadata.name) for p in page.items]
        token = page.metadata._continue  # pylint: disable=protected-access
        if not token:
            return names, pages


def test_pagination_across_namespaces_that_share_a_prefix(core, lab_fleet):
    # (namespace, name) order: "pg" sorts before "pg-x" although "pg/..." sorts after "pg-x/..." as a string
    expected = ["pg/a-%d" % i for i in range(5)] + ["pg-x/a-%d" % i for i in range(4)] + ["pg-x-y/b"]
    _seed(lab_fleet, [{"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": ns}} for ns in ("pg", "pg-x", "pg-x-y")]
          + [_pod(n.split("/")[1], n.split("/")[0], {"app": "prefixed"}) for n in expected])
    try:
        for limit in (1, 2, 3, 4, 5, 6, 100):
            names, pages = _all_pages(core.list_pod_for_all_namespaces, limit, label_selector="app=prefixed")
            assert names == expected, limit
            assert pages == -(-len(expected) // limit), limit         # no empty last page
    finally:
        for ns in ("pg", "pg-x", "pg-x-y"):
            requests.delete(lab_fleet.k8s_url + "/_lab/objects", params={"namespace": ns},
                            headers={"Authorization": "Bearer " + lab_fleet.token}, timeout=10)


def test_compaction_expires_continue_tokens(core, lab_fleet):
    _seed(lab_fleet, [_pod("cmp-%d" % i, "compact", {"app": "compact"}) for i in range(5)])
    headers = {"Authorization": "Bearer " + lab_fleet.token}
    try:
        first = core.list_namespaced_pod("compact", limit=2)
        token = first.metadata._continue  # pylint: disable=protected-access
        assert requests.post(lab_fleet.k8s_url + "/_lab/compact", headers=headers, timeout=5).status_code == 200
        with pytest.raises(ApiException) as info:
            core.list_namespaced_pod("compact", limit=2, _continue=token)
        body = _status(info.value)
        assert info.value.status == 410 and body["reason"] == "Expired" and "continue parameter is too old" in body["message"]
        names, _pages = _all_pages(core.list_namespaced_pod, 2, namespace="compact")      # a new list pages fine
        assert names == ["compact/cmp-%d" % i for i in range(5)]
        forbidden = {"Authorization": "Bearer " + lab_fleet.forbidden_token}
        assert requests.post(lab_fleet.k8s_url + "/_lab/compact", headers=forbidden, timeout=5).status_code == 403
        assert requests.get(lab_fleet.k8s_url + "/_lab/compact", headers=headers, timeout=5).status_code == 405
    finally:
        requests.delete(lab_fleet.k8s_url + "/_lab/objects", params={"namespace": "compact"}, headers=headers, timeout=10)


def test_auth_errors_are_status_bodies(lab_fleet):
    cfg = k8s.Configuration(host=lab_fleet.k8s_url)
    cfg.api_key = {"authorization": "wrong-token"}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    with pytest.raises(ApiException) as info:
        k8s.CoreV1Api(k8s.ApiClient(cfg)).list_namespaced_pod("shop")
    assert info.value.status == 401 and _status(info.value)["reason"] == "Unauthorized"
    assert "wrong-token" not in info.value.body

    forbidden = k8s.CoreV1Api(k8s_config.new_client_from_config(config_file=lab_fleet.kubeconfig_forbidden))
    with pytest.raises(ApiException) as info:
        forbidden.list_namespaced_pod("shop")
    body = _status(info.value)
    assert info.value.status == 403 and body["reason"] == "Forbidden"
    assert 'cannot list resource "pods" in API group "" in the namespace "shop"' in body["message"]
    with pytest.raises(ApiException) as info:
        k8s.DiscoveryV1Api(forbidden.api_client).list_endpoint_slice_for_all_namespaces()
    assert info.value.status == 403 and "at the cluster scope" in _status(info.value)["message"]
    # authenticated, so discovery still works
    assert forbidden.get_api_resources().resources


def test_not_found(core):
    with pytest.raises(ApiException) as info:
        core.read_namespaced_pod("no-such-pod", "shop")
    body = _status(info.value)
    assert info.value.status == 404 and body["reason"] == "NotFound" and body["message"] == 'pods "no-such-pod" not found'
    assert body["details"] == {"name": "no-such-pod", "group": "", "kind": "pods"}
    with pytest.raises(ApiException) as info:
        core.read_namespaced_service("shop", "no-such-namespace")
    assert info.value.status == 404
    assert core.list_namespaced_pod("no-such-namespace").items == []


def test_seeding_rejects_bad_objects_and_changes_nothing(lab_fleet):
    headers = {"Authorization": "Bearer " + lab_fleet.token}
    before = requests.get(lab_fleet.k8s_url + "/_lab/state", headers=headers, timeout=5).json()["counts"]
    bad = [_pod("fine-1", "seedcheck", {}), {"kind": "Deployment", "metadata": {"name": "x"}}]
    resp = requests.post(lab_fleet.k8s_url + "/_lab/objects", json={"items": bad}, headers=headers, timeout=5)
    assert resp.status_code == 400 and "items[1].kind" in resp.json()["message"]
    resp = requests.post(lab_fleet.k8s_url + "/_lab/objects", json={"items": [_pod("Bad_Name", "seedcheck", {})]}, headers=headers, timeout=5)
    assert resp.status_code == 400 and "metadata.name" in resp.json()["message"]
    assert requests.get(lab_fleet.k8s_url + "/_lab/state", headers=headers, timeout=5).json()["counts"] == before
    forbidden = {"Authorization": "Bearer " + lab_fleet.forbidden_token}
    assert requests.post(lab_fleet.k8s_url + "/_lab/objects", json={"items": []}, headers=forbidden, timeout=5).status_code == 403


def test_many_pods_and_terminating_endpoints(core, discovery, lab_fleet):
    pods = [_pod("bulk-%04d" % i, "bulk", {"app": "bulk", "shard": str(i % 4)}, ip="127.1.%d.%d" % (i // 250, i % 250 + 1)) for i in range(5000)]
    eps = {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
           "metadata": {"name": "bulk-abcde", "namespace": "bulk", "labels": {"kubernetes.io/service-name": "bulk"}},
           "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
           "endpoints": [{"addresses": ["127.1.0.1"], "conditions": {"ready": False, "serving": True, "terminating": True}}]}
    assert _seed(lab_fleet, pods + [eps])["loaded"] == 5001
    started = time.monotonic()
    page = core.list_namespaced_pod("bulk", label_selector="shard=1", limit=500)
    assert len(page.items) == 500 and page.metadata.remaining_item_count is None
    page = core.list_namespaced_pod("bulk", limit=500)
    assert len(page.items) == 500 and page.metadata.remaining_item_count == 4500
    assert time.monotonic() - started < 60          # paging, not a scan per page; a bound, not a speed test
    got = discovery.read_namespaced_endpoint_slice("bulk-abcde", "bulk").endpoints[0].conditions
    assert (got.ready, got.serving, got.terminating) == (False, True, True)
    requests.delete(lab_fleet.k8s_url + "/_lab/objects", params={"namespace": "bulk"},
                    headers={"Authorization": "Bearer " + lab_fleet.token}, timeout=10)
    assert core.list_namespaced_pod("bulk").items == []


def test_seeded_cluster_scoped_objects_are_removed_by_label(core, lab_fleet):
    headers = {"Authorization": "Bearer " + lab_fleet.token}
    nodes = [{"kind": "Node", "apiVersion": "v1", "metadata": {"name": name, "labels": {"seeded-by": owner}},
              "status": {"addresses": [{"type": "InternalIP", "address": "127.0.98.%d" % i}], "conditions": [{"type": "Ready", "status": "True"}]}}
             for i, (name, owner) in enumerate((("seed-a", "one"), ("seed-b", "two")), 1)]
    _seed(lab_fleet, nodes)
    workers = len(lab_fleet.config.k8s_nodes)
    assert len(core.list_node().items) == workers + 2
    resp = requests.delete(lab_fleet.k8s_url + "/_lab/objects", params={"labelSelector": "seeded-by=one"}, headers=headers, timeout=10)
    assert resp.json()["removed"] == 1
    assert [n.metadata.name for n in core.list_node(label_selector="seeded-by").items] == ["seed-b"]
    assert requests.delete(lab_fleet.k8s_url + "/_lab/objects", params={"labelSelector": "a in b"}, headers=headers, timeout=10).status_code == 400
    requests.delete(lab_fleet.k8s_url + "/_lab/objects", params={"labelSelector": "seeded-by"}, headers=headers, timeout=10)
    assert len(core.list_node().items) == workers
