"""The upstream schema's cross-field rules (hash_on / hash_fallback) and healthchecks validation."""

import pytest

COND_ON = "failed conditional validation given value of field 'hash_on'"
COND_FALLBACK = "failed conditional validation given value of field 'hash_fallback'"

REJECTED = [
    ({"hash_on": "header"}, {"@entity": [COND_ON], "hash_on_header": "required field missing"}),
    ({"hash_on": "cookie"}, {"@entity": [COND_ON], "hash_on_cookie": "required field missing"}),
    ({"hash_on": "query_arg"}, {"@entity": [COND_ON], "hash_on_query_arg": "required field missing"}),
    ({"hash_on": "uri_capture"}, {"@entity": [COND_ON], "hash_on_uri_capture": "required field missing"}),
    ({"hash_on": "none", "hash_fallback": "ip"}, {"@entity": [COND_ON], "hash_fallback": "expected one of: none"}),
    ({"hash_on": "cookie", "hash_on_cookie": "c", "hash_fallback": "ip"}, {"@entity": [COND_ON], "hash_fallback": "expected one of: none"}),
    ({"hash_on": "ip", "hash_fallback": "ip"},
     {"@entity": [COND_ON], "hash_fallback": "expected one of: none, consumer, header, cookie, path, query_arg, uri_capture"}),
    ({"hash_on": "consumer", "hash_fallback": "consumer"},
     {"@entity": [COND_ON], "hash_fallback": "expected one of: none, ip, header, cookie, path, query_arg, uri_capture"}),
    ({"hash_on": "path", "hash_fallback": "path"},
     {"@entity": [COND_ON], "hash_fallback": "expected one of: none, consumer, header, cookie, query_arg, ip, uri_capture"}),
    ({"hash_on": "ip", "hash_fallback": "header"}, {"@entity": [COND_FALLBACK], "hash_fallback_header": "required field missing"}),
    ({"hash_on": "consumer", "hash_fallback": "query_arg"}, {"@entity": [COND_FALLBACK], "hash_fallback_query_arg": "required field missing"}),
    ({"hash_on": "header", "hash_on_header": "X-A", "hash_fallback": "header", "hash_fallback_header": "X-A"},
     {"@entity": ["values of these fields must be distinct: 'hash_on_header', 'hash_fallback_header'"]}),
    ({"hash_on": "query_arg", "hash_on_query_arg": "q", "hash_fallback": "query_arg", "hash_fallback_query_arg": "q"},
     {"@entity": ["values of these fields must be distinct: 'hash_on_query_arg', 'hash_fallback_query_arg'"]}),
    ({"hash_on": "uri_capture", "hash_on_uri_capture": "c", "hash_fallback": "uri_capture", "hash_fallback_uri_capture": "c"},
     {"@entity": ["values of these fields must be distinct: 'hash_on_uri_capture', 'hash_fallback_uri_capture'"]}),
    ({"slots": 9}, {"slots": "value should be between 10 and 65536"}),
    ({"algorithm": "random"}, {"algorithm": "expected one of: consistent-hashing, least-connections, round-robin, latency"}),
    ({"hash_on_cookie_path": "x"}, {"hash_on_cookie_path": "should start with: /"}),
    ({"healthchecks": {"active": {"http_path": "x"}}}, {"healthchecks": {"active": {"http_path": "should start with: /"}}}),
    ({"healthchecks": {"active": {"concurrency": 0}}}, {"healthchecks": {"active": {"concurrency": "value should be between 1 and 2147483648"}}}),
    ({"healthchecks": {"active": {"healthy": {"http_statuses": [99]}}}},
     {"healthchecks": {"active": {"healthy": {"http_statuses": ["value should be between 100 and 999"]}}}}),
    ({"healthchecks": {"active": {"healthy": {"interval": -1}}}},
     {"healthchecks": {"active": {"healthy": {"interval": "value should be between 0 and 65535"}}}}),
    ({"healthchecks": {"active": {"timeout": -1}}}, {"healthchecks": {"active": {"timeout": "value should be between 0 and 65535"}}}),
    ({"healthchecks": {"active": {"type": "udp"}}}, {"healthchecks": {"active": {"type": "expected one of: tcp, http, https, grpc, grpcs"}}}),
    ({"healthchecks": {"active": {"headers": {"x": "y"}}}}, {"healthchecks": {"active": {"headers": "expected an array"}}}),
    ({"healthchecks": {"passive": {"unhealthy": {"tcp_failures": 256}}}},
     {"healthchecks": {"passive": {"unhealthy": {"tcp_failures": "value should be between 0 and 255"}}}}),
    ({"healthchecks": {"threshold": 101}}, {"healthchecks": {"threshold": "value should be between 0 and 100"}}),
]

ACCEPTED = [
    {"hash_on": "ip", "hash_fallback": "cookie", "hash_on_cookie": "c"},
    {"hash_on": "header", "hash_on_header": "X-A", "hash_fallback": "header", "hash_fallback_header": "X-B"},
    {"hash_on": "header", "hash_on_header": "X-A", "hash_fallback": "consumer"},
    {"hash_on": "cookie", "hash_on_cookie": "c", "hash_fallback": "none"},
    {"hash_on": "consumer", "hash_fallback": "ip"},
    {"healthchecks": {"active": {"headers": {"x": ["y"]}, "healthy": {"http_statuses": [200, 200]}}}},
]


@pytest.mark.modes("traditional", "hybrid")
@pytest.mark.parametrize("fields,errors", REJECTED, ids=[str(i) for i in range(len(REJECTED))])
def test_upstream_rejected(admin, uname, fields, errors):
    resp = admin.post("/upstreams", json=dict(fields, name=uname))
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert (body["code"], body["name"]) == (2, "schema violation")
    assert body["fields"] == errors
    count = len(errors.get("@entity", [])) + len([k for k in errors if k != "@entity"])
    assert body["message"].startswith("schema violation (" if count == 1 else "%d schema violations (" % count), body["message"]


@pytest.mark.modes("traditional", "hybrid")
def test_nested_violation_message(admin, uname):
    body = admin.post("/upstreams", json={"name": uname, "healthchecks": {"active": {"http_path": "x"}}}).json()
    assert body["message"] == 'schema violation (healthchecks.active: {\n  http_path = "should start with: /"\n})'


@pytest.mark.modes("traditional", "hybrid")
@pytest.mark.parametrize("fields", ACCEPTED, ids=[str(i) for i in range(len(ACCEPTED))])
def test_upstream_accepted(admin, uname, fields):
    resp = admin.post("/upstreams", json=dict(fields, name=uname))
    assert resp.status_code == 201, resp.text
