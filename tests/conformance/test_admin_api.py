"""Admin API statuses, bodies and error codes; pagination; tags; upsert by name; the targets endpoints."""

import pytest

WRITES = ("traditional", "hybrid")          # modes whose Admin API takes writes (hybrid: the control plane)
ALL = ("traditional", "hybrid", "dbless")
JSON = {"Content-Type": "application/json"}


def _upstream(admin, name, **fields):
    resp = admin.post("/upstreams", json=dict(fields, name=name))
    assert resp.status_code == 201, resp.text
    return resp.json()


@pytest.mark.modes(*ALL)
def test_root_names_version_and_node(admin):
    resp = admin.get("/")
    assert resp.status_code == 200
    body = resp.json()
    assert body["version"].startswith("3.")
    assert body["node_id"] and body["configuration"]["role"] in ("traditional", "control_plane")


@pytest.mark.modes(*ALL)
@pytest.mark.parametrize("path", ["/nonexistent", "/upstreams/cf-does-not-exist", "/targets", "/upstreams/cf-does-not-exist/targets"])
def test_not_found_shape(admin, path):
    resp = admin.get(path)
    assert resp.status_code == 404
    assert resp.json() == {"message": "Not found"}


@pytest.mark.modes(*ALL)
def test_method_not_allowed_shape(admin):
    resp = admin.delete("/upstreams")
    assert resp.status_code == 405
    assert resp.json() == {"message": "Method not allowed"}


@pytest.mark.modes(*WRITES)
def test_bad_json_body(admin):
    resp = admin.post("/upstreams", data="{", headers=JSON)
    assert resp.status_code == 400
    assert resp.json() == {"message": "Cannot parse JSON body"}


@pytest.mark.modes(*WRITES)
def test_schema_violation_body(admin):
    resp = admin.post("/upstreams", json={"name": "1.2.3.4"})
    assert resp.status_code == 400
    assert resp.json() == {"code": 2, "name": "schema violation",
                           "message": "schema violation (name: Invalid name ('1.2.3.4'); no ip addresses allowed)",
                           "fields": {"name": "Invalid name ('1.2.3.4'); no ip addresses allowed"}}
    body = admin.post("/upstreams", json={"name": "cf-x:80"}).json()
    assert body["fields"] == {"name": "Invalid name ('cf-x:80'); no port allowed"}
    assert admin.post("/upstreams", json={}).json()["fields"] == {"name": "required field missing"}
    body = admin.post("/upstreams", json={"name": "cf-unknown-field", "bogus": 1}).json()
    assert (body["code"], body["fields"]) == (2, {"bogus": "unknown field"})


@pytest.mark.modes(*WRITES)
def test_unique_violation_body(admin, uname):
    _upstream(admin, uname)
    resp = admin.post("/upstreams", json={"name": uname})
    assert resp.status_code == 409
    assert resp.json() == {"code": 5, "name": "unique constraint violation", "fields": {"name": uname},
                           "message": "UNIQUE violation detected on '{name=\"%s\"}'" % uname}


@pytest.mark.modes(*WRITES)
def test_delete_is_204_also_when_missing(admin, uname):
    _upstream(admin, uname)
    assert admin.delete("/upstreams/" + uname).status_code == 204
    assert admin.delete("/upstreams/" + uname).status_code == 204
    assert admin.get("/upstreams/" + uname).status_code == 404


@pytest.mark.modes(*WRITES)
def test_patch_missing_and_taken_id_bodies(admin, uname):
    """PATCH of a missing entity: 404 code 6 (by name or by primary key); POST with a taken id: 400 code 3."""
    missing = "00000000-0000-4000-8000-0000000000cf"
    resp = admin.patch("/upstreams/" + uname, json={"slots": 20})
    assert resp.status_code == 404
    assert resp.json() == {"code": 6, "name": "not found", "fields": {"name": uname},
                           "message": "could not find the entity with '{name=\"%s\"}'" % uname}
    resp = admin.patch("/upstreams/" + missing, json={"slots": 20})
    assert resp.status_code == 404
    assert resp.json() == {"code": 6, "name": "not found", "fields": {"id": missing},
                           "message": "could not find the entity with primary key '{id=\"%s\"}'" % missing}
    created = _upstream(admin, uname)
    resp = admin.post("/upstreams", json={"name": uname + "-2", "id": created["id"]})
    assert resp.status_code == 400
    assert resp.json() == {"code": 3, "name": "primary key violation", "fields": {"id": created["id"]},
                           "message": "primary key violation on key '{id=\"%s\"}'" % created["id"]}


