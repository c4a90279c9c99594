"""The bind role turns on the prometheus metric options the rollout's Prometheus gates query (Kong leaves them all
off), and the AWX example's queries return data on a default Kong plus the role.

The lab starts Kong with a global prometheus plugin that has every option on; these tests remove it first (and put
it back afterwards), so Kong is as a fresh install leaves it. On the simulator (no real Kong kit) every metric is
exported whatever the plugins say, so only the plugin entities are checked there for real.
Run: PYTHONPATH=. .venv/bin/pytest -p tests.lab.pytest_plugin tests/integration/test_prometheus_metrics.py
"""

import os
import subprocess
import sys
import time

import pytest
import requests
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEPT = ("name", "config", "enabled", "protocols", "tags", "instance_name")


def admin_url(lab):
    """Where entities are written: the control plane in hybrid mode, else the first node."""
    return lab.get("kong_control_plane_url") or lab["admin_url"]


def prometheus_plugins(lab):
    resp = requests.get(admin_url(lab) + "/plugins", timeout=10)
    resp.raise_for_status()
    return [p for p in resp.json()["data"] if p["name"] == "prometheus"]


def service_id(lab, name):
    resp = requests.get("%s/services/%s" % (admin_url(lab), name), timeout=10)
    return resp.json()["id"] if resp.status_code == 200 else None


