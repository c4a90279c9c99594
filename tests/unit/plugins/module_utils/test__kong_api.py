# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Kong client with HTTP mocked at the transport (responses)."""

from __future__ import annotations

import json

import pytest
import requests
import responses
from responses import matchers

from ansible_collections.mixedrun.kong.plugins.module_utils import _kong_api
from ansible_collections.mixedrun.kong.plugins.module_utils._kong_api import KongApiError, KongClient, redact_url, url_password, url_secrets

ADMIN = "http://kong.test:8001"
TOKEN = "s3cr3t-kong-admin-token-value"


@pytest.fixture
def mock():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


@pytest.fixture
def sleeps(monkeypatch):
    slept = []
    monkeypatch.setattr(_kong_api.time, "sleep", slept.append)
    return slept


def client(**kwargs):
    kwargs.setdefault("retries", 3)
    return KongClient(ADMIN, **kwargs)


def _targets(n, start=0):
    return [{"id": "t%d" % i, "target": "10.0.%d.%d:80" % (i // 250, i % 250), "weight": 1} for i in range(start, start + n)]


# -- pagination ------------------------------------------------------------------------------------------------

def test_list_asks_for_1000_and_follows_next(mock):
    mock.get(ADMIN + "/upstreams/u/targets/all", match=[matchers.query_param_matcher({"size": "1000"})],
             json={"data": _targets(1000), "offset": "b2Zm", "next": "/upstreams/u/targets/all?offset=b2Zm"})
    mock.get(ADMIN + "/upstreams/u/targets/all",
             match=[matchers.query_param_matcher({"size": "1000", "offset": "b2Zm"})],
             json={"data": _targets(3, 1000), "next": None})
    items = client().list("/upstreams/u/targets/all")
    assert len(items) == 1003 and items[-1]["id"] == "t1002"
    assert [c["status"] for c in client_calls(mock)] == [200, 200]


def client_calls(mock):
    return [{"status": c.response.status_code, "url": c.request.url} for c in mock.calls]


def test_list_empty_collection(mock):
    mock.get(ADMIN + "/services", json={"data": [], "next": None})
    assert client().list("/services") == []


def test_list_keeps_tags_from_next(mock):
    mock.get(ADMIN + "/services", match=[matchers.query_param_matcher({"size": "1000", "tags": "a,b"})],
             json={"data": [{"id": 1}], "offset": "x", "next": "/services?offset=x&tags=a%2Cb"})
    mock.get(ADMIN + "/services", match=[matchers.query_param_matcher({"size": "1000", "tags": "a,b", "offset": "x"})],
             json={"data": [{"id": 2}], "next": None})
    assert [s["id"] for s in client().list("/services", params={"tags": "a,b"})] == [1, 2]


# -- workspace, headers ------------------------------------------------------------------------------------------

def test_workspace_prefixes_paths_and_next_pages(mock):
    mock.get(ADMIN + "/team-a/upstreams", json={"data": [{"id": 1}], "next": "/upstreams?offset=o1"})
    mock.get(ADMIN + "/team-a/upstreams", match=[matchers.query_param_matcher({"size": "1000", "offset": "o1"})],
             json={"data": [{"id": 2}], "next": "/team-a/upstreams?offset=o2"})
    mock.get(ADMIN + "/team-a/upstreams", match=[matchers.query_param_matcher({"size": "1000", "offset": "o2"})],
             json={"data": [{"id": 3}], "next": None})
    c = client(workspace="team-a")
    assert [u["id"] for u in c.list("/upstreams")] == [1, 2, 3]
    assert c.url_for("/upstreams/x") == ADMIN + "/team-a/upstreams/x"


def test_admin_url_path_prefix_is_kept(mock):
    mock.get("http://kong.test:8001/admin-api/services/shop", json={"id": "s"})
    assert KongClient(ADMIN + "/admin-api/").get("/services/shop") == {"id": "s"}


def test_token_custom_header_extra_headers_and_json_body(mock):
    mock.post(ADMIN + "/upstreams", status=201, json={"id": "u"}, match=[
        matchers.header_matcher({"X-Kong-Token": TOKEN, "X-Proxy-Auth": "p", "Content-Type": "application/json",
                                 "Accept": "application/json", "User-Agent": "mixedrun.kong"}),
        matchers.json_params_matcher({"name": "shop.upstream"}),
    ])
    c = client(admin_token=TOKEN, admin_token_header="X-Kong-Token", headers={"X-Proxy-Auth": "p"})
    assert c.post("/upstreams", {"name": "shop.upstream"}) == {"id": "u"}
    assert c.calls == [{"method": "POST", "path": "/upstreams", "status": 201}]


def test_default_token_header(mock):
    mock.get(ADMIN + "/", json={"node_id": "n"}, match=[matchers.header_matcher({"Kong-Admin-Token": TOKEN})])
    assert client(admin_token=TOKEN).node_info()["node_id"] == "n"


def test_quote_keeps_host_port_and_ipv6_readable():
    assert KongClient.quote("[0000:0000:0000:0000:0000:0000:0000:0001]:80") == \
        "[0000:0000:0000:0000:0000:0000:0000:0001]:80"
    assert KongClient.quote("a b/c") == "a%20b%2Fc"


# -- retries -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method, status, retried", [
    ("GET", 500, True), ("GET", 504, True), ("PATCH", 500, True), ("PUT", 504, True), ("DELETE", 500, True),
    ("POST", 500, False), ("POST", 504, False),
    ("POST", 502, True), ("POST", 503, True), ("GET", 502, True), ("PATCH", 503, True),
    ("GET", 400, False), ("POST", 409, False), ("GET", 401, False),
])
def test_retry_by_status_and_method(mock, sleeps, method, status, retried):
    url = ADMIN + "/upstreams/u"
    mock.add(method, url, status=status, json={"message": "boom"})
    if retried:
        mock.add(method, url, status=200, json={"id": "u"})
    c = client()
    body = {"x": 1} if method in ("POST", "PATCH", "PUT") else None
    if retried:
        c.request(method, "/upstreams/u", body=body)
        assert len(sleeps) == 1
    else:
        with pytest.raises(KongApiError) as err:
            c.request(method, "/upstreams/u", body=body)
        assert err.value.status == status
        assert sleeps == []
    assert len(mock.calls) == (2 if retried else 1)


def test_retries_are_bounded_and_backoff_is_jittered_exponential(mock, sleeps, monkeypatch):
    bounds = []
    monkeypatch.setattr(_kong_api.random, "uniform", lambda lo, hi: bounds.append((lo, hi)) or hi / 2)
    for _attempt in range(4):
        mock.get(ADMIN + "/upstreams/u", status=503, json={"message": "unavailable"})
    with pytest.raises(KongApiError) as err:
        KongClient(ADMIN, retries=3, backoff_base=0.5).get("/upstreams/u")
    assert err.value.status == 503
    assert len(mock.calls) == 4
    assert bounds == [(0, 0.5), (0, 1.0), (0, 2.0)]
    assert sleeps == [0.25, 0.5, 1.0]


def test_backoff_is_capped():
    delays = list(_kong_api._backoff_delays(12, base=1.0, cap=5.0))
    assert len(delays) == 12 and all(0 <= d <= 5.0 for d in delays)


def test_refused_connection_is_retried_even_for_post(mock, sleeps):
    mock.post(ADMIN + "/upstreams", body=requests.exceptions.ConnectionError("NewConnectionError: Connection refused"))
    mock.post(ADMIN + "/upstreams", status=201, json={"id": "u"})
    assert client().post("/upstreams", {"name": "u"}) == {"id": "u"}
    assert len(sleeps) == 1


def test_dropped_connection_after_send_is_not_retried_for_post(mock, sleeps):
    mock.post(ADMIN + "/upstreams", body=requests.exceptions.ConnectionError("Connection aborted: RemoteDisconnected"))
    with pytest.raises(KongApiError) as err:
        client().post("/upstreams", {"name": "u"})
    assert err.value.status is None and "cannot reach" in err.value.message
    assert sleeps == []


def test_read_timeout_retried_for_get_only(mock, sleeps):
    mock.get(ADMIN + "/upstreams/u", body=requests.exceptions.ReadTimeout("read timed out"))
    mock.get(ADMIN + "/upstreams/u", json={"id": "u"})
    assert client().get("/upstreams/u") == {"id": "u"}
    mock.post(ADMIN + "/upstreams", body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(KongApiError) as err:
        client().post("/upstreams", {})
    assert "did not answer" in err.value.message


def test_unreachable_kong_gives_a_clear_error_after_retries(mock, sleeps):
    for _attempt in range(3):
        mock.get(ADMIN + "/upstreams/u", body=requests.exceptions.ConnectionError("Connection refused"))
    with pytest.raises(KongApiError) as err:
        client(retries=2).get("/upstreams/u")
    text = str(err.value)
    assert "cannot reach the Kong Admin API at http://kong.test:8001" in text and "after 2 retries" in text
    assert "admin_url" in text and len(sleeps) == 2


def test_tls_failure_is_not_retried_and_says_how_to_fix(mock, sleeps):
    mock.get(ADMIN + "/", body=requests.exceptions.SSLError("certificate verify failed"))
    with pytest.raises(KongApiError) as err:
        client().node_info()
    assert "ca_path" in str(err.value) and sleeps == []


# -- errors ------------------------------------------------------------------------------------------------------

def test_kong_error_body_is_parsed(mock):
    body = {"code": 5, "name": "unique constraint violation",
            "message": "UNIQUE violation detected on '{target=\"10.0.0.5:8080\",upstream={id=\"u\"}}'",
            "fields": {"target": "10.0.0.5:8080"}}
    mock.post(ADMIN + "/upstreams/u/targets", status=409, json=body)
    with pytest.raises(KongApiError) as err:
        client().post("/upstreams/u/targets", {"target": "10.0.0.5:8080"})
    exc = err.value
    assert (exc.status, exc.code, exc.name, exc.fields) == (409, 5, "unique constraint violation", body["fields"])
    assert exc.as_dict()["method"] == "POST" and exc.as_dict()["path"] == "/upstreams/u/targets"
    text = str(exc)
    assert text.startswith("POST /upstreams/u/targets -> HTTP 409 (unique constraint violation, code 5): UNIQUE")
    # the conflicting fields and the way out
    assert "same unique key (target=10.0.0.5:8080)" in text
    assert "another run or another tool created it at the same time" in text
    assert "re-run the task: it reads the entity again and updates it in place" in text


def test_409_without_fields_still_says_what_to_do(mock):
    mock.put(ADMIN + "/routes/r", status=409, json={"message": "already exists"})
    with pytest.raises(KongApiError) as err:
        client().put("/routes/r", {})
    assert "same unique key: most likely another run" in str(err.value)


def test_with_hint_replaces_the_explanation_and_keeps_the_error(mock):
    mock.put(ADMIN + "/upstreams/u/targets/t/healthy", status=404, json={"message": "Not found"})
    with pytest.raises(KongApiError) as err:
        client().put("/upstreams/u/targets/t/healthy")
    again = err.value.with_hint("point admin_url elsewhere")
    assert again.describe() == "PUT /upstreams/u/targets/t/healthy -> HTTP 404: Not found; point admin_url elsewhere"
    assert again.as_dict() == err.value.as_dict()


def test_schema_violation_names_the_field(mock):
    mock.patch(ADMIN + "/upstreams/u/targets/t", status=400, json={
        "code": 2, "name": "schema violation", "message": "schema violation (weight: value should be between 0 and 65535)",
        "fields": {"weight": "value should be between 0 and 65535"}})
    with pytest.raises(KongApiError) as err:
        client().patch("/upstreams/u/targets/t", {"weight": 70000})
    assert '"weight": "value should be between 0 and 65535"' in str(err.value)


def test_not_json_answer(mock):
    mock.get(ADMIN + "/services/x", body="<html>proxy</html>", status=200, content_type="text/html")
    with pytest.raises(KongApiError) as err:
        client().get("/services/x")
    assert "not JSON" in str(err.value)


def test_plain_text_error_and_legacy_field_errors(mock):
    mock.get(ADMIN + "/a", status=400, body="bad", content_type="text/plain")
    mock.get(ADMIN + "/b", status=400, json={"name": "already exists with value 'x'"})
    with pytest.raises(KongApiError) as err:
        client().get("/a")
    assert err.value.message == "bad"
    with pytest.raises(KongApiError) as err:
        client().get("/b")
    assert err.value.fields == {"name": "already exists with value 'x'"}


def test_get_404_is_none_and_delete_404_is_false(mock):
    mock.get(ADMIN + "/services/none", status=404, json={"message": "Not found"})
    mock.delete(ADMIN + "/upstreams/u/targets/t", status=404, json={"message": "Not found"})
    mock.delete(ADMIN + "/services/s", status=204)
    c = client()
    assert c.get("/services/none") is None
    assert c.delete("/upstreams/u/targets/t") is False
    assert c.delete("/services/s") is True


def test_401_403_and_405_carry_a_hint(mock):
    mock.get(ADMIN + "/a", status=401, json={"message": "Invalid credentials. Token or User credentials required"})
    mock.get(ADMIN + "/b", status=403, json={"message": "Access denied"})
    mock.post(ADMIN + "/c", status=405, json={
        "code": 12, "name": "operation unsupported", "message": "cannot create 'routes' entities when not using a database"})
    c = client(admin_token=TOKEN)
    for path, words in (("/a", "admin_token"), ("/b", "RBAC role")):
        with pytest.raises(KongApiError) as err:
            c.get(path)
        assert words in str(err.value) and TOKEN not in str(err.value)
        assert TOKEN not in json.dumps(err.value.as_dict())
    with pytest.raises(KongApiError) as err:
        c.post("/c", {})
    assert "DB-less" in str(err.value)


def test_token_never_in_errors_even_in_the_url(mock, sleeps):
    url = "http://admin:%s@kong.test:8001" % TOKEN
    assert TOKEN not in redact_url(url)
    # unregistered: responses refuses the connection with an error text that carries the full URL
    with pytest.raises(KongApiError) as err:
        KongClient(url, admin_token=TOKEN, retries=0).get("/x")
    assert TOKEN not in str(err.value) and TOKEN not in repr(err.value.as_dict())
    with pytest.raises(ValueError) as bad:
        KongClient("ftp://admin:%s@kong.test" % TOKEN)
    assert TOKEN not in str(bad.value)


@pytest.mark.parametrize("url, words", [
    (None, "admin_url is required"), ("", "admin_url is required"), ("kong:8001", "not an http(s) URL"),
    ("http://kong:99999", "invalid port"), ("http://kong:8001/?x=1", "query"),
])
def test_admin_url_validation(url, words):
    with pytest.raises(ValueError) as err:
        KongClient(url)
    assert words in str(err.value)


def test_bad_options():
    with pytest.raises(ValueError):
        KongClient(ADMIN, retries=-1)
    with pytest.raises(ValueError):
        KongClient(ADMIN, timeout=0)
    with pytest.raises(ValueError):
        KongClient(ADMIN, client_key="/k.pem")


# -- check mode, calls, concurrency -------------------------------------------------------------------------------

def test_check_mode_write_records_and_sends_nothing(mock):
    c = client(check_mode=True)
    assert c.write("POST", "/upstreams/u/targets", {"target": "a:1"}) is None
    assert c.write("DELETE", "/upstreams/u/targets/t") is None
    assert c.calls == [{"method": "POST", "path": "/upstreams/u/targets", "status": None, "check_mode": True},
                       {"method": "DELETE", "path": "/upstreams/u/targets/t", "status": None, "check_mode": True}]
    assert len(mock.calls) == 0


def test_write_sends_when_not_in_check_mode(mock):
    mock.patch(ADMIN + "/upstreams/u/targets/t", json={"id": "t", "weight": 5})
    mock.delete(ADMIN + "/upstreams/u/targets/gone", status=404, json={"message": "Not found"})
    c = client()
    assert c.write("PATCH", "/upstreams/u/targets/t", {"weight": 5})["weight"] == 5
    assert c.write("DELETE", "/upstreams/u/targets/gone") is None


def test_from_params_ignores_none_and_module_options():
    c = KongClient.from_params({"admin_url": ADMIN, "admin_token": None, "timeout": 3.0, "retries": 1,
                                "name": "ignored"}, check_mode=True)
    assert c.timeout == 3.0 and c.retries == 1 and c.check_mode
    assert "Kong-Admin-Token" not in c.session.headers


@pytest.mark.parametrize("concurrency", [1, 4])
def test_map_concurrent_attempts_every_item_and_keeps_order(mock, concurrency):
    for i in range(6):
        status = 409 if i == 2 else 200
        mock.patch(ADMIN + "/t/%d" % i, status=status, json={"id": i} if status == 200 else {"message": "dup"})
    c = client()
    out = c.map_concurrent(lambda i: c.patch("/t/%d" % i, {"weight": i}), range(6), concurrency=concurrency)
    assert [item for item, _r, _e in out] == list(range(6))
    assert [e.status for _i, _r, e in out if e] == [409]
    assert [r["id"] for _i, r, _e in out if r] == [0, 1, 3, 4, 5]
    assert len(c.calls) == 6
    assert c.map_concurrent(lambda i: i, []) == []


def test_url_secrets():
    found = set()
    for url in ["http://u:longpass@h:1", "https://token@h", "http://h:8001", None]:
        found |= url_secrets(url)
    assert found == {"u:longpass", "longpass", "token"}
    assert url_secrets("http://u:p%2Fw@kong:8001") == {"u:p%2Fw", "p%2Fw", "p/w"}


def test_url_password():
    assert url_password("http://u:p%2Fw@kong:8001") == "p%2Fw"
    assert url_password("https://user@kong:8444") is None
    assert url_password("http://kong:8001") is None
    assert url_password("not a url with @ sign") is None
    assert url_password(None) is None and url_password(8001) is None


class _SlowServer:
    """A local HTTP server answering after a short wait, counting the TCP connections it accepted."""

    def __init__(self):
        import http.server
        import socketserver
        import threading
        ports = set()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_PATCH(self):  # noqa: N802  (the stdlib's naming)
                import time as _time
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                ports.add(self.client_address[1])
                _time.sleep(0.05)
                body = b'{"id": "t"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            request_queue_size = 128

        self.ports = ports
        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("concurrency", [8, 64])
def test_pool_holds_a_connection_per_request_in_flight(caplog, concurrency):
    """The pool is max(16, concurrency): 64 writes in flight reuse 64 connections instead of opening and
    throwing away new ones ("Connection pool is full, discarding connection")."""
    import logging
    server = _SlowServer()
    try:
        c = KongClient(server.url, retries=0)
        assert c.pool_size == 16
        with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
            for _round in range(2):
                out = c.map_concurrent(lambda i: c.patch("/t/%d" % i, {"weight": 1}), range(concurrency * 2),
                                       concurrency=concurrency)
                assert [e for _i, _r, e in out if e] == []
        assert c.pool_size == max(16, concurrency)
        assert c.session.get_adapter(server.url)._pool_maxsize == max(16, concurrency)
        assert not [r for r in caplog.records if "Connection pool is full" in r.getMessage()]
        assert len(server.ports) <= max(16, concurrency)
        c.close()
    finally:
        server.close()
