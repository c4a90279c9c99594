"""Cluster behaviour, restarts, RBAC, DB-less mode and fault injection of the simulator."""

import time

import pytest
import requests

from tests.lab.kong_sim.launcher import KongCluster

from .conftest import RBAC_TOKEN, AdminClient


def test_cluster_shares_state_not_health(kong, uname):
    one, two = AdminClient(kong.admin_urls[0]), AdminClient(kong.admin_urls[1])
    assert kong.node_ids[0] != kong.node_ids[1]
    assert one.post("/upstreams", json={"name": uname}).status_code == 201
    target = one.post("/upstreams/%s/targets" % uname, json={"target": "127.0.0.1:5000"}).json()
    assert two.get("/upstreams/%s/targets/%s" % (uname, target["id"])).json() == target, "the other node answers at once"
    assert two.patch("/upstreams/%s/targets/127.0.0.1:5000" % uname, json={"weight": 7}).status_code == 200
    assert one.get("/upstreams/%s/targets/127.0.0.1:5000" % uname).json()["weight"] == 7
    assert one.get("/upstreams/%s/health" % uname).json()["node_id"] == kong.node_ids[0]
    assert two.get("/upstreams/%s/health" % uname).json()["node_id"] == kong.node_ids[1]


def test_proxy_picks_up_changes_quickly(kong, kong_backend, uname):
    one = AdminClient(kong.admin_urls[0])
    backend = kong_backend("b")
    one.post("/upstreams", json={"name": uname + ".up"})
    one.post("/upstreams/%s.up/targets" % uname, json={"target": backend.target})
    svc = one.post("/services", json={"name": uname, "host": uname + ".up"}).json()
    one.post("/routes", json={"hosts": [uname + ".test"], "service": {"id": svc["id"]}})
    started = time.monotonic()
    while requests.get(kong.proxy_urls[1], headers={"Host": uname + ".test"}, timeout=5).status_code != 200:
        assert time.monotonic() - started < 1.5, "node 2 must route a new service within ~1 s"
        time.sleep(0.05)


def test_manual_health_is_broadcast(kong, uname):
    one, two = AdminClient(kong.admin_urls[0]), AdminClient(kong.admin_urls[1])
    one.post("/upstreams", json={"name": uname, "healthchecks": {"passive": {"unhealthy": {"http_failures": 1}}}})
    one.post("/upstreams/%s/targets" % uname, json={"target": "127.0.0.1:5001"})
    time.sleep(0.6)
    assert one.put("/upstreams/%s/targets/127.0.0.1:5001/unhealthy" % uname).status_code == 204
    assert one.get("/upstreams/%s/health" % uname).json()["data"][0]["health"] == "UNHEALTHY"
    deadline = time.monotonic() + 2
    while two.get("/upstreams/%s/health" % uname).json()["data"][0]["health"] != "UNHEALTHY":
        assert time.monotonic() < deadline, "Kong broadcasts manual health changes to the cluster"
        time.sleep(0.1)


def test_restart_keeps_entities_and_node_id(tmp_path, uname):
    cluster = KongCluster(str(tmp_path), nodes=1)
    cluster.start(detach=False)
    try:
        admin = AdminClient(cluster.admin_urls[0])
        admin.post("/upstreams", json={"name": uname})
        first_id = cluster.node_ids[0]
        old_pid = cluster.pids[0]
        cluster.restart_node(0)
        assert cluster.pids[0] != old_pid
        admin = AdminClient(cluster.admin_urls[0])
        assert admin.get("/").json()["node_id"] == first_id
        assert admin.get("/upstreams/" + uname).status_code == 200
    finally:
        cluster.stop()
    assert not KongCluster.read_state_dir(str(tmp_path))


def test_detached_stop_from_state_dir(tmp_path):
    cluster = KongCluster(str(tmp_path), nodes=1)
    cluster.start(detach=True)
    pid = cluster.pids[0]
    assert KongCluster.read_state_dir(str(tmp_path))[0]["pid"] == pid
    assert KongCluster.stop_from_state_dir(str(tmp_path)) == [pid]
    with pytest.raises(requests.ConnectionError):
        requests.get(cluster.admin_urls[0], timeout=2)
    cluster.stop()


