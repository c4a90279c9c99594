"""The simulator's Admin API against the facts sheet (/work/shared/kong-admin-api.md), over real HTTP."""

import time
import uuid

import pytest

HEALTHCHECK_DEFAULTS = {
    "active": {
        "type": "http", "timeout": 1, "concurrency": 10, "http_path": "/", "https_verify_certificate": True, "headers": None, "https_sni": None,
        "healthy": {"interval": 0, "http_statuses": [200, 302], "successes": 0},
        "unhealthy": {"interval": 0, "http_statuses": [429, 404, 500, 501, 502, 503, 504, 505], "tcp_failures": 0, "timeouts": 0,
                      "http_failures": 0},
    },
    "passive": {
        "type": "http",
        "healthy": {"http_statuses": [200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 306, 307, 308],
                    "successes": 0},
        "unhealthy": {"http_statuses": [429, 500, 503], "tcp_failures": 0, "timeouts": 0, "http_failures": 0},
    },
    "threshold": 0,
}


def _subset(expected, actual):
    if isinstance(expected, dict):
        return all(k in actual and _subset(v, actual[k]) for k, v in expected.items())
    return expected == actual


def test_root_and_status(kong, kong_admin):
    info = kong_admin.get("/").json()
    assert info["version"] == "3.9.1"
    assert str(uuid.UUID(info["node_id"])) == info["node_id"]
    assert info["node_id"] == kong.node_ids[0]
    assert info["configuration"]["database"] == "postgres"
    status = kong_admin.get("/status").json()
    assert status["database"]["reachable"] is True
    assert "total_requests" in status["server"]
    assert kong_admin.post("/").status_code == 405


def test_upstream_defaults(kong_admin, uname):
    resp = kong_admin.post("/upstreams", json={"name": uname})
    assert resp.status_code == 201
    body = resp.json()
    uuid.UUID(body["id"])
    assert body["algorithm"] == "round-robin"
    assert body["hash_on"] == "none" and body["hash_fallback"] == "none"
    assert body["slots"] == 10000
    assert body["tags"] is None
    assert isinstance(body["created_at"], int) and isinstance(body["updated_at"], int)
    assert body["healthchecks"] == HEALTHCHECK_DEFAULTS
    assert kong_admin.get("/upstreams/" + uname).json() == body
    assert kong_admin.get("/upstreams/" + body["id"]).json() == body


@pytest.mark.parametrize("field,value,message", [
    ("slots", 9, "value should be between 10 and 65536"),
    ("slots", 65537, "value should be between 10 and 65536"),
    ("algorithm", "random", "expected one of: consistent-hashing, least-connections, round-robin, latency"),
    ("hash_on", "body", "expected one of: none, consumer, ip, header, cookie, path, query_arg, uri_capture"),
    ("bogus", 1, "unknown field"),
])
def test_upstream_validation(kong_admin, uname, field, value, message):
    resp = kong_admin.post("/upstreams", json={"name": uname, field: value})
    assert resp.status_code == 400
    body = resp.json()
    assert body["code"] == 2 and body["name"] == "schema violation"
    assert body["fields"] == {field: message}
    assert body["message"] == "schema violation (%s: %s)" % (field, message)
    assert kong_admin.get("/upstreams/" + uname).status_code == 404


def test_upstream_name_rules(kong_admin, uname):
    resp = kong_admin.put("/upstreams/1.2.3.4")
    assert resp.status_code == 400
    assert resp.json()["fields"]["name"] == "Invalid name ('1.2.3.4'); no ip addresses allowed"
    resp = kong_admin.post("/upstreams", json={"name": uname + ":80"})
    assert resp.json()["fields"]["name"] == "Invalid name ('%s:80'); no port allowed" % uname
    assert kong_admin.post("/upstreams", json={}).json()["fields"] == {"name": "required field missing"}
    assert kong_admin.post("/upstreams", json={"name": uname}).status_code == 201
    dup = kong_admin.post("/upstreams", json={"name": uname})
    assert dup.status_code == 409
    assert dup.json()["code"] == 5
    assert dup.json()["fields"] == {"name": uname}
    assert dup.json()["message"] == "UNIQUE violation detected on '{name=\"%s\"}'" % uname


