# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import copy

from responses import matchers

from ansible_collections.mixedrun.kong.plugins.module_utils._entities import traffic_shares
from ansible_collections.mixedrun.kong.plugins.modules import kong_upstream_info

from kong_module_helpers import ADMIN, TOKEN, fixture, writes

UP = fixture("upstream")
UID = UP["id"]
HEALTH = fixture("health")
TARGETS = [dict((k, v) for k, v in item.items() if k not in ("health", "data")) for item in HEALTH["data"]]
NODE2 = "http://kong-2.test:8001"


def _balancer_body(health):
    """``?balancer_health=1`` as real Kong 3.9 answers it, for the targets the listing's balancer data holds."""
    hosts = [{"host": item["data"]["host"], "port": item["data"]["port"], "nodeWeight": item["data"]["nodeWeight"],
              "addresses": [{"ip": a["ip"], "port": a["port"], "weight": a["weight"], "healthy": a.get("health") != "UNHEALTHY"}
                            for a in item["data"].get("addresses") or []]}
             for item in health["data"] if item.get("data")]
    return {"data": {"health": "HEALTHY", "balancer_health": "HEALTHY", "details": {"hosts": hosts}},
            "next": None, "node_id": health.get("node_id")}


def _kong(kong, base=ADMIN, health=HEALTH, balancer=True):
    kong.get(base + "/upstreams/%s/health" % UID, match=[matchers.query_param_matcher({"size": "1000"})], json=health)
    if balancer:
        kong.get(base + "/upstreams/%s/health" % UID, match=[matchers.query_param_matcher({"balancer_health": "1"})],
                 json=_balancer_body(health))


def test_missing_upstream_is_not_an_error(kong, run_module):
    kong.get(ADMIN + "/upstreams/nope", status=404, json={"message": "Not found"})
    result = run_module(kong_upstream_info, {"upstream": "nope"})
    assert result.get("failed") is not True
    assert result["exists"] is False and result["targets"] == [] and result["changed"] is False


def test_targets_health_and_shares(kong, run_module):
    kong.get(ADMIN + "/upstreams/shop.upstream", json=UP)
    kong.get(ADMIN + "/upstreams/%s/targets/all" % UID, json={"data": TARGETS, "next": None})
    _kong(kong)
    result = run_module(kong_upstream_info, {"upstream": "shop.upstream"}, check_mode=True)
    assert result["exists"] is True and result["changed"] is False and writes(kong) == []
    assert result["share_by_tag"] == {"mixedrun-kind:container": 30.0, "mixedrun-kind:vm": 70.0,
                                      "mixedrun-managed": 100.0}
    assert result["share_by_label"] == {"mixedrun-kind": {"container": 30.0, "vm": 70.0}}
    assert result["total_weight"] == 100
    by_target = dict((t["target"], t) for t in result["targets"])
    assert by_target["10.0.0.5:8080"]["health"] == "HEALTHY" and by_target["10.0.0.5:8080"]["share"] == 70.0
    assert by_target["10.0.1.7:8080"]["health_by_node"] == {HEALTH["node_id"]: "UNHEALTHY"}
    assert result["nodes"][0]["node_id"] == HEALTH["node_id"]
    assert result["nodes"][0]["targets"]["10.0.0.5:8080"]["addresses"][0]["ip"] == "10.0.0.5"


def test_every_node_answers_for_itself(kong, run_module):
    kong.get(ADMIN + "/upstreams/%s" % UID, json=UP)
    kong.get(ADMIN + "/upstreams/%s/targets/all" % UID, json={"data": TARGETS, "next": None})
    _kong(kong, balancer=False)
    other = copy.deepcopy(HEALTH)
    other["node_id"] = "second-node"
    other["data"][0]["health"] = "UNHEALTHY"
    _kong(kong, NODE2, other, balancer=False)
    kong.get(NODE2 + "/upstreams/%s/health" % UID, match=[matchers.query_param_matcher({"balancer_health": "1"})],
             json=fixture("health_balancer"))
    kong.get(ADMIN + "/upstreams/%s/health" % UID, match=[matchers.query_param_matcher({"balancer_health": "1"})],
             json=fixture("health_balancer"))
    result = run_module(kong_upstream_info, {"upstream": UID, "admin_urls": [NODE2], "balancer_health": True,
                                             "tag_prefix": "mixedrun-kind:", "admin_token": TOKEN})
    first = dict((t["target"], t) for t in result["targets"])["10.0.0.5:8080"]
    assert first["health_by_node"] == {HEALTH["node_id"]: "HEALTHY", "second-node": "UNHEALTHY"}
    assert first["health"] == "MIXED"
    assert [n["node_id"] for n in result["nodes"]] == [HEALTH["node_id"], "second-node"]
    assert result["nodes"][1]["balancer_health"] == "HEALTHY"
    assert result["share_by_tag"] == {"mixedrun-kind:container": 30.0, "mixedrun-kind:vm": 70.0}
    assert [c.get("admin_url") for c in result["api_calls"]].count(NODE2) == 2
    assert all(c.request.headers.get("Kong-Admin-Token") == TOKEN for c in kong.calls)
    assert TOKEN not in result.raw


def test_bad_extra_admin_url_fails_before_any_call(kong, run_module):
    result = run_module(kong_upstream_info, {"upstream": "u", "admin_urls": ["kong-2:8001"]})
    assert result["failed"] is True and result["msg"].startswith("Failed to read upstream u: admin_urls[0] 'kong-2:8001' is not")
    assert len(kong.calls) == 0