def test_rbac(kong_rbac):
    url = kong_rbac.admin_urls[0]
    message = {"message": "Invalid credentials. Token or User credentials required"}
    for headers in ({}, {"X-Lab-Token": "wrong"}, {"Kong-Admin-Token": RBAC_TOKEN}):
        resp = requests.get(url + "/upstreams", headers=headers, timeout=5)
        assert resp.status_code == 401 and resp.json() == message
    ok = requests.get(url + "/upstreams", headers={"X-Lab-Token": RBAC_TOKEN}, timeout=5)
    assert ok.status_code == 200
    assert requests.get(kong_rbac.status_urls[0] + "/status", timeout=5).status_code == 200
    log = open(kong_rbac.log_files[0], encoding="utf-8").read()  # pylint: disable=consider-using-with
    assert RBAC_TOKEN not in log


def test_dbless(kong_dbless):
    admin = AdminClient(kong_dbless.admin_urls[0])
    assert admin.get("/").json()["configuration"]["database"] == "off"
    for method, path, verb, entity in (("POST", "/routes", "create", "routes"), ("POST", "/upstreams", "create", "upstreams"),
                                       ("PUT", "/services/x", "create or update", "services"), ("PATCH", "/upstreams/x", "update", "upstreams"),
                                       ("DELETE", "/upstreams/x", "remove", "upstreams")):
        resp = admin.request(method, path, json={"name": "x"})
        assert resp.status_code == 405, (method, path)
        assert resp.json() == {"code": 12, "name": "operation unsupported",
                               "message": "cannot %s '%s' entities when not using a database" % (verb, entity)}
    config = {"_format_version": "3.0", "upstreams": [{"name": "shop", "targets": [{"target": "127.0.0.1:9000", "weight": 5}]}],
              "services": [{"name": "shop", "host": "shop", "routes": [{"name": "shop", "hosts": ["shop.test"]}]}]}
    assert admin.post("/config", json=config).status_code == 201
    assert admin.get("/upstreams/shop/targets").json()["data"][0]["weight"] == 5
    patch = admin.patch("/upstreams/shop/targets/127.0.0.1:9000", json={"weight": 1})
    assert patch.status_code == 405 and patch.json()["message"] == "cannot update 'targets' entities when not using a database"
    assert admin.put("/upstreams/shop/targets/127.0.0.1:9000/unhealthy").status_code == 204


def test_faults(kong):
    admin = AdminClient(kong.admin_urls[1])
    lab = kong.admin_urls[1] + "/_lab/faults"
    try:
        assert requests.post(lab, json={"admin_error_rate": 2}, timeout=5).status_code == 400
        assert requests.post(lab, json={"bogus": 1}, timeout=5).json()["message"].startswith("unknown field(s) bogus")
        state = requests.post(lab, json={"admin_error_rate": 1.0, "admin_error_status": 503, "only_methods": ["PATCH"], "count": 2},
                              timeout=5).json()
        assert state["remaining"] == 2
        assert admin.get("/upstreams").status_code == 200, "only PATCH is affected"
        assert [admin.patch("/upstreams/none", json={}).status_code for _unused in range(3)] == [503, 503, 404]
        assert requests.get(lab, timeout=5).json()["applied"]["error"] == 2
        requests.post(lab, json={"drop_rate": 1.0, "count": 1}, timeout=5)
        with pytest.raises(requests.ConnectionError):
            requests.get(kong.admin_urls[1] + "/upstreams", timeout=5)
        assert admin.get("/upstreams").status_code == 200
        requests.post(lab, json={"admin_latency_ms": 200, "count": 1}, timeout=5)
        started = time.monotonic()
        assert admin.get("/").status_code == 200
        assert time.monotonic() - started >= 0.2

        def pattern(seed):
            requests.post(lab, json={"admin_error_rate": 0.5, "seed": seed, "count": 20}, timeout=5)
            return [admin.get("/status").status_code for _unused in range(20)]
        first = pattern(7)
        assert first == pattern(7), "seeded faults are reproducible"
        assert 500 in first and 200 in first
        requests.post(lab, json={"admin_error_rate": 1.0, "after_write": True, "only_methods": ["POST"], "count": 1}, timeout=5)
        assert admin.post("/upstreams", json={"name": "fault-after-write"}).status_code == 500
        assert admin.get("/upstreams/fault-after-write").status_code == 200, "after_write: the write happened, the answer failed"
    finally:
        requests.delete(lab, timeout=5)