def bind(lab, *extra, expect_rc=0):
    env = dict(os.environ, MIXEDRUN_LAB_JSON=os.path.join(lab["state_dir"], "lab.json"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"))
    env.pop("KONG_ADMIN_URL", None)
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", os.path.join(REPO, "inventories", "lab"),
           os.path.join(REPO, "playbooks", "bind.yml"), "-e", "service=shop"] + list(extra)
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == expect_rc, "bind.yml exit %d:\n%s\n%s" % (proc.returncode, proc.stdout[-4000:], proc.stderr[-2000:])
    return proc.stdout


@pytest.fixture
def default_kong(lab):
    """Kong without any prometheus plugin (as installed); the lab's plugins are put back afterwards."""
    saved = prometheus_plugins(lab)
    for plugin in saved:
        requests.delete("%s/plugins/%s" % (admin_url(lab), plugin["id"]), timeout=10).raise_for_status()
    try:
        yield
    finally:
        for plugin in prometheus_plugins(lab):
            requests.delete("%s/plugins/%s" % (admin_url(lab), plugin["id"]), timeout=10)
        for plugin in saved:
            body = dict((k, plugin[k]) for k in KEPT if plugin.get(k) is not None)
            for scope in ("service", "route", "consumer"):
                if plugin.get(scope):
                    body[scope] = plugin[scope]
            requests.post(admin_url(lab) + "/plugins", json=body, timeout=10).raise_for_status()


def awx_queries():
    class Loader(yaml.SafeLoader):  # pylint: disable=too-many-ancestors
        """Ansible's ``!unsafe`` and ``!vault`` tags read as plain strings."""

    for tag in ("!unsafe", "!vault"):
        Loader.add_constructor(tag, lambda loader, node: loader.construct_scalar(node))
    with open(os.path.join(REPO, "playbooks", "awx", "controller_config.yml"), encoding="utf-8") as fh:
        config = yaml.load(fh, Loader=Loader)  # nosec: a SafeLoader subclass
    queries = config["mixedrun_awx_rollout_vars"]["rollout_prometheus_queries"]
    assert queries, "the AWX example defines no Prometheus query"
    return queries


def send_traffic(lab, count=20):
    for _request in range(count):
        try:
            requests.get(lab["lb_url"] + "/", headers={"Host": "shop.lab.test"}, timeout=5)
        except requests.RequestException:
            pass


def task_result(out, name):
    """``ok``, ``changed``, ``skipping`` or ``failed`` of the task named ``name`` in ansible-playbook's output."""
    lines = out.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("TASK [") and name in line:
            for after in lines[index + 1:]:
                if after.strip():
                    return after.split(":")[0].strip()
    return None


def query(lab, expr):
    resp = requests.get(lab["prometheus_url"] + "/api/v1/query", params={"query": expr}, timeout=10)
    resp.raise_for_status()
    return resp.json()["data"]["result"]


def test_bind_turns_on_the_metrics_the_gates_need_and_the_awx_queries_see_data(lab, default_kong):
    out = bind(lab)
    sid = service_id(lab, "shop")
    mine = [p for p in prometheus_plugins(lab) if (p.get("service") or {}).get("id") == sid]
    assert len(mine) == 1, "bind made no prometheus plugin for the shop service: %s" % prometheus_plugins(lab)
    config = mine[0]["config"]
    assert config["status_code_metrics"] is True and config["latency_metrics"] is True, config
    assert config["upstream_health_metrics"] is False, "turned on an option nobody asked for: %s" % config
    flat = " ".join(out.split())
    assert "prometheus metrics for the gates: latency_metrics, status_code_metrics (service=%s; turned on now: " % sid in flat, flat[-2000:]

    # a second bind changes nothing
    again = bind(lab)
    assert task_result(again, "Prometheus metrics the gates query: shop") == "skipping", again[-3000:]
    assert "turned on now" not in " ".join(again.split())
    assert [p["config"] for p in prometheus_plugins(lab)] == [config]

    # every query of the AWX example returns data once requests flow (hybrid: after the data planes get the plugin)
    pending = dict((q["name"], q["query"]) for q in awx_queries())
    deadline = time.time() + 90
    seen = {}
    while pending and time.time() < deadline:
        send_traffic(lab)
        for name, expr in list(pending.items()):
            result = query(lab, expr)
            if result and result[0]["value"][1] not in ("NaN",):
                seen[name] = result[0]["value"][1]
                del pending[name]
        time.sleep(1)
    assert not pending, "AWX example queries without data on a default Kong plus the bind role: %s (seen: %s)" % (sorted(pending), seen)


def test_check_mode_stops_before_any_write_naming_the_missing_option(lab, default_kong):
    bind(lab)
    before = prometheus_plugins(lab)
    targets_before = requests.get(admin_url(lab) + "/upstreams/shop/targets", timeout=10).json()["data"]
    out = bind(lab, "-e", "mixed_service_prometheus=check", "-e", "mixed_service_prometheus_metrics=status_code,upstream_health",
               expect_rc=2)
    flat = " ".join(out.split())
    assert "does not turn on upstream_health_metrics" in flat, flat[-2000:]
    assert "mixed_service_prometheus: enable" in flat
    assert prometheus_plugins(lab) == before
    assert requests.get(admin_url(lab) + "/upstreams/shop/targets", timeout=10).json()["data"] == targets_before


def test_a_global_plugin_is_changed_in_place_not_shadowed(lab, default_kong):
    resp = requests.post(admin_url(lab) + "/plugins", json={"name": "prometheus", "config": {"latency_metrics": True}}, timeout=10)
    resp.raise_for_status()
    glob = resp.json()
    out = bind(lab, "-e", "mixed_service_prometheus_metrics=[\"status_code\",\"latency\"]")
    plugins = prometheus_plugins(lab)
    assert [p["id"] for p in plugins] == [glob["id"]], "a service plugin would shadow the global one: %s" % plugins
    assert plugins[0]["config"]["status_code_metrics"] is True and plugins[0]["config"]["latency_metrics"] is True
    assert "status_code_metrics" in out


def test_bad_metric_name_is_refused_before_anything(lab, default_kong):
    out = bind(lab, "-e", "mixed_service_prometheus_metrics=status_code,latencies", expect_rc=2)
    flat = " ".join(out.split())
    assert "mixed_service_prometheus_metrics: 'latencies' is not one of" in flat, flat[-1500:]
    assert prometheus_plugins(lab) == []
