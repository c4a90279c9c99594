# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import copy

import pytest

from ansible_collections.mixedrun.kong.plugins.module_utils import _entities
from ansible_collections.mixedrun.kong.plugins.modules import kong_target

from kong_module_helpers import ADMIN, TOKEN, fixture, writes

UP = fixture("upstream")
UID = UP["id"]
T = fixture("target")
TID = T["id"]
BASE = "/upstreams/%s/targets" % UID
NOT_FOUND = {"message": "Not found"}
HEALTH_PATH = "/upstreams/%s/health" % UID


def _upstream(kong):
    kong.get(ADMIN + "/upstreams/shop.upstream", json=UP)


def test_create_posts_the_normalised_target(kong, run_module):
    _upstream(kong)
    kong.get(ADMIN + BASE + "/10.0.0.5:8000", status=404, json=NOT_FOUND)
    kong.post(ADMIN + BASE, status=201, json=dict(T, target="10.0.0.5:8000", weight=0))
    result = run_module(kong_target, {"upstream": "shop.upstream", "target": "010.0.0.5", "weight": 0}, diff=True)
    assert result["changed"] is True
    assert writes(kong) == [("POST", BASE, {"target": "10.0.0.5:8000", "weight": 0})]
    assert result["diff"]["before"] == {} and result["diff"]["after"]["weight"] == 0
    assert result["upstream"] == {"id": UID, "name": "shop.upstream"}


def test_weight_change_is_a_patch_by_id(kong, run_module):
    _upstream(kong)
    kong.get(ADMIN + BASE + "/10.0.0.5:8080", json=T)
    kong.patch(ADMIN + BASE + "/" + TID, json=dict(T, weight=30))
    result = run_module(kong_target, {"upstream": "shop.upstream", "target": "10.0.0.5:8080", "weight": 30,
                                      "tags": ["mixedrun-kind:vm", "mixedrun-managed"]})
    assert result["changed"] is True
    assert writes(kong) == [("PATCH", BASE + "/" + TID, {"weight": 30})]
    assert result["target"]["weight"] == 30


def test_idempotent(kong, run_module):
    _upstream(kong)
    kong.get(ADMIN + BASE + "/10.0.0.5:8080", json=T)
    result = run_module(kong_target, {"upstream": "shop.upstream", "target": "10.0.0.5:8080", "weight": 100})
    assert result["changed"] is False and writes(kong) == []


def test_check_mode(kong, run_module):
    _upstream(kong)
    kong.get(ADMIN + BASE + "/10.0.0.5:8080", json=T)
    result = run_module(kong_target, {"upstream": "shop.upstream", "target": "10.0.0.5:8080", "weight": 1},
                        check_mode=True, diff=True)
    assert result["changed"] is True and writes(kong) == []
    assert result["diff"]["after"]["weight"] == 1 and result["diff"]["before"]["weight"] == 100
    assert result["api_calls"][-1] == {"method": "PATCH", "path": BASE + "/" + TID, "status": None, "check_mode": True}


def test_ipv6_target_is_looked_up_in_kongs_form(kong, run_module):
    _upstream(kong)
    stored = "[0000:0000:0000:0000:0000:0000:0000:0001]:80"
    kong.get(ADMIN + BASE + "/" + stored, json=dict(T, target=stored))
    result = run_module(kong_target, {"upstream": "shop.upstream", "target": "[::1]:80"})
    assert result["changed"] is False


def test_unknown_upstream_is_named(kong, run_module):
    kong.get(ADMIN + "/upstreams/nope.upstream", status=404, json=NOT_FOUND)
    result = run_module(kong_target, {"upstream": "nope.upstream", "target": "10.0.0.5:80"})
    assert result["failed"] is True
    assert "upstream 'nope.upstream' does not exist" in result["msg"] and "kong_upstream" in result["msg"]
    assert writes(kong) == []


