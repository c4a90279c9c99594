"""The ingress-controller stand-in (tests/lab/kic.py): its KIC 3.x translation (pure), and one live run of the lab of
tests/integration/lab-kic.yml -- real API server, two real DB-less Kong nodes, the stand-in pushing to both -- that
runs only inside tests/tools/in_netns.sh (MIXEDRUN_NETNS=1) with both kits present:

    tests/tools/in_netns.sh .venv/bin/python -m pytest tests/lab/tests/test_kic.py -q
"""

import json
import os
import subprocess
import time

import pytest
import requests

from tests.lab import config as labconfig
from tests.lab import kic
from tests.lab.lab import _running
from tests.lab.pytest_plugin import _run_lab

GATEWAY = {"name": "kong", "namespace": "kong"}
LAB_KIC = os.path.join(labconfig.REPO_ROOT, "tests", "integration", "lab-kic.yml")


# ---------------------------------------------------------------------------------------------------------------
# translation

def _service(ns, name, port=80, port_name="http"):
    return {"metadata": {"namespace": ns, "name": name}, "spec": {"ports": [{"name": port_name, "port": port, "protocol": "TCP"}]}}


def _slice(ns, service, addresses, port=18080, port_name="http", name=None):
    """addresses: list of "10.0.0.1" (ready unset), ("10.0.0.1", False) (not ready) or ("10.0.0.1", True)."""
    endpoints = []
    for item in addresses:
        addr, ready = item if isinstance(item, tuple) else (item, None)
        endpoint = {"addresses": [addr]}
        if ready is not None:
            endpoint["conditions"] = {"ready": ready}
        endpoints.append(endpoint)
    return {"metadata": {"namespace": ns, "name": name or service + "-x", "labels": {"kubernetes.io/service-name": service}},
            "ports": [{"name": port_name, "port": port, "protocol": "TCP"}], "endpoints": endpoints}


