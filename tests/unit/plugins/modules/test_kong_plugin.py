# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest

from ansible_collections.mixedrun.kong.plugins.modules import kong_plugin, kong_plugin_info
from ansible_collections.mixedrun.kong.plugins.module_utils import _plugins

from kong_module_helpers import ADMIN, writes

SID = "9748f662-7711-4a90-8186-dc02f10eb0f5"
RID = "2b1c3e44-5f6a-4b7c-8d9e-0f1a2b3c4d5e"
PROM_SCHEMA = {"fields": [
    {"protocols": {"type": "set", "elements": {"type": "string"}}},
    {"config": {"type": "record", "fields": [
        {"status_code_metrics": {"type": "boolean", "default": False}},
        {"latency_metrics": {"type": "boolean", "default": False}},
        {"upstream_health_metrics": {"type": "boolean", "default": False}},
    ]}},
]}
SECRET_SCHEMA = {"fields": [{"config": {"type": "record", "fields": [
    {"minute": {"type": "number"}},
    {"limit_by": {"type": "string"}},
    {"redis": {"type": "record", "fields": [{"password": {"type": "string", "referenceable": True}},
                                            {"port": {"type": "integer"}}]}},
]}}]}
OFF = {"status_code_metrics": False, "latency_metrics": False, "upstream_health_metrics": False}


def plugin(pid, config, service=None, route=None, enabled=True, name="prometheus"):
    return {"id": pid, "name": name, "config": dict(config), "enabled": enabled, "tags": None, "protocols": ["http", "https"],
            "service": {"id": service} if service else None, "route": {"id": route} if route else None, "consumer": None,
            "created_at": 1, "updated_at": 1}


def test_creates_a_service_scoped_instance_with_typed_config(kong, run_module):
    kong.get(ADMIN + "/services/shop", json={"id": SID, "name": "shop"})
    kong.get(ADMIN + "/schemas/plugins/prometheus", json=PROM_SCHEMA)
    kong.get(ADMIN + "/plugins", json={"data": [plugin("g1", dict(OFF, latency_metrics=True))], "next": None})
    kong.post(ADMIN + "/plugins", json=plugin("p1", dict(OFF, status_code_metrics=True), service=SID))
    result = run_module(kong_plugin, {"name": "prometheus", "service": "shop", "config": {"status_code_metrics": "yes"}, "tags": ["t"]})
    assert result["changed"] is True
    body = {"name": "prometheus", "config": {"status_code_metrics": True}, "tags": ["t"], "service": {"id": SID}}
    assert writes(kong) == [("POST", "/plugins", body)]
    assert result["scope"] == "service=" + SID


def test_updates_merge_the_whole_config_and_are_idempotent(kong, run_module):
    current = plugin("g1", dict(OFF, latency_metrics=True))
    kong.get(ADMIN + "/schemas/plugins/prometheus", json=PROM_SCHEMA)
    kong.get(ADMIN + "/plugins", json={"data": [current], "next": None})
    kong.patch(ADMIN + "/plugins/g1", json=plugin("g1", dict(OFF, latency_metrics=True, status_code_metrics=True)))
    result = run_module(kong_plugin, {"name": "prometheus", "config": {"status_code_metrics": True}}, diff=True)
    assert writes(kong) == [("PATCH", "/plugins/g1", {"config": dict(OFF, latency_metrics=True, status_code_metrics=True)})]
    assert result["diff"]["before"]["config"]["status_code_metrics"] is False
    assert result["diff"]["after"]["config"]["status_code_metrics"] is True
    # already so: no write (the string form counts as the same value)
    result = run_module(kong_plugin, {"name": "prometheus", "config": {"latency_metrics": "true"}})
    assert result["changed"] is False and len(writes(kong)) == 1


def test_check_mode_and_absent(kong, run_module):
    kong.get(ADMIN + "/schemas/plugins/prometheus", json=PROM_SCHEMA)
    kong.get(ADMIN + "/plugins", json={"data": [plugin("g1", OFF)], "next": None})
    result = run_module(kong_plugin, {"name": "prometheus", "config": {"status_code_metrics": True}}, check_mode=True)
    assert result["changed"] is True and writes(kong) == []
    kong.delete(ADMIN + "/plugins/g1", status=204)
    result = run_module(kong_plugin, {"name": "prometheus", "state": "absent"})
    assert result["changed"] is True and writes(kong) == [("DELETE", "/plugins/g1", None)]


def test_instances_of_other_scopes_are_not_touched(kong, run_module):
    kong.get(ADMIN + "/schemas/plugins/prometheus", json=PROM_SCHEMA)
    kong.get(ADMIN + "/plugins", json={"data": [plugin("s1", OFF, service=SID)], "next": None})
    kong.post(ADMIN + "/plugins", json=plugin("g2", OFF))
    run_module(kong_plugin, {"name": "prometheus", "config": {"latency_metrics": False}})
    assert writes(kong) == [("POST", "/plugins", {"name": "prometheus", "config": {"latency_metrics": False}})]


