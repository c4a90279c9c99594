"""End to end in the Kubernetes binding: HAProxy -> real DB-less Kong nodes configured by an ingress controller from
Gateway API objects on the real Kubernetes API server; the collection writes only Kubernetes objects.

The lab (tests/integration/lab-kic.yml) runs in a private network namespace where 10.0.0.0/8 is local, so the
EndpointSlices list the node processes' real addresses (3 VMs, 2 pods: unequal counts on purpose, KIC divides each
backendRef's weight over its own endpoints). In order:

1. bind (playbooks/bind.yml, binding: kubernetes): the VM Service, its EndpointSlices and the HTTPRoute are written,
   and every Kong node routes the domain to the VMs only;
2. exact splits through playbooks/split.yml: 12.5 % and 0.5 %, read from each Kong node's targets (and sampled through
   HAProxy for 12.5 %);
3. a gated rollout 0 -> 100 % (playbooks/rollout.yml) under continuous traffic, with a pod added in the middle of a step:
   the share is corrected within max_error, and no request fails;
4. a failing pod version: the rollout is rolled back, the play fails naming the gate, every node routes 0 % to pods;
5. the operator's rollback.yml and status.yml; 6. capacity-aware steps (the Deployment scaled before each step).

Runs only inside the network namespace: ``tests/tools/in_netns.sh .venv/bin/python -m pytest tests/integration/test_kic_e2e.py``
(``make netns-e2e``); elsewhere it is skipped with the reason printed.
"""

import json
import os
import sys
import time

import pytest
import requests

from tests.integration.netns_e2e import REPO, PLAYBOOK_TIMEOUT, Traffic, k8s, lab_from, last_report, playbook, scale, start_playbook, write_vars
from tests.lab.pytest_plugin import control, reset

LAB_CONFIG = os.path.join(REPO, "tests", "integration", "lab-kic.yml")
SERVICE = "shop"
DOMAIN = "shop.lab.test"
MAX_ERROR = 0.05


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    yield from lab_from(LAB_CONFIG, str(tmp_path_factory.mktemp("lab-kic")), "test_kic_e2e")


@pytest.fixture(scope="module")
def extra_vars(lab, tmp_path_factory):
    """The service in the Kubernetes binding, as a user's inventory would give it (the lab inventory's VMs)."""
    gateway = (lab.get("kic") or {}).get("gateway") or {"name": "kong", "namespace": "kong"}
    data = {
        "mixed_service_services": [{
            "name": SERVICE, "domains": [DOMAIN], "binding": "kubernetes",
            "vm": {"selector": "app=shop", "groups": ["shop_vms"]},
            "container": {"namespace": "shop", "service": "shop"},
            "kubernetes": {"gateway": gateway},
            "initial_container_share": 0,
        }],
        "mixed_service_verify_timeout": 60,
    }
    return write_vars(str(tmp_path_factory.mktemp("kic-vars") / "vars.json"), data)


def route_weights(lab):
    route = k8s(lab, "GET", "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/%s" % SERVICE)
    return dict((ref["name"], ref.get("weight")) for ref in route["spec"]["rules"][0]["backendRefs"])


# -- Kong ------------------------------------------------------------------------------------------------------
def node_targets(admin_url):
    """{target: weight} of the upstream the domain's route leads to on one DB-less node."""
    routes = requests.get(admin_url + "/routes", timeout=10).json()["data"]
    for route in routes:
        if DOMAIN in (route.get("hosts") or []):
            service = requests.get(admin_url + "/services/" + route["service"]["id"], timeout=10).json()
            data = requests.get(admin_url + "/upstreams/%s/targets" % service["host"], timeout=10).json()["data"]
            return dict((t["target"], t["weight"]) for t in data)
    return {}


def kinds(lab):
    out = {}
    for node in lab["nodes"]:
        out["%s:%s" % (node["address"], node["port"])] = node["kind"]
    return out


