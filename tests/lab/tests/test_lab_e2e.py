"""End to end: `up` -> Kong binding -> traffic through HAProxy -> Kubernetes and Prometheus follow -> `down`, no orphan."""

import collections
import json
import os
import time

import pytest
import requests
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from tests.lab.lab import group_members, bind_minimal, wait_routed
from tests.lab.pytest_plugin import _run_lab, needs_realkong, start_lab, stop_lab


def _processes_mentioning(text):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as fh:
                    if text.encode() in fh.read():
                        out.append(int(entry))
            except OSError:
                continue
    return [pid for pid in out if _state(pid) not in (None, "Z")]


def _state(pid):
    try:
        with open("/proc/%d/stat" % pid, encoding="utf-8") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def _wait(func, within, step=0.1):
    deadline = time.monotonic() + within
    while True:
        value = func()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


ENGINES = [pytest.param(("simulator", "traditional"), id="simulator"),
           pytest.param(("real", "traditional"), id="real-traditional", marks=needs_realkong),
           pytest.param(("real", "hybrid"), id="real-hybrid", marks=needs_realkong)]


@pytest.mark.parametrize("engine", ENGINES)
def test_up_proxy_down(tmp_path, engine):
    kong_engine, kong_mode = engine
    state_dir = str(tmp_path / "lab")
    info = start_lab(state_dir, kong_nodes=2, kong_engine=kong_engine, kong_mode=kong_mode)
    hybrid = kong_mode == "hybrid"
    kong_names = ["dp-1", "dp-2"] if hybrid else ["kong-1", "kong-2"]
    try:
        for key in ("admin_url", "admin_urls", "proxy_url", "proxy_urls", "lb_url", "prometheus_url", "kubeconfig", "k8s_url",
                    "state_dir", "nodes", "services", "kong_engine", "kong_mode", "kong_nodes", "kong_control_plane_url"):
            assert key in info, key
        assert (info["kong_engine"], info["kong_mode"]) == engine
        # hybrid: one Admin API (the control plane), two proxies (the data planes, which have no Admin API)
        assert len(info["admin_urls"]) == (1 if hybrid else 2) and len(info["proxy_urls"]) == 2 and info["state_dir"] == state_dir
        roles = {n["name"]: n["role"] for n in info["kong_nodes"]}
        if hybrid:
            assert roles == {"cp": "control_plane", "dp-1": "data_plane", "dp-2": "data_plane"}
            assert info["kong_control_plane_url"] == info["admin_url"]
            assert all(n["admin_url"] is None and n["node_id"] for n in info["kong_nodes"] if n["role"] == "data_plane")
        else:
            assert roles == {"kong-1": "traditional", "kong-2": "traditional"} and info["kong_control_plane_url"] is None
        with open(os.path.join(state_dir, "lab.json"), encoding="utf-8") as fh:
            assert json.load(fh) == info
        assert oct(os.stat(info["kubeconfig"]).st_mode & 0o777) == "0o600"
        status = json.loads(_run_lab(["status"], state_dir).stdout)
        assert status["state"] == "up" and {"fleet", "haproxy", "prometheus"} | set(kong_names) <= set(status["components"])
        if kong_engine == "real":
            assert status["components"]["kong-postgres"]["running"] and status["components"]["kong-postgres"]["pid"] > 0
        # Kong starts empty
        assert requests.get(info["admin_url"] + "/upstreams", timeout=5).json()["data"] == []
        # no secret in the printed document
        with open(os.path.join(state_dir, "k8s-tokens.json"), encoding="utf-8") as fh:
            tokens = json.load(fh)
        assert not any(t in json.dumps(info) for t in tokens.values())

        bind_minimal(info, "shop")
        host = {"Host": "shop.lab.test"}
        wait_routed(info, "shop.lab.test")
        seen = collections.Counter(requests.get(info["lb_url"] + "/shop", headers=host, timeout=5).headers.get("X-Node-Name")
                                   for _attempt in range(60))
        assert set(seen) == {n["name"] for n in info["nodes"]}, seen

        # a stopped container node: not ready in Kubernetes within ~1 s
        victim = [n for n in info["nodes"] if n["kind"] == "container"][0]
        assert requests.post(victim["control_url"], json={"down": True}, timeout=5).json()["listening"] is False
        core = k8s.CoreV1Api(k8s_config.new_client_from_config(config_file=info["kubeconfig"], context="mixedrun-lab"))

        def not_ready():
            pod = core.read_namespaced_pod(victim["name"], victim["namespace"])
            return {c.type: c.status for c in pod.status.conditions}["Ready"] == "False"
        assert _wait(not_ready, 1.0)

        # Prometheus scrapes the nodes (the stopped one shows up=0) and Kong
        def scraped():
            query = requests.get(info["prometheus_url"] + "/api/v1/query", timeout=5,
                                 params={"query": "up{job=~\"lab-nodes|kong|haproxy\"}"}).json()["data"]["result"]
            ups = {(r["metric"]["job"], r["metric"].get("node") or r["metric"].get("kong_node") or ""): r["value"][1] for r in query}
            return ups if ups.get(("lab-nodes", victim["name"])) == "0" and len(ups) == 9 else None
        ups = _wait(scraped, 8, step=0.5)
        assert ups, "Prometheus did not report the nodes"
        assert ups[("kong", kong_names[0])] == "1" and ups[("lab-nodes", "shop-vm-1")] == "1"
        requests.post(victim["control_url"], json={"down": False}, timeout=5).raise_for_status()

        # `up` again: reports the running lab
        same = ["up", "--kong-nodes", "2", "--kong-engine", kong_engine, "--kong-mode", kong_mode]
        if os.path.exists(os.path.join(state_dir, "test-config.yml")):
            same += ["--config", os.path.join(state_dir, "test-config.yml")]
        again = _run_lab(same, state_dir)
        assert again.returncode == 0 and json.loads(again.stdout)["already_running"] is True
        # ... and refuses to silently replace it with another configuration
        other = _run_lab(same[:2] + ["1"] + same[3:], state_dir)
        assert other.returncode == 1 and "different configuration is already running" in other.stderr
        pids = [c["pid"] for c in status["components"].values()]
        kong_state = os.path.join(state_dir, "kong")
    finally:
        report = stop_lab(state_dir)
    assert report["leftovers"] == []
    assert {s["pid"] for s in report["stopped"]} == set(pids)
    assert _processes_mentioning(state_dir) == []
    if kong_engine == "real":       # the kit may keep PostgreSQL's runtime files in a /tmp dir of its own
        assert not os.path.exists(os.path.join(kong_state, "engine.json"))
    assert all(not group_members(pid) for pid in pids)
    assert json.loads(_run_lab(["status"], state_dir).stdout)["state"] == "down"
    assert not os.path.exists(os.path.join(state_dir, "k8s-tokens.json"))