@pytest.mark.parametrize("params, message", [
    ({"name": "prometheus", "config": {"status_code_metric": True}}, "config: unknown field(s) status_code_metric; this plugin's fields there are: "
                                                                     "latency_metrics, status_code_metrics, upstream_health_metrics"),
    ({"name": "prometheus", "config": {"latency_metrics": "maybe"}}, "config.latency_metrics must be true or false, got 'maybe'"),
    ({"name": "Prometheus"}, "name 'Prometheus' is not a Kong plugin name"),
    ({"name": ""}, "name is empty"),
    ({"name": "prometheus", "service": " "}, "service is empty"),
])
def test_bad_input_names_the_field_and_writes_nothing(kong, run_module, params, message):
    kong.get(ADMIN + "/schemas/plugins/prometheus", json=PROM_SCHEMA)
    kong.get(ADMIN + "/plugins", json={"data": [], "next": None})
    result = run_module(kong_plugin, params)
    assert result["failed"] is True and message in result["msg"] and writes(kong) == []


def test_unknown_plugin_and_missing_service(kong, run_module):
    kong.get(ADMIN + "/schemas/plugins/nosuch", status=404, json={"message": "No plugin named 'nosuch'"})
    result = run_module(kong_plugin, {"name": "nosuch"})
    assert "plugin 'nosuch' is not available on this Kong node" in result["msg"] and "KONG_PLUGINS" in result["msg"]
    kong.get(ADMIN + "/services/gone", status=404, json={"message": "Not found"})
    result = run_module(kong_plugin, {"name": "prometheus", "service": "gone"})
    assert "service 'gone' does not exist in Kong" in result["msg"] and writes(kong) == []


def test_secret_fields_are_masked_everywhere(kong, run_module):
    secret = "redis-pass-Xy7"
    current = plugin("r1", {"minute": 5, "limit_by": "ip", "redis": {"password": secret, "port": 6379}}, name="rate-limiting")
    kong.get(ADMIN + "/schemas/plugins/rate-limiting", json=SECRET_SCHEMA)
    kong.get(ADMIN + "/plugins", json={"data": [current], "next": None})
    kong.patch(ADMIN + "/plugins/r1", json=plugin("r1", {"minute": 10, "limit_by": "ip", "redis": {"password": secret, "port": 6380}},
                                                  name="rate-limiting"))
    result = run_module(kong_plugin, {"name": "rate-limiting", "config": {"minute": "10", "redis": {"port": "6380"}}}, diff=True)
    assert writes(kong)[0][2] == {"config": {"minute": 10, "limit_by": "ip", "redis": {"password": secret, "port": 6380}}}
    assert secret not in str(result) and result["plugin"]["config"]["redis"]["password"] == _plugins.MASK
    info = run_module(kong_plugin_info, {"name": "rate-limiting"})
    assert secret not in str(info) and info["plugins"][0]["scope"] == "global"


def test_info_effective_instance_follows_kongs_precedence(kong, run_module):
    kong.get(ADMIN + "/services/shop", json={"id": SID})
    kong.get(ADMIN + "/routes/shop", status=404, json={"message": "Not found"})
    kong.get(ADMIN + "/schemas/plugins/prometheus", json=PROM_SCHEMA)
    kong.get(ADMIN + "/plugins", json={"data": [plugin("g1", OFF), plugin("s1", OFF, service=SID, enabled=False),
                                                plugin("o1", OFF, service="other")], "next": None})
    result = run_module(kong_plugin_info, {"name": "prometheus", "service": "shop", "route": "shop", "effective": True})
    # the service's own instance is disabled, so the global one runs; the route does not exist yet
    assert result["effective"]["id"] == "g1" and result["not_found"] == ["route"]
    assert len(result["plugins"]) == 3


def test_effective_instance_order():
    plugins = [plugin("g", OFF), plugin("s", OFF, service=SID), plugin("r", OFF, route=RID), plugin("rs", OFF, service=SID, route=RID)]
    assert _plugins.effective_instance(plugins, SID, RID)["id"] == "rs"
    assert _plugins.effective_instance(plugins[:3], SID, RID)["id"] == "r"
    assert _plugins.effective_instance(plugins[:2], SID, RID)["id"] == "s"
    assert _plugins.effective_instance(plugins[:2], "x", None)["id"] == "g"
    assert _plugins.effective_instance(plugins[1:2], "x", None) is None


def test_coerce_config_types():
    fields = [{"n": {"type": "number"}}, {"i": {"type": "integer"}}, {"b": {"type": "boolean"}},
              {"a": {"type": "array", "elements": {"type": "integer"}}}, {"m": {"type": "map", "values": {"type": "boolean"}}},
              {"s": {"type": "string"}}]
    got = _plugins.coerce_config({"n": "1.5", "i": "7", "b": "no", "a": ["1", 2], "m": {"x": "on"}, "s": 5}, fields)
    assert got == {"n": 1.5, "i": 7, "b": False, "a": [1, 2], "m": {"x": True}, "s": "5"}
    with pytest.raises(ValueError, match=r"config.i must be a whole number, got '7.5'"):
        _plugins.coerce_config({"i": "7.5"}, fields)
    with pytest.raises(ValueError, match=r"config.a must be a list"):
        _plugins.coerce_config({"a": "1,2"}, fields)