def test_upstream_healthchecks_validation_nested(kong_admin, uname):
    resp = kong_admin.post("/upstreams", json={"name": uname, "healthchecks": {"active": {"healthy": {"interval": -1}}}})
    assert resp.status_code == 400
    assert resp.json()["fields"] == {"healthchecks": {"active": {"healthy": {"interval": "value should be between 0 and 65535"}}}}
    ok = kong_admin.post("/upstreams", json={"name": uname, "healthchecks": {"active": {"healthy": {"interval": 5}}}})
    assert ok.status_code == 201
    checks = ok.json()["healthchecks"]
    assert checks["active"]["healthy"] == {"interval": 5, "http_statuses": [200, 302], "successes": 0}
    assert checks["passive"] == HEALTHCHECK_DEFAULTS["passive"]
    patched = kong_admin.patch("/upstreams/" + uname, json={"healthchecks": {"active": {"unhealthy": {"interval": 3}}}}).json()
    assert patched["healthchecks"]["active"]["healthy"]["interval"] == 5
    assert patched["healthchecks"]["active"]["unhealthy"]["interval"] == 3


def test_upstream_put_delete(kong_admin, uname):
    created = kong_admin.put("/upstreams/" + uname, json={"slots": 100})
    assert created.status_code == 200
    assert created.json()["slots"] == 100
    replaced = kong_admin.put("/upstreams/" + uname, json={"tags": ["a"]})
    assert replaced.status_code == 200
    assert replaced.json()["id"] == created.json()["id"]
    assert replaced.json()["slots"] == 10000, "PUT replaces: unspecified fields go back to their defaults"
    assert replaced.json()["created_at"] == created.json()["created_at"]
    assert kong_admin.post("/upstreams/%s/targets" % uname, json={"target": "127.0.0.1:81"}).status_code == 201
    assert kong_admin.delete("/upstreams").status_code == 405
    assert kong_admin.delete("/upstreams/" + uname).status_code == 204
    assert kong_admin.delete("/upstreams/" + uname).status_code == 204
    assert kong_admin.get("/upstreams/" + uname).status_code == 404
    assert kong_admin.get("/upstreams/%s/targets" % uname).status_code == 404
    kong_admin.post("/upstreams", json={"name": uname})
    assert kong_admin.get("/upstreams/%s/targets" % uname).json() == {"data": [], "next": None}
    upstream_id = str(uuid.uuid4())
    assert kong_admin.put("/upstreams/" + upstream_id, json={"name": uname + "-byid"}).json()["id"] == upstream_id


