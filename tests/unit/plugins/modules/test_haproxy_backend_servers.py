# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""haproxy_backend_servers and haproxy_backend_info run in-process against a fake HAProxy Runtime API."""

from __future__ import annotations

import json
import os
import re
import sys

import pytest

from kong_module_helpers import patch_module_args

from ansible_collections.mixedrun.kong.plugins.modules import haproxy_backend_info, haproxy_backend_servers

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "module_utils"))
from fake_haproxy import FakeHAProxy  # noqa: E402  pylint: disable=wrong-import-position

CONFIG = """global
    stats socket /run/haproxy/admin.sock level admin

backend kong_proxy
    balance roundrobin
    server dp-1 10.0.0.1:8000 check
    server old 10.0.0.9:8000 check
"""


@pytest.fixture
def lb(tmp_path, monkeypatch):
    fake = FakeHAProxy({"kong_proxy": {
        "dp-1": {"addr": "10.0.0.1", "port": 8000, "weight": 1, "admin": 0, "scur": 0},
        "old": {"addr": "10.0.0.9", "port": 8000, "weight": 1, "admin": 0, "scur": 0}}})
    path = fake.start_unix(str(tmp_path / "admin.sock"))
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(CONFIG)
    monkeypatch.setattr(haproxy_backend_servers, "probe_kong", lambda address, port, timeout: None)
    yield fake, path, cfg
    fake.stop()


@pytest.fixture
def run(capsys):
    def _run(module, args, check_mode=False, diff=False):
        full = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
        with patch_module_args(full):
            with pytest.raises(SystemExit):
                module.main()
        return json.loads(capsys.readouterr().out)
    return _run


def servers(fake):
    return dict((n, (s["addr"], s["port"], s["weight"], s["admin"])) for n, s in fake.backends["kong_proxy"].items())


def test_reconcile_check_mode_then_apply_then_idempotent(lb, run):
    fake, sock, cfg = lb
    args = {"runtime_api": sock, "backend": "kong_proxy", "purge": True, "config_file": str(cfg), "server_options": "check",
            "servers": [{"name": "dp-1", "address": "10.0.0.1", "port": 8000}, {"name": "dp-2", "address": "10.0.0.2", "port": 8000, "weight": 2}]}
    before = servers(fake)
    res = run(haproxy_backend_servers, args, check_mode=True, diff=True)
    assert res["changed"] and res["added"] == ["dp-2"] and res["deleted"] == ["old"] and res["config_changed"]
    assert all(c.get("check_mode") for c in res["commands"])
    assert servers(fake) == before and cfg.read_text() == CONFIG
    assert [s["name"] for s in res["diff"]["after"]["servers"]] == ["dp-1", "dp-2"]
    res = run(haproxy_backend_servers, args)
    assert res["changed"]
    cmds = [c["command"] for c in res["commands"]]
    # the new server takes traffic before the old one is drained and deleted
    assert cmds.index("set server kong_proxy/dp-2 state ready") < cmds.index("set server kong_proxy/old state drain")
    assert cmds[-2:] == ["set server kong_proxy/old state maint", "del server kong_proxy/old"]
    assert servers(fake) == {"dp-1": ("10.0.0.1", 8000, 1, 0), "dp-2": ("10.0.0.2", 8000, 2, 0)}
    text = cfg.read_text()
    assert "    server dp-2 10.0.0.2:8000 weight 2 check\n" in text and "old" not in text
    res = run(haproxy_backend_servers, args)
    assert not res["changed"] and res["commands"] == [] and not res["config_changed"]


def test_drain_one_by_name(lb, run):
    fake, sock, _cfg = lb
    res = run(haproxy_backend_servers, {"runtime_api": sock, "backend": "kong_proxy", "servers": [{"name": "dp-1", "state": "drain"}],
                                        "wait_drained": True})
    assert res["changed"] and res["updated"] == {"dp-1": {"state": ["ready", "drain"]}} and "dp-1" in res["drained_seconds"]
    assert fake.backends["kong_proxy"]["dp-1"]["admin"] == 0x08 and "old" in fake.backends["kong_proxy"]


@pytest.mark.parametrize("args, message", [
    ({"backend": "nope"}, r"backend: 'nope' does not exist in HAProxy .*its backends: kong_proxy.*nothing was changed"),
    ({"servers": [{"name": "x"}]}, r"servers\[0\] \(x\): not in the backend yet; give its address and port.*nothing was changed"),
    ({"servers": [{"name": "x", "address": "10.0.0.5", "port": 99999}]}, r"servers\[0\] \(x\)\.port: 99999 is not a port"),
])
def test_bad_input_changes_nothing(lb, run, args, message):
    fake, sock, cfg = lb
    before = servers(fake)
    res = run(haproxy_backend_servers, dict({"runtime_api": sock, "backend": "kong_proxy", "config_file": str(cfg)}, **args))
    assert res["failed"] and re.search(message, res["msg"]), res["msg"]
    assert servers(fake) == before and cfg.read_text() == CONFIG
    assert not any(line.split()[0] in ("add", "del", "set") for line in fake.received)


def test_not_kong_is_refused(lb, run, monkeypatch):
    fake, sock, _cfg = lb
    monkeypatch.setattr(haproxy_backend_servers, "probe_kong", lambda address, port, timeout: "it answered HTTP 200 without Kong's headers")
    res = run(haproxy_backend_servers, {"runtime_api": sock, "backend": "kong_proxy",
                                        "servers": [{"name": "web", "address": "10.0.0.7", "port": 80}]})
    assert res["failed"] and "not a Kong proxy: servers[0] (web) 10.0.0.7:80" in res["msg"] and "kong_check: false" in res["msg"]
    assert "web" not in fake.backends["kong_proxy"]


def test_socket_that_does_not_answer(tmp_path, run):
    res = run(haproxy_backend_servers, {"runtime_api": str(tmp_path / "gone.sock"), "backend": "kong_proxy"})
    assert res["failed"] and "does not answer" in res["msg"] and "set runtime_api" in res["msg"] and "nothing was changed" in res["msg"]


def test_info(lb, run):
    _fake, sock, _cfg = lb
    res = run(haproxy_backend_info, {"runtime_api": sock, "backend": "kong_proxy"})
    assert not res["changed"] and [s["name"] for s in res["servers"]] == ["dp-1", "old"] and res["haproxy_version"].startswith("2.6")
    res = run(haproxy_backend_info, {"runtime_api": sock, "backend": "other"})
    assert res["failed"] and "backend: 'other' does not exist" in res["msg"]


def test_route_check_describe():
    from ansible_collections.mixedrun.kong.plugins.modules.kong_route_check import describe  # pylint: disable=import-outside-toplevel
    ok = [200, 301]
    assert describe(200, {"x-kong-upstream-latency": "3"}, "", ok) is None
    assert "not in status_code" in describe(500, {"x-kong-upstream-latency": "3"}, "", ok)
    assert "no Route matched" in describe(404, {"server": "kong/3.9.3"}, '{"message":"no Route matched with those values"}', ok)
    assert "not proxied by a Kong route (Server: nginx)" in describe(200, {"server": "nginx"}, "default backend", ok)
