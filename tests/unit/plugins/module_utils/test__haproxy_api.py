# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The HAProxy Runtime API client against a fake Runtime API on a unix and a TCP socket, and its parsers."""

from __future__ import annotations

import os

import pytest

from ansible_collections.mixedrun.kong.plugins.module_utils._haproxy_api import (
    HAProxyApiError,
    HAProxyClient,
    parse_runtime_api,
    server_view,
)
from ansible_collections.mixedrun.kong.plugins.module_utils._kong_probe import kong_answer

from fake_haproxy import FakeHAProxy


@pytest.fixture(params=["unix", "tcp"])
def fake(request, tmp_path):
    server = FakeHAProxy({"kong_proxy": {"dp-1": {"addr": "10.0.0.1", "port": 8000, "weight": 3, "admin": 0x08, "scur": 2}}})
    address = server.start_unix(str(tmp_path / "admin.sock")) if request.param == "unix" else server.start_tcp()
    yield server, address
    server.stop()


@pytest.mark.parametrize("value, expected", [
    ("/run/haproxy/admin.sock", ("unix", "/run/haproxy/admin.sock")),
    ("unix@/run/h.sock", ("unix", "/run/h.sock")),
    ("ipv4@127.0.0.1:9999", ("tcp", ("127.0.0.1", 9999))),
    ("127.0.0.1:9999", ("tcp", ("127.0.0.1", 9999))),
    ("ipv6@[::1]:9999", ("tcp", ("::1", 9999))),
])
def test_parse_runtime_api(value, expected):
    assert parse_runtime_api(value) == expected


@pytest.mark.parametrize("value", ["", "localhost", "ipv4@127.0.0.1:0", "http://x:1"])
def test_parse_runtime_api_refuses(value):
    with pytest.raises(ValueError, match="runtime_api"):
        parse_runtime_api(value)


def test_reads(fake):
    _server, address = fake
    client = HAProxyClient(address)
    assert client.version() == "2.6.12-1+deb12u4"
    assert client.backends() == ["kong_proxy"]
    rows = client.servers_state("kong_proxy")
    view = server_view(rows[0], client.stats("kong_proxy")["dp-1"])
    assert view["name"] == "dp-1" and view["address"] == "10.0.0.1" and view["port"] == 8000 and view["weight"] == 3
    assert view["state"] == "drain" and view["status"] == "DRAIN" and view["current_sessions"] == 2
    with pytest.raises(HAProxyApiError, match="backend 'nope' does not exist"):
        client.servers_state("nope")


def test_action_check_mode_and_errors(fake):
    server, address = fake
    dry = HAProxyClient(address, check_mode=True)
    assert dry.action("set server kong_proxy/dp-1 weight 5") is None
    assert dry.commands == [{"command": "set server kong_proxy/dp-1 weight 5", "check_mode": True}]
    assert not any(line.startswith("set") for line in server.received)
    client = HAProxyClient(address)
    client.action("set server kong_proxy/dp-1 weight 5")
    assert server.backends["kong_proxy"]["dp-1"]["weight"] == 5
    with pytest.raises(HAProxyApiError, match="No such backend"):
        client.action("add server nope/x 10.0.0.1:1")
    assert client.commands[-1] == {"command": "add server nope/x 10.0.0.1:1"}


def test_unreachable_socket_names_the_field(tmp_path):
    client = HAProxyClient(str(tmp_path / "none.sock"), timeout=1)
    with pytest.raises(HAProxyApiError) as err:
        client.backends()
    assert err.value.unreachable and "does not answer" in str(err.value) and "set runtime_api to HAProxy's admin socket" in str(err.value)
    assert not os.path.exists(str(tmp_path / "none.sock"))


def test_kong_answer():
    assert kong_answer(404, {"server": "kong/3.9.3"}, "") is None
    assert kong_answer(404, {}, '{"message":"no Route matched with those values"}') is None
    assert kong_answer(200, {"via": "1.1 kong/3.9.3"}, "") is None
    assert "without Kong's headers (Server: nginx)" in kong_answer(200, {"server": "nginx"}, "hello")
