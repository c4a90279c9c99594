"""The real Kubernetes engine (tests/lab/realk8s.py): configuration, address mapping, and one lab `up` -> kubelet
player -> `down` on the kit's control plane (skipped, with the reason, where the kit is absent)."""

import json
import os
import time

import pytest
import requests
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from tests.lab import config as labconfig
from tests.lab import realk8s
from tests.lab.pytest_plugin import _run_lab, start_lab, stop_lab

needs_realk8s = pytest.mark.skipif(not labconfig.realk8s_kit(), reason="the real Kubernetes kit is absent ($%s or ../shared/realk8s)"
                                   % labconfig.REALK8S_KIT_ENV)

# loopback addresses of this test's own (other labs may run at once)
CONFIG = {"node_port": "auto",
          "k8s": {"engine": "real", "nodes": {"count": 2, "address_base": "127.0.37.1"}},
          "services": [{"name": "shop", "namespace": "shop", "labels": {"app": "shop", "tier": "web"}, "cluster_ip": "127.0.47.1",
                        "node_port": "auto", "vms": {"count": 1, "address_base": "127.0.17.1"},
                        "containers": {"count": 2, "address_base": "127.0.27.1"}}]}


def test_realk8s_pod_ips_and_service_cidr():
    assert realk8s.pod_ip("127.0.27.1", "10.0.0.0/8") == "10.0.27.1"
    assert realk8s.pod_ip("127.3.27.1", "172.0.0.0/8") == "172.3.27.1"
    assert realk8s.loopback_of("10.0.27.1") == "127.0.27.1"
    cfg = labconfig.validate(labconfig.deep_merge(labconfig.load_raw(), {"k8s": {"engine": "standin"}}))
    assert realk8s.service_cidr(cfg) == "127.0.0.0/16"              # 127.0.40.1 is no Service CIDR's first address
    other = labconfig.deep_merge(cfg.raw, {"services": [dict(cfg.raw["services"][0], cluster_ip="127.0.0.1")]})
    assert realk8s.service_cidr(labconfig.validate(other)) is None


def test_realk8s_engine_config(monkeypatch, tmp_path):
    base = labconfig.load_raw()
    assert labconfig.validate(base).k8s["engine"] == "standin"          # the default, see default.yml
    monkeypatch.setenv(labconfig.REALK8S_KIT_ENV, str(tmp_path))        # no kit there
    assert labconfig.validate(labconfig.deep_merge(base, {"k8s": {"engine": "auto"}})).k8s["engine"] == "standin"
    with pytest.raises(labconfig.LabConfigError, match=r"k8s.engine: real needs the real Kubernetes kit"):
        labconfig.validate(labconfig.deep_merge(base, {"k8s": {"engine": "real"}}))
    (tmp_path / "k8s-cluster.sh").write_text("#!/bin/sh\n")
    assert labconfig.validate(labconfig.deep_merge(base, {"k8s": {"engine": "auto"}})).k8s["engine"] == "real"
    monkeypatch.setenv(labconfig.K8S_ENGINE_ENV, "standin")
    assert labconfig.validate(labconfig.deep_merge(base, {"k8s": {"engine": "real"}})).k8s["engine"] == "standin"
    monkeypatch.setenv(labconfig.K8S_ENGINE_ENV, "kind")
    with pytest.raises(labconfig.LabConfigError, match=r"\$MIXEDRUN_LAB_K8S_ENGINE: must be auto"):
        labconfig.validate(base)
    monkeypatch.delenv(labconfig.K8S_ENGINE_ENV)
    for bad in ("127.0.0.0/8", "10.0.0.0/16", "nope", "224.0.0.0/8"):
        with pytest.raises(labconfig.LabConfigError, match=r"k8s.pod_cidr: must be an IPv4 /8"):
            labconfig.validate(labconfig.deep_merge(base, {"k8s": {"pod_cidr": bad}}))
    with pytest.raises(labconfig.LabConfigError, match=r"k8s.extra_objects: is for the stand-in"):
        labconfig.validate(labconfig.deep_merge(base, {"k8s": {"engine": "real", "extra_objects": [{"kind": "Pod"}]}}))
    cfg = labconfig.validate(labconfig.deep_merge(base, {"k8s": {"engine": "real"}}))
    assert cfg.fingerprint() != labconfig.validate(base).fingerprint()