@pytest.mark.modes(*WRITES)
def test_put_upserts_by_name_and_replaces(admin, uname):
    resp = admin.put("/upstreams/" + uname, json={"algorithm": "least-connections", "tags": ["cf"]})
    assert resp.status_code == 200, resp.text
    created = resp.json()
    assert (created["name"], created["algorithm"], created["tags"]) == (uname, "least-connections", ["cf"])
    # a second PUT replaces the whole entity (defaults come back) and keeps the id; the URL's name wins over the body's
    resp = admin.put("/upstreams/" + uname, json={"name": "cf-other-name"})
    assert resp.status_code == 200
    replaced = resp.json()
    assert (replaced["id"], replaced["name"], replaced["algorithm"], replaced["tags"]) == (created["id"], uname, "round-robin", None)
    assert admin.get("/upstreams/cf-other-name").status_code == 404


@pytest.mark.modes(*WRITES)
def test_pagination_size_offset_next(admin, uname):
    for i in range(5):
        _upstream(admin, "%s-%d" % (uname, i), tags=[uname])
    resp = admin.get("/upstreams", params={"tags": uname, "size": 2})
    assert resp.status_code == 200
    page = resp.json()
    names = [u["name"] for u in page["data"]]
    assert len(names) == 2 and isinstance(page["offset"], str)
    assert page["next"].startswith("/upstreams?offset=") and ("tags=" + uname) in page["next"]
    pages = 1
    while page["next"]:
        page = admin.get(page["next"]).json()
        names += [u["name"] for u in page["data"]]
        pages += 1
    assert pages == 3 and sorted(names) == ["%s-%d" % (uname, i) for i in range(5)]
    assert "offset" not in page and page["next"] is None
    assert admin.get("/upstreams", params={"tags": uname + "-none"}).json() == {"data": [], "next": None}


@pytest.mark.modes(*ALL)
@pytest.mark.parametrize("size", ["0", "1001"])
def test_invalid_size(admin, size):
    resp = admin.get("/upstreams", params={"size": size})
    assert resp.status_code == 400
    assert resp.json() == {"code": 9, "name": "invalid size", "message": "size must be an integer between 1 and 1000"}


@pytest.mark.modes(*WRITES)      # real DB-less Kong answers 200 to ?offset=garbage (its LMDB pager does not check it)
def test_invalid_offset(admin):
    resp = admin.get("/upstreams", params={"offset": "garbage"})
    assert resp.status_code == 400
    body = resp.json()
    assert (body["code"], body["name"]) == (7, "invalid offset")
    assert body["message"].startswith("'garbage' is not a valid offset: ")


@pytest.mark.modes(*WRITES)
def test_tags_and_or(admin, uname):
    _upstream(admin, uname + "-ab", tags=[uname + "a", uname + "b"])
    _upstream(admin, uname + "-a", tags=[uname + "a"])
    _upstream(admin, uname + "-c", tags=[uname + "c"])

    def names(tags):
        resp = admin.get("/upstreams", params={"tags": tags})
        assert resp.status_code == 200, resp.text
        return sorted(u["name"] for u in resp.json()["data"])
    assert names("%sa,%sb" % (uname, uname)) == [uname + "-ab"]
    assert names("%sa/%sc" % (uname, uname)) == [uname + "-a", uname + "-ab", uname + "-c"]
    resp = admin.get("/upstreams", params={"tags": "%sa,%sb/%sc" % (uname, uname, uname)})
    assert resp.status_code == 400
    assert resp.json() == {"code": 11, "name": "invalid options", "message": "invalid option (tags: invalid filter syntax)",
                           "options": {"tags": "invalid filter syntax"}}
    resp = admin.get("/upstreams", params={"tags": "a,b,c,d,e,f"})
    assert resp.status_code == 400 and resp.json()["options"] == {"tags": "cannot query more than 5 tags"}


