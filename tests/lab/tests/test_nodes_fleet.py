"""The node fleet: identity, health, metrics, faults, control listener, nodePorts."""

import socket
import time

import pytest
import requests

pytest_plugins = ["tests.lab.pytest_plugin"]


@pytest.fixture
def ctl(lab_fleet):
    """Set faults through the control listener; resets every node touched afterwards."""
    touched = set()

    def _set(name, **faults):
        touched.add(name)
        resp = requests.post("%s/nodes/%s" % (lab_fleet.control_url, name), json=faults, timeout=5)
        assert resp.status_code == 200, resp.text
        return resp.json()

    yield _set
    for name in touched:
        requests.post("%s/nodes/%s/reset" % (lab_fleet.control_url, name), timeout=5).raise_for_status()


def _url(node, path="/"):
    return "http://%s:%d%s" % (node.address, node.port, path)


def _metric(text, name, labels=""):
    for line in text.splitlines():
        if line.startswith(name + labels + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_every_node_answers_with_its_identity(lab_fleet):
    assert len([n for n in lab_fleet.nodes if n.kind == "vm"]) == 3
    assert len([n for n in lab_fleet.nodes if n.kind == "container"]) == 3
    assert len({n.address for n in lab_fleet.nodes}) == 6
    for node in lab_fleet.nodes:
        resp = requests.get(_url(node, "/some/path?q=1"), headers={"Host": "shop.lab.test"}, timeout=5)
        assert resp.status_code == 200
        assert resp.headers["X-Node-Name"] == node.name and resp.headers["X-Node-Kind"] == node.kind
        assert resp.json() == {"node": node.name, "kind": node.kind, "service": "shop", "path": "/some/path", "host": "shop.lab.test",
                               "method": "GET"}
        assert requests.get(_url(node, "/healthz"), timeout=5).status_code == 200


def test_metrics_count_application_requests_by_code(lab_fleet, ctl):
    node = lab_fleet.nodes[0]
    before = requests.get(_url(node, "/metrics"), timeout=5).text
    for _attempt in range(4):
        requests.get(_url(node, "/m"), timeout=5)
    ctl(node.name, error_rate=1.0, error_status=503)
    assert requests.get(_url(node, "/m"), timeout=5).status_code == 503
    requests.get(_url(node, "/healthz"), timeout=5)  # not counted
    after = requests.get(_url(node, "/metrics"), timeout=5).text
    assert _metric(after, "lab_http_requests_total", '{code="200"}') - _metric(before, "lab_http_requests_total", '{code="200"}') == 4
    assert _metric(after, "lab_http_requests_total", '{code="503"}') - _metric(before, "lab_http_requests_total", '{code="503"}') == 1
    assert _metric(after, "lab_http_request_duration_seconds_count") - _metric(before, "lab_http_request_duration_seconds_count") == 5
    assert _metric(after, "lab_http_request_duration_seconds_bucket", '{le="+Inf"}') == _metric(after, "lab_http_request_duration_seconds_count")
    assert _metric(after, "lab_node_up") == 1 and _metric(after, "lab_node_healthy") == 1


def test_error_rate_is_exact_and_deterministic(lab_fleet, ctl):
    node = lab_fleet.nodes[1]
    state = ctl(node.name, error_rate=0.25)
    assert state["faults"]["error_rate"] == 0.25
    codes = [requests.get(_url(node, "/e"), timeout=5).status_code for _attempt in range(20)]
    assert codes.count(500) == 5 and codes.count(200) == 15
    failed = requests.get(_url(node, "/e"), timeout=5)
    assert failed.headers["X-Node-Name"] == node.name


def test_latency_fault(lab_fleet, ctl):
    node = lab_fleet.nodes[2]
    ctl(node.name, latency_ms=200)
    started = time.monotonic()
    assert requests.get(_url(node, "/slow"), timeout=5).status_code == 200
    assert time.monotonic() - started >= 0.19
    metrics = requests.get(_url(node, "/metrics"), timeout=5).text
    assert _metric(metrics, "lab_http_request_duration_seconds_bucket", '{le="0.1"}') < _metric(metrics, "lab_http_request_duration_seconds_count")


def test_down_refuses_connections_and_control_still_works(lab_fleet, ctl):
    node = [n for n in lab_fleet.nodes if n.kind == "container"][1]
    session = requests.Session()
    assert session.get(_url(node, "/keepalive"), timeout=5).status_code == 200   # an open keep-alive connection
    state = ctl(node.name, down=True)
    assert state["listening"] is False and state["ready"] is False
    with pytest.raises(requests.ConnectionError):
        requests.get(_url(node, "/"), timeout=2)
    with pytest.raises(requests.ConnectionError):
        session.get(_url(node, "/keepalive"), timeout=2)     # the open connection was reset too
    with socket.socket() as sock:
        assert sock.connect_ex((node.address, node.port)) != 0
    # the control listener keeps working; its metrics view too
    assert requests.get("%s/nodes/%s" % (lab_fleet.control_url, node.name), timeout=5).json()["faults"]["down"] is True
    assert "lab_node_up 0" in requests.get("%s/nodes/%s/metrics" % (lab_fleet.control_url, node.name), timeout=5).text
    ctl(node.name, down=False)
    assert requests.get(_url(node, "/"), timeout=5).headers["X-Node-Name"] == node.name


def test_unhealthy_fails_healthz_only(lab_fleet, ctl):
    node = lab_fleet.nodes[0]
    ctl(node.name, unhealthy=True)
    assert requests.get(_url(node, "/healthz"), timeout=5).status_code == 503
    assert requests.get(_url(node, "/app"), timeout=5).status_code == 200
    assert "lab_node_healthy 0" in requests.get(_url(node, "/metrics"), timeout=5).text


def test_control_on_the_node_itself(lab_fleet):
    node = lab_fleet.nodes[3]
    try:
        resp = requests.post(_url(node, "/_control"), json={"unhealthy": True, "latency_ms": 5}, timeout=5)
        assert resp.status_code == 200 and resp.json()["faults"]["unhealthy"] is True
        assert requests.get(_url(node, "/_control"), timeout=5).json()["faults"]["latency_ms"] == 5
        assert requests.get(_url(node, "/healthz"), timeout=5).status_code == 503
    finally:
        requests.post("%s/nodes/%s/reset" % (lab_fleet.control_url, node.name), timeout=5).raise_for_status()
    assert requests.get(_url(node, "/healthz"), timeout=5).status_code == 200


@pytest.mark.parametrize("body, field", [
    ({"error_rate": 1.5}, "error_rate"),
    ({"error_rate": True}, "error_rate"),
    ({"latency_ms": -1}, "latency_ms"),
    ({"down": "yes"}, "down"),
    ({"unhealthy": 1}, "unhealthy"),
    ({"terminating": "yes"}, "terminating"),
    ({"error_status": 200}, "error_status"),
    ({"colour": "red"}, "colour"),
    (["down"], "body"),
])
def test_bad_fault_requests_are_rejected_and_change_nothing(lab_fleet, body, field):
    node = lab_fleet.nodes[4]
    before = requests.get("%s/nodes/%s" % (lab_fleet.control_url, node.name), timeout=5).json()
    for url in ("%s/nodes/%s" % (lab_fleet.control_url, node.name), _url(node, "/_control")):
        resp = requests.post(url, json=body, timeout=5)
        assert resp.status_code == 400 and resp.json()["message"].startswith(field + ":")
    # a valid field next to an invalid one is not applied either
    resp = requests.post("%s/nodes/%s" % (lab_fleet.control_url, node.name), json={"unhealthy": True, "error_rate": 7}, timeout=5)
    assert resp.status_code == 400
    assert requests.get("%s/nodes/%s" % (lab_fleet.control_url, node.name), timeout=5).json() == before
    assert requests.post(lab_fleet.control_url + "/nodes/nope", json={}, timeout=5).status_code == 404


def test_node_port_spreads_over_ready_pods_only(lab_fleet, ctl):
    svc = lab_fleet.config.services[0]
    knode = lab_fleet.config.k8s_nodes[0]
    url = "http://%s:%d/np" % (knode.address, svc.node_port)
    seen = {requests.get(url, timeout=5).headers["X-Node-Name"] for _attempt in range(9)}
    assert seen == {c.name for c in svc.containers}
    ctl(svc.containers[0].name, down=True)
    ctl(svc.containers[1].name, unhealthy=True)
    seen = {requests.get(url, timeout=5).headers["X-Node-Name"] for _attempt in range(6)}
    assert seen == {svc.containers[2].name}


def test_terminating_pod_keeps_serving_but_gets_node_port_traffic_only_as_a_last_resort(lab_fleet, ctl):
    svc = lab_fleet.config.services[0]
    knode = lab_fleet.config.k8s_nodes[1]
    url = "http://%s:%d/np" % (knode.address, svc.node_port)
    leaving = svc.containers[0]
    state = ctl(leaving.name, terminating=True)
    assert state["faults"]["terminating"] is True and state["ready"] is True and state["listening"] is True
    assert requests.get(_url(leaving, "/direct"), timeout=5).headers["X-Node-Name"] == leaving.name   # still serving
    seen = {requests.get(url, timeout=5).headers["X-Node-Name"] for _attempt in range(8)}
    assert seen == {c.name for c in svc.containers[1:]}
    for other in svc.containers[1:]:
        ctl(other.name, unhealthy=True)
    seen = {requests.get(url, timeout=5).headers["X-Node-Name"] for _attempt in range(4)}
    assert seen == {leaving.name}
