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
        # the simulator's nodes poll every second; a bound, not a speed test (a loaded CI machine is slow)
        assert time.monotonic() - started < 15, "node 2 must route a new service at its next poll"
        time.sleep(0.05)


def test_manual_health_is_broadcast(kong, uname):
    one, two = AdminClient(kong.admin_urls[0]), AdminClient(kong.admin_urls[1])
    one.post("/upstreams", json={"name": uname, "healthchecks": {"passive": {"unhealthy": {"http_failures": 1}}}})
    one.post("/upstreams/%s/targets" % uname, json={"target": "127.0.0.1:5001"})
    time.sleep(0.6)
    versions = [c.get("/_lab/info").json()["config_version"] for c in (one, two)]
    assert versions[0] == versions[1]
    assert one.put("/upstreams/%s/targets/127.0.0.1:5001/unhealthy" % uname).status_code == 204
    assert one.get("/upstreams/%s/health" % uname).json()["data"][0]["health"] == "UNHEALTHY"
    deadline = time.monotonic() + 2
    while two.get("/upstreams/%s/health" % uname).json()["data"][0]["health"] != "UNHEALTHY":
        assert time.monotonic() < deadline, "Kong broadcasts manual health changes to the cluster"
        time.sleep(0.1)
    assert [c.get("/_lab/info").json()["config_version"] for c in (one, two)] == versions, \
        "a manual health change is a cluster event, not a configuration change: no node rebuilds"
    assert one.put("/upstreams/%s/targets/127.0.0.1:5001/healthy" % uname).status_code == 204
    deadline = time.monotonic() + 2
    while two.get("/upstreams/%s/health" % uname).json()["data"][0]["health"] != "HEALTHY":
        assert time.monotonic() < deadline, "healthy is broadcast too"
        time.sleep(0.1)


def test_consumer_writes_are_no_configuration_change(kong, uname):
    """The rollout lock's consumers: one POST wins (409 through the other node), and no consumer write makes a node
    rebuild its configuration (Kong only invalidates consumer cache entries: the balancers stay as they are)."""
    one, two = AdminClient(kong.admin_urls[0]), AdminClient(kong.admin_urls[1])
    one.post("/upstreams", json={"name": uname})
    deadline = time.monotonic() + 10
    while len({c.get("/_lab/info").json()["config_version"] for c in (one, two)}) != 1:
        assert time.monotonic() < deadline, "both nodes reach the upstream's configuration"
        time.sleep(0.1)
    versions = [c.get("/_lab/info").json()["config_version"] for c in (one, two)]
    lock = one.post("/consumers", json={"username": "mixedrun-lock." + uname, "custom_id": "claim-1", "tags": ["mixedrun-lock"]})
    assert lock.status_code == 201
    lost = two.post("/consumers", json={"username": "mixedrun-lock." + uname, "custom_id": "claim-2"})
    assert lost.status_code == 409 and lost.json()["fields"] == {"username": "mixedrun-lock." + uname}
    assert two.patch("/consumers/" + lock.json()["id"], json={"tags": ["mixedrun-lock", "renewed"]}).status_code == 200
    assert one.put("/consumers/mixedrun-rollout." + uname, json={"tags": ["mixedrun-rollout"]}).status_code == 200
    assert two.get("/consumers/mixedrun-rollout." + uname).json()["tags"] == ["mixedrun-rollout"]
    assert one.delete("/consumers/" + lock.json()["id"]).status_code == 204
    assert two.delete("/consumers/mixedrun-rollout." + uname).status_code == 204
    time.sleep(0.3)
    assert [c.get("/_lab/info").json()["config_version"] for c in (one, two)] == versions, "consumer writes rebuild nothing"


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


class SimulatedKill(Exception):
    """Stands for `up` being killed between starting the nodes and their answering."""


