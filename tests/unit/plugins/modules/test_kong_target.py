# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from ansible_collections.mixedrun.kong.plugins.modules import kong_target

from kong_module_helpers import ADMIN, TOKEN, fixture, writes

UP = fixture("upstream")
UID = UP["id"]
T = fixture("target")
TID = T["id"]
BASE = "/upstreams/%s/targets" % UID
NOT_FOUND = {"message": "Not found"}


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


def test_unhealthy_puts_only_when_health_differs(kong, run_module):
    _upstream(kong)
    kong.get(ADMIN + BASE + "/10.0.0.5:8080", json=T)
    kong.get(ADMIN + "/upstreams/%s/health" % UID, json=fixture("health"))
    kong.put(ADMIN + BASE + "/10.0.0.5:8080/unhealthy", status=204)
    result = run_module(kong_target, {"upstream": "shop.upstream", "target": "10.0.0.5:8080", "state": "unhealthy"})
    assert result["changed"] is True and result["health_before"] == "HEALTHY"
    assert writes(kong) == [("PUT", BASE + "/10.0.0.5:8080/unhealthy", None)]
    # 10.0.1.7:8080 is already UNHEALTHY in the fixture
    kong.get(ADMIN + BASE + "/10.0.1.7:8080", json=dict(T, target="10.0.1.7:8080", id="other"))
    result = run_module(kong_target, {"upstream": "shop.upstream", "target": "10.0.1.7:8080", "state": "unhealthy"})
    assert result["changed"] is False and len(writes(kong)) == 1


def test_duplicate_post_409_is_reported(kong, run_module):
    _upstream(kong)
    kong.get(ADMIN + BASE + "/10.0.0.5:8080", status=404, json=NOT_FOUND)
    kong.post(ADMIN + BASE, status=409, json=fixture("error_unique_target"))
    result = run_module(kong_target, {"upstream": "shop.upstream", "target": "10.0.0.5:8080", "admin_token": TOKEN})
    assert result["failed"] is True and "HTTP 409" in result["msg"] and "UNIQUE violation" in result["msg"]
    assert result["kong_error"]["code"] == 5 and TOKEN not in result.raw