def test_bad_weight_and_target_fail_before_any_call(kong, run_module):
    result = run_module(kong_target, {"upstream": "u", "target": "10.0.0.5:80", "weight": 65536})
    assert "weight must be between 0 and 65535" in result["msg"]
    result = run_module(kong_target, {"upstream": "u", "target": "10.0.0.5:80", "weight": -1})
    assert "weight must be between 0 and 65535" in result["msg"]
    result = run_module(kong_target, {"upstream": "u", "target": "bad host:80"})
    assert result["msg"].startswith("Failed to ensure target bad host:80 of upstream u: target: invalid hostname")
    result = run_module(kong_target, {"upstream": "u", "target": "10.0.0.300"})
    assert "0 to 255" in result["msg"]
    assert len(kong.calls) == 0


def test_absent_deletes_by_id_and_is_idempotent(kong, run_module):
    _upstream(kong)
    kong.get(ADMIN + BASE + "/10.0.0.5:8080", json=T)
    kong.delete(ADMIN + BASE + "/" + TID, status=204)
    assert run_module(kong_target, {"upstream": "shop.upstream", "target": "10.0.0.5:8080", "state": "absent"})["changed"]
    kong.get(ADMIN + BASE + "/10.0.0.6:8080", status=404, json=NOT_FOUND)
    result = run_module(kong_target, {"upstream": "shop.upstream", "target": "10.0.0.6:8080", "state": "absent"})
    assert result["changed"] is False and result["target"] is None
    assert writes(kong) == [("DELETE", BASE + "/" + TID, None)]


def _checked_upstream(kong, role="traditional", **checks):
    """The upstream with health checks on (passive tcp_failures by default)."""
    up = copy.deepcopy(UP)
    up["healthchecks"]["passive"]["unhealthy"]["tcp_failures"] = 3
    for path, value in checks.items():
        section, group, field = path.split("__")
        up["healthchecks"][section][group][field] = value
    kong.get(ADMIN + "/upstreams/shop.upstream", json=up)
    kong.get(ADMIN + "/", json={"configuration": {"role": role}, "version": "3.9.3"})
    return up


@pytest.fixture(autouse=True)
def quick_settle(monkeypatch):
    """The health settle loop polls every 10 ms and gives up after 1 s here."""
    monkeypatch.setattr(_entities, "HEALTH_SETTLE_TIMEOUT", 1.0)
    monkeypatch.setattr(_entities, "HEALTH_SETTLE_STEP", 0.01)


def _health(kong, health=None):
    kong.get(ADMIN + HEALTH_PATH, json=health or fixture("health"))


def _balancer(health="HEALTHY", weight=100, target="10.0.0.5:8080"):
    """/health as one node's balancer reports it: ``health`` None = no balancer for the upstream yet (the target is
    listed without health and data), else the target with that health and balancer weight."""
    body = copy.deepcopy(fixture("health"))
    found = [i for i in body["data"] if i["target"] == target]
    item = found[0] if found else dict(copy.deepcopy(body["data"][0]), target=target)
    if not found:
        body["data"].append(item)
    if health is None:
        del item["health"], item["data"]
    else:
        item["health"] = health
        item["data"]["nodeWeight"] = item["data"]["weight"]["total"] = weight
        item["data"]["addresses"][0].update(weight=weight, health=health)
    return body


def _health_body():
    return copy.deepcopy(fixture("health"))


def _health_sequence(kong, *bodies):
    """GET /health answers these in order (the last one repeats)."""
    for body in bodies:
        _health(kong, body)


def test_unhealthy_puts_only_when_health_differs(kong, run_module):
    _checked_upstream(kong)
    kong.get(ADMIN + BASE + "/10.0.0.5:8080", json=T)
    _health_sequence(kong, _balancer("HEALTHY"), _balancer("HEALTHY"), _balancer("UNHEALTHY"))
    kong.put(ADMIN + BASE + "/10.0.0.5:8080/unhealthy", status=204)
    result = run_module(kong_target, {"upstream": "shop.upstream", "target": "10.0.0.5:8080", "state": "unhealthy"})
    assert result["changed"] is True and result["health_before"] == "HEALTHY"
    assert writes(kong) == [("PUT", BASE + "/10.0.0.5:8080/unhealthy", None)]
    # 10.0.1.7:8080 is already UNHEALTHY in the fixture
    kong.get(ADMIN + BASE + "/10.0.1.7:8080", json=dict(T, target="10.0.1.7:8080", id="other"))
    result = run_module(kong_target, {"upstream": "shop.upstream", "target": "10.0.1.7:8080", "state": "unhealthy"})
    assert result["changed"] is False and len(writes(kong)) == 1
    assert result["health_before"] == "UNHEALTHY"