def test_pidfiles_are_written_as_each_node_starts(tmp_path, monkeypatch):
    cluster = KongCluster(str(tmp_path), nodes=3)
    calls = []
    wait_ready = KongCluster._wait_ready

    def killed_on_second_wait(self, indexes):
        calls.append(list(indexes))
        if len(calls) == 2:
            raise SimulatedKill()
        return wait_ready(self, indexes)
    monkeypatch.setattr(KongCluster, "_wait_ready", killed_on_second_wait)
    try:
        with pytest.raises(SimulatedKill):
            cluster.start(detach=True)
        assert calls == [[0], [1, 2]]
        recorded = KongCluster.read_state_dir(str(tmp_path))
        assert sorted(int(info["pid"]) for info in recorded) == sorted(cluster.pids) and len(recorded) == 3, \
            "every node started has its pidfile before anything can fail"
        assert [info["node_id"] for info in recorded][1:] == [None, None], "nodes 2 and 3 never answered"
        assert sorted(KongCluster.stop_from_state_dir(str(tmp_path))) == sorted(cluster.pids), "`down` finds them all"
        for pid in cluster.pids:
            deadline = time.monotonic() + 5
            while _running(pid):
                assert time.monotonic() < deadline, "node %d still runs" % pid
                time.sleep(0.05)
        assert not KongCluster.read_state_dir(str(tmp_path))
    finally:
        cluster.stop()


def _running(pid):
    try:
        with open("/proc/%d/stat" % pid, encoding="utf-8") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


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


@pytest.fixture(scope="module")
def kong_rbac_default(tmp_path_factory):
    """RBAC with Kong's default header (Kong-Admin-Token) and a second workspace."""
    cluster = KongCluster(str(tmp_path_factory.mktemp("kong-rbac-default")), nodes=1, rbac_token=RBAC_TOKEN, workspaces=["team-a"])
    cluster.start(detach=False)
    yield cluster
    cluster.stop()


def test_rbac_default_header_and_workspace_prefix(kong_rbac_default, uname):
    url = kong_rbac_default.admin_urls[0]
    good = {"Kong-Admin-Token": RBAC_TOKEN}
    info = requests.get(url + "/", headers=good, timeout=5).json()
    assert info["configuration"]["rbac_auth_header"] == "Kong-Admin-Token" and info["configuration"]["enforce_rbac"] == "on"
    for path in ("/upstreams", "/team-a/upstreams", "/team-a/upstreams/%s/targets" % uname, "/"):
        for headers in ({}, {"Kong-Admin-Token": "wrong"}, {"X-Other-Header": RBAC_TOKEN}):
            resp = requests.get(url + path, headers=headers, timeout=5)
            assert resp.status_code == 401, (path, headers)
            assert resp.json() == {"message": "Invalid credentials. Token or User credentials required"}
    refused = requests.post(url + "/team-a/upstreams", json={"name": uname}, timeout=5)
    assert refused.status_code == 401
    assert requests.post(url + "/team-a/upstreams", json={"name": uname}, headers=good, timeout=5).status_code == 201
    assert requests.post(url + "/team-a/upstreams/%s/targets" % uname, json={"target": "127.0.0.1:1"}, headers=good,
                         timeout=5).status_code == 201
    assert requests.get(url + "/team-a/upstreams/" + uname, headers=good, timeout=5).status_code == 200
    assert requests.get(url + "/upstreams/" + uname, headers=good, timeout=5).status_code == 404, "workspace `default` is another namespace"
    assert requests.get(url + "/no-such-ws/upstreams", headers=good, timeout=5).status_code == 404
    health = requests.get(url + "/team-a/upstreams/%s/health" % uname, headers=good, timeout=5).json()
    assert health["node_id"] == kong_rbac_default.node_ids[0] and len(health["data"]) == 1