def _pod_ready(core, name):
    pod = core.read_namespaced_pod(name, "shop")
    return [c.status for c in pod.status.conditions or [] if c.type == "Ready"] == ["True"]


@needs_realk8s
def test_realk8s_lab_up_kubelet_player_down(tmp_path):
    state_dir = str(tmp_path / "lab")
    started = time.monotonic()
    info = start_lab(state_dir, extra_config=CONFIG, kong_engine="simulator")
    up_seconds = time.monotonic() - started
    try:
        assert info["k8s_engine"] == "real" and info["k8s_version"] == "v1.26.0" and info["k8s_context"] == "mixedrun-lab"
        k8s_config.load_kube_config(info["kubeconfig"], context=info["k8s_context"])     # the kubernetes client takes it as is
        core = k8s_client.CoreV1Api()
        pods = {p.metadata.name: p for p in core.list_namespaced_pod("shop").items}
        containers = [n for n in info["nodes"] if n["kind"] == "container"]
        assert sorted(pods) == sorted(n["name"] for n in containers)                      # the ReplicaSet's names
        for node in containers:
            pod = pods[node["name"]]
            assert pod.metadata.owner_references[0].kind == "ReplicaSet"
            assert pod.status.pod_ip == node["pod_ip"] == realk8s.pod_ip(node["address"], "10.0.0.0/8")
            assert pod.spec.node_name in {k["name"] for k in info["k8s_nodes"]} and pod.status.phase == "Running"
        assert sorted(n.metadata.name for n in core.list_node().items) == ["lab-worker-1", "lab-worker-2"]
        assert core.read_namespaced_service("shop", "shop").spec.cluster_ip == "127.0.47.1" == info["services"][0]["cluster_ip"]
        status = _run_lab(["status"], state_dir)
        assert status.returncode == 0, status.stdout
        assert {"k8s-etcd", "k8s-kube-apiserver", "k8s-kube-controller-manager"} <= set(json.loads(status.stdout)["components"])
        # a fault turns the pod NotReady and back
        victim = containers[0]["name"]
        requests.post(info["control_url"] + "/nodes/" + victim, json={"unhealthy": True}, timeout=10).raise_for_status()
        deadline = time.monotonic() + 15
        while _pod_ready(core, victim) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _pod_ready(core, victim)
        requests.post(info["control_url"] + "/nodes/" + victim + "/reset", timeout=10).raise_for_status()
        deadline = time.monotonic() + 15
        while not _pod_ready(core, victim) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _pod_ready(core, victim)
        print("lab up with the real control plane: %.1f s" % up_seconds)
    finally:
        report = stop_lab(state_dir)
    assert {s["component"] for s in report["stopped"]} >= {"fleet", "k8s"}
    assert not os.path.exists(os.path.join(state_dir, "k8s", "engine.json"))


class FakeApi:
    """Just the pod calls the kubelet player makes, over an in-memory pod store (for a run without the kit)."""

    def __init__(self):
        self.pods = {}
        self.deleted = []
        self.events = []

    def add(self, name, labels):
        self.pods[name] = {"metadata": {"name": name, "namespace": "shop", "labels": dict(labels), "creationTimestamp": "2026-01-01T00:00:%02dZ"
                                        % len(self.pods)}, "spec": {"containers": [{"name": "app", "image": "x"}]}, "status": {"phase": "Pending"}}

    async def handle(self, request):
        from aiohttp import web  # pylint: disable=import-outside-toplevel
        parts = request.path.strip("/").split("/")          # api v1 namespaces shop pods [name [binding|status]]
        if request.method == "GET":
            return web.json_response({"items": list(self.pods.values())})
        if parts[4] == "events":
            self.events.append(json.loads(await request.text()))
            return web.json_response({}, status=201)
        pod = self.pods.get(parts[5])
        if pod is None:
            return web.json_response({}, status=404)
        if request.method == "DELETE":
            if request.query.get("gracePeriodSeconds") == "0":
                self.deleted.append(parts[5])
                del self.pods[parts[5]]
            else:
                pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:01:00Z"
            return web.json_response({})
        body = json.loads(await request.text())
        if parts[6] == "binding":
            pod["spec"]["nodeName"] = body["target"]["name"]
            return web.json_response({}, status=201)
        pod["status"] = body["status"]
        return web.json_response(pod)


