# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import copy
import json
import os

from ansible_collections.mixedrun.kong.plugins.module_utils._compare import (
    HEALTHCHECKS_DEFAULTS,
    KONG_NULL,
    diff_entity,
    healthchecks_enabled,
    merge_healthchecks,
    normalize,
    predict_after,
    strip_volatile,
    to_body,
    unknown_keys,
    values_equal,
)

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "modules", "fixtures")


def fixture(name):
    with open(os.path.join(FIXTURES, name + ".json")) as handle:
        return json.load(handle)


def test_only_given_fields_are_compared_and_volatile_ones_ignored():
    current = fixture("service")
    desired = {"host": "shop.upstream", "port": None, "id": "other", "created_at": 1, "updated_at": 2}
    assert diff_entity(desired, current) == {}
    assert diff_entity({"port": 8080, "retries": None}, current) == {"port": 8080}


def test_missing_entity_returns_every_given_field():
    assert diff_entity({"host": "x", "port": None, "tags": []}, None) == {"host": "x", "tags": []}


def test_lists_compare_without_order_and_null_tags_equal_empty():
    current = {"tags": None, "hosts": ["b.example", "a.example"], "methods": ["GET", "POST"]}
    assert diff_entity({"tags": [], "hosts": ["a.example", "b.example"], "methods": ["POST", "GET", "GET"]},
                       current) == {}
    assert diff_entity({"tags": ["x"]}, current) == {"tags": ["x"]}
    assert diff_entity({"hosts": ["a.example"]}, current) == {"hosts": ["a.example"]}


def test_numbers_and_booleans_are_not_confused():
    assert values_equal("port", 80, 80.0)
    assert not values_equal("enabled", True, 1)
    assert not values_equal("retries", 1, True)
    assert values_equal("enabled", False, False)
    assert not values_equal("enabled", False, None)


def test_foreign_keys_compare_by_id():
    current = fixture("route")
    assert diff_entity({"service": {"id": "9748f662-7711-4a90-8186-dc02f10eb0f5"}}, current) == {}
    changed = diff_entity({"service": {"id": "another"}}, current)
    assert changed == {"service": {"id": "another"}}
    assert values_equal("service", {"id": "a"}, {"id": "a", "name": "ignored"})


def test_partial_healthchecks_merge_over_kong_defaults():
    partial = {"passive": {"unhealthy": {"http_failures": 5}}}
    merged = merge_healthchecks(partial)
    assert merged["passive"]["unhealthy"] == {"http_statuses": [429, 500, 503], "tcp_failures": 0, "timeouts": 0,
                                              "http_failures": 5}
    assert merged["active"] == HEALTHCHECKS_DEFAULTS["active"]
    # the defaults themselves are never modified
    assert HEALTHCHECKS_DEFAULTS["passive"]["unhealthy"]["http_failures"] == 0
    upstream = fixture("upstream")
    assert diff_entity({"healthchecks": merged}, upstream) == {"healthchecks": merged}
    upstream["healthchecks"] = copy.deepcopy(merged)
    upstream["healthchecks"]["passive"]["unhealthy"]["http_statuses"] = [503, 500, 429]  # Kong's order may differ
    assert diff_entity({"healthchecks": merge_healthchecks(partial)}, upstream) == {}
    # Kong's own full default answer equals an empty declaration
    assert diff_entity({"healthchecks": merge_healthchecks({})}, fixture("upstream")) == {}


def test_healthchecks_declared_whole_resets_what_is_left_out():
    upstream = fixture("upstream")
    upstream["healthchecks"]["active"]["healthy"]["interval"] = 5
    changes = diff_entity({"healthchecks": merge_healthchecks({"threshold": 0})}, upstream)
    assert changes["healthchecks"]["active"]["healthy"]["interval"] == 0


def test_unknown_healthcheck_keys_are_named():
    typos = unknown_keys({"pasive": {}, "active": {"healthy": {"intervall": 1}}}, HEALTHCHECKS_DEFAULTS)
    assert sorted(typos) == ["healthchecks.active.healthy.intervall", "healthchecks.pasive"]
    assert unknown_keys({"active": {"healthy": {"interval": 1}}}, HEALTHCHECKS_DEFAULTS) == []


def test_explicit_null():
    assert diff_entity({"path": KONG_NULL}, {"path": None}) == {}
    assert diff_entity({"path": KONG_NULL}, {"path": "/api"}) == {"path": KONG_NULL}
    assert to_body({"path": KONG_NULL, "port": 80}) == {"path": None, "port": 80}
    assert predict_after({"path": "/api"}, {"path": KONG_NULL}) == {"path": None}


def test_predict_after_and_strip_volatile():
    current = fixture("service")
    after = predict_after(current, {"port": 8080})
    assert after["port"] == 8080 and current["port"] == 80
    assert "created_at" not in strip_volatile(after) and strip_volatile(None) is None
    assert predict_after(None, {"healthchecks": {"threshold": 10}})["healthchecks"]["active"]["timeout"] == 1


def test_normalize_keeps_lists_of_dicts_in_order():
    assert normalize([{"a": 2}, {"a": 1}]) == [{"a": 2}, {"a": 1}]
    assert normalize({"h": ["b", "a"]}) == {"h": ["a", "b"]}
    assert normalize([1, True, "1"]) == normalize(["1", True, 1])


def test_healthchecks_enabled_follows_kongs_rule():
    upstream = fixture("upstream")
    assert healthchecks_enabled(upstream) is False  # Kong's defaults: no checker
    assert healthchecks_enabled({"healthchecks": merge_healthchecks(None)}) is False
    assert healthchecks_enabled({}) is False and healthchecks_enabled(None) is False
    for section, group, field in (("active", "healthy", "interval"), ("active", "unhealthy", "interval"),
                                  ("passive", "unhealthy", "tcp_failures"), ("passive", "unhealthy", "timeouts"),
                                  ("passive", "unhealthy", "http_failures")):
        changed = copy.deepcopy(upstream)
        changed["healthchecks"][section][group][field] = 2
        assert healthchecks_enabled(changed) is True, (section, group, field)
    # thresholds that do not start a checker
    quiet = copy.deepcopy(upstream)
    quiet["healthchecks"]["active"]["healthy"]["successes"] = 3
    quiet["healthchecks"]["passive"]["healthy"]["successes"] = 3
    quiet["healthchecks"]["threshold"] = 50
    assert healthchecks_enabled(quiet) is False