def test_dbless_nested_target_writes(kong_dbless):
    admin = AdminClient(kong_dbless.admin_urls[0])
    config = {"_format_version": "3.0", "upstreams": [{"name": "nested", "targets": [{"target": "127.0.0.1:9100"}]}]}
    assert admin.post("/config", json=config).status_code == 201

    def unsupported(verb):
        return {"code": 12, "name": "operation unsupported", "message": "cannot %s 'targets' entities when not using a database" % verb}
    created = admin.post("/upstreams/nested/targets", json={"target": "127.0.0.1:9101"})
    assert created.status_code == 405 and created.json() == unsupported("create")
    deleted = admin.delete("/upstreams/nested/targets/127.0.0.1:9100")
    assert deleted.status_code == 405 and deleted.json() == unsupported("remove")
    for method in ("PATCH", "PUT"):
        resp = admin.request(method, "/upstreams/nested/targets/127.0.0.1:9100", json={"weight": 1})
        assert resp.status_code == 405 and resp.json() == unsupported("update"), method
    # Kong looks the upstream and the target up before its DAO refuses the write
    assert admin.delete("/upstreams/nested/targets/127.0.0.1:9199").status_code == 404
    assert admin.post("/upstreams/none/targets", json={"target": "127.0.0.1:1"}).status_code == 404
    listed = admin.get("/upstreams/nested/targets").json()["data"]
    assert [(t["target"], t["weight"]) for t in listed] == [("127.0.0.1:9100", 100)], "nothing changed"


def test_dbless(kong_dbless):
    admin = AdminClient(kong_dbless.admin_urls[0])
    assert admin.get("/").json()["configuration"]["database"] == "off"
    for method, path, verb, entity, body in (("POST", "/routes", "create", "routes", {"name": "x", "hosts": ["x.test"]}),
                                             ("POST", "/upstreams", "create", "upstreams", {"name": "x"}),
                                             ("PUT", "/services/x", "create or update", "services", {"host": "x.up"}),
                                             ("POST", "/consumers", "create", "consumers", {"username": "x"}),
                                             ("PUT", "/consumers/x", "create or update", "consumers", {})):
        resp = admin.request(method, path, json=body)
        assert resp.status_code == 405, (method, path)
        by = " by '%s'" % ("username" if entity == "consumers" else "name") if method == "PUT" else ""
        assert resp.json() == {"code": 12, "name": "operation unsupported",
                               "message": "cannot %s '%s' entities%s when not using a database" % (verb, entity, by)}
    # real Kong 3.9.3 validates a write before it refuses it (tests/conformance)
    assert admin.post("/upstreams", json={"name": "1.2.3.4"}).status_code == 400
    assert admin.post("/consumers", json={}).status_code == 400
    # real Kong 3.9.3 looks a missing entity up first: PATCH answers 404 (code 6), DELETE 204 (tests/conformance)
    resp = admin.patch("/upstreams/x", json={"name": "x"})
    assert resp.status_code == 404 and resp.json() == {"code": 6, "name": "not found", "fields": {"name": "x"},
                                                       "message": "could not find the entity with '{name=\"x\"}'"}
    assert admin.delete("/upstreams/x").status_code == 204
    config = {"_format_version": "3.0", "upstreams": [{"name": "shop", "targets": [{"target": "127.0.0.1:9000", "weight": 5}],
                                                       "healthchecks": {"passive": {"unhealthy": {"http_failures": 2}}}}],
              "services": [{"name": "shop", "host": "shop", "routes": [{"name": "shop", "hosts": ["shop.test"]}]}]}
    assert admin.post("/config", json=config).status_code == 201
    assert admin.get("/upstreams/shop/targets").json()["data"][0]["weight"] == 5
    patch = admin.patch("/upstreams/shop/targets/127.0.0.1:9000", json={"weight": 1})
    assert patch.status_code == 405 and patch.json()["message"] == "cannot update 'targets' entities when not using a database"
    assert admin.put("/upstreams/shop/targets/127.0.0.1:9000/unhealthy").status_code == 204
    resp = admin.delete("/upstreams/shop")
    assert resp.status_code == 405 and resp.json()["message"] == "cannot remove 'upstreams' entities by 'name' when not using a database"


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
