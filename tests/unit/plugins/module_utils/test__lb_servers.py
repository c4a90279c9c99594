# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure server-set logic of the front load balancer: validation, plan, commands, the configuration block."""

from __future__ import annotations

import pytest

from ansible_collections.mixedrun.kong.plugins.module_utils._lb_servers import (
    add_commands,
    after_servers,
    config_block,
    markers,
    normalize_servers,
    persist_servers,
    plan_changed,
    plan_servers,
    update_commands,
)

CURRENT = [
    {"name": "dp-1", "address": "10.0.0.1", "port": 8000, "weight": 1, "state": "ready"},
    {"name": "dp-2", "address": "10.0.0.2", "port": 8000, "weight": 1, "state": "ready"},
]
CONFIG = """global
    stats socket /run/haproxy/admin.sock level admin

backend kong_proxy
    balance roundrobin
    server dp-1 10.0.0.1:8000 check inter 2s weight 1
    server dp-2 10.0.0.2:8000 check inter 2s

frontend fe
    bind :80
    default_backend kong_proxy
"""


def test_normalize_defaults_and_types():
    out = normalize_servers([{"name": "dp-1", "address": "10.0.0.1", "port": "8000"}, {"name": "dp-2"}])
    assert out == [{"name": "dp-1", "address": "10.0.0.1", "port": 8000, "weight": None, "state": None},
                   {"name": "dp-2", "address": None, "port": None, "weight": None, "state": None}]


@pytest.mark.parametrize("servers, message", [
    ([{"name": "a b"}], r"servers\[0\]\.name: 'a b' is not a valid HAProxy server name"),
    ([{"name": "a"}, {"name": "a"}], r"servers\[1\] \(a\): listed twice \(also servers\[0\]\)"),
    ([{"name": "a", "address": "http://x", "port": 1}], r"servers\[0\] \(a\)\.address: 'http://x' is not an IP address"),
    ([{"name": "a", "address": "x", "port": 0}], r"servers\[0\] \(a\)\.port: 0 is not a port"),
    ([{"name": "a", "address": "x"}], r"give address and port together"),
    ([{"name": "a", "weight": 300}], r"servers\[0\] \(a\)\.weight: 300 is not an HAProxy weight \(0-256\)"),
    ([{"name": "a", "state": "up"}], r"servers\[0\] \(a\)\.state: 'up' is not one of ready, drain, maint"),
    ([{"name": "a", "address": "x", "port": 1}, {"name": "b", "address": "x", "port": 1}], r"servers\[1\] \(b\): x:1 is also a"),
])
def test_normalize_errors_name_the_field(servers, message):
    with pytest.raises(ValueError, match=message):
        normalize_servers(servers)


def test_plan_add_update_delete():
    desired = normalize_servers([{"name": "dp-2", "weight": 5, "state": "drain"},
                                 {"name": "dp-3", "address": "10.0.0.3", "port": 8000}])
    plan = plan_servers(desired, CURRENT, purge=True)
    assert plan["add"] == [{"name": "dp-3", "address": "10.0.0.3", "port": 8000, "weight": 1, "state": "ready"}]
    assert plan["update"] == [{"name": "dp-2", "changes": {"weight": (1, 5), "state": ("ready", "drain")}}]
    assert plan["delete"] == ["dp-1"]
    assert plan_changed(plan)
    after = after_servers(CURRENT, plan)
    assert [s["name"] for s in after] == ["dp-2", "dp-3"]
    assert after[0]["state"] == "drain" and after[0]["weight"] == 5


def test_plan_only_given_fields_and_no_purge():
    desired = normalize_servers([{"name": "dp-1"}])
    plan = plan_servers(desired, CURRENT)
    assert not plan_changed(plan) and plan["unchanged"] == ["dp-1"] and plan["delete"] == []


def test_plan_needs_address_for_new_server():
    plan = plan_servers(normalize_servers([{"name": "new"}]), CURRENT)
    assert plan["errors"] == ["servers[0] (new): not in the backend yet; give its address and port to add it"]


def test_plan_address_change():
    plan = plan_servers(normalize_servers([{"name": "dp-1", "address": "10.0.0.9", "port": 8443}]), CURRENT)
    assert plan["update"] == [{"name": "dp-1", "changes": {"address": ("10.0.0.1:8000", "10.0.0.9:8443")}}]
    assert update_commands("be", plan["update"][0]) == ["set server be/dp-1 addr 10.0.0.9 port 8443"]


def test_commands():
    server = {"name": "dp-3", "address": "10.0.0.3", "port": 8000, "weight": 2, "state": "ready"}
    assert add_commands("be", server, "check inter 1s") == [
        "add server be/dp-3 10.0.0.3:8000 weight 2 check inter 1s", "enable health be/dp-3", "set server be/dp-3 state ready"]
    assert add_commands("be", dict(server, state="maint")) == ["add server be/dp-3 10.0.0.3:8000 weight 2"]
    assert update_commands("be", {"name": "x", "changes": {"state": ("ready", "drain"), "weight": (1, 3)}}) == [
        "set server be/x weight 3", "set server be/x state drain"]


def test_persist_replaces_server_lines_keeps_options_and_is_stable():
    servers = [dict(CURRENT[1], state="drain"), {"name": "dp-3", "address": "10.0.0.3", "port": 8000, "weight": 1, "state": "ready"}]
    text = persist_servers(CONFIG, "kong_proxy", servers, "check inter 1s")
    begin, end = markers("kong_proxy")
    assert "    " + begin in text and "    " + end in text
    assert "    server dp-2 10.0.0.2:8000 weight 1 check inter 2s disabled  # drain" in text
    assert "    server dp-3 10.0.0.3:8000 weight 1 check inter 1s" in text
    assert "dp-1" not in text
    assert "frontend fe\n    bind :80" in text and text.startswith("global\n")
    assert persist_servers(text, "kong_proxy", servers, "check inter 1s") == text     # idempotent
    assert config_block(text, "kong_proxy").splitlines()[0] == begin


def test_persist_unknown_backend():
    with pytest.raises(ValueError, match="no `backend nope`"):
        persist_servers(CONFIG, "nope", [], "")
