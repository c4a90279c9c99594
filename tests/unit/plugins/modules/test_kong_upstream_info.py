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


def _kong(kong, base=ADMIN, health=HEALTH):
    kong.get(base + "/upstreams/%s/health" % UID, match=[matchers.query_param_matcher({"size": "1000"})], json=health)


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
    _kong(kong)
    other = copy.deepcopy(HEALTH)
    other["node_id"] = "second-node"
    other["data"][0]["health"] = "UNHEALTHY"
    _kong(kong, NODE2, other)
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
    assert result["failed"] is True and result["msg"].startswith("Failed to read upstream u: admin_urls: admin_url")
    assert len(kong.calls) == 0


def test_traffic_shares_pure():
    targets = [{"weight": 1, "tags": ["k:a"]}, {"weight": 2, "tags": ["k:b", "x"]}, {"weight": 0, "tags": ["k:c"]}]
    shares = traffic_shares(targets)
    assert shares["share_by_tag"] == {"k:a": 33.3333, "k:b": 66.6667, "k:c": 0.0, "x": 66.6667}
    assert shares["share_by_label"] == {"k": {"a": 33.3333, "b": 66.6667, "c": 0.0}}
    assert traffic_shares([{"weight": 0, "tags": ["a"]}])["share_by_tag"] == {"a": 0.0}
    assert traffic_shares([]) == {"total_weight": 0, "share_by_tag": {}, "share_by_label": {}}
