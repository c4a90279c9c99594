"""Consumers: what the collection's rollout lock relies on (POST 201/409 on a unique username, PATCH and DELETE by id,
PUT by username, GET by username), their error bodies, lists (pagination, tags, ``?custom_id=``) and DB-less refusals."""

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import Client

WRITES = ("traditional", "hybrid")          # modes whose Admin API takes writes (hybrid: the control plane)
AT_LEAST_ONE = "at least one of these fields must be non-empty: 'custom_id', 'username'"
MISSING_ID = "00000000-0000-4000-8000-00000000c0de"
FIELDS = {"id", "username", "custom_id", "tags", "created_at", "updated_at"}


def _consumer(admin, **fields):
    resp = admin.post("/consumers", json=fields)
    assert resp.status_code == 201, resp.text
    return resp.json()


def _not_found(field, value):
    where = "primary key '{%s=\"%s\"}'" if field == "id" else "'{%s=\"%s\"}'"
    return {"code": 6, "name": "not found", "fields": {field: value}, "message": ("could not find the entity with " + where) % (field, value)}


def _unique(field, value):
    return {"code": 5, "name": "unique constraint violation", "fields": {field: value},
            "message": "UNIQUE violation detected on '{%s=\"%s\"}'" % (field, value)}


@pytest.mark.modes(*WRITES)
def test_consumer_create_and_read(admin, uname):
    """201 with every field; read by id (any case) or username, never by custom_id (404 otherwise)."""
    created = _consumer(admin, username=uname, custom_id=uname + "-claim", tags=["cf", uname, "cf"])
    assert set(created) == FIELDS
    assert (created["username"], created["custom_id"], created["tags"]) == (uname, uname + "-claim", ["cf", uname])   # a set: no repeats
    assert isinstance(created["created_at"], int) and created["updated_at"] == created["created_at"]
    assert admin.get("/consumers/" + created["id"]).json() == created
    assert admin.get("/consumers/" + uname).json() == created
    assert admin.get("/consumers/" + created["id"].upper()).json() == created
    for missing in (uname + "-claim", uname + "-none", MISSING_ID):      # by id or username only, never by custom_id
        resp = admin.get("/consumers/" + missing)
        assert (resp.status_code, resp.json()) == (404, {"message": "Not found"})
    only = _consumer(admin, custom_id=uname + "-only")
    assert (only["username"], only["custom_id"], only["tags"]) == (None, uname + "-only", None)


@pytest.mark.modes(*WRITES)
def test_consumer_needs_username_or_custom_id(admin, uname):
    """400 schema violations: at least one of username and custom_id; field errors."""
    for body in ({}, {"tags": ["cf"]}, {"username": None, "custom_id": None}):
        resp = admin.post("/consumers", json=body)
        assert resp.status_code == 400
        assert resp.json() == {"code": 2, "name": "schema violation", "message": "schema violation (%s)" % AT_LEAST_ONE,
                               "fields": {"@entity": [AT_LEAST_ONE]}}
    # the rule runs even when the field itself is invalid; a non-string counts as non-empty
    body = admin.post("/consumers", json={"username": ""}).json()
    assert body["fields"] == {"@entity": [AT_LEAST_ONE], "username": "length must be at least 1"}
    assert body["message"] == "2 schema violations (%s; username: length must be at least 1)" % AT_LEAST_ONE
    assert admin.post("/consumers", json={"username": 5}).json()["fields"] == {"username": "expected a string"}
    assert admin.post("/consumers", json={"username": uname, "bogus": 1}).json()["fields"] == {"bogus": "unknown field"}
    assert admin.post("/consumers", json={"username": uname, "tags": "cf"}).json()["fields"] == {"tags": "expected a set"}


@pytest.mark.modes(*WRITES)
def test_consumer_unique_username_and_custom_id(admin, uname):
    """409 on a taken username or custom_id (POST, PATCH, PUT); 400 code 3 on a taken id."""
    created = _consumer(admin, username=uname, custom_id=uname + "-c")
    resp = admin.post("/consumers", json={"username": uname, "custom_id": uname + "-other"})
    assert (resp.status_code, resp.json()) == (409, _unique("username", uname))
    resp = admin.post("/consumers", json={"username": uname + "-other", "custom_id": uname + "-c"})
    assert (resp.status_code, resp.json()) == (409, _unique("custom_id", uname + "-c"))
    resp = admin.post("/consumers", json={"username": uname, "custom_id": uname + "-c"})      # both taken: username is named
    assert (resp.status_code, resp.json()) == (409, _unique("username", uname))
    resp = admin.post("/consumers", json={"username": uname + "-id", "id": created["id"]})
    assert resp.status_code == 400
    assert resp.json() == {"code": 3, "name": "primary key violation", "fields": {"id": created["id"]},
                           "message": "primary key violation on key '{id=\"%s\"}'" % created["id"]}
    other = _consumer(admin, username=uname + "-2")
    resp = admin.patch("/consumers/" + other["id"], json={"custom_id": uname + "-c"})
    assert (resp.status_code, resp.json()) == (409, _unique("custom_id", uname + "-c"))
    resp = admin.put("/consumers/" + uname + "-2", json={"custom_id": uname + "-c"})
    assert (resp.status_code, resp.json()) == (409, _unique("custom_id", uname + "-c"))


