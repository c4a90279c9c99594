# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import copy

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


def _checked_upstream(kong, **checks):
    """The upstream with health checks on (passive tcp_failures by default)."""
    up = copy.deepcopy(UP)
    up["healthchecks"]["passive"]["unhealthy"]["tcp_failures"] = 3
    for path, value in checks.items():
        section, group, field = path.split("__")
        up["healthchecks"][section][group][field] = value
    kong.get(ADMIN + "/upstreams/shop.upstream", json=up)
    return up


def _health(kong, health=None):
    kong.get(ADMIN + HEALTH_PATH, json=health or fixture("health"))


def test_unhealthy_puts_only_when_health_differs(kong, run_module):
    _checked_upstream(kong)
    kong.get(ADMIN + BASE + "/10.0.0.5:8080", json=T)
    _health(kong)
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
    off = copy.deepcopy(fixture("health"))
    off["data"][0]["health"] = "HEALTHCHECKS_OFF"  # Kong's answer for a weight-0 target
    _health(kong, off)
    kong.patch(ADMIN + BASE + "/" + TID, json=dict(T, weight=40))
    kong.put(ADMIN + BASE + "/10.0.0.5:8080/healthy", status=204)
    result = run_module(kong_target, {"upstream": "shop.upstream", "target": "10.0.0.5:8080", "weight": 40,
                                      "state": "healthy"})
    assert result["changed"] is True and result["health_before"] == "HEALTHCHECKS_OFF"
    assert writes(kong) == [("PATCH", BASE + "/" + TID, {"weight": 40}), ("PUT", BASE + "/10.0.0.5:8080/healthy", None)]


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
    _health(kong)
    kong.post(ADMIN + BASE, status=201, json=dict(T, target="10.0.0.9:8080", id="new"))
    kong.put(ADMIN + BASE + "/10.0.0.9:8080/unhealthy", status=204)
    result = run_module(kong_target, {"upstream": "shop.upstream", "target": "10.0.0.9:8080", "state": "unhealthy"})
    assert result["changed"] is True and result["health_before"] is None
    assert writes(kong) == [("POST", BASE, {"target": "10.0.0.9:8080"}), ("PUT", BASE + "/10.0.0.9:8080/unhealthy", None)]


def test_hybrid_control_plane_404_is_explained(kong, run_module):
    _checked_upstream(kong)
    kong.get(ADMIN + BASE + "/10.0.0.5:8080", json=T)
    _health(kong)
    kong.put(ADMIN + BASE + "/10.0.0.5:8080/unhealthy", status=404, json=NOT_FOUND)
    result = run_module(kong_target, {"upstream": "shop.upstream", "target": "10.0.0.5:8080", "state": "unhealthy"})
    assert result["failed"] is True and result["status"] == 404
    assert "not available on a hybrid-mode control plane" in result["msg"]
    assert "point admin_url at a traditional-mode or data-plane node" in result["msg"]
    assert result["kong_error"]["path"] == BASE + "/10.0.0.5:8080/unhealthy"


def test_hybrid_404_after_a_create_reports_the_create(kong, run_module):
    _checked_upstream(kong)
    kong.get(ADMIN + BASE + "/10.0.0.9:8080", status=404, json=NOT_FOUND)
    _health(kong)
    kong.post(ADMIN + BASE, status=201, json=dict(T, target="10.0.0.9:8080", id="new"))
    kong.put(ADMIN + BASE + "/10.0.0.9:8080/healthy", status=404, json=NOT_FOUND)
    result = run_module(kong_target, {"upstream": "shop.upstream", "target": "10.0.0.9:8080", "state": "healthy"})
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
    _health(kong)
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
