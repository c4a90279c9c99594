"""playbooks/status.yml (table and JSON) and playbooks/bind.yml against the lab, with a target made by hand.

A target that the mixed_service role did not make (no mixedrun tags) takes part of the traffic: bind.yml must
leave it alone and not fail, and status.yml must report each kind's share of the real traffic from Kong's
weights (VMs = the VM targets' weight / the total, not 100 - the containers' share).
Run: PYTHONPATH=. .venv/bin/pytest -p tests.lab.pytest_plugin tests/integration/test_playbooks_status.py
"""

import json
import os
import re
import subprocess
import sys

import pytest
import requests

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HAND_MADE = "127.0.0.1:9"


def playbook(lab, name, *extra, expect_rc=0):
    env = dict(os.environ)
    env["MIXEDRUN_LAB_JSON"] = os.path.join(lab["state_dir"], "lab.json")
    env["ANSIBLE_CONFIG"] = os.path.join(REPO, "ansible.cfg")
    env["ANSIBLE_NOCOLOR"] = "1"
    env.pop("ANSIBLE_FORCE_COLOR", None)
    env.pop("KONG_ADMIN_URL", None)
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", os.path.join(REPO, "inventories", "lab"),
           os.path.join(REPO, "playbooks", name)] + list(extra)
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == expect_rc, "%s failed:\n%s\n%s" % (name, proc.stdout[-4000:], proc.stderr[-2000:])
    return proc.stdout


def targets(lab):
    resp = requests.get("%s/upstreams/shop/targets" % lab["admin_url"], timeout=10)
    resp.raise_for_status()
    return resp.json()["data"]


@pytest.fixture
def shop_with_hand_made_target(lab):
    """shop bound and split at 25 %, plus a target made by hand with weight 10; removed afterwards."""
    playbook(lab, "bind.yml", "-e", "service=shop")
    playbook(lab, "split.yml", "-e", "service=shop", "-e", "share=25")
    resp = requests.post("%s/upstreams/shop/targets" % lab["admin_url"], json={"target": HAND_MADE, "weight": 10}, timeout=10)
    assert resp.status_code == 201, resp.text
    try:
        yield
    finally:
        requests.delete("%s/upstreams/shop/targets/%s" % (lab["admin_url"], HAND_MADE), timeout=10)
        playbook(lab, "split.yml", "-e", "service=shop", "-e", "share=0")


def expected_shares(data):
    total = sum(t["weight"] for t in data)
    by_kind = {"vm": 0, "container": 0}
    for t in data:
        for kind in by_kind:
            if "mixedrun-kind:%s" % kind in (t.get("tags") or []):
                by_kind[kind] += t["weight"]
    vm = 100.0 * by_kind["vm"] / total
    container = 100.0 * by_kind["container"] / total
    return vm, container, 100.0 - vm - container


def test_bind_leaves_a_hand_made_target_alone(lab, shop_with_hand_made_target):
    before = dict((t["target"], t["weight"]) for t in targets(lab))
    out = playbook(lab, "bind.yml", "-e", "service=shop")
    after = dict((t["target"], t["weight"]) for t in targets(lab))
    assert after == before, "the re-bind changed weights: %s -> %s" % (before, after)
    assert after[HAND_MADE] == 10
    assert "take traffic too: %s" % HAND_MADE in " ".join(out.split())
    assert re.search(r"localhost\s*:\s*ok=\d+\s+changed=0\s+unreachable=0\s+failed=0", out), out[-1500:]


def test_status_table_and_json(lab, shop_with_hand_made_target, tmp_path):
    data = targets(lab)
    vm, container, other = expected_shares(data)
    assert 0 < other < 100 and container == pytest.approx(25 * (100 - other) / 100, abs=0.06)

    # the table
    out = playbook(lab, "status.yml", "-e", "service=shop")
    match = re.search(r"containers: ([0-9.]+) %\s+VMs: ([0-9.]+) %\s+other targets: ([0-9.]+) %\s+balancer: (\S+)", out)
    assert match, out[-3000:]
    assert float(match.group(1)) == pytest.approx(container, abs=0.001)
    assert float(match.group(2)) == pytest.approx(vm, abs=0.001)
    assert float(match.group(3)) == pytest.approx(other, abs=0.001)
    assert float(match.group(2)) < 100 - float(match.group(1)) - 1   # not 100 - the containers' share
    for t in data:
        assert re.search(r"\b%s\s+%d\b" % (re.escape(t["target"]), t["weight"]), out), t["target"]
    assert re.search(r"other\s+%s\s+10\s+%.2f" % (re.escape(HAND_MADE), other), out), out[-2000:]

    # the JSON file: exactly one JSON document
    status_file = tmp_path / "status.json"
    out = playbook(lab, "status.yml", "-e", "service=shop", "-e", "output=json", "-e", "status_file=%s" % status_file)
    assert "JSON report written to %s (1 service(s))" % status_file in " ".join(out.split())
    assert "containers:" not in out                 # no table in JSON mode
    report = json.loads(status_file.read_text())
    assert isinstance(report, list) and len(report) == 1
    shop = report[0]
    assert shop["service"] == "shop" and shop["domains"] == ["shop.lab.test"] and shop["bound"] is True
    assert shop["container_share"] == pytest.approx(container, abs=0.001)
    assert shop["vm_share"] == pytest.approx(vm, abs=0.001)
    assert shop["other_share"] == pytest.approx(other, abs=0.001)
    assert shop["total_weight"] == sum(t["weight"] for t in data)
    assert shop["counts"] == {"vm": 3, "container": 3, "other": 1}
    assert [shop["vm_weight"]] == sorted(set(t["weight"] for t in data if "mixedrun-kind:vm" in (t["tags"] or [])))
    assert [shop["container_weight"]] == sorted(set(t["weight"] for t in data if "mixedrun-kind:container" in (t["tags"] or [])))
    assert shop["consistent_across_nodes"] is True
    # every proxying node (hybrid: the data planes, whose balancers status.yml reads; the control plane runs none)
    assert set(shop["kong_nodes"]) == set(n["node_id"] for n in lab["kong_nodes"] if n.get("proxy_url"))
    assert shop["balancer_health"] and all(h in ("HEALTHY", "UNHEALTHY") for h in shop["balancer_health"])
    by_target = dict((t["target"], t) for t in shop["targets"])
    assert set(by_target) == set(t["target"] for t in data)
    assert by_target[HAND_MADE]["kind"] == "other" and by_target[HAND_MADE]["managed"] is False
    assert all(t["managed"] for name, t in by_target.items() if name != HAND_MADE)
    assert all(set(t) >= {"weight", "share", "health", "health_by_node"} for t in by_target.values())
    assert sorted(t["kind"] for t in shop["targets"]) == ["container"] * 3 + ["other"] + ["vm"] * 3

    # JSON on screen without a file
    out = playbook(lab, "status.yml", "-e", "service=shop", "-e", "output=json")
    assert '"vm_share": %s' % json.dumps(shop["vm_share"]) in out


def test_status_bad_input(lab):
    out = playbook(lab, "status.yml", "-e", "output=xml", expect_rc=2)
    assert "output is not 'table' or 'json' (got xml)" in out
    out = playbook(lab, "status.yml", "-e", "service=nope", expect_rc=2)
    assert "No service to report (service: nope" in out