def test_realk8s_kubelet_player_without_the_kit():
    """Binding, status, readiness from faults, a pod added by scaling (a new fleet node on the next free address),
    the terminating fault and a deletion, against a fake API."""
    import asyncio  # pylint: disable=import-outside-toplevel
    from aiohttp import web  # pylint: disable=import-outside-toplevel
    from tests.lab.nodes import Fleet  # pylint: disable=import-outside-toplevel

    raw = labconfig.deep_merge(labconfig.load_raw(), {
        "node_port": "auto", "k8s": {"engine": "standin", "nodes": {"count": 2, "address_base": "127.0.38.1"}},
        "services": [{"name": "shop", "labels": {"app": "shop"}, "node_port": 0,
                      "containers": {"count": 2, "address_base": "127.0.28.1", "names": ["shop-a", "shop-b"]}}]})
    cfg = labconfig.resolve_ports(labconfig.validate(raw), {"node_port": "auto"})
    api = FakeApi()
    for name in ("shop-a", "shop-b"):
        api.add(name, {"app": "shop"})

    async def scenario(tmp):
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", api.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = "http://127.0.0.1:%d" % site._server.sockets[0].getsockname()[1]  # pylint: disable=protected-access
        fleet = Fleet(cfg)
        await fleet.start()
        player = realk8s.KubeletPlayer(cfg, fleet, {"server": server, "token": "t", "ca_path": None}, os.path.join(tmp, "pods.json"))
        try:
            await player.open()
            await player.sync()
            for name, address in (("shop-a", "10.0.28.1"), ("shop-b", "10.0.28.2")):
                pod = api.pods[name]
                assert pod["status"]["podIP"] == address and pod["status"]["phase"] == "Running" and realk8s.pod_ready(pod) is True
            assert sorted(p["spec"]["nodeName"] for p in api.pods.values()) == ["lab-worker-1", "lab-worker-2"]
            await fleet.nodes["shop-a"].set_faults({"unhealthy": True})
            await player.sync()
            assert realk8s.pod_ready(api.pods["shop-a"]) is False
            api.add("shop-c", {"app": "shop"})                                       # scaled up
            await player.sync()
            assert api.pods["shop-c"]["status"]["podIP"] == "10.0.28.3" and fleet.nodes["shop-c"].listening
            assert fleet.nodes["shop-c"].spec.address == "127.0.28.3"
            await fleet.nodes["shop-b"].set_faults({"terminating": True})            # graceful delete, held open
            await player.sync()
            await player.sync()
            assert api.pods["shop-b"]["metadata"].get("deletionTimestamp") and "shop-b" in fleet.nodes
            await fleet.nodes["shop-b"].reset()                                      # the fault ends: the delete completes
            await player.sync()
            assert "shop-b" not in api.pods and "shop-b" not in fleet.nodes
            api.pods["shop-c"]["metadata"]["deletionTimestamp"] = "2026-01-01T00:02:00Z"   # scaled down by the ReplicaSet
            await player.sync()
            assert api.deleted == ["shop-b", "shop-c"] and sorted(fleet.nodes) == ["shop-a"]
            with open(os.path.join(tmp, "pods.json"), encoding="utf-8") as fh:
                assert [p["name"] for p in json.load(fh)["pods"]] == ["shop-a"]
        finally:
            await player.stop()
            await fleet.stop()
            await runner.cleanup()

    import tempfile  # pylint: disable=import-outside-toplevel
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(tmp))