def _route(backends, ns="shop", name="shop", parent=None, hostnames=("shop.lab.test",), generation=1):
    refs = []
    for backend in backends:
        ref = {"name": backend[0], "port": 80}
        if backend[1] is not None:
            ref["weight"] = backend[1]
        refs.append(ref)
    return {"metadata": {"namespace": ns, "name": name, "generation": generation},
            "spec": {"parentRefs": [parent or {"name": "kong", "namespace": "kong"}], "hostnames": list(hostnames),
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": refs}]}}


def _translate(routes, services, slices):
    by_name, by_service = kic.Controller.index(services, slices)
    return kic.translate(routes, by_name, by_service, GATEWAY)


VMS = ["10.0.16.1", "10.0.16.2", "10.0.16.3"]
PODS = ["10.0.26.1", "10.0.26.2"]
OBJECTS = ([_service("shop", "shop-vms"), _service("shop", "shop")],
           [_slice("shop", "shop-vms", VMS), _slice("shop", "shop", PODS)])


def test_weights_divided_per_backend_with_minimum_one():
    config, summary, problems = _translate([_route([("shop-vms", 12), ("shop", 2)])], *OBJECTS)
    name = "httproute.shop.svc.shop.shop-vms.80.12_shop.shop.80.2"          # sorted: '-' < '.'
    assert list(summary) == [name] and problems == {("shop", "shop"): []}
    assert summary[name] == {"10.0.16.1:18080": 4, "10.0.16.2:18080": 4, "10.0.16.3:18080": 4, "10.0.26.1:18080": 1, "10.0.26.2:18080": 1}
    service, upstream = config["services"][0], config["upstreams"][0]
    assert config["_format_version"] == "3.0"
    assert service["name"] == service["host"] == upstream["name"] == name
    assert (service["port"], service["protocol"], upstream["algorithm"]) == (80, "http", "round-robin")
    assert service["routes"] == [{"name": "httproute.shop.shop.0.0", "protocols": ["http", "https"], "preserve_host": True, "strip_path": False,
                                  "hosts": ["shop.lab.test"], "paths": ["~/$", "/"]}]
    # 1 // 2 = 0 -> at least 1; 5 // 3 = 1
    _config, summary, _problems = _translate([_route([("shop-vms", 5), ("shop", 1)])], *OBJECTS)
    assert sorted(list(summary.values())[0].values()) == [1, 1, 1, 1, 1]


def test_weight_zero_stays_zero_and_unset_keeps_kong_default():
    config, summary, _problems = _translate([_route([("shop-vms", 0), ("shop", None)])], *OBJECTS)
    targets = list(summary.values())[0]
    assert [targets[v + ":18080"] for v in VMS] == [0, 0, 0]
    assert [targets[p + ":18080"] for p in PODS] == [100, 100]            # KIC: no weight -> Kong's default
    assert "weight" not in config["upstreams"][0]["targets"][-1]          # ... i.e. left out of the declarative config
    assert list(summary)[0] == "httproute.shop.svc.shop.shop-vms.80.0_shop.shop.80"


def test_not_ready_skipped_unset_ready_counts_first_address_only():
    slices = [_slice("shop", "shop-vms", [("10.0.16.1", True), ("10.0.16.2", False), "10.0.16.3"]),
              _slice("shop", "shop", PODS, port_name="other")]                  # not the Service port's name: unused
    slices[0]["endpoints"][0]["addresses"].append("10.0.99.9")
    _config, summary, _problems = _translate([_route([("shop-vms", 10), ("shop", 10)])], OBJECTS[0], slices)
    assert list(summary.values())[0] == {"10.0.16.1:18080": 5, "10.0.16.3:18080": 5}


def test_duplicates_counted_once_per_service_and_summed_across_backends():
    services = [_service("shop", "shop-vms"), _service("shop", "shop")]
    slices = [_slice("shop", "shop-vms", ["10.0.16.1", "10.0.16.2"], name="a"), _slice("shop", "shop-vms", ["10.0.16.2"], name="b"),
              _slice("shop", "shop", ["10.0.16.2", "fd00::1"])]
    _config, summary, _problems = _translate([_route([("shop-vms", 10), ("shop", 4)])], services, slices)
    # shop-vms: 2 distinct targets -> 5 each; shop: 2 targets -> 2 each; 10.0.16.2 from both: 5 + 2
    assert list(summary.values())[0] == {"10.0.16.1:18080": 5, "10.0.16.2:18080": 7, "[fd00::1]:18080": 2}


def test_weight_change_renames_service_and_upstream():
    before = list(_translate([_route([("shop-vms", 12), ("shop", 2)])], *OBJECTS)[1])
    after = list(_translate([_route([("shop-vms", 12), ("shop", 3)])], *OBJECTS)[1])
    assert before != after and after == ["httproute.shop.svc.shop.shop-vms.80.12_shop.shop.80.3"]


def test_only_routes_of_the_gateway():
    routes = [_route([("shop", 1)], name="other-gw", parent={"name": "nginx", "namespace": "kong"}),
              _route([("shop", 1)], name="other-ns", parent={"name": "kong"}),                     # namespace: the route's (shop)
              _route([("shop", 1)], name="not-a-gateway", parent={"name": "kong", "namespace": "kong", "kind": "Service", "group": ""})]
    config, summary, problems = _translate(routes, *OBJECTS)
    assert (config["services"], config["upstreams"], summary, problems) == ([], [], {}, {})
    routes.append(_route([("shop", 1)], name="mine", parent={"name": "kong", "namespace": "kong", "sectionName": "http"}))
    config, summary, _problems = _translate(routes, *OBJECTS)
    assert [r["name"] for r in config["services"][0]["routes"]] == ["httproute.shop.mine.0.0"]


def test_missing_backend_reported_and_all_missing_terminates():
    config, summary, problems = _translate([_route([("nope", 1)])], *OBJECTS)
    assert problems[("shop", "shop")] == ["backendRef shop/nope: no such Service"]
    assert config["services"][0]["plugins"][0]["name"] == "request-termination" and list(summary.values()) == [{}]
    status = kic.route_parent_status(_route([("nope", 1)], generation=3), GATEWAY, "x.io/y", problems[("shop", "shop")])
    assert [(c["type"], c["status"], c["observedGeneration"]) for c in status["conditions"]] == [("Accepted", "True", 3), ("ResolvedRefs", "False", 3)]


def test_prometheus_plugin_kept_and_hash_stable():
    by_name, by_service = kic.Controller.index(*OBJECTS)
    plugin = {"name": "prometheus", "config": {"status_code_metrics": True}}
    one = kic.translate([_route([("shop", 1)])], by_name, by_service, GATEWAY, [plugin])[0]
    two = kic.translate([_route([("shop", 1)])], by_name, by_service, GATEWAY, [plugin])[0]
    assert one["plugins"] == [plugin] and kic.config_hash(one) == kic.config_hash(two)


def test_kic_config_rules(monkeypatch, tmp_path):
    for env in (labconfig.KONG_ENGINE_ENV, labconfig.K8S_ENGINE_ENV):
        monkeypatch.delenv(env, raising=False)
    (tmp_path / "k8s-cluster.sh").write_text("#!/bin/sh\n")
    monkeypatch.setenv(labconfig.REALK8S_KIT_ENV, str(tmp_path))
    base = labconfig.load_raw()
    good = {"kong": {"engine": "simulator", "mode": "dbless"}, "k8s": {"engine": "real"}, "kic": {"enabled": True}}
    cfg = labconfig.validate(labconfig.deep_merge(base, good))
    assert cfg.kic == {"sync_delay": 2, "gateway": GATEWAY, "gateway_class": "kong", "controller_name": "konghq.com/kic-gateway-controller"}
    assert labconfig.validate(base).kic is None and labconfig.validate(base).network == "loopback"
    for over, message in (({"kong": {"mode": "traditional"}}, r"kic.enabled: .*kong.mode: dbless"),
                          ({"k8s": {"engine": "standin"}}, r"kic.enabled: .*k8s.engine: real"),
                          ({"kic": {"sync_delay": -1}}, r"kic.sync_delay"),
                          ({"kic": {"gateway": {"name": "Bad_Name"}}}, r"kic.gateway.name"),
                          ({"kic": {"nope": 1}}, r"kic.nope: unknown key"),
                          ({"network": "host"}, r"network: must be loopback .* or netns"),
                          ({"k8s": {"nodes": {"address_base": "10.0.36.1"}}},
                           r"k8s.nodes.address_base: 10.0.36.1 is not a loopback address; 10.x node addresses need network: netns")):
        with pytest.raises(labconfig.LabConfigError, match=message):
            labconfig.validate(labconfig.deep_merge(labconfig.deep_merge(base, good), over))
    netns = labconfig.deep_merge(labconfig.deep_merge(base, good), {"network": "netns", "k8s": {"nodes": {"address_base": "10.0.36.1"}}})
    assert [k.address for k in labconfig.validate(netns).k8s_nodes] == ["10.0.36.1", "10.0.36.2", "10.0.36.3"]
    with pytest.raises(labconfig.LabConfigError, match=r"neither a loopback address nor in 10.0.0.0/8"):
        labconfig.validate(labconfig.deep_merge(netns, {"k8s": {"nodes": {"address_base": "192.168.1.1"}}}))


# ---------------------------------------------------------------------------------------------------------------
# live: lab-kic.yml inside the network namespace

def _live_skip_reason():
    if os.environ.get("MIXEDRUN_NETNS") != "1":
        return "not inside tests/tools/in_netns.sh (MIXEDRUN_NETNS=1 unset): run tests/tools/in_netns.sh .venv/bin/python -m pytest %s" \
            % os.path.relpath(__file__, labconfig.REPO_ROOT)
    if not labconfig.realkong_kit():
        return "the real Kong kit is absent ($%s or ../shared/realkong)" % labconfig.REALKONG_KIT_ENV
    if not labconfig.realk8s_kit():
        return "the real Kubernetes kit is absent ($%s or ../shared/realk8s)" % labconfig.REALK8S_KIT_ENV
    return None


class Api:
    """The lab's API server through requests (the admin token of the kit, its CA)."""

    def __init__(self, state_dir, info):
        with open(os.path.join(state_dir, "k8s", "cluster.json"), encoding="utf-8") as fh:
            cluster = json.load(fh)
        with open(cluster["token_file"], encoding="utf-8") as fh:
            token = fh.read().strip()
        self.server, self.ca = info["k8s_url"], os.path.join(state_dir, "k8s-ca.crt")
        self.session = requests.Session()
        self.session.headers["Authorization"] = "Bearer " + token

    def request(self, method, path, body=None, content_type="application/json", params=None):
        resp = self.session.request(method, self.server + path, data=json.dumps(body) if body is not None else None, params=params,
                                    headers={"Content-Type": content_type}, timeout=30, verify=self.ca)
        assert resp.status_code < 300, "%s %s -> %d %s" % (method, path, resp.status_code, resp.text[:500])
        return resp.json()

    def apply(self, path, obj):
        """Server-side apply with field manager test-kic."""
        return self.request("PATCH", path, obj, content_type="application/apply-patch+yaml", params={"fieldManager": "test-kic", "force": "true"})


def _wait(what, check, timeout):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError("%s: not within %s s (last: %r)" % (what, timeout, last))


def _node_targets(info, upstream):
    """{kong node name: {target: weight}} read from every DB-less node's Admin API."""
    out = {}
    for node in info["kong_nodes"]:
        resp = requests.get("%s/upstreams/%s/targets" % (node["admin_url"], upstream), timeout=5)
        out[node["name"]] = {t["target"]: t["weight"] for t in resp.json().get("data", [])} if resp.status_code == 200 else None
    return out


@pytest.fixture
def kic_lab(tmp_path, request):
    reason = _live_skip_reason()
    if reason:
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        if reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():          # printed even under -q, without -rs
                reporter.write_line("\ntest_kic live test skipped: " + reason)
        pytest.skip(reason)
    state_dir = str(tmp_path / "lab")
    os.makedirs(state_dir)
    started = time.monotonic()
    proc = _run_lab(["up", "--config", LAB_KIC], state_dir, timeout=1800)
    if proc.returncode != 0:
        _run_lab(["down"], state_dir)
        raise AssertionError("lab up failed: %s" % proc.stderr[-3000:])
    info = json.loads(proc.stdout)
    info["_up_seconds"] = time.monotonic() - started
    try:
        yield state_dir, info
    finally:
        pids = []
        pids_dir = os.path.join(state_dir, "pids")
        for entry in os.listdir(pids_dir) if os.path.isdir(pids_dir) else []:
            with open(os.path.join(pids_dir, entry), encoding="utf-8") as fh:
                pids.append(json.load(fh)["pid"])
        down = _run_lab(["down"], state_dir)
        assert down.returncode == 0, down.stderr[-2000:]
        assert json.loads(down.stdout)["leftovers"] == []
        assert not [p for p in pids if _running(p)]
        status = _run_lab(["status"], state_dir)
        assert status.returncode == 3, status.stdout[-2000:]


def test_kic_live_weights_traffic_and_scale(kic_lab):  # pylint: disable=redefined-outer-name,too-many-locals
    state_dir, info = kic_lab
    assert info["network"] == "netns" and info["kong_mode"] == "dbless" and len(info["kong_nodes"]) == 2
    assert info["kic"]["gateway"] == GATEWAY and info["kic"]["controller_name"] == "konghq.com/kic-gateway-controller"
    assert info["kic"]["sync_delay"] == 2 and os.path.isfile(info["kic"]["log"])
    vms = [n for n in info["nodes"] if n["kind"] == "vm"]
    pods = [n for n in info["nodes"] if n["kind"] == "container"]
    assert [n["address"] for n in vms] == ["10.0.16.1", "10.0.16.2", "10.0.16.3"]
    assert all(n["pod_ip"] == n["address"] for n in pods)                       # no translation in the namespace
    api = Api(state_dir, info)
    port = info["nodes"][0]["port"]
    # what the collection's kong_k8s_binding writes: the VMs' Service and EndpointSlice, the HTTPRoute
    api.apply("/api/v1/namespaces/shop/services/shop-vms?fieldManager=test-kic",
              {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "shop-vms", "namespace": "shop"},
               "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": port}]}})
    api.apply("/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices/shop-vms-ipv4",
              {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
               "metadata": {"name": "shop-vms-ipv4", "namespace": "shop",
                            "labels": {"kubernetes.io/service-name": "shop-vms", "endpointslice.kubernetes.io/managed-by": "test-kic"}},
               "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
               "endpoints": [{"addresses": [n["address"]], "conditions": {"ready": True}} for n in vms]})
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "shop", "namespace": "shop"},
             "spec": {"parentRefs": [{"name": "kong", "namespace": "kong"}], "hostnames": ["shop.lab.test"],
                      "rules": [{"backendRefs": [{"name": "shop-vms", "port": 80, "weight": 12}, {"name": "shop", "port": 80, "weight": 2}]}]}}
    applied = time.monotonic()
    api.apply("/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/shop", route)
    upstream = "httproute.shop.svc.shop.shop-vms.80.12_shop.shop.80.2"
    want = {"%s:%d" % (n["address"], port): 4 for n in vms}
    want.update({"%s:%d" % (n["address"], port): 1 for n in pods})
    _wait("both DB-less nodes with the weights", lambda: all(t == want for t in _node_targets(info, upstream).values()), 30)
    pushed_after = time.monotonic() - applied
    assert pushed_after >= 1.5, "pushed %.1f s after the change: the sync delay (2 s) was not waited" % pushed_after

    # the route's status: Accepted and ResolvedRefs for the Gateway, by the stand-in's controller name
    got = _wait("the HTTPRoute status", lambda: (api.request("GET", "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/shop")
                                                 .get("status") or {}).get("parents"), 15)
    assert got[0]["controllerName"] == "konghq.com/kic-gateway-controller" and got[0]["parentRef"]["name"] == "kong"
    assert {c["type"]: c["status"] for c in got[0]["conditions"]} == {"Accepted": "True", "ResolvedRefs": "True"}

    # traffic through HAProxy reaches VMs and containers
    seen = {}
    for _i in range(150):
        resp = requests.get(info["lb_url"] + "/", headers={"Host": "shop.lab.test"}, timeout=5)
        assert resp.status_code == 200, resp.text[:300]
        seen[resp.headers.get("X-Node-Name")] = seen.get(resp.headers.get("X-Node-Name"), 0) + 1
    assert {n["name"] for n in vms} <= set(seen) and {n["name"] for n in pods} <= set(seen), seen
    assert sum(seen[n["name"]] for n in vms) > sum(seen[n["name"]] for n in pods), seen

    # scale the Deployment: the third pod becomes a target (2 // 3 = 0 -> 1) after the sync delay, same upstream name
    scaled = time.monotonic()
    api.request("PATCH", "/apis/apps/v1/namespaces/shop/deployments/shop/scale", {"spec": {"replicas": 3}},
                content_type="application/merge-patch+json")
    third = "10.0.26.3:%d" % port

    def third_everywhere():
        found = _node_targets(info, upstream)
        return found if all(v and third in v for v in found.values()) else None
    targets = _wait("the third pod as a target on both nodes", third_everywhere, 45)
    scale_seconds = time.monotonic() - scaled
    for node_targets in targets.values():
        assert node_targets == dict(want, **{third: 1})
    new_pod = _wait("traffic to the new pod", lambda: _new_pod_hit(info, {n["name"] for n in vms + pods}), 20)
    assert new_pod

    # the push log and `status`
    with open(info["kic"]["log"], encoding="utf-8") as fh:
        pushes = [json.loads(line) for line in fh if '"push"' in line]
    assert pushes[-1]["services"][upstream][third] == 1 and all(not p.get("errors") for p in pushes)
    status = json.loads(_run_lab(["status"], state_dir).stdout)
    assert status["state"] == "up" and status["components"]["kic"]["last_hash"] == pushes[-1]["hash"]
    print("\nKIC live: up %.1f s, route -> targets on both nodes %.1f s, scale -> third pod target %.1f s, pushes %d"
          % (info["_up_seconds"], pushed_after, scale_seconds, len(pushes)))