@pytest.mark.modes(*WRITES)
def test_consumer_concurrent_posts_one_wins(admins, uname):
    """The rollout lock: of concurrent POSTs of one username (through every node) exactly one is 201, the others 409."""
    urls = [client.base for client in admins]

    def post(i):
        client = Client(urls[i % len(urls)])
        return client.post("/consumers", json={"username": uname, "custom_id": "%s-%d" % (uname, i)}).status_code
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(post, range(8)))
    assert sorted(statuses) == [201] + [409] * 7, statuses


@pytest.mark.modes(*WRITES)
def test_consumer_patch(admin, uname):
    """PATCH by id or username: 200; missing: 404 code 6; the at-least-one rule on the patched entity."""
    created = _consumer(admin, username=uname, custom_id=uname + "-c", tags=["a"])
    resp = admin.patch("/consumers/" + created["id"], json={"tags": ["b", "c"]})
    assert resp.status_code == 200
    patched = resp.json()
    assert (patched["id"], patched["username"], patched["custom_id"], patched["tags"]) == (created["id"], uname, uname + "-c", ["b", "c"])
    assert admin.patch("/consumers/" + uname, json={"custom_id": uname + "-d"}).json()["custom_id"] == uname + "-d"
    resp = admin.patch("/consumers/" + MISSING_ID, json={"tags": ["x"]})
    assert (resp.status_code, resp.json()) == (404, _not_found("id", MISSING_ID))
    resp = admin.patch("/consumers/" + uname + "-none", json={"tags": ["x"]})
    assert (resp.status_code, resp.json()) == (404, _not_found("username", uname + "-none"))
    # the rule holds for the entity after the PATCH, and says so
    lone = _consumer(admin, username=uname + "-lone")
    resp = admin.patch("/consumers/" + lone["id"], json={"username": None})
    assert resp.status_code == 400
    assert resp.json()["fields"] == {"@entity": ["when updating, " + AT_LEAST_ONE]}
    assert resp.json()["message"] == "schema violation (when updating, %s)" % AT_LEAST_ONE
    resp = admin.patch("/consumers/" + created["id"], json={"username": None})
    assert resp.status_code == 200 and resp.json()["username"] is None


@pytest.mark.modes(*WRITES)
def test_consumer_put_upserts_by_username(admin, uname):
    """PUT by username creates, then replaces (same id, the URL wins); PUT by id."""
    resp = admin.put("/consumers/" + uname, json={"tags": ["state:1"]})
    assert resp.status_code == 200, resp.text
    created = resp.json()
    assert (created["username"], created["custom_id"], created["tags"]) == (uname, None, ["state:1"])
    # a second PUT replaces the whole entity and keeps the id; the URL's username wins over the body's
    resp = admin.put("/consumers/" + uname, json={"username": uname + "-other", "custom_id": uname + "-c"})
    assert resp.status_code == 200
    replaced = resp.json()
    assert (replaced["id"], replaced["username"], replaced["custom_id"], replaced["tags"]) == (created["id"], uname, uname + "-c", None)
    assert admin.get("/consumers/" + uname + "-other").status_code == 404
    resp = admin.put("/consumers/" + created["id"], json={"custom_id": uname + "-c"})         # by id: the body is the entity
    assert resp.status_code == 200 and (resp.json()["username"], resp.json()["custom_id"]) == (None, uname + "-c")
    resp = admin.put("/consumers/" + created["id"], json={})
    assert resp.status_code == 400 and resp.json()["fields"] == {"@entity": [AT_LEAST_ONE]}


@pytest.mark.modes(*WRITES)
def test_consumer_delete_is_204_also_when_missing(admin, uname):
    """DELETE by id or username: 204, also when missing."""
    by_id = _consumer(admin, username=uname)
    assert admin.delete("/consumers/" + by_id["id"]).status_code == 204
    assert admin.delete("/consumers/" + by_id["id"]).status_code == 204
    assert admin.get("/consumers/" + uname).status_code == 404
    _consumer(admin, username=uname + "-2", custom_id=uname + "-c")
    assert admin.delete("/consumers/" + uname + "-2").status_code == 204
    assert admin.delete("/consumers/" + uname + "-2").status_code == 204
    assert admin.get("/consumers/" + uname + "-2").status_code == 404
    kept = _consumer(admin, username=uname + "-3", custom_id=uname + "-c3")
    assert admin.delete("/consumers/" + uname + "-c3").status_code == 204                     # not looked up by custom_id
    assert admin.get("/consumers/" + kept["id"]).status_code == 200