def test_health_settles_with_active_checks_only(kong, run_module):
    _checked_upstream(kong, passive__unhealthy__tcp_failures=0, active__healthy__interval=5)
    kong.get(ADMIN + BASE + "/10.0.0.5:8080", json=T)
    _health(kong)
    result = run_module(kong_target, {"upstream": "shop.upstream", "target": "10.0.0.5:8080", "state": "healthy"})
    assert result["changed"] is False and writes(kong) == []


def test_health_with_checks_off_fails_before_any_write(kong, run_module):
    _upstream(kong)  # Kong's defaults: no active interval, no passive threshold
    kong.get(ADMIN + BASE + "/10.0.0.5:8080", json=T)
    off = copy.deepcopy(fixture("health"))
    for item in off["data"]:
        item["health"] = "HEALTHCHECKS_OFF"
    _health(kong, off)
    for state in ("healthy", "unhealthy"):
        result = run_module(kong_target, {"upstream": "shop.upstream", "target": "10.0.0.5:8080", "weight": 50,
                                          "state": state})
        assert result["failed"] is True and result.get("changed") is not True
        assert "upstream shop.upstream has no health checks enabled" in result["msg"]
        assert "HEALTHCHECKS_OFF" in result["msg"] and "kong_upstream healthchecks" in result["msg"]
        assert "weight=0" in result["msg"]
    assert writes(kong) == []


def test_health_of_a_weight_0_target_fails_before_any_write(kong, run_module):
    _checked_upstream(kong)
    kong.get(ADMIN + BASE + "/10.0.0.5:8080", json=dict(T, weight=0))
    _health(kong)
    result = run_module(kong_target, {"upstream": "shop.upstream", "target": "10.0.0.5:8080", "state": "unhealthy"})
    assert result["failed"] is True and "has weight 0" in result["msg"] and "weight above 0" in result["msg"]
    # a weight of 0 asked in the same task is refused too (nothing is PATCHed first)
    kong.get(ADMIN + BASE + "/10.0.0.6:8080", json=dict(T, target="10.0.0.6:8080", weight=10))
    result = run_module(kong_target, {"upstream": "shop.upstream", "target": "10.0.0.6:8080", "weight": 0,
                                      "state": "healthy"})
    assert result["failed"] is True and "has weight 0" in result["msg"]
    assert writes(kong) == []


def test_reweight_from_0_and_mark_healthy(kong, run_module):
    _checked_upstream(kong)
    kong.get(ADMIN + BASE + "/10.0.0.5:8080", json=dict(T, weight=0))
    # Kong's answer for a weight-0 target, then the balancer rebuilt with weight 40 (HEALTHY is its start state: the
    # balancer already reports what was asked, so nothing more is PUT)
    _health_sequence(kong, _balancer("HEALTHCHECKS_OFF", 0), _balancer("HEALTHCHECKS_OFF", 0), _balancer("HEALTHY", 40))
    kong.patch(ADMIN + BASE + "/" + TID, json=dict(T, weight=40))
    kong.put(ADMIN + BASE + "/10.0.0.5:8080/unhealthy", status=204)
    result = run_module(kong_target, {"upstream": "shop.upstream", "target": "10.0.0.5:8080", "weight": 40,
                                      "state": "healthy"})
    assert result["changed"] is True and result["health_before"] == "HEALTHCHECKS_OFF"
    assert writes(kong) == [("PATCH", BASE + "/" + TID, {"weight": 40})]