def _new_pod_hit(info, known):
    """A node name outside ``known`` answering through HAProxy within a burst of requests (None if none)."""
    for _i in range(40):
        name = requests.get(info["lb_url"] + "/", headers={"Host": "shop.lab.test"}, timeout=5).headers.get("X-Node-Name")
        if name and name not in known:
            return name
    return None


def test_in_netns_tool_reports_missing_command():
    """tests/tools/in_netns.sh without a command: usage, exit 2 (no namespace needed for that)."""
    tool = os.path.join(labconfig.REPO_ROOT, "tests", "tools", "in_netns.sh")
    proc = subprocess.run([tool], capture_output=True, text=True, timeout=10, check=False)
    assert proc.returncode == 2 and "usage" in proc.stderr


def test_netns_lab_refused_outside_the_namespace(tmp_path):
    """`up` of a network: netns lab where 10.0.0.0/8 is not local: refused, naming tests/tools/in_netns.sh, nothing started."""
    if os.environ.get("MIXEDRUN_NETNS") == "1":
        pytest.skip("inside the namespace: 10.0.0.0/8 is local here")
    config = tmp_path / "netns.yml"
    config.write_text("network: netns\nk8s: {engine: standin}\nkong: {engine: simulator}\n")
    proc = _run_lab(["up", "--config", str(config)], str(tmp_path / "lab"))
    assert proc.returncode == 1 and "tests/tools/in_netns.sh" in proc.stderr and "network: netns" in proc.stderr, proc.stderr
    assert not os.path.exists(str(tmp_path / "lab" / "pids"))
