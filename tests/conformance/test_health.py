"""``/upstreams/{u}/health`` on a node with and without a balancer, and manual target health."""

import pytest

from .conftest import wait_for

HEALTH_ON = {"passive": {"unhealthy": {"http_failures": 1}}}
HEALTH_STATES = {"HEALTHY", "UNHEALTHY", "HEALTHCHECKS_OFF", "DNS_ERROR"}


def _setup(admin, name, healthchecks=None, targets=("127.0.0.1:9",)):
    body = {"name": name}
    if healthchecks:
        body["healthchecks"] = healthchecks
    assert admin.post("/upstreams", json=body).status_code == 201
    for target in targets:
        weight = 0 if target.endswith(":10") else 100
        assert admin.post("/upstreams/%s/targets" % name, json={"target": target, "weight": weight}).status_code == 201


def _has_balancer(client, name):
    items = client.get("/upstreams/%s/health" % name).json()["data"]
    return items if items and all("health" in item for item in items) else None


@pytest.mark.modes("traditional")
def test_no_health_before_the_balancer_exists(admin, admins, uname):
    """Right after the upstream is created no node has built its balancer: 200, targets without ``health``."""
    _setup(admin, uname, HEALTH_ON)
    for client in (admin, admins[-1]):
        resp = client.get("/upstreams/%s/health" % uname)
        assert resp.status_code == 200
        body = resp.json()
        assert body["node_id"] and body["next"] is None
        assert [item["target"] for item in body["data"]] == ["127.0.0.1:9"]
        assert "health" not in body["data"][0] and "data" not in body["data"][0]
        assert body["data"][0]["weight"] == 100
    resp = admins[-1].get("/upstreams/%s/health" % uname, params={"balancer_health": 1})
    assert resp.status_code == 200 and "data" not in resp.json()
    resp = admins[-1].put("/upstreams/%s/targets/127.0.0.1:9/unhealthy" % uname)
    assert resp.status_code == 400
    assert resp.json() == {"message": "Upstream %s has no balancer" % uname}


@pytest.mark.modes("traditional")
def test_health_shape_with_balancer(admin, uname):
    _setup(admin, uname)
    items, _unused = wait_for(lambda: _has_balancer(admin, uname), 20, 0.1)
    assert items, "the writing node built no balancer within 20 s"
    body = admin.get("/upstreams/%s/health" % uname).json()
    item = body["data"][0]
    assert item["health"] == "HEALTHCHECKS_OFF"
    assert item["data"] == {"host": "127.0.0.1", "port": 9, "dns": "A", "nodeWeight": 100,
                            "weight": {"total": 100, "available": 100, "unavailable": 0},
                            "addresses": [{"ip": "127.0.0.1", "port": 9, "weight": 100, "health": "HEALTHCHECKS_OFF"}]}
    # checks off: there is a balancer but no health checker to set a state in
    resp = admin.put("/upstreams/%s/targets/127.0.0.1:9/unhealthy" % uname)
    assert resp.status_code == 400
    assert resp.json() == {"message": "no healthchecker found for %s" % uname}


@pytest.mark.modes("traditional")
def test_manual_target_health(admin, uname):
    _setup(admin, uname, HEALTH_ON, targets=("127.0.0.1:9", "127.0.0.1:10"))
    assert wait_for(lambda: _has_balancer(admin, uname), 20, 0.1)[0], "the writing node built no balancer within 20 s"
    base = "/upstreams/%s/targets" % uname
    assert admin.post(base + "/127.0.0.1:9/unhealthy").status_code == 405
    assert admin.put(base + "/127.0.0.1:9/unhealthy").status_code == 204
    assert admin.put(base + "/127.0.0.1:11/unhealthy").status_code == 404
    assert admin.put("/upstreams/cf-nope/targets/127.0.0.1:9/unhealthy").status_code == 404
    health = {item["target"]: item for item in admin.get("/upstreams/%s/health" % uname).json()["data"]}
    assert health["127.0.0.1:9"]["health"] == "UNHEALTHY"
    assert health["127.0.0.1:9"]["data"]["weight"] == {"total": 100, "available": 0, "unavailable": 100}
    assert health["127.0.0.1:10"]["health"] == "HEALTHCHECKS_OFF"             # weight 0: never health-checked
    balancer = admin.get("/upstreams/%s/health" % uname, params={"balancer_health": 1}).json()
    assert balancer["data"]["balancer_health"] == "UNHEALTHY" and balancer["data"]["health"] == "UNHEALTHY"
    assert balancer["data"]["details"]["healthy"] is False
    assert balancer["data"]["details"]["weight"] == {"total": 100, "available": 0, "unavailable": 100}
    hosts = {(h["host"], h["port"]) for h in balancer["data"]["details"]["hosts"]}
    assert hosts == {("127.0.0.1", 9), ("127.0.0.1", 10)}
    assert admin.put(base + "/127.0.0.1:9/127.0.0.1:9/healthy").status_code == 204
    health = {item["target"]: item for item in admin.get("/upstreams/%s/health" % uname).json()["data"]}
    assert health["127.0.0.1:9"]["health"] == "HEALTHY"


@pytest.mark.modes("hybrid")
def test_control_plane_health_has_no_balancer_data(admin, uname):
    """A control plane has no balancers: ``/health`` lists targets without ``health``; manual health is not routed."""
    _setup(admin, uname, HEALTH_ON)
    wait_for(lambda: False, 1.5, 0.5)
    body = admin.get("/upstreams/%s/health" % uname).json()
    assert [item["target"] for item in body["data"]] == ["127.0.0.1:9"]
    assert "health" not in body["data"][0]
    assert "data" not in admin.get("/upstreams/%s/health" % uname, params={"balancer_health": 1}).json()
    resp = admin.put("/upstreams/%s/targets/127.0.0.1:9/unhealthy" % uname)
    assert resp.status_code == 404 and resp.json() == {"message": "Not found"}