def test_realk8s_kubelet_player_pod_conventions_without_the_kit():
    """The template conventions of the player (see realk8s's docstring) against the fake API: readinessProbe
    initialDelaySeconds, MIXEDRUN_LAB_READY=false, MIXEDRUN_LAB_ERROR_RATE, and a deleted pod serving for its grace."""
    import asyncio  # pylint: disable=import-outside-toplevel
    import tempfile  # pylint: disable=import-outside-toplevel
    import aiohttp  # pylint: disable=import-outside-toplevel
    from aiohttp import web  # pylint: disable=import-outside-toplevel
    from tests.lab.nodes import Fleet  # pylint: disable=import-outside-toplevel

    raw = labconfig.deep_merge(labconfig.load_raw(), {
        "node_port": "auto", "k8s": {"engine": "standin", "nodes": {"count": 1, "address_base": "127.0.57.1"}},
        "services": [{"name": "shop", "labels": {"app": "shop"}, "node_port": 0,
                      "containers": {"count": 1, "address_base": "127.0.57.101", "names": ["shop-a"]}}]})
    cfg = labconfig.resolve_ports(labconfig.validate(raw), {"node_port": "auto"})
    api = FakeApi()
    api.add("shop-a", {"app": "shop"})

    def add(name, env=None, delay=None, grace=None):
        api.add(name, {"app": "shop"})
        container = api.pods[name]["spec"]["containers"][0]
        container["env"] = [{"name": k, "value": v} for k, v in (env or {}).items()]
        if delay is not None:
            container["readinessProbe"] = {"httpGet": {"path": "/healthz", "port": "http"}, "initialDelaySeconds": delay}
        if grace is not None:
            api.pods[name]["spec"]["terminationGracePeriodSeconds"] = grace

    async def scenario(tmp):
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", api.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = "http://127.0.0.1:%d" % site._server.sockets[0].getsockname()[1]  # pylint: disable=protected-access
        fleet = Fleet(cfg)
        await fleet.start()
        player = realk8s.KubeletPlayer(cfg, fleet, {"server": server, "token": "t", "ca_path": None}, os.path.join(tmp, "pods.json"))
        try:
            await player.open()
            add("shop-slow", delay=1)
            add("shop-bad", env={"MIXEDRUN_LAB_READY": "false"})
            add("shop-err", env={"MIXEDRUN_LAB_ERROR_RATE": "1.0"}, grace=1)
            await player.sync()
            assert realk8s.pod_ready(api.pods["shop-a"]) is True and realk8s.pod_ready(api.pods["shop-err"]) is True
            assert realk8s.pod_ready(api.pods["shop-slow"]) is False
            bad = api.pods["shop-bad"]["status"]
            assert realk8s.pod_ready(api.pods["shop-bad"]) is False and bad["containerStatuses"][0]["ready"] is False
            assert [c["message"] for c in bad["conditions"] if c["type"] == "Ready"] == ["containers with unready status: [app]"]
            assert [(e["involvedObject"]["name"], e["reason"], e["type"]) for e in api.events] == [("shop-bad", "Unhealthy", "Warning")]
            node = fleet.nodes["shop-err"]
            async with aiohttp.ClientSession() as client:
                base = "http://%s:%d" % (node.spec.address, node.spec.port)
                async with client.get(base + "/") as resp:
                    assert resp.status == 500
                async with client.get(base + "/healthz") as resp:
                    assert resp.status == 200
            await asyncio.sleep(1.05)
            await player.sync()
            assert realk8s.pod_ready(api.pods["shop-slow"]) is True and realk8s.pod_ready(api.pods["shop-bad"]) is False
            api.pods["shop-err"]["metadata"]["deletionTimestamp"] = "2026-01-01T00:02:00Z"        # deleted: 1 s of grace
            await player.sync()
            assert "shop-err" in api.pods and fleet.nodes["shop-err"].listening
            with open(os.path.join(tmp, "pods.json"), encoding="utf-8") as fh:
                assert [p["terminating"] for p in json.load(fh)["pods"] if p["name"] == "shop-err"] == [True]
            await asyncio.sleep(1.05)
            await player.sync()
            assert "shop-err" not in api.pods and "shop-err" not in fleet.nodes and api.deleted == ["shop-err"]
        finally:
            await player.stop()
            await fleet.stop()
            await runner.cleanup()

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(tmp))


# loopback addresses of this test's own
CONVENTIONS = {"node_port": "auto",
               "k8s": {"engine": "real", "nodes": {"count": 1, "address_base": "127.0.56.1"}},
               "services": [{"name": "shop", "namespace": "shop", "labels": {"app": "shop"}, "cluster_ip": "127.0.56.250",
                             "node_port": "auto", "containers": {"count": 1, "address_base": "127.0.56.101"}}]}