def kong_share(lab, admin_url, pods=None):
    """(container share %, per-kind weight sets) on one node; unknown targets (a pod the lab added) count as pods."""
    targets = node_targets(admin_url)
    known = kinds(lab)
    vm = [w for t, w in targets.items() if known.get(t) == "vm"]
    ct = [w for t, w in targets.items() if known.get(t) != "vm"]
    total = sum(vm) + sum(ct)
    if pods is not None:
        assert len(ct) == pods, "%s: %d container targets, expected %d: %s" % (admin_url, len(ct), pods, targets)
    return (100.0 * sum(ct) / total if total else None), {"vm": sorted(set(vm)), "container": sorted(set(ct)), "targets": targets}


def wait_share(lab, share, pods=2, timeout=60.0):
    """Every Kong node routes the domain with ``share`` % (within MAX_ERROR) on ``pods`` container targets."""
    deadline = time.time() + timeout
    seen = {}
    while True:
        seen = {}
        for url in lab["admin_urls"]:
            try:
                seen[url] = kong_share(lab, url)
            except (requests.RequestException, KeyError, ValueError) as exc:
                seen[url] = (None, {"error": str(exc)})
        known = kinds(lab)

        def ok(entry):
            got, sets = entry
            pods_seen = sum(1 for t in sets.get("targets", {}) if known.get(t) != "vm")
            return got is not None and abs(got - share) <= MAX_ERROR and pods_seen == pods

        if all(ok(entry) for entry in seen.values()):
            return seen
        assert time.time() < deadline, "Kong nodes do not route %s %% on %d pods: %s" % (share, pods, seen)
        time.sleep(0.5)


def sample(lab, count=800):
    session = requests.Session()
    counts = {"vm": 0, "container": 0, "failed": 0}
    for _index in range(count):
        try:
            resp = session.get(lab["lb_url"] + "/", headers={"Host": DOMAIN}, timeout=5)
            counts[resp.headers.get("X-Node-Kind") or "failed"] += 1 if resp.status_code == 200 else 0
            if resp.status_code != 200:
                counts["failed"] += 1
        except requests.RequestException:
            counts["failed"] += 1
    return counts


def rollout_vars(lab, report_dir, **extra):
    variables = {
        "rollout_upstream": SERVICE,
        "rollout_admin_url": lab["admin_urls"][0],
        "rollout_admin_urls": lab["admin_urls"],
        "rollout_balancer_urls": lab.get("kong_balancer_urls") or lab["admin_urls"],
        "rollout_steps": [10, 50, 100],
        "rollout_hold": 4,
        "rollout_gate_interval": 1,
        "rollout_max_error": MAX_ERROR,
        "rollout_probe_path": "/healthz",
        "rollout_traffic_url": lab["lb_url"],
        "rollout_traffic_host": DOMAIN,
        "rollout_traffic_requests": 20,
        "rollout_report_dir": report_dir,
        "rollout_lock_owner": "kic-e2e",
    }
    variables.update(extra)
    return variables


# -- the tests -------------------------------------------------------------------------------------------------
def test_bind_in_the_kubernetes_binding(lab, extra_vars):
    _rc, out = playbook(lab, "bind.yml", extra_vars)
    assert "binding kubernetes" in out and "containers get 0.0 %" in out, out[-3000:]
    weights = route_weights(lab)
    assert weights["shop"] == 0 and weights["shop-vms"] > 0, weights
    slices = k8s(lab, "GET", "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices?labelSelector=kubernetes.io/service-name=shop-vms")
    addresses = sorted(e["addresses"][0] for s in slices["items"] for e in s["endpoints"])
    assert addresses == sorted(n["address"] for n in lab["nodes"] if n["kind"] == "vm")
    assert all(s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == "mixedrun.kong" for s in slices["items"])
    wait_share(lab, 0.0)
    counts = sample(lab, 100)
    assert counts == {"vm": 100, "container": 0, "failed": 0}, counts
    # a re-bind changes nothing
    _rc, out = playbook(lab, "bind.yml", extra_vars)
    assert "changed=0" in out, out[-3000:]


