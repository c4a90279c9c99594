"""End to end: capacity-aware rollout steps on the real Kubernetes control plane and real Kong (Admin API binding).

The lab (tests/integration/lab-capacity.yml) runs in a private network namespace where 10.0.0.0/8 is local: the
Deployment's pods (made by the real ReplicaSet controller, run by the lab's kubelet player) have real addresses that
Kong routes to. One service, 3 VMs and 1 pod. In order:

1. a Deployment update whose pods never become ready stops the rollout before any weight moves, naming the pods;
2. a rollout 10 -> 50 -> 100 % under continuous traffic through HAProxy: before each step the Deployment is scaled to
   the pods the step needs (1, 2, 4 with the default capacity: 3 VMs' worth of demand, 25 % headroom), the new pods
   are Kong targets before the weights move, no step's share is above what its ready pods carry (from the report and
   from the Deployment), 0 failed requests; VM retirement is off, so every VM still runs;
3. a new version whose pods answer 500: the gates roll the traffic back to 0 %, then the Deployment is scaled back down;
4. VM retirement switched on: the hook runs once per VM host and the report lists them.

Runs only inside the network namespace: ``tests/tools/in_netns.sh .venv/bin/python -m pytest tests/integration/test_capacity_e2e.py``
(``make netns-e2e``); elsewhere it is skipped with the reason printed.
"""

import copy
import os
import sys
import time

import pytest
import requests

from tests.integration.netns_e2e import REPO, Traffic, k8s, lab_from, last_report, playbook, write_vars

LAB_CONFIG = os.path.join(REPO, "tests", "integration", "lab-capacity.yml")
RETIRE_TASKS = os.path.join(REPO, "tests", "integration", "files", "retire_vm.yml")
SERVICE = "shop"
DOMAIN = "shop.lab.test"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    yield from lab_from(LAB_CONFIG, str(tmp_path_factory.mktemp("lab-capacity")), "test_capacity_e2e")


@pytest.fixture(scope="module")
def varfile(tmp_path_factory):
    data = {"mixed_service_services": [{
        "name": SERVICE, "domains": [DOMAIN],
        "vm": {"selector": "app=shop", "groups": ["shop_vms"]},
        "container": {"namespace": "shop", "service": "shop", "address_mode": "endpoints"},
        "healthchecks": {"active": {"path": "/healthz", "interval": 2, "healthy_successes": 1, "unhealthy_failures": 2}},
        "initial_container_share": 0}]}
    return write_vars(str(tmp_path_factory.mktemp("capacity-vars") / "vars.json"), data)


def deployment(lab):
    return k8s(lab, "GET", "/apis/apps/v1/namespaces/shop/deployments/shop")


def manifest(lab, image, env=None):
    """The Deployment as the rollout applies it: the live selector and labels, a new image, optional env."""
    live = deployment(lab)
    container = {"name": live["spec"]["template"]["spec"]["containers"][0]["name"], "image": image}
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in sorted(env.items())]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "shop", "namespace": "shop"},
            "spec": {"selector": copy.deepcopy(live["spec"]["selector"]),
                     "template": {"metadata": {"labels": copy.deepcopy(live["spec"]["template"]["metadata"]["labels"])},
                                  "spec": {"containers": [container]}}}}


def share(lab):
    data = requests.get(lab["admin_url"] + "/upstreams/%s/targets" % SERVICE, timeout=10).json()["data"]
    totals = {"vm": 0, "container": 0}
    for item in data:
        totals["container" if "mixedrun-kind:container" in (item.get("tags") or []) else "vm"] += item["weight"]
    total = totals["vm"] + totals["container"]
    return 100.0 * totals["container"] / total if total else None


def rollout_vars(lab, report_dir, **extra):
    variables = {
        "rollout_upstream": SERVICE,
        "rollout_admin_url": lab["admin_url"],
        "rollout_admin_urls": lab.get("admin_urls") or [lab["admin_url"]],
        "rollout_steps": [10, 50, 100],
        "rollout_hold": 3,
        "rollout_gate_interval": 1,
        "rollout_probe_path": "/healthz",
        "rollout_traffic_url": lab["lb_url"],
        "rollout_traffic_host": DOMAIN,
        "rollout_traffic_requests": 20,
        "rollout_report_dir": report_dir,
        "rollout_lock_owner": "capacity-e2e",
        "rollout_vm_drain": 1,
        "rollout_workload": {"namespace": "shop", "deployment": "shop", "service": "shop", "wait_timeout": 60, "force_conflicts": True},
        "rollout_capacity": {"headroom": 0.25},
    }
    variables.update(extra)
    return variables


def test_bind(lab, varfile):
    playbook(lab, "bind.yml", varfile)
    assert share(lab) == 0.0
    # a new route reaches every worker of real Kong's router a moment after the bind returns (Kong answers "no Route
    # matched" until then): the traffic tests start once the domain routes
    deadline = time.time() + 30
    while True:
        codes = [requests.get(lab["lb_url"] + "/", headers={"Host": DOMAIN}, timeout=5).status_code for _index in range(20)]
        if codes == [200] * 20:
            break
        assert time.time() < deadline, "the domain does not route 30 s after the bind: %s" % codes
        time.sleep(0.5)


