# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json

from responses import matchers

from ansible_collections.mixedrun.kong.plugins.modules import kong_upstream_targets

from kong_module_helpers import ADMIN, TOKEN, fixture, writes

UP = fixture("upstream")
UID = UP["id"]
BASE = "/upstreams/%s/targets" % UID
ALL = ADMIN + BASE + "/all"


def tgt(i, weight=10, tags=("mixedrun-managed", "mixedrun-kind:vm")):
    return {"id": "00000000-0000-4000-8000-%012d" % i, "target": "127.0.%d.%d:18080" % (i // 200, i % 200 + 1),
            "weight": weight, "tags": list(tags) if tags is not None else None, "upstream": {"id": UID},
            "created_at": 1700000000.5 + i, "updated_at": 1700000000.5 + i}


def _upstream(kong):
    kong.get(ADMIN + "/upstreams/shop.upstream", json=UP)


def test_noop_on_1000_targets_makes_at_most_3_requests_and_no_write(kong, run_module):
    current = [tgt(i) for i in range(1000)]
    _upstream(kong)
    kong.get(ALL, match=[matchers.query_param_matcher({"size": "1000"})],
             json={"data": current[:600], "offset": "p2", "next": BASE + "/all?offset=p2"})
    kong.get(ALL, match=[matchers.query_param_matcher({"size": "1000", "offset": "p2"})],
             json={"data": current[600:], "next": None})
    desired = [{"target": t["target"], "weight": 10} for t in reversed(current)]
    result = run_module(kong_upstream_targets, {"upstream": "shop.upstream", "targets": desired,
                                                "tags": ["mixedrun-kind:vm"], "purge": True,
                                                "purge_tag": "mixedrun-managed"})
    assert result["changed"] is False
    assert len(kong.calls) == 3 and writes(kong) == []
    assert result["counts"] == {"created": 0, "updated": 0, "deleted": 0, "unchanged": 1000}
    assert [t["target"] for t in result["after"]] == sorted(t["target"] for t in current)


def test_create_update_delete_with_purge_tag(kong, run_module):
    current = [tgt(1, 10), tgt(2, 10), tgt(3, 10), tgt(4, 10, tags=["hand-made"])]
    _upstream(kong)
    kong.get(ALL, json={"data": current, "next": None})
    kong.post(ADMIN + BASE, status=201, json=dict(tgt(9, 5), target="127.0.0.99:18080"))
    kong.patch(ADMIN + BASE + "/" + current[1]["id"], json=dict(current[1], weight=40))
    kong.delete(ADMIN + BASE + "/" + current[2]["id"], status=204)
    result = run_module(kong_upstream_targets, {
        "upstream": "shop.upstream", "purge": True, "purge_tag": "mixedrun-managed", "tags": ["mixedrun-kind:vm"],
        "targets": [{"target": current[0]["target"], "weight": 10},
                    {"target": current[1]["target"], "weight": 40},
                    {"target": "127.0.0.99:18080", "weight": 5}]}, diff=True)
    assert result["changed"] is True
    assert result["counts"] == {"created": 1, "updated": 1, "deleted": 1, "unchanged": 1}
    assert sorted(writes(kong), key=lambda w: w[0]) == sorted([
        ("POST", BASE, {"target": "127.0.0.99:18080", "weight": 5, "tags": ["mixedrun-kind:vm", "mixedrun-managed"]}),
        ("PATCH", BASE + "/" + current[1]["id"], {"weight": 40}),
        ("DELETE", BASE + "/" + current[2]["id"], None),
    ], key=lambda w: w[0])
    after = dict((t["target"], t["weight"]) for t in result["after"])
    assert after == {current[0]["target"]: 10, current[1]["target"]: 40, "127.0.0.99:18080": 5,
                     current[3]["target"]: 10}  # the hand-made target survives the purge
    assert result["diff"]["before"]["targets"] == result["before"]
    assert [t["target"] for t in result["before"]] == sorted(t["target"] for t in current)


def test_check_mode_plans_without_writing(kong, run_module):
    current = [tgt(1, 10), tgt(2, 10)]
    _upstream(kong)
    kong.get(ALL, json={"data": current, "next": None})
    result = run_module(kong_upstream_targets, {"upstream": "shop.upstream", "default_weight": 0, "purge": True,
                                                "targets": [{"target": current[0]["target"]},
                                                            {"target": "10.9.9.9"}]}, check_mode=True)
    assert result["changed"] is True and writes(kong) == []
    assert result["counts"] == {"created": 1, "updated": 1, "deleted": 1, "unchanged": 0}
    planned = sorted((c["method"], c["path"]) for c in result["api_calls"] if c.get("check_mode"))
    assert planned == sorted([("POST", BASE), ("PATCH", BASE + "/" + current[0]["id"]),
                              ("DELETE", BASE + "/" + current[1]["id"])])
    assert dict((t["target"], t["weight"]) for t in result["after"]) == {current[0]["target"]: 0, "10.9.9.9:8000": 0}


def test_partial_failure_reports_applied_and_failed(kong, run_module):
    _upstream(kong)
    kong.get(ALL, json={"data": [], "next": None})

    def post(request):
        body = json.loads(request.body)
        if body["target"] == "10.0.0.2:80":
            return 409, {}, json.dumps(fixture("error_unique_target"))
        return 201, {}, json.dumps(dict(tgt(0), target=body["target"], weight=body.get("weight", 100)))

    kong.add_callback("POST", ADMIN + BASE, callback=post, content_type="application/json")
    result = run_module(kong_upstream_targets, {"upstream": "shop.upstream", "admin_token": TOKEN,
                                                "targets": [{"target": "10.0.0.%d:80" % i} for i in range(1, 5)]})
    assert result["failed"] is True
    assert "1 of 4 writes failed" in result["msg"] and "create 10.0.0.2:80" in result["msg"]
    assert sorted(a["target"] for a in result["applied"]) == ["10.0.0.1:80", "10.0.0.3:80", "10.0.0.4:80"]
    assert [(f["action"], f["target"], f["status"]) for f in result["failures"]] == [("create", "10.0.0.2:80", 409)]
    assert "UNIQUE violation" in result["failures"][0]["error"]
    assert len(writes(kong)) == 4
    assert TOKEN not in result.raw


def test_partial_failure_lists(kong, run_module):
    _upstream(kong)
    kong.get(ALL, json={"data": [tgt(1)], "next": None})
    kong.patch(ADMIN + BASE + "/" + tgt(1)["id"], status=400, json=fixture("error_schema_weight"))
    kong.post(ADMIN + BASE, status=201, json=tgt(2))
    result = run_module(kong_upstream_targets, {"upstream": "shop.upstream", "concurrency": 1,
                                                "targets": [{"target": tgt(1)["target"], "weight": 11},
                                                            {"target": tgt(2)["target"]}]})
    assert result["msg"].startswith("Failed to ensure the targets of upstream shop.upstream: 1 of 2 writes failed")
    assert result["applied"] == [{"action": "create", "target": tgt(2)["target"]}]
    assert result["kong_error"]["status"] == 400


def test_all_input_errors_are_reported_together_before_any_call(kong, run_module, no_sleep):
    result = run_module(kong_upstream_targets, {"upstream": "shop.upstream", "targets": [
        {"target": "10.0.0.1:80", "weight": 70000}, {"target": "no such host"}, {"target": "10.0.0.2:80"}]})
    assert result["failed"] is True
    assert "targets[0].weight (10.0.0.1:80) must be between 0 and 65535" in result["msg"]
    assert "targets[1].target: invalid hostname" in result["msg"] and "nothing was changed" in result["msg"]
    for args, words in (
            ({"default_weight": -5}, "default_weight must be between 0 and 65535"),
            ({"concurrency": 0}, "concurrency must be between 1 and 64"),
            ({"purge_tag": "x"}, "set purge=true"),
            ({"targets": [{"target": "10.0.0.1", "weight": 1}, {"target": "10.0.0.1:8000", "weight": 2}]},
             "10.0.0.1:8000 is listed twice")):
        result = run_module(kong_upstream_targets, dict({"upstream": "shop.upstream"}, **args))
        assert words in result["msg"], result["msg"]
    assert len(kong.calls) == 0


def test_unknown_upstream(kong, run_module):
    kong.get(ADMIN + "/upstreams/nope", status=404, json={"message": "Not found"})
    result = run_module(kong_upstream_targets, {"upstream": "nope", "targets": [{"target": "10.0.0.1:80"}]})
    assert "upstream 'nope' does not exist" in result["msg"] and writes(kong) == []


def test_tags_only_change_when_given(kong, run_module):
    current = [tgt(1, 10, tags=None), tgt(2, 10, tags=["a"])]
    _upstream(kong)
    kong.get(ALL, json={"data": current, "next": None})
    kong.patch(ADMIN + BASE + "/" + current[1]["id"], json=dict(current[1], tags=["a", "b"]))
    result = run_module(kong_upstream_targets, {"upstream": "shop.upstream", "targets": [
        {"target": current[0]["target"]}, {"target": current[1]["target"], "tags": ["a"]},
    ]})
    assert result["changed"] is False
    kong.patch(ADMIN + BASE + "/" + current[0]["id"], json=dict(current[0], tags=["a"]))
    result = run_module(kong_upstream_targets, {"upstream": "shop.upstream", "targets": [
        {"target": current[0]["target"]}, {"target": current[1]["target"], "tags": ["b"]}], "tags": ["a"]})
    # module-level tags apply to every listed target, merged with the target's own tags
    assert sorted(writes(kong)) == [("PATCH", BASE + "/" + current[0]["id"], {"tags": ["a"]}),
                                    ("PATCH", BASE + "/" + current[1]["id"], {"tags": ["a", "b"]})]
    assert result["counts"]["updated"] == 2
