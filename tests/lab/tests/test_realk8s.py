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

    def add(self, name, labels):
        self.pods[name] = {"metadata": {"name": name, "namespace": "shop", "labels": dict(labels), "creationTimestamp": "2026-01-01T00:00:%02dZ"
                                        % len(self.pods)}, "spec": {"containers": [{"name": "app", "image": "x"}]}, "status": {"phase": "Pending"}}

    async def handle(self, request):
        from aiohttp import web  # pylint: disable=import-outside-toplevel
        parts = request.path.strip("/").split("/")          # api v1 namespaces shop pods [name [binding|status]]
        if request.method == "GET":
            return web.json_response({"items": list(self.pods.values())})
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