@pytest.mark.parametrize("content, message", [
    ("services: []\n", "services: must be a non-empty list"),
    ("node_port: -1\n", "node_port: must be an integer between 1 and 65535"),
    ("services:\n  - name: shop\n    vms: {count: 2, address_base: 10.0.0.1}\n", "services[0].vms.address_base: 10.0.0.1 is not a loopback address"),
    ("kong: {nodes: 0}\n", "kong.nodes"),
    ("kong: {engine: docker}\n", "kong.engine: must be auto"),
    ("kong: {mode: cluster}\n", "kong.mode: must be traditional, hybrid or dbless"),
    ("kong: {engine: simulator, mode: hybrid}\n", "kong.mode: hybrid (control plane + data planes) needs real Kong"),
    ("kong: {engine: simulator, mode: traditional, dbless: true}\n", "kong.dbless: true contradicts kong.mode: traditional"),
    ("kong: {db_update_frequency: 0}\n", "kong.db_update_frequency: must be null"),
    ("bogus: 1\n", "bogus: unknown top-level key"),
    ("services:\n  - name: Shop_1\n", "services[0].name"),
])
def test_bad_config_is_refused_and_starts_nothing(tmp_path, content, message):
    cfg = tmp_path / "bad.yml"
    cfg.write_text(content)
    state_dir = str(tmp_path / "lab")
    proc = _run_lab(["up", "--config", str(cfg)], state_dir)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr
    assert proc.stdout == ""
    assert not os.path.exists(os.path.join(state_dir, "pids")) or not os.listdir(os.path.join(state_dir, "pids"))