def test_health_waits_for_the_balancer_and_repeats_a_lost_health(kong, run_module, monkeypatch):
    """Real Kong 3.9: right after an upstream or target write the node has no balancer (targets listed without
    health; PUT .../unhealthy answers 400 "has no balancer"), and a balancer rebuilt after the PUT starts a new
    health checker that forgot it. The task waits for the balancer, repeats the PUT and reads the health back."""
    monkeypatch.setattr(_entities, "HEALTH_SETTLE_STEP", 0.01)
    _checked_upstream(kong)
    kong.get(ADMIN + BASE + "/10.0.0.5:8080", json=dict(T, weight=0))
    kong.patch(ADMIN + BASE + "/" + TID, json=dict(T, weight=40))
    _health_sequence(kong, _balancer("HEALTHCHECKS_OFF", 0),        # before
                     _balancer(None), _balancer("HEALTHY", 100),      # no balancer; the old weight: not yet
                     _balancer("HEALTHY", 40),                        # ready: PUT -> 400 no balancer (rebuilding)
                     _balancer("HEALTHY", 40),                        # PUT -> 204, but a rebuild forgot it
                     _balancer("HEALTHY", 40),                        # PUT again -> 204
                     _balancer("UNHEALTHY", 40))
    kong.put(ADMIN + BASE + "/10.0.0.5:8080/unhealthy", status=400, json={"message": "Upstream shop.upstream has no balancer"})
    kong.put(ADMIN + BASE + "/10.0.0.5:8080/unhealthy", status=204)
    result = run_module(kong_target, {"upstream": "shop.upstream", "target": "10.0.0.5:8080", "weight": 40,
                                      "state": "unhealthy"})
    assert result.get("failed") is not True, result["msg"]
    assert result["changed"] is True and result["health_settle_seconds"] >= 0
    assert writes(kong) == [("PATCH", BASE + "/" + TID, {"weight": 40})] + [("PUT", BASE + "/10.0.0.5:8080/unhealthy", None)] * 3


def test_health_that_never_settles_fails_naming_what_the_node_reports(kong, run_module, monkeypatch):
    monkeypatch.setattr(_entities, "HEALTH_SETTLE_TIMEOUT", 0.2)
    monkeypatch.setattr(_entities, "HEALTH_SETTLE_STEP", 0.01)
    _checked_upstream(kong)
    kong.get(ADMIN + BASE + "/10.0.0.5:8080", json=T)
    _health_sequence(kong, _balancer(None))
    result = run_module(kong_target, {"upstream": "shop.upstream", "target": "10.0.0.5:8080", "state": "unhealthy"})
    assert result["failed"] is True
    assert "balancer did not settle within 0 s" in result["msg"] and "health none (no balancer yet)" in result["msg"]
    assert writes(kong) == []


def test_health_of_an_unresolved_target_fails(kong, run_module):
    _checked_upstream(kong)
    kong.get(ADMIN + BASE + "/10.0.0.5:8080", json=T)
    dns = copy.deepcopy(fixture("health"))
    dns["data"][0]["health"] = "DNS_ERROR"
    _health(kong, dns)
    result = run_module(kong_target, {"upstream": "shop.upstream", "target": "10.0.0.5:8080", "state": "healthy"})
    assert result["failed"] is True and "DNS_ERROR" in result["msg"] and writes(kong) == []


def test_new_target_is_created_then_marked(kong, run_module):
    _checked_upstream(kong)
    kong.get(ADMIN + BASE + "/10.0.0.9:8080", status=404, json=NOT_FOUND)
    _health_sequence(kong, _health_body(), _balancer(None, target="10.0.0.9:8080"), _balancer("HEALTHY", target="10.0.0.9:8080"),
                     _balancer("UNHEALTHY", target="10.0.0.9:8080"))
    kong.post(ADMIN + BASE, status=201, json=dict(T, target="10.0.0.9:8080", id="new"))
    kong.put(ADMIN + BASE + "/10.0.0.9:8080/unhealthy", status=204)
    result = run_module(kong_target, {"upstream": "shop.upstream", "target": "10.0.0.9:8080", "state": "unhealthy"})
    assert result["changed"] is True and result["health_before"] is None
    assert writes(kong) == [("POST", BASE, {"target": "10.0.0.9:8080"}), ("PUT", BASE + "/10.0.0.9:8080/unhealthy", None)]