@pytest.mark.modes(*WRITES)
def test_consumer_collection_methods(admin):
    """PUT/PATCH/DELETE on the collection and POST on an entity: 405."""
    for method in ("PUT", "PATCH", "DELETE"):
        resp = admin.request(method, "/consumers", json={})
        assert (resp.status_code, resp.json()) == (405, {"message": "Method not allowed"})
    resp = admin.post("/consumers/cf-anyone", json={})
    assert (resp.status_code, resp.json()) == (405, {"message": "Method not allowed"})


@pytest.mark.modes(*WRITES)
def test_consumer_list_pagination_tags_and_custom_id(admin, uname):
    """Lists: size/offset/next with tags, AND/OR tags, ?custom_id=."""
    for i in range(5):
        _consumer(admin, username="%s-%d" % (uname, i), custom_id="%s-c%d" % (uname, i), tags=[uname, "%s-%s" % (uname, "odd" if i % 2 else "even")])
    page = admin.get("/consumers", params={"tags": uname, "size": 2}).json()
    names = [c["username"] for c in page["data"]]
    assert len(names) == 2 and isinstance(page["offset"], str)
    assert page["next"].startswith("/consumers?offset=") and ("tags=" + uname) in page["next"] and "size=2" in page["next"]
    pages = 1
    while page["next"]:
        page = admin.get(page["next"]).json()
        names += [c["username"] for c in page["data"]]
        pages += 1
    assert pages == 3 and sorted(names) == ["%s-%d" % (uname, i) for i in range(5)]
    assert set(page["data"][0]) == FIELDS
    odd = admin.get("/consumers", params={"tags": "%s,%s-odd" % (uname, uname)}).json()["data"]
    assert sorted(c["username"] for c in odd) == [uname + "-1", uname + "-3"]
    either = admin.get("/consumers", params={"tags": "%s-odd/%s-even" % (uname, uname)}).json()["data"]
    assert len(either) == 5
    # ?custom_id=: that one consumer; size, offset and tags are not looked at
    resp = admin.get("/consumers", params={"custom_id": uname + "-c3", "tags": "cf-nothing", "size": 0})
    assert resp.status_code == 200
    found = resp.json()
    assert [c["username"] for c in found["data"]] == [uname + "-3"] and found["next"] is None and "offset" not in found
    assert admin.get("/consumers", params={"custom_id": uname + "-none"}).json() == {"data": [], "next": None}
    resp = admin.get("/consumers", params={"custom_id": ""})
    assert (resp.status_code, resp.json()) == (400, {"message": "custom_id must be an unempty string"})


@pytest.mark.modes("dbless")
def test_dbless_consumer_writes(admin, uname):
    """DB-less: writes validated, then refused (405, code 12); PATCH missing 404; DELETE missing 204."""
    resp = admin.post("/consumers", json={"username": uname})
    assert resp.status_code == 405
    assert resp.json() == {"code": 12, "name": "operation unsupported", "message": "cannot create 'consumers' entities when not using a database"}
    assert admin.post("/consumers", json={}).json()["fields"] == {"@entity": [AT_LEAST_ONE]}      # validated before refused
    resp = admin.put("/consumers/" + uname, json={"tags": ["a"]})
    assert resp.status_code == 405
    assert resp.json()["message"] == "cannot create or update 'consumers' entities by 'username' when not using a database"
    resp = admin.patch("/consumers/" + uname, json={"tags": ["a"]})
    assert (resp.status_code, resp.json()) == (404, _not_found("username", uname))
    assert admin.delete("/consumers/" + uname).status_code == 204
    config = {"_format_version": "3.0", "consumers": [{"username": uname, "custom_id": uname + "-c", "tags": ["cf"]}]}
    resp = admin.post("/config", json={"config": json.dumps(config)})
    assert resp.status_code == 201, resp.text
    loaded = admin.get("/consumers/" + uname).json()
    assert (loaded["username"], loaded["custom_id"], loaded["tags"]) == (uname, uname + "-c", ["cf"])
    assert admin.get("/consumers", params={"custom_id": uname + "-c"}).json()["data"] == [loaded]
    for method, verb in (("PATCH", "update"), ("DELETE", "remove")):
        resp = admin.request(method, "/consumers/" + uname, json={"tags": ["b"]})
        assert resp.status_code == 405
        assert resp.json()["message"] == "cannot %s 'consumers' entities by 'username' when not using a database" % verb
        resp = admin.request(method, "/consumers/" + loaded["id"], json={"tags": ["b"]})
        assert resp.status_code == 405
        assert resp.json()["message"] == "cannot %s 'consumers' entities when not using a database" % verb
    resp = admin.put("/consumers/" + loaded["id"], json={"username": uname})
    assert resp.json()["message"] == "cannot create or update 'consumers' entities when not using a database"
    resp = admin.patch("/consumers/" + loaded["id"], json={"username": ""})                   # validated before refused
    assert resp.status_code == 400 and resp.json()["fields"] == {"username": "length must be at least 1"}