def test_not_found_and_method_errors(kong_admin, uname):
    assert kong_admin.get("/upstreams/" + uname).json() == {"message": "Not found"}
    assert kong_admin.get("/no-such-endpoint/x/y").status_code == 404
    assert kong_admin.get("/targets").status_code == 404
    assert kong_admin.post("/targets", json={"target": "127.0.0.1:1"}).status_code == 404
    resp = kong_admin.post("/upstreams", data="{not json", headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    assert resp.json() == {"message": "Cannot parse JSON body"}


def test_form_and_multipart_bodies(kong_admin, uname):
    resp = kong_admin.post("/upstreams", data={"name": uname, "slots": "20", "tags[]": ["a", "b"], "healthchecks.active.healthy.interval": "7"})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["slots"] == 20 and body["tags"] == ["a", "b"] and body["healthchecks"]["active"]["healthy"]["interval"] == 7
    resp = kong_admin.post("/upstreams/%s/targets" % uname, files={"target": (None, "127.0.0.1:90"), "weight": (None, "7")})
    assert resp.status_code == 201, resp.text
    assert resp.json()["weight"] == 7
    resp = kong_admin.patch("/upstreams/%s/targets/127.0.0.1:90" % uname, data={"weight": "8"})
    assert resp.json()["weight"] == 8


class TestTargets:
    def _upstream(self, kong_admin, uname):
        assert kong_admin.post("/upstreams", json={"name": uname}).status_code == 201
        return "/upstreams/%s/targets" % uname

    @pytest.mark.parametrize("given,stored", [
        ("10.0.0.1", "10.0.0.1:8000"),
        ("10.0.0.01:80", "10.0.0.1:80"),
        ("app.example.com", "app.example.com:8000"),
        ("[::1]:80", "[0000:0000:0000:0000:0000:0000:0000:0001]:80"),
        ("::1", "[0000:0000:0000:0000:0000:0000:0000:0001]:8000"),
    ])
    def test_normalisation(self, kong_admin, uname, given, stored):
        path = self._upstream(kong_admin, uname)
        resp = kong_admin.post(path, json={"target": given})
        assert resp.status_code == 201
        assert resp.json()["target"] == stored
        assert kong_admin.get(path + "/" + given).json()["target"] == stored

    def test_object_and_duplicates(self, kong_admin, uname):
        path = self._upstream(kong_admin, uname)
        upstream_id = kong_admin.get("/upstreams/" + uname).json()["id"]
        target = kong_admin.post(path, json={"target": "127.0.0.1:80"}).json()
        assert target["weight"] == 100 and target["tags"] is None and target["upstream"] == {"id": upstream_id}
        assert isinstance(target["created_at"], float) and round(target["created_at"], 3) == target["created_at"]
        dup = kong_admin.post(path, json={"target": "127.0.0.1:80", "weight": 5})
        assert dup.status_code == 409
        assert dup.json()["code"] == 5
        assert dup.json()["message"] == "UNIQUE violation detected on '{target=\"127.0.0.1:80\",upstream={id=\"%s\"}}'" % upstream_id

    def test_validation_messages(self, kong_admin, uname):
        path = self._upstream(kong_admin, uname)
        assert kong_admin.post(path, json={}).json()["fields"] == {"target": "required field missing"}
        assert kong_admin.post(path, json={"target": "bad host!"}).json()["fields"] == {
            "target": "Invalid target; not a valid hostname or ip address"}
        assert kong_admin.post(path, json={"target": "1.2.3.4:80", "weight": 65536}).json()["fields"] == {
            "weight": "value should be between 0 and 65535"}
        assert kong_admin.post(path, json={"target": "1.2.3.4:80", "weight": -1}).status_code == 400
        assert kong_admin.post(path, json={"target": "1.2.3.4:80", "weight": 0}).status_code == 201

    def test_update_by_id_and_hostport(self, kong_admin, uname):
        path = self._upstream(kong_admin, uname)
        target = kong_admin.post(path, json={"target": "127.0.0.1:80", "tags": ["x"]}).json()
        by_id = kong_admin.patch(path + "/" + target["id"], json={"weight": 5})
        assert by_id.status_code == 200 and by_id.json()["weight"] == 5 and by_id.json()["tags"] == ["x"]
        by_name = kong_admin.put(path + "/127.0.0.1:80", json={"weight": 6})
        assert by_name.status_code == 200
        assert by_name.json()["weight"] == 6 and by_name.json()["tags"] == ["x"], "PUT on a target is a partial update"
        assert by_name.json()["id"] == target["id"]
        assert kong_admin.put(path + "/127.0.0.1:81", json={"weight": 6}).status_code == 404, "PUT is not an upsert"
        assert kong_admin.patch(path + "/" + target["id"], json={"weight": 65536}).status_code == 400
        assert kong_admin.get(path + "/127.0.0.1:80").json()["weight"] == 6
        assert kong_admin.delete(path + "/127.0.0.1:81").status_code == 404
        assert kong_admin.delete(path + "/127.0.0.1:80").status_code == 204
        assert kong_admin.delete(path + "/127.0.0.1:80").status_code == 404
        for method in ("PUT", "PATCH", "DELETE"):
            assert kong_admin.request(method, path, json={"target": "1.1.1.1:1"}).status_code == 405

    def test_target_of_other_upstream_is_not_found(self, kong_admin, uname):
        path = self._upstream(kong_admin, uname)
        other = self._upstream(kong_admin, uname + "-o")
        target = kong_admin.post(other, json={"target": "127.0.0.1:80"}).json()
        assert kong_admin.get(path + "/" + target["id"]).status_code == 404
        assert kong_admin.patch(path + "/" + target["id"], json={"weight": 1}).status_code == 404
        assert kong_admin.put(path + "/" + target["id"] + "/unhealthy").status_code == 404

    def test_listing_newest_first_and_all(self, kong_admin, uname):
        path = self._upstream(kong_admin, uname)
        created = [kong_admin.post(path, json={"target": "127.0.0.1:%d" % p, "weight": p % 2}).json()["target"] for p in range(100, 106)]
        listed = [t["target"] for t in kong_admin.get(path).json()["data"]]
        assert listed == list(reversed(created)), "newest first, weight-0 targets listed too"
        assert [t["target"] for t in kong_admin.get(path + "/all").json()["data"]] == listed

    def test_health_endpoints(self, kong_admin, uname):
        path = self._upstream(kong_admin, uname)
        target = kong_admin.post(path, json={"target": "127.0.0.1:80"}).json()
        # health checks all off (Kong's defaults): no health checker, so Kong refuses to set a health state
        off = kong_admin.put("%s/%s/healthy" % (path, target["id"]))
        assert off.status_code == 400 and off.json() == {"message": "no healthchecker found for %s" % uname}
        assert kong_admin.put("%s/127.0.0.1:99/healthy" % path).status_code == 404, "a missing target is 404 first"
        kong_admin.patch("/upstreams/" + uname, json={"healthchecks": {"passive": {"unhealthy": {"http_failures": 3}}}})
        for verb in ("healthy", "unhealthy"):
            assert kong_admin.put("%s/%s/%s" % (path, target["id"], verb)).status_code == 204
            assert kong_admin.put("%s/127.0.0.1:80/%s" % (path, verb)).status_code == 204
            assert kong_admin.post("%s/127.0.0.1:80/%s" % (path, verb)).status_code == 405
            assert kong_admin.put("%s/127.0.0.1:99/%s" % (path, verb)).status_code == 404
            assert kong_admin.put("/upstreams/%s-nope/targets/127.0.0.1:80/%s" % (uname, verb)).status_code == 404


def test_tags_filtering(kong_admin, uname):
    tag_a, tag_b = uname + "-a", uname + "-b"
    for suffix, tags in (("1", [tag_a]), ("2", [tag_a, tag_b]), ("3", [tag_b])):
        assert kong_admin.post("/upstreams", json={"name": uname + suffix, "tags": tags}).status_code == 201

    def names(query):
        resp = kong_admin.get("/upstreams?tags=" + query)
        assert resp.status_code == 200, resp.text
        return sorted(u["name"] for u in resp.json()["data"])
    assert names("%s,%s" % (tag_a, tag_b)) == [uname + "2"]
    assert names("%s/%s" % (tag_a, tag_b)) == [uname + "1", uname + "2", uname + "3"]
    assert names(tag_a) == [uname + "1", uname + "2"]
    mixed = kong_admin.get("/upstreams?tags=a,b/c")
    assert mixed.status_code == 400
    assert mixed.json()["code"] == 11
    assert mixed.json()["message"] == "invalid option (tags: invalid filter syntax)"
    too_many = kong_admin.get("/upstreams?tags=a,b,c,d,e,f")
    assert too_many.status_code == 400 and too_many.json()["code"] == 11
    assert kong_admin.get("/upstreams?tags=a,b,c,d,e").status_code == 200
    page = kong_admin.get("/upstreams?size=1&tags=%s/%s" % (tag_a, tag_b)).json()
    assert page["next"].startswith("/upstreams?offset=") and "&tags=%s%%2F%s" % (tag_a, tag_b) in page["next"]
    second = kong_admin.get(page["next"]).json()
    # real Kong 3.9.3 keeps size= too: next is "/upstreams?offset=...&tags=...&size=1" (tests/conformance)
    assert len(second["data"]) == 1 and page["next"].endswith("&size=1")
    assert page["data"][0]["name"] not in [u["name"] for u in second["data"]]
    assert kong_admin.get("/upstreams?tags=" + uname + "-none").json() == {"data": [], "next": None}


def test_nested_lists_ignore_tags(kong_admin, uname):
    kong_admin.post("/upstreams", json={"name": uname})
    path = "/upstreams/%s/targets" % uname
    for port in (1, 2, 3):
        kong_admin.post(path, json={"target": "127.0.0.1:%d" % port, "tags": ["t%d" % port]})
    assert len(kong_admin.get(path + "?tags=t1").json()["data"]) == 3
    page = kong_admin.get(path + "?tags=t1&size=2").json()
    assert "tags=" not in page["next"] and page["next"].startswith(path + "?offset=")


def test_pagination(kong_admin, uname):
    kong_admin.post("/upstreams", json={"name": uname})
    path = "/upstreams/%s/targets" % uname
    for port in range(1, 106):
        assert kong_admin.post(path, json={"target": "127.0.0.1:%d" % port}).status_code == 201
    first = kong_admin.get(path).json()
    assert len(first["data"]) == 100, "default size is 100"
    assert first["offset"] and first["next"] == "%s?offset=%s" % (path, requests_quote(first["offset"]))
    rest = kong_admin.get(path, params={"offset": first["offset"]}).json()
    assert len(rest["data"]) == 5 and rest["next"] is None and "offset" not in rest
    seen = [t["target"] for t in first["data"] + rest["data"]]
    assert len(set(seen)) == 105
    collected, url = [], path + "?size=40"
    while url:
        page = kong_admin.get(url).json()
        collected += [t["target"] for t in page["data"]]
        url = page["next"]
    assert collected == seen
    assert len(kong_admin.get(path + "?size=1000").json()["data"]) == 105
    for size in ("0", "1001", "abc", "-1", "1.5"):
        resp = kong_admin.get(path + "?size=" + size)
        assert resp.status_code == 400
        assert resp.json()["code"] == 9 and resp.json()["message"] == "size must be an integer between 1 and 1000"
    bad = kong_admin.get(path + "?offset=%%%%%%")
    assert bad.status_code == 400 and bad.json()["code"] == 7
    assert kong_admin.get("/upstreams?offset=notbase64!").json()["code"] == 7


def requests_quote(value):
    from urllib.parse import quote  # pylint: disable=import-outside-toplevel
    return quote(value, safe="")


class TestServicesRoutes:
    def test_service_defaults_and_url(self, kong_admin, uname):
        svc = kong_admin.post("/services", json={"name": uname, "host": "shop"}).json()
        assert (svc["protocol"], svc["port"], svc["retries"], svc["path"]) == ("http", 80, 5, None)
        assert svc["connect_timeout"] == svc["read_timeout"] == svc["write_timeout"] == 60000
        assert svc["enabled"] is True
        url = kong_admin.post("/services", json={"name": uname + "u", "url": "https://api.example.com:8443/v1"}).json()
        assert (url["protocol"], url["host"], url["port"], url["path"]) == ("https", "api.example.com", 8443, "/v1")
        assert kong_admin.post("/services", json={"name": uname + "x"}).json()["fields"] == {"host": "required field missing"}
        bad = kong_admin.post("/services", json={"name": uname + "y", "host": "a", "protocol": "ftp", "port": 70000}).json()
        assert set(bad["fields"]) == {"protocol", "port"} and bad["message"].startswith("2 schema violations (")

    def test_routes(self, kong_admin, uname):
        svc = kong_admin.post("/services", json={"name": uname, "host": "shop"}).json()
        route = kong_admin.post("/routes", json={"name": uname, "hosts": ["shop.lab.test"], "service": {"id": svc["id"]}}).json()
        assert route["protocols"] == ["http", "https"] and route["strip_path"] is True and route["preserve_host"] is False
        assert route["https_redirect_status_code"] == 426 and route["regex_priority"] == 0
        assert route["service"] == {"id": svc["id"]}
        missing = kong_admin.post("/routes", json={"hosts": ["x.test"], "service": {"id": str(uuid.uuid4())}})
        assert missing.status_code == 400 and missing.json()["code"] == 4
        assert "does not reference an existing 'services' entity" in missing.json()["message"]
        nested = kong_admin.post("/services/%s/routes" % uname, json={"paths": ["/n"]})
        assert nested.status_code == 201 and nested.json()["service"] == {"id": svc["id"]}
        assert len(kong_admin.get("/services/%s/routes" % uname).json()["data"]) == 2
        assert kong_admin.post("/routes", json={"name": uname + "e", "service": {"id": svc["id"]}}).json()["code"] == 2
        assert kong_admin.post("/routes", json={"paths": ["nope"], "service": {"id": svc["id"]}}).json()["fields"] == {
            "paths": ["should start with: / (fixed path) or ~/ (regex path)"]}
        blocked = kong_admin.delete("/services/" + uname)
        assert blocked.status_code == 400 and blocked.json()["code"] == 4
        assert blocked.json()["message"] == "an existing 'routes' entity references this 'services' entity"
        assert kong_admin.get("/routes/%s/service" % uname).json()["id"] == svc["id"]
        assert kong_admin.put("/routes/" + uname, json={"hosts": ["other.test"], "service": {"name": uname}}).status_code == 200
        assert kong_admin.delete("/routes/" + uname).status_code == 204
        assert kong_admin.delete("/routes/" + nested.json()["id"]).status_code == 204
        assert kong_admin.delete("/services/" + uname).status_code == 204
        assert kong_admin.delete("/services/" + uname).status_code == 204


def test_workspaces(kong_admin, uname):
    assert kong_admin.post("/default/upstreams", json={"name": uname}).status_code == 201
    assert kong_admin.get("/upstreams/" + uname).status_code == 200
    assert kong_admin.get("/%s/upstreams" % uname).status_code == 404, "unknown workspace"
    assert kong_admin.post("/workspaces", json={"name": uname}).status_code == 201
    assert kong_admin.get("/%s/upstreams/%s" % (uname, uname)).status_code == 404, "workspaces are separate namespaces"
    assert kong_admin.post("/%s/upstreams" % uname, json={"name": uname}).status_code == 201
    assert kong_admin.post("/%s/upstreams/%s/targets" % (uname, uname), json={"target": "127.0.0.1:1"}).status_code == 201
    assert len(kong_admin.get("/%s/upstreams/%s/targets" % (uname, uname)).json()["data"]) == 1


def test_upstream_hash_and_other_defaults(kong_admin, uname):
    body = kong_admin.post("/upstreams", json={"name": uname}).json()
    for field in ("hash_on_header", "hash_fallback_header", "hash_on_cookie", "hash_on_query_arg", "hash_fallback_query_arg",
                  "hash_on_uri_capture", "hash_fallback_uri_capture", "host_header", "client_certificate"):
        assert field in body and body[field] is None, field
    assert body["hash_on_cookie_path"] == "/"
    assert body["use_srv_name"] is False
    hashed = kong_admin.post("/upstreams", json={"name": uname + "-h", "algorithm": "consistent-hashing", "hash_on": "header",
                                                 "hash_on_header": "X-User", "hash_fallback": "cookie", "hash_on_cookie": "sid",
                                                 "host_header": "shop.internal", "use_srv_name": True})
    assert hashed.status_code == 201, hashed.text
    assert {k: hashed.json()[k] for k in ("hash_on_header", "hash_on_cookie", "host_header", "use_srv_name")} == {
        "hash_on_header": "X-User", "hash_on_cookie": "sid", "host_header": "shop.internal", "use_srv_name": True}


def test_target_timestamps_are_millisecond_floats(kong_admin, uname):
    kong_admin.post("/upstreams", json={"name": uname})
    path = "/upstreams/%s/targets" % uname
    target = kong_admin.post(path, json={"target": "127.0.0.1:80"}).json()
    for field in ("created_at", "updated_at"):
        assert isinstance(target[field], float) and round(target[field], 3) == target[field], field
    time.sleep(0.005)
    patched = kong_admin.patch(path + "/127.0.0.1:80", json={"weight": 1}).json()
    assert isinstance(patched["updated_at"], float) and patched["updated_at"] > target["updated_at"]
    assert patched["created_at"] == target["created_at"]
    upstream = kong_admin.get("/upstreams/" + uname).json()
    assert isinstance(upstream["updated_at"], int), "other entities keep integer seconds"


@pytest.mark.parametrize("method,path", [("DELETE", "/upstreams"), ("POST", "/upstreams/{u}"), ("PATCH", "/upstreams/{u}/targets"),
                                         ("POST", "/upstreams/{u}/targets/127.0.0.1:80/healthy"), ("POST", "/"),
                                         ("PUT", "/upstreams/{u}/health")])
def test_405_body(kong_admin, uname, method, path):
    kong_admin.post("/upstreams", json={"name": uname})
    kong_admin.post("/upstreams/%s/targets" % uname, json={"target": "127.0.0.1:80"})
    resp = kong_admin.request(method, path.format(u=uname), json={})
    assert resp.status_code == 405
    assert resp.json() == {"message": "Method not allowed"}


def test_top_level_pagination_default_size_and_last_page(kong_admin, uname):
    # a workspace of its own: the shared simulator holds other tests' upstreams in `default`
    assert kong_admin.post("/workspaces", json={"name": uname}).status_code == 201
    names = sorted("%s-%03d" % (uname, i) for i in range(105))
    for name in names:
        assert kong_admin.post("/%s/upstreams" % uname, json={"name": name}).status_code == 201
    first = kong_admin.get("/%s/upstreams" % uname).json()
    assert len(first["data"]) == 100, "default size is 100"
    assert first["offset"] and first["next"] == "/upstreams?offset=%s" % requests_quote(first["offset"])
    last = kong_admin.get("/%s/upstreams" % uname, params={"offset": first["offset"]}).json()
    assert len(last["data"]) == 5
    assert "offset" not in last and last["next"] is None, "the last page has no offset and next null"
    assert sorted(u["name"] for u in first["data"] + last["data"]) == names
    exact = kong_admin.get("/%s/upstreams?size=105" % uname).json()
    assert len(exact["data"]) == 105 and exact["next"] is None and "offset" not in exact