@pytest.mark.modes(*WRITES)
def test_targets_endpoints(admin, uname):  # pylint: disable=too-many-statements
    upstream = _upstream(admin, uname)
    base = "/upstreams/%s/targets" % uname
    resp = admin.post(base, json={"target": "127.0.0.1"})
    assert resp.status_code == 201
    target = resp.json()
    assert (target["target"], target["weight"], target["tags"], target["upstream"]) == ("127.0.0.1:8000", 100, None, {"id": upstream["id"]})
    resp = admin.post(base, json={"target": "127.0.0.1:8000"})
    assert resp.status_code == 409
    assert resp.json() == {"code": 5, "name": "unique constraint violation",
                           "fields": {"target": "127.0.0.1:8000", "upstream": {"id": upstream["id"]}},
                           "message": "UNIQUE violation detected on '{target=\"127.0.0.1:8000\",upstream={id=\"%s\"}}'" % upstream["id"]}
    assert admin.post(base, json={"target": "127.0.0.1", "weight": 65536}).json()["fields"] == {"weight": "value should be between 0 and 65535"}
    assert admin.post(base, json={}).json()["fields"] == {"target": "required field missing"}
    assert admin.post(base, json={"target": "not a host!"}).json()["fields"] == {"target": "Invalid target; not a valid hostname or ip address"}
    assert admin.get(base + "/127.0.0.1:8000").json()["id"] == target["id"]
    resp = admin.patch(base + "/127.0.0.1:8000", json={"weight": 7})
    assert resp.status_code == 200 and resp.json()["weight"] == 7
    resp = admin.put(base + "/" + target["id"], json={"weight": 9})       # PUT on a target: a partial update, not a replace
    assert resp.status_code == 200 and (resp.json()["weight"], resp.json()["target"]) == (9, "127.0.0.1:8000")
    assert admin.put(base + "/127.0.0.2:80", json={"weight": 1}).status_code == 404     # and not an upsert
    assert admin.delete(base + "/127.0.0.2:80").status_code == 404
    assert admin.put(base, json={}).status_code == 405
    assert admin.patch(base, json={}).status_code == 405
    assert admin.delete(base).status_code == 405
    admin.post(base, json={"target": "127.0.0.3:80"})
    listed = admin.get(base).json()
    assert [t["target"] for t in listed["data"]] == ["127.0.0.3:80", "127.0.0.1:8000"]      # newest first
    # /targets/all has no defined order (real Kong answered both orders)
    assert sorted(t["target"] for t in admin.get(base + "/all").json()["data"]) == ["127.0.0.1:8000", "127.0.0.3:80"]
    assert admin.delete(base + "/127.0.0.1:8000").status_code == 204
    assert [t["target"] for t in admin.get(base).json()["data"]] == ["127.0.0.3:80"]


@pytest.mark.modes(*WRITES)
def test_nested_targets_paginate_and_ignore_tags(admin, uname):
    _upstream(admin, uname)
    base = "/upstreams/%s/targets" % uname
    for i in range(3):
        assert admin.post(base, json={"target": "10.0.0.%d:80" % (i + 1), "tags": ["t%d" % i]}).status_code == 201
    page = admin.get(base, params={"size": 2, "tags": "t0"}).json()
    assert [t["target"] for t in page["data"]] == ["10.0.0.3:80", "10.0.0.2:80"]
    assert isinstance(page["offset"], str) and page["next"].startswith(base + "?offset=")
    rest = admin.get(page["next"]).json()
    assert [t["target"] for t in rest["data"]] == ["10.0.0.1:80"] and rest["next"] is None


@pytest.mark.modes("dbless")
def test_dbless_writes_answer_405(admin):
    resp = admin.post("/upstreams", json={"name": "cf-dbless"})
    assert resp.status_code == 405
    assert resp.json() == {"code": 12, "name": "operation unsupported", "message": "cannot create 'upstreams' entities when not using a database"}
    resp = admin.post("/plugins", json={"name": "prometheus"})
    assert resp.status_code == 405
    assert resp.json()["message"] == "cannot create 'plugins' entities when not using a database"
    # validated before refused
    assert admin.post("/upstreams", json={"name": "1.2.3.4"}).json()["fields"] == {"name": "Invalid name ('1.2.3.4'); no ip addresses allowed"}
