"""The rollout's safety checks against the lab's Kong cluster (real Kong 3.9.3 where the kit is present: `make test`
runs this file on a traditional 2-node cluster and on a hybrid one), each stating what the check relies on.

* a split returns only once every node's balancer routes with it (before, the Admin API's read-back of the shared
  database passed at once while the other nodes' balancers kept the old weights for up to db_update_frequency);
* the Kong health gate refuses a hybrid control plane as its health source (it lists targets without health);
* least-connections (and the other non-proportional algorithms) and host-name targets are refused before any write.

Run: MIXEDRUN_LAB_JSON=.lab/lab.json .venv/bin/python -m pytest -p tests.lab.pytest_plugin tests/integration/test_safety_real.py
"""

import json
import os
import subprocess
import sys

import pytest
import requests

from ansible_collections.mixedrun.kong.plugins.module_utils._kong_api import KongClient
from ansible_collections.mixedrun.kong.plugins.modules import kong_traffic_split as split

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UPSTREAM = "safety-real.test"
VMS = ["127.0.180.1:18080", "127.0.180.2:18080"]
CONTAINERS = ["127.0.181.1:18080", "127.0.181.2:18080"]


def admin(lab):
    return lab["admin_url"]


def balancer_urls(lab):
    return lab.get("kong_balancer_urls") or lab["admin_urls"]


@pytest.fixture
def upstream(lab):
    """A throwaway upstream: 2 VM targets at 10, 2 container targets at 0, tagged by kind."""
    base = admin(lab)
    requests.delete(base + "/upstreams/" + UPSTREAM, timeout=10)
    requests.put(base + "/upstreams/" + UPSTREAM, json={}, timeout=10).raise_for_status()
    for target in VMS + CONTAINERS:
        kind = "vm" if target in VMS else "container"
        body = {"target": target, "weight": 10 if kind == "vm" else 0, "tags": ["mixedrun-kind:" + kind]}
        requests.post(base + "/upstreams/%s/targets" % UPSTREAM, json=body, timeout=10).raise_for_status()
    yield UPSTREAM
    requests.delete(base + "/upstreams/" + UPSTREAM, timeout=10)


def split_params(lab, share, **extra):
    params = dict(admin_url=admin(lab), upstream=UPSTREAM, container_share=share, vm_targets=None, container_targets=None,
                  nodes=None, vm_tag="mixedrun-kind:vm", container_tag="mixedrun-kind:container", other_targets="fail",
                  max_error=0.05, verify_admin_urls=list(lab["admin_urls"]), verify_balancer_urls=balancer_urls(lab),
                  verify_timeout=30.0, concurrency=4, approximate=False)
    params.update(extra)
    return params


def run_split(lab, share, **extra):
    params = split_params(lab, share, **extra)
    return split.ensure_traffic_split(KongClient(params["admin_url"], retries=0), params)


def routed_weights(url):
    """What one node's balancer routes with (its /health?balancer_health=1 details)."""
    body = requests.get("%s/upstreams/%s/health" % (url, UPSTREAM), params={"balancer_health": 1}, timeout=10).json()
    hosts = ((body.get("data") or {}).get("details") or {}).get("hosts") or []
    return dict(("%s:%s" % (h["host"], h["port"]), h["nodeWeight"]) for h in hosts)


def test_a_split_returns_only_when_every_balancer_routes_with_it(lab, upstream):
    run_split(lab, 0)                                    # every balancer holds the new upstream first
    for share in (50, 100, 0):
        result = run_split(lab, share)
        expected = result["weights_after"]
        assert sorted(result["balancers"]) == sorted(balancer_urls(lab))
        assert result["converged_seconds"] == max(node["seconds"] for node in result["balancers"].values())
        for url in balancer_urls(lab):                    # right after the task: no node is still behind
            assert routed_weights(url) == expected, url


def test_a_non_proportional_algorithm_and_host_names_are_refused_before_any_write(lab, upstream):
    before = requests.get(admin(lab) + "/upstreams/%s/targets" % UPSTREAM, timeout=10).json()["data"]
    requests.patch(admin(lab) + "/upstreams/" + UPSTREAM, json={"algorithm": "least-connections"}, timeout=10).raise_for_status()
    with pytest.raises(split.SplitError) as err:
        run_split(lab, 1)
    assert "uses the least-connections algorithm" in str(err.value) and "Nothing was changed" in str(err.value)
    requests.patch(admin(lab) + "/upstreams/" + UPSTREAM, json={"algorithm": "round-robin"}, timeout=10).raise_for_status()
    host_name_target = {"target": "localhost:18080", "weight": 0, "tags": ["mixedrun-kind:container"]}
    requests.post(admin(lab) + "/upstreams/%s/targets" % UPSTREAM, json=host_name_target, timeout=10).raise_for_status()
    with pytest.raises(split.SplitError) as err:
        run_split(lab, 1)
    assert "host-name target(s) localhost:18080" in str(err.value)
    after = requests.get(admin(lab) + "/upstreams/%s/targets" % UPSTREAM, timeout=10).json()["data"]
    weights = dict((t["target"], t["weight"]) for t in after)
    assert all(weights[t["target"]] == t["weight"] for t in before)


def test_the_health_gate_never_reads_a_control_plane_alone(lab, upstream, tmp_path):
    """Hybrid: the control plane lists the targets without health; as the gate's only source it must be refused,
    and the data planes' Status API must be read instead."""
    if lab.get("kong_mode") != "hybrid":
        pytest.skip("applies to a hybrid cluster; this lab is %s (%s)" % (lab.get("kong_mode"), lab.get("kong_engine")))
    cp_health = requests.get(admin(lab) + "/upstreams/%s/health" % UPSTREAM, timeout=10).json()["data"]
    assert cp_health and all("health" not in item for item in cp_health)
    run_split(lab, 50)
    playbook = tmp_path / "gate.yml"
    base = {"upstream": UPSTREAM, "admin_url": admin(lab), "hold": 0, "container_targets": CONTAINERS}
    plays = [{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "control plane alone", "mixedrun.kong.rollout_gate": base, "register": "cp", "ignore_errors": True},
        {"name": "data planes", "mixedrun.kong.rollout_gate": dict(base, kong_health={"balancer_urls": balancer_urls(lab)}),
         "register": "dps"},
        {"ansible.builtin.copy": {"content": "{{ {'cp': cp, 'dps': dps} | to_json }}", "dest": str(tmp_path / "out.json")}}]}]
    playbook.write_text(json.dumps(plays))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"))
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           "-e", "ansible_python_interpreter=%s" % sys.executable, str(playbook)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["cp"]["failed"] and "a hybrid-mode control plane" in out["cp"]["msg"] and "balancer_urls" in out["cp"]["msg"]
    gates = out["dps"]["gates"]
    assert sorted(g["name"] for g in gates) == sorted("kong_health@%s" % url for url in balancer_urls(lab))
    # health checks are off on this upstream: the gate says it is blind rather than claiming a measured pass
    assert all("health checks are off" in g.get("detail", "") for g in gates)