def test_a_hybrid_control_plane_is_refused_before_any_write(kong, run_module):
    """Kong 3.9 control plane: /health lists targets without health, the health calls answer 404."""
    _checked_upstream(kong, role="control_plane")
    kong.get(ADMIN + BASE + "/10.0.0.5:8080", json=T)
    _health(kong, _balancer(None))
    result = run_module(kong_target, {"upstream": "shop.upstream", "target": "10.0.0.5:8080", "weight": 5, "state": "unhealthy"})
    assert result["failed"] is True and result.get("changed") is not True and writes(kong) == []
    assert "admin_url is a hybrid-mode control plane, which runs no balancer" in result["msg"]
    assert "data planes have no Admin API" in result["msg"] and "nothing was changed" in result["msg"]


def test_health_route_404_is_explained(kong, run_module):
    _checked_upstream(kong, role=None)          # a node that does not say its role
    kong.get(ADMIN + BASE + "/10.0.0.5:8080", json=T)
    _health(kong, _balancer("HEALTHY"))
    kong.put(ADMIN + BASE + "/10.0.0.5:8080/unhealthy", status=404, json=NOT_FOUND)
    result = run_module(kong_target, {"upstream": "shop.upstream", "target": "10.0.0.5:8080", "state": "unhealthy"})
    assert result["failed"] is True and result["status"] == 404
    assert "not available on a hybrid-mode control plane" in result["msg"]
    assert "point admin_url at a traditional-mode node to set it by hand" in result["msg"]
    assert result["kong_error"]["path"] == BASE + "/10.0.0.5:8080/unhealthy"


def test_health_404_after_a_create_reports_the_create(kong, run_module):
    _checked_upstream(kong, role=None)
    kong.get(ADMIN + BASE + "/10.0.0.9:8080", status=404, json=NOT_FOUND)
    _health_sequence(kong, _health_body(), _balancer("HEALTHY", target="10.0.0.9:8080"))
    kong.post(ADMIN + BASE, status=201, json=dict(T, target="10.0.0.9:8080", id="new"))
    kong.put(ADMIN + BASE + "/10.0.0.9:8080/unhealthy", status=404, json=NOT_FOUND)
    result = run_module(kong_target, {"upstream": "shop.upstream", "target": "10.0.0.9:8080", "state": "unhealthy"})
    assert result["failed"] is True and result["changed"] is True and result["target"]["id"] == "new"
    assert "hybrid-mode control plane" in result["msg"]


def test_health_unavailable_on_the_node_fails_before_any_write(kong, no_sleep, run_module):
    _checked_upstream(kong)
    kong.get(ADMIN + BASE + "/10.0.0.9:8080", status=404, json=NOT_FOUND)
    kong.get(ADMIN + HEALTH_PATH, status=500, json={"message": "An unexpected error occurred"})
    result = run_module(kong_target, {"upstream": "shop.upstream", "target": "10.0.0.9:8080", "state": "healthy"})
    assert result["failed"] is True and result["status"] == 500 and writes(kong) == []
    assert "hybrid-mode control plane runs no balancer" in result["msg"]


def test_kong_refusing_the_health_call_is_explained(kong, run_module):
    _checked_upstream(kong)
    kong.get(ADMIN + BASE + "/10.0.0.5:8080", json=T)
    _health(kong, _balancer("HEALTHY"))
    kong.put(ADMIN + BASE + "/10.0.0.5:8080/unhealthy", status=400,
             json={"message": "no healthchecker found for shop.upstream"})
    result = run_module(kong_target, {"upstream": "shop.upstream", "target": "10.0.0.5:8080", "state": "unhealthy"})
    assert result["failed"] is True and "no healthchecker found for shop.upstream" in result["msg"]
    assert "health checks enabled" in result["msg"]


def test_duplicate_post_409_is_reported(kong, run_module):
    _upstream(kong)
    kong.get(ADMIN + BASE + "/10.0.0.5:8080", status=404, json=NOT_FOUND)
    kong.post(ADMIN + BASE, status=409, json=fixture("error_unique_target"))
    result = run_module(kong_target, {"upstream": "shop.upstream", "target": "10.0.0.5:8080", "admin_token": TOKEN})
    assert result["failed"] is True and "HTTP 409" in result["msg"] and "UNIQUE violation" in result["msg"]
    assert result["kong_error"]["code"] == 5 and TOKEN not in result.raw
    assert "another run or another tool created it" in result["msg"] and "re-run the task" in result["msg"]
    assert 'target=10.0.0.5:8080' in result["msg"]