def _variant(name, env=None, delay=None):
    container = {"name": "app", "image": realk8s.IMAGE, "ports": [{"name": "http", "containerPort": 8080}],
                 "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1}}
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    if delay is not None:
        container["readinessProbe"]["initialDelaySeconds"] = delay
    return {"metadata": {"name": name, "labels": {"app": "shop", "role": "variant"}},
            "spec": {"terminationGracePeriodSeconds": 30, "containers": [container]}}


def _wait(what, check, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.1)


@needs_realk8s
def test_realk8s_pod_template_conventions(tmp_path):
    """On the real control plane: readinessProbe initialDelaySeconds delays Ready, MIXEDRUN_LAB_READY=false keeps the
    pod and its endpoint not ready, MIXEDRUN_LAB_ERROR_RATE=1.0 answers 500 with /healthz 200, and a deleted pod serves
    as a terminating endpoint for its grace (capped at 2 s) before the player confirms the deletion."""
    state_dir = str(tmp_path / "lab")
    info = start_lab(state_dir, extra_config=CONVENTIONS, kong_engine="simulator")
    try:
        k8s_config.load_kube_config(info["kubeconfig"], context=info["k8s_context"])
        core = k8s_client.CoreV1Api()
        discovery = k8s_client.DiscoveryV1Api()
        core.create_namespaced_service("shop", {"metadata": {"name": "variants"}, "spec": {
            "selector": {"app": "shop", "role": "variant"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})
        for pod in (_variant("slow", delay=2), _variant("bad", env={"MIXEDRUN_LAB_READY": "false"}),
                    _variant("err", env={"MIXEDRUN_LAB_ERROR_RATE": "1.0"})):
            core.create_namespaced_pod("shop", pod)

        def status(name):
            pod = core.read_namespaced_pod(name, "shop")
            return pod.status.pod_ip, [c.status for c in pod.status.conditions or [] if c.type == "Ready"] == ["True"]

        _wait("the slow pod's IP", lambda: status("slow")[0])
        seen = time.monotonic()
        assert not status("slow")[1]
        _wait("the slow pod Ready", lambda: status("slow")[1])
        print("slow pod Ready %.1f s after its IP" % (time.monotonic() - seen))
        _wait("the err pod Ready", lambda: status("err")[1])

        def endpoints():
            items = discovery.list_namespaced_endpoint_slice("shop", label_selector="kubernetes.io/service-name=variants").items
            return dict((e.target_ref.name, e.conditions) for s in items for e in s.endpoints or [])
        _wait("three endpoints", lambda: len(endpoints()) == 3 and endpoints()["slow"].ready)
        assert endpoints()["bad"].ready is False and not status("bad")[1]
        bad = core.read_namespaced_pod("bad", "shop")
        assert bad.status.container_statuses[0].ready is False and bad.status.phase == "Running"
        assert [c.message for c in bad.status.conditions if c.type == "Ready"] == ["containers with unready status: [app]"]
        events = core.list_namespaced_event("shop", field_selector="involvedObject.name=bad").items
        assert [(e.reason, e.type) for e in events] == [("Unhealthy", "Warning")]

        with open(info["k8s_pods_file"], encoding="utf-8") as fh:
            err = [p for p in json.load(fh)["pods"] if p["name"] == "err"][0]
        base = "http://%s:%d" % (err["address"], err["port"])
        assert requests.get(base + "/", timeout=5).status_code == 500
        assert requests.get(base + "/healthz", timeout=5).status_code == 200

        core.delete_namespaced_pod("err", "shop")             # grace 30 s, the lab's cap 2 s
        deleted = time.monotonic()
        conditions = _wait("the err endpoint terminating", lambda: endpoints().get("err") and endpoints()["err"].terminating and endpoints()["err"])
        assert conditions.serving is True and conditions.ready is False
        assert requests.get(base + "/healthz", timeout=5).status_code == 200
        _wait("the err pod gone", lambda: "err" not in [p.metadata.name for p in core.list_namespaced_pod("shop").items])
        gone = time.monotonic() - deleted
        print("deleted pod served %.1f s" % gone)
        assert 1.5 <= gone <= 10
        with pytest.raises(requests.RequestException):
            requests.get(base + "/healthz", timeout=2)
    finally:
        stop_lab(state_dir)
