# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from ansible_collections.mixedrun.kong.plugins.modules import kong_route

from kong_module_helpers import ADMIN, TOKEN, fixture, writes

SVC = fixture("service")
ROUTE = fixture("route")
RID = ROUTE["id"]


def test_create_resolves_service_name_to_id(kong, run_module):
    kong.get(ADMIN + "/services/shop", json=SVC)
    kong.get(ADMIN + "/routes/shop", status=404, json={"message": "Not found"})
    kong.put(ADMIN + "/routes/shop", json=ROUTE)
    result = run_module(kong_route, {"name": "shop", "service": "shop", "hosts": ["shop.example.com"], "paths": ["/"]})
    assert result["changed"] is True
    assert writes(kong) == [("PUT", "/routes/shop", {"name": "shop", "service": {"id": SVC["id"]},
                                                     "hosts": ["shop.example.com"], "paths": ["/"]})]


def test_unknown_service_fails_clearly_without_writing(kong, run_module):
    kong.get(ADMIN + "/services/nope", status=404, json={"message": "Not found"})
    result = run_module(kong_route, {"name": "shop", "service": "nope", "hosts": ["a.example"]})
    assert result["failed"] is True
    assert "service 'nope' does not exist" in result["msg"] and "kong_service" in result["msg"]
    assert writes(kong) == [] and len(kong.calls) == 1


def test_service_by_id_and_reordered_lists_are_no_change(kong, run_module):
    kong.get(ADMIN + "/services/" + SVC["id"], json=SVC)
    kong.get(ADMIN + "/routes/shop", json=dict(ROUTE, methods=["POST", "GET"]))
    result = run_module(kong_route, {"name": "shop", "service": SVC["id"], "hosts": ["shop.example.com"],
                                     "protocols": ["https", "http"], "methods": ["GET", "POST"], "strip_path": False,
                                     "preserve_host": True, "tags": []}, diff=True)
    assert result["changed"] is False and writes(kong) == []
    assert result["diff"]["before"] == result["diff"]["after"]


def test_update_moves_route_to_another_service_and_normalises_headers(kong, run_module):
    other = dict(SVC, id="11111111-2222-3333-4444-555555555555", name="shop-v2")
    kong.get(ADMIN + "/services/shop-v2", json=other)
    kong.get(ADMIN + "/routes/shop", json=ROUTE)
    kong.patch(ADMIN + "/routes/" + RID, json=dict(ROUTE, service={"id": other["id"]}))
    result = run_module(kong_route, {"name": "shop", "service": "shop-v2", "headers": {"X-Canary": "yes"}},
                        check_mode=False)
    assert result["changed"] is True
    assert writes(kong) == [("PATCH", "/routes/" + RID, {"service": {"id": other["id"]},
                                                         "headers": {"X-Canary": ["yes"]}})]


def test_check_mode_update(kong, run_module):
    kong.get(ADMIN + "/routes/shop", json=ROUTE)
    result = run_module(kong_route, {"name": "shop", "hosts": ["new.example.com"]}, check_mode=True, diff=True)
    assert result["changed"] is True and writes(kong) == []
    assert result["route"]["hosts"] == ["new.example.com"] and result["diff"]["before"]["hosts"] == ["shop.example.com"]


def test_absent_does_not_need_the_service(kong, run_module):
    kong.get(ADMIN + "/routes/shop", json=ROUTE)
    kong.delete(ADMIN + "/routes/" + RID, status=204)
    result = run_module(kong_route, {"name": "shop", "service": "whatever", "state": "absent"})
    assert result["changed"] is True and writes(kong) == [("DELETE", "/routes/" + RID, None)]


def test_bad_paths_and_names(kong, run_module):
    assert "paths entry 'api' must start with '/'" in run_module(kong_route, {"name": "r", "paths": ["api"]})["msg"]
    assert "not a valid Kong name" in run_module(kong_route, {"name": "r/1"})["msg"]
    assert len(kong.calls) == 0


def test_dbless_kong_and_conflict_errors(kong, run_module):
    kong.get(ADMIN + "/routes/shop", status=404, json={"message": "Not found"})
    kong.put(ADMIN + "/routes/shop", status=405, json=fixture("error_dbless"))
    result = run_module(kong_route, {"name": "shop", "hosts": ["a.example"], "admin_token": TOKEN})
    assert result["failed"] is True and "DB-less" in result["msg"] and "control plane" in result["msg"]
    assert result["msg"].startswith("Failed to ensure route shop: PUT /routes/shop -> HTTP 405")
    assert TOKEN not in result.raw
    kong.get(ADMIN + "/routes/dup", status=404, json={"message": "Not found"})
    kong.put(ADMIN + "/routes/dup", status=409, json={"code": 5, "name": "unique constraint violation",
                                                      "message": "UNIQUE violation detected on '{name=\"dup\"}'",
                                                      "fields": {"name": "dup"}})
    result = run_module(kong_route, {"name": "dup", "hosts": ["a.example"]})
    assert "HTTP 409" in result["msg"] and "same unique key (name=dup)" in result["msg"] and "re-run the task" in result["msg"]