def test_a_version_that_never_gets_ready_stops_before_any_weight(lab, varfile, tmp_path):
    before = requests.get(lab["admin_url"] + "/upstreams/%s/targets" % SERVICE, timeout=10).json()["data"]
    variables = rollout_vars(lab, str(tmp_path / "reports"), rollout_workload={
        "namespace": "shop", "deployment": "shop", "service": "shop", "wait_timeout": 20, "force_conflicts": True,
        "manifests": [manifest(lab, "mixedrun/lab-node:broken", {"MIXEDRUN_LAB_READY": "false"})]})
    rc, out = playbook(lab, "rollout.yml", varfile, variables, expect_rc=None)
    assert rc != 0 and "Rollout of shop not started" in out, out[-4000:]
    assert "not ready" in out.lower(), out[-4000:]
    after = requests.get(lab["admin_url"] + "/upstreams/%s/targets" % SERVICE, timeout=10).json()["data"]
    assert sorted((t["target"], t["weight"]) for t in after) == sorted((t["target"], t["weight"]) for t in before)
    assert share(lab) == 0.0


def test_capacity_aware_rollout(lab, varfile, tmp_path):
    report_dir = str(tmp_path / "reports")
    variables = rollout_vars(lab, report_dir, rollout_workload={
        "namespace": "shop", "deployment": "shop", "service": "shop", "wait_timeout": 90, "force_conflicts": True,
        "manifests": [manifest(lab, "mixedrun/lab-node:2")]})
    with Traffic(lab, DOMAIN, admin=lab["admin_url"]) as traffic:
        playbook(lab, "rollout.yml", varfile, variables)
    report = last_report(report_dir)
    steps = [s for s in report["steps"] if s["kind"] == "step"]
    traffic.assert_none_failed(" (steps applied at %s)" % [s["applied_at"] for s in steps])
    assert [int(s["replicas"]) for s in steps] == [1, 2, 4], [s.get("replicas") for s in steps]
    for step in steps:
        pods = step["pods"]
        assert pods["ready"] >= int(step["replicas"]) and pods["endpoints"] >= int(step["replicas"]), step
        assert float(step["achieved_share"]) <= pods["carries"] + 1e-6, "step %s: %s %% on pods that carry %s %%" % (
            step["index"], step["achieved_share"], pods["carries"])
    live = deployment(lab)
    assert live["spec"]["replicas"] == 4 and live["status"].get("readyReplicas") == 4, live["status"]
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "mixedrun/lab-node:2"
    assert report["run"]["retired_vms"] == [] and share(lab) == 100.0
    fleet = requests.get(lab["control_url"] + "/nodes", timeout=10).json()["nodes"]
    assert all(not n["faults"]["down"] for n in fleet if n["kind"] == "vm"), "VM retirement is off: no VM is stopped"
    print("capacity-aware rollout: pods %s for shares %s, %d requests, 0 failed" % (
        [s["pods"]["ready"] for s in steps], [s["achieved_share"] for s in steps], traffic.sent), file=sys.stderr)


def test_a_failing_version_is_rolled_back_then_scaled_down(lab, varfile, tmp_path):
    playbook(lab, "split.yml", varfile, {"service": SERVICE, "share": 0})
    report_dir = str(tmp_path / "reports")
    variables = rollout_vars(lab, report_dir, rollout_probe_path="/", rollout_workload={
        "namespace": "shop", "deployment": "shop", "service": "shop", "wait_timeout": 90, "force_conflicts": True,
        "manifests": [manifest(lab, "mixedrun/lab-node:3", {"MIXEDRUN_LAB_ERROR_RATE": "1.0"})]})
    rc, out = playbook(lab, "rollout.yml", varfile, variables, expect_rc=None)
    assert rc != 0 and "Rollout gate failed" in out, out[-4000:]
    assert "scaled back down to 1 pod" in out, out[-4000:]
    assert share(lab) == 0.0
    live = deployment(lab)
    assert live["spec"]["replicas"] == 1, live["spec"]
    report = last_report(report_dir)
    assert report["run"]["outcome"] == "rolled_back" and report["run"]["scaled_down"]["replicas"] == 1, report["run"]


def test_vm_retirement_only_when_switched_on(lab, varfile, tmp_path):
    report_dir = str(tmp_path / "reports")
    variables = rollout_vars(lab, report_dir, rollout_steps=[50, 100], rollout_retire_vms=True, rollout_retire_tasks=RETIRE_TASKS,
                             rollout_workload={"namespace": "shop", "deployment": "shop", "service": "shop", "wait_timeout": 90,
                                               "force_conflicts": True, "manifests": [manifest(lab, "mixedrun/lab-node:4")]})
    playbook(lab, "rollout.yml", varfile, variables)
    report = last_report(report_dir)
    vms = sorted(n["name"] for n in lab["nodes"] if n["kind"] == "vm")
    assert sorted(report["run"]["retired_vms"]) == vms, report["run"]
    fleet = requests.get(lab["control_url"] + "/nodes", timeout=10).json()["nodes"]
    assert all(n["faults"]["down"] for n in fleet if n["kind"] == "vm"), fleet
