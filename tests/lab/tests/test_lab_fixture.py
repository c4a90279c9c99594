"""The pytest plugin's `lab` and `lab_control` fixtures."""

import requests

from tests.lab.lab import kong_tls_kwargs

pytest_plugins = ["tests.lab.pytest_plugin"]


def _node(lab, kind):
    return [n for n in lab["nodes"] if n["kind"] == kind][0]


def test_lab_fixture_describes_a_running_lab(lab):
    # a reused lab (MIXEDRUN_LAB_JSON) may protect its Admin API with an RBAC token, and serve it over (mutual) TLS
    resp = requests.get(lab["admin_url"] + "/", timeout=5, **kong_tls_kwargs(lab))
    assert resp.status_code == (401 if lab.get("kong_rbac") else 200)
    assert lab["admin_url"].startswith("https://" if lab.get("kong_tls", "off") != "off" else "http://")
    assert requests.get(lab["prometheus_url"] + "/-/ready", timeout=5).status_code == 200
    assert [s["domain"] for s in lab["services"]] == ["shop.lab.test"]
    for node in lab["nodes"]:
        assert requests.get(node["url"] + "/", timeout=5).headers["X-Node-Name"] == node["name"]


def test_lab_control_sets_faults(lab, lab_control):
    node = _node(lab, "vm")
    state = lab_control(node["name"], unhealthy=True, error_rate=1.0)
    assert state["faults"]["unhealthy"] is True
    assert requests.get(node["url"] + "/healthz", timeout=5).status_code == 503
    assert requests.get(node["url"] + "/x", timeout=5).status_code == 500


def test_lab_control_reset_the_node_after_the_previous_test(lab):
    node = _node(lab, "vm")
    assert requests.get(node["url"] + "/healthz", timeout=5).status_code == 200
    state = requests.get(node["control_url"], timeout=5).json()
    assert state["faults"]["unhealthy"] is False and state["faults"]["error_rate"] == 0