def test_traffic_shares_pure():
    targets = [{"weight": 1, "tags": ["k:a"]}, {"weight": 2, "tags": ["k:b", "x"]}, {"weight": 0, "tags": ["k:c"]}]
    shares = traffic_shares(targets)
    assert shares["share_by_tag"] == {"k:a": 33.3333, "k:b": 66.6667, "k:c": 0.0, "x": 66.6667}
    assert shares["share_by_label"] == {"k": {"a": 33.3333, "b": 66.6667, "c": 0.0}}
    assert traffic_shares([{"weight": 0, "tags": ["a"]}])["share_by_tag"] == {"a": 0.0}
    assert traffic_shares([]) == {"total_weight": 0, "share_by_tag": {}, "share_by_label": {}}


def test_credentials_in_admin_urls_never_appear_in_the_result(kong, run_module):
    """A user:password@ in admin_url/admin_urls is used for the requests but shown nowhere: not in nodes,
    api_calls, health_by_node (keyed by URL when a node reports no node_id), nor in invocation."""
    own = "http://admin:Own-Pa55word@kong.test:8001"
    other = "http://ops:0ther%2FSecret@kong-2.test:8001"
    kong.get(own + "/upstreams/shop.upstream", json=UP)
    kong.get(own + "/upstreams/%s/targets/all" % UID, json={"data": TARGETS, "next": None})
    _kong(kong, own)
    anonymous = copy.deepcopy(HEALTH)
    anonymous["node_id"] = None
    _kong(kong, other, anonymous)
    result = run_module(kong_upstream_info, {"upstream": "shop.upstream", "admin_url": own, "admin_urls": [other]})
    assert result.get("failed") is not True, result.get("msg")
    # the credentials were used (HTTP basic auth) ...
    assert kong.calls[0].request.headers["Authorization"].startswith("Basic ")
    assert all("Authorization" in c.request.headers for c in kong.calls)
    # ... and are shown nowhere
    for secret in ("Own-Pa55word", "0ther%2FSecret", "0ther/Secret"):
        assert secret not in result.raw
    assert [n["admin_url"] for n in result["nodes"]] == ["http://***@kong.test:8001", "http://***@kong-2.test:8001"]
    first = dict((t["target"], t) for t in result["targets"])["10.0.0.5:8080"]
    assert first["health_by_node"] == {HEALTH["node_id"]: "HEALTHY", "http://***@kong-2.test:8001": "HEALTHY"}
    assert set(c.get("admin_url") for c in result["api_calls"]) == {None, "http://***@kong-2.test:8001"}


def test_credentials_in_an_unreachable_admin_url_are_not_in_the_error(kong, no_sleep, run_module):
    import requests
    other = "http://ops:S3cret-Node2@kong-2.test:8001"
    kong.get(ADMIN + "/upstreams/shop.upstream", json=UP)
    kong.get(ADMIN + "/upstreams/%s/targets/all" % UID, json={"data": TARGETS, "next": None})
    _kong(kong)
    kong.get(NODE2 + "/upstreams/%s/health" % UID, body=requests.exceptions.ConnectionError(
        "HTTPConnectionPool(host='kong-2.test', port=8001): Max retries exceeded (%s)" % other))
    result = run_module(kong_upstream_info, {"upstream": "shop.upstream", "admin_urls": [other]})
    assert result["failed"] is True and result["status"] is None and result["kong_error"]["status"] is None
    assert "cannot reach the Kong Admin API at http://***@kong-2.test:8001" in result["msg"]
    assert "S3cret-Node2" not in result.raw


DP1 = "http://dp-1.test:8100"
DP2 = "http://dp-2.test:8100"


def test_each_balancer_is_compared_with_the_database(kong, run_module):
    """Real Kong 3.9: every Admin API lists a write at once, each node's balancer follows later; a hybrid control
    plane lists the targets without health or data (it runs no balancer): its data planes are read instead."""
    kong.get(ADMIN + "/upstreams/shop.upstream", json=UP)
    kong.get(ADMIN + "/upstreams/%s/targets/all" % UID, json={"data": TARGETS, "next": None})
    _kong(kong, DP1, HEALTH)                                  # follows: nodeWeight 70 / 30 as stored
    behind = copy.deepcopy(HEALTH)
    behind["node_id"] = "dp-2"
    behind["data"][0]["data"]["nodeWeight"] = 100             # still the weight from before the change
    del behind["data"][1]["data"], behind["data"][1]["health"]   # a target this balancer does not hold yet
    _kong(kong, DP2, behind)
    result = run_module(kong_upstream_info, {"upstream": "shop.upstream", "admin_token": TOKEN, "balancer_urls": [DP1, DP2]})
    assert [n["admin_url"] for n in result["nodes"]] == [DP1, DP2]
    assert result["nodes"][0]["follows"] is True and result["nodes"][0]["lagging"] == {}
    assert result["nodes"][1]["follows"] is False
    assert result["nodes"][1]["lagging"] == {"10.0.0.5:8080": 100, "10.0.1.7:8080": None}
    assert result["consistent"] is False and result["nodes"][1]["targets"]["10.0.0.5:8080"]["balancer_weight"] == 100
    for call in kong.calls:
        if call.request.url.startswith((DP1, DP2)):
            assert "Kong-Admin-Token" not in call.request.headers
