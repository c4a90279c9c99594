# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import requests

from ansible_collections.mixedrun.kong.plugins.modules import kong_service

from kong_module_helpers import ADMIN, TOKEN, fixture, writes

SVC = fixture("service")
SID = SVC["id"]


def test_create_with_put_upsert(kong, run_module):
    kong.get(ADMIN + "/services/shop", status=404, json={"message": "Not found"})
    kong.put(ADMIN + "/services/shop", json=dict(SVC, host="shop.upstream", port=80))
    result = run_module(kong_service, {"name": "shop", "host": "shop.upstream", "port": 80, "tags": ["mixedrun-managed"]},
                        diff=True)
    assert result["changed"] is True
    assert writes(kong) == [("PUT", "/services/shop", {"name": "shop", "host": "shop.upstream", "port": 80,
                                                       "tags": ["mixedrun-managed"]})]
    assert result["service"]["id"] == SID
    assert result["diff"]["before"] == {} and result["diff"]["after"]["host"] == "shop.upstream"
    assert [c["method"] for c in result["api_calls"]] == ["GET", "PUT"]


def test_check_mode_create_sends_no_write(kong, run_module):
    kong.get(ADMIN + "/services/shop", status=404, json={"message": "Not found"})
    result = run_module(kong_service, {"name": "shop", "url": "https://shop.upstream/api"}, check_mode=True, diff=True)
    assert result["changed"] is True and writes(kong) == []
    assert result["api_calls"][-1] == {"method": "PUT", "path": "/services/shop", "status": None, "check_mode": True}
    assert result["service"]["protocol"] == "https" and result["service"]["port"] == 443
    assert result["service"]["path"] == "/api"


def test_unchanged_when_given_fields_match(kong, run_module):
    kong.get(ADMIN + "/services/shop", json=SVC)
    result = run_module(kong_service, {"name": "shop", "url": "http://shop.upstream", "tags": ["mixedrun-managed"],
                                       "service_retries": 5, "enabled": True, "retries": 1})
    assert result["changed"] is False and writes(kong) == []
    assert "diff" not in result  # only in diff mode


def test_update_patches_only_differing_fields(kong, run_module):
    kong.get(ADMIN + "/services/shop", json=SVC)
    kong.patch(ADMIN + "/services/" + SID, json=dict(SVC, read_timeout=30000, path="/v2"))
    result = run_module(kong_service, {"name": "shop", "host": "shop.upstream", "read_timeout": 30000, "path": "/v2"},
                        diff=True)
    assert result["changed"] is True
    assert writes(kong) == [("PATCH", "/services/" + SID, {"read_timeout": 30000, "path": "/v2"})]
    assert result["diff"]["before"]["read_timeout"] == 60000 and result["diff"]["after"]["read_timeout"] == 30000


def test_url_without_path_clears_the_path(kong, run_module):
    kong.get(ADMIN + "/services/shop", json=dict(SVC, path="/old"))
    kong.patch(ADMIN + "/services/" + SID, json=SVC)
    run_module(kong_service, {"name": "shop", "url": "http://shop.upstream:80"})
    assert writes(kong) == [("PATCH", "/services/" + SID, {"path": None})]


def test_delete_and_already_absent(kong, run_module):
    kong.get(ADMIN + "/services/shop", json=SVC)
    kong.delete(ADMIN + "/services/" + SID, status=204)
    result = run_module(kong_service, {"name": "shop", "state": "absent"}, diff=True)
    assert result["changed"] is True and result["service"] is None and result["diff"]["before"]["id"] == SID
    kong.get(ADMIN + "/services/gone", status=404, json={"message": "Not found"})
    result = run_module(kong_service, {"name": "gone", "state": "absent"})
    assert result["changed"] is False and len(writes(kong)) == 1


def test_bad_input_fails_before_any_request(kong, run_module):
    cases = [
        ({"name": "shop svc"}, "name 'shop svc' is not a valid Kong name"),
        ({"name": "shop", "url": "shop.upstream:80"}, "url 'shop.upstream:80' must start with one of"),
        ({"name": "shop", "url": "http://:80/"}, "has no host"),
        ({"name": "shop", "url": "http://h:99999/"}, "invalid port"),
        ({"name": "shop", "port": 70000}, "port must be between 0 and 65535"),
        ({"name": "shop", "path": "api"}, "path 'api' must start with '/'"),
        ({"name": "shop", "service_retries": 40000}, "service_retries must be between 0 and 32767"),
        ({"name": "shop", "url": "http://h/", "host": "x"}, "mutually exclusive"),
        ({"name": "shop", "admin_url": "kong:8001"}, "not an http(s) URL"),
    ]
    for args, words in cases:
        result = run_module(kong_service, args)
        assert result["failed"] is True, args
        assert words in result["msg"], (words, result["msg"])
    assert len(kong.calls) == 0


def test_kong_schema_error_is_reported_with_the_field(kong, run_module):
    kong.get(ADMIN + "/services/shop", status=404, json={"message": "Not found"})
    kong.put(ADMIN + "/services/shop", status=400, json=fixture("error_schema_host"))
    result = run_module(kong_service, {"name": "shop", "port": 80})
    assert result["failed"] is True
    assert result["msg"].startswith("Failed to ensure service shop: PUT /services/shop -> HTTP 400 (schema violation")
    assert '"host": "required field missing"' in result["msg"]
    assert result["kong_error"]["fields"] == {"host": "required field missing"}
    assert [c["method"] for c in result["api_calls"]] == ["GET", "PUT"]


def test_unreachable_kong(kong, run_module, no_sleep):
    kong.get(ADMIN + "/services/shop", body=requests.exceptions.ConnectionError("Connection refused"))
    result = run_module(kong_service, {"name": "shop", "host": "h", "retries": 0})
    assert result["failed"] is True and "cannot reach the Kong Admin API at http://kong.test:8001" in result["msg"]


def test_token_never_leaks(kong, run_module):
    kong.get(ADMIN + "/services/shop", status=401, json={"message": "Invalid credentials. Token or User credentials required"})
    result = run_module(kong_service, {"name": "shop", "host": "h", "admin_token": TOKEN}, diff=True)
    assert result["failed"] is True and "admin_token" in result["msg"]
    assert TOKEN not in result.raw
    assert kong.calls[0].request.headers["Kong-Admin-Token"] == TOKEN
    kong.get(ADMIN + "/services/ok", json=dict(SVC, name="ok"))
    kong.patch(ADMIN + "/services/" + SID, json=SVC)
    result = run_module(kong_service, {"name": "ok", "host": "h2", "admin_token": TOKEN,
                                       "headers": {"X-Auth": TOKEN}}, diff=True)
    assert result["changed"] is True and TOKEN not in result.raw


def test_service_retries_is_kongs_field_and_retries_the_clients(kong, run_module, no_sleep):
    kong.get(ADMIN + "/services/shop", json=SVC)
    kong.patch(ADMIN + "/services/" + SID, status=503, json={"message": "busy"})
    kong.patch(ADMIN + "/services/" + SID, json=dict(SVC, retries=1))
    result = run_module(kong_service, {"name": "shop", "service_retries": 1, "retries": 1})
    assert result["changed"] is True
    assert writes(kong) == [("PATCH", "/services/" + SID, {"retries": 1})] * 2  # one client retry after the 503