@pytest.mark.parametrize("share", [12.5, 0.5])
def test_exact_split_with_unequal_counts(lab, extra_vars, share):
    _rc, out = playbook(lab, "split.yml", extra_vars, {"service": SERVICE, "share": share, "max_error": MAX_ERROR})
    assert "binding kubernetes" in out, out[-3000:]
    seen = wait_share(lab, share)
    for url, (got, sets) in seen.items():
        assert len(sets["vm"]) == 1 and len(sets["container"]) == 1, (url, sets)       # equal weights within a kind
        print("split %s %%: %s routes %.4f %% (VM weight %s x3, pod weight %s x2)" % (share, url, got, sets["vm"], sets["container"]),
              file=sys.stderr)
    if share == 12.5:
        counts = sample(lab, 1600)
        observed = 100.0 * counts["container"] / (counts["vm"] + counts["container"])
        print("12.5 %% through HAProxy: %s -> %.2f %%" % (counts, observed), file=sys.stderr)
        assert counts["failed"] == 0 and abs(observed - 12.5) <= 3.0, counts


def test_gated_rollout_with_a_pod_added_mid_step(lab, extra_vars, tmp_path):
    playbook(lab, "split.yml", extra_vars, {"service": SERVICE, "share": 0})
    wait_share(lab, 0.0)
    report_dir = str(tmp_path / "reports")
    # 12.5 % on 3 VMs and 2 pods, then a 3rd and 4th pod in the middle of that step's hold: KIC divides the containers'
    # backendRef weight over 4 pods (integer division, at least 1 each), so the share drifts unless the weight happens to
    # divide by 4; the rollout's share guard writes the weights again then
    variables = rollout_vars(lab, report_dir, rollout_steps=[12.5, 50, 100], rollout_holds={"12.5": 25})
    with Traffic(lab, DOMAIN) as traffic:
        proc = start_playbook(lab, "rollout.yml", extra_vars, variables)
        try:
            deadline = time.time() + 120
            while not route_weights(lab).get("shop"):
                assert proc.poll() is None, proc.stdout.read()[-6000:]
                assert time.time() < deadline, "the first step never wrote the container weight"
                time.sleep(0.5)
            wait_share(lab, 12.5)
            before = route_weights(lab)
            scale(lab, "shop", "shop", 4)
            kept = wait_share(lab, 12.5, pods=4, timeout=60)
            print("pods 2 -> 4 mid-step: backendRef weights %s before; every node routes %s" % (
                before, dict((u, round(v[0], 4)) for u, v in kept.items())), file=sys.stderr)
            out, _unused = proc.communicate(timeout=PLAYBOOK_TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, out[-6000:]
    traffic.assert_none_failed()
    report = last_report(report_dir)
    assert report["run"]["binding"] == "kubernetes" and report["run"]["outcome"] == "finished", report["run"]
    steps = [s for s in report["steps"] if s["kind"] == "step"]
    assert [float(s["planned_share"]) for s in steps] == [12.5, 50.0, 100.0]
    guard = [g for e in steps[0]["gate"]["evaluations"] for g in e["gates"] if g["name"] == "share"]
    assert guard and all(g["status"] == "pass" for g in guard), guard
    assert all(abs(g["value"] - 12.5) <= MAX_ERROR for g in guard), guard
    if before["shop"] % 4:
        # KIC's division drifted: the guard must have written the weights again, and said so
        assert any(g.get("corrected") for g in guard), guard
        assert any("share drifted" in w for w in steps[0]["gate"].get("warnings") or []), steps[0]["gate"].get("warnings")
    wait_share(lab, 100.0, pods=4)
    print("healthy rollout: %d requests, 0 failed" % traffic.sent, file=sys.stderr)


def test_failing_pods_are_rolled_back(lab, extra_vars, tmp_path):
    scale(lab, "shop", "shop", 2)
    playbook(lab, "split.yml", extra_vars, {"service": SERVICE, "share": 0})
    wait_share(lab, 0.0, pods=2)
    # the pods running now (the ReplicaSet chose which ones to delete when it scaled down): the fleet lists them
    fleet = requests.get(lab["control_url"] + "/nodes", timeout=10).json()["nodes"]
    pods = [n["name"] for n in fleet if n["kind"] == "container" and n["listening"]]
    assert len(pods) == 2, fleet
    for name in pods:
        control(lab, name, error_rate=1.0)          # every request answered 500; /healthz (readiness) stays fine
    try:
        report_dir = str(tmp_path / "reports")
        variables = rollout_vars(lab, report_dir, rollout_steps=[10, 50], rollout_probe_path="/")
        rc, out = playbook(lab, "rollout.yml", extra_vars, variables, expect_rc=None)
    finally:
        reset(lab)
    assert rc != 0, out[-3000:]
    assert "Rollout gate failed" in out and ("gate 'probes'" in out or "gate 'traffic'" in out or "probes" in out), out[-4000:]
    wait_share(lab, 0.0, pods=2)
    report = last_report(report_dir)
    assert report["run"]["binding"] == "kubernetes" and report["run"]["outcome"] != "finished", report["run"]
    lease = k8s(lab, "GET", "/apis/coordination.k8s.io/v1/namespaces/shop/leases")
    holders = [i["spec"].get("holderIdentity") for i in lease["items"] if i["metadata"]["name"].startswith("mixedrun-rollout-")]
    assert not any(holders), holders


def test_operator_rollback_and_status(lab, extra_vars, tmp_path):
    playbook(lab, "split.yml", extra_vars, {"service": SERVICE, "share": 50})
    wait_share(lab, 50.0, pods=2)
    report_dir = str(tmp_path / "reports")
    playbook(lab, "rollback.yml", extra_vars, rollout_vars(lab, report_dir, rollout_rollback_to=0))
    wait_share(lab, 0.0, pods=2)
    assert last_report(report_dir)["run"]["binding"] == "kubernetes"
    status_file = str(tmp_path / "status.json")
    playbook(lab, "status.yml", extra_vars, {"status_file": status_file})
    with open(status_file, encoding="utf-8") as fh:
        status = json.load(fh)
    entry = [s for s in status if s["service"] == SERVICE][0]
    assert entry["binding"] == "kubernetes" and entry["bound"] and entry["httproute"] == "shop/shop", entry
    assert entry["container_share"] == 0.0 and entry["consistent_across_nodes"] is True, entry
    assert entry["counts"]["vm"] == 3 and entry["counts"]["container"] == 2, entry
    assert entry["backend_weights"]["container"] == 0 and entry["backend_weights"]["vm"] > 0, entry


def test_capacity_aware_steps_in_the_kubernetes_binding(lab, extra_vars, tmp_path):
    """The Deployment is scaled before each step in this binding too: KIC lists the new pods and the split counts them."""
    wait_share(lab, 0.0, pods=2)
    report_dir = str(tmp_path / "reports")
    variables = rollout_vars(lab, report_dir, rollout_steps=[50, 100], rollout_hold=2,
                             rollout_workload={"namespace": "shop", "deployment": "shop", "service": "shop", "wait_timeout": 90},
                             rollout_capacity={"headroom": 0.25})
    with Traffic(lab, DOMAIN) as traffic:
        playbook(lab, "rollout.yml", extra_vars, variables)
    traffic.assert_none_failed()
    report = last_report(report_dir)
    steps = [s for s in report["steps"] if s["kind"] == "step"]
    # 3 VMs' worth of demand, 25 % headroom: 50 % needs 2 pods, 100 % needs 4
    assert [int(s["replicas"]) for s in steps] == [2, 4], [s.get("replicas") for s in steps]
    for step in steps:
        assert step["pods"]["ready"] >= int(step["replicas"]) and float(step["achieved_share"]) <= step["pods"]["carries"] + 1e-6, step
    wait_share(lab, 100.0, pods=4)
