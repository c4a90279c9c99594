# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import copy

from ansible_collections.mixedrun.kong.plugins.modules import kong_upstream

from kong_module_helpers import ADMIN, fixture, writes

UP = fixture("upstream")
UID = UP["id"]
PASSIVE = {"passive": {"unhealthy": {"http_failures": 5, "tcp_failures": 2}}}


def _with_passive():
    up = copy.deepcopy(UP)
    up["healthchecks"]["passive"]["unhealthy"]["http_failures"] = 5
    up["healthchecks"]["passive"]["unhealthy"]["tcp_failures"] = 2
    return up


def test_create_sends_full_healthchecks(kong, run_module):
    kong.get(ADMIN + "/upstreams/shop.upstream", status=404, json={"message": "Not found"})
    kong.put(ADMIN + "/upstreams/shop.upstream", json=_with_passive())
    result = run_module(kong_upstream, {"name": "shop.upstream", "healthchecks": PASSIVE, "tags": ["mixedrun-managed"]})
    assert result["changed"] is True
    (method, path, body), = writes(kong)
    assert (method, path) == ("PUT", "/upstreams/shop.upstream")
    assert body["healthchecks"] == _with_passive()["healthchecks"]
    assert body["name"] == "shop.upstream"


def test_partial_healthchecks_rerun_is_no_change(kong, run_module):
    kong.get(ADMIN + "/upstreams/shop.upstream", json=_with_passive())
    result = run_module(kong_upstream, {"name": "shop.upstream", "healthchecks": PASSIVE, "algorithm": "round-robin",
                                        "slots": 10000, "tags": ["mixedrun-managed"]})
    assert result["changed"] is False and writes(kong) == []


def test_update_patches_by_id_with_only_the_differences(kong, run_module):
    kong.get(ADMIN + "/upstreams/shop.upstream", json=UP)
    kong.patch(ADMIN + "/upstreams/" + UID, json=_with_passive())
    result = run_module(kong_upstream, {"name": "shop.upstream", "healthchecks": PASSIVE, "algorithm": "round-robin"},
                        diff=True)
    assert result["changed"] is True
    (method, path, body), = writes(kong)
    assert (method, path, list(body)) == ("PATCH", "/upstreams/" + UID, ["healthchecks"])
    assert result["diff"]["after"]["healthchecks"]["passive"]["unhealthy"]["http_failures"] == 5


def test_check_mode_changes_nothing(kong, run_module):
    kong.get(ADMIN + "/upstreams/shop.upstream", json=UP)
    result = run_module(kong_upstream, {"name": "shop.upstream", "algorithm": "least-connections"}, check_mode=True)
    assert result["changed"] is True and writes(kong) == []
    assert result["upstream"]["algorithm"] == "least-connections"
    assert result["api_calls"][-1]["check_mode"] is True


def test_name_is_validated_before_any_call(kong, run_module):
    for name, words in (("1.2.3.4", "is an IP address"), ("shop.upstream:80", "carries a port"),
                        ("bad name", "is not a valid hostname"), ("[::1]", "is an IP address")):
        result = run_module(kong_upstream, {"name": name})
        assert result["failed"] is True and words in result["msg"], result["msg"]
        assert result["msg"].startswith("Failed to ensure upstream %s: name" % name)
    result = run_module(kong_upstream, {"name": "ok", "healthchecks": {"pasive": {}}})
    assert "healthchecks.pasive" in result["msg"]  # Ansible refuses the unknown sub-option, naming it
    result = run_module(kong_upstream, {"name": "ok", "slots": 5})
    assert "slots must be between 10 and 65536" in result["msg"]
    assert len(kong.calls) == 0


def test_delete_by_id(kong, run_module):
    kong.get(ADMIN + "/upstreams/shop.upstream", json=UP)
    kong.delete(ADMIN + "/upstreams/" + UID, status=204)
    result = run_module(kong_upstream, {"name": "shop.upstream", "state": "absent"})
    assert result["changed"] is True and writes(kong) == [("DELETE", "/upstreams/" + UID, None)]


def test_healthchecks_numbers_and_booleans_given_as_strings_are_converted(kong, run_module):
    # What ansible-core before 2.19 hands over for templated values, and what -e / AWX surveys give.
    kong.get(ADMIN + "/upstreams/shop.upstream", json=UP)
    kong.patch(ADMIN + "/upstreams/" + UID, json=UP)
    checks = {"threshold": "0",
              "active": {"timeout": "1.5", "concurrency": "10", "https_verify_certificate": "no",
                         "healthy": {"interval": "5", "successes": "2", "http_statuses": ["200", "302"]},
                         "unhealthy": {"interval": "5", "http_failures": "2", "tcp_failures": "2", "timeouts": "2"}},
              "passive": {"unhealthy": {"http_failures": "5"}}}
    result = run_module(kong_upstream, {"name": "shop.upstream", "healthchecks": checks})
    assert result["changed"] is True
    (_method, _path, body), = writes(kong)
    sent = body["healthchecks"]
    assert sent["active"]["healthy"] == {"interval": 5, "successes": 2, "http_statuses": [200, 302]}
    assert sent["active"]["unhealthy"]["http_failures"] == 2 and sent["active"]["unhealthy"]["interval"] == 5
    assert sent["active"]["timeout"] == 1.5 and sent["active"]["concurrency"] == 10
    assert sent["active"]["https_verify_certificate"] is False
    assert sent["passive"]["unhealthy"]["http_failures"] == 5 and sent["threshold"] == 0
    for value in (sent["active"]["healthy"]["interval"], sent["threshold"], sent["passive"]["unhealthy"]["http_failures"]):
        assert isinstance(value, int) and not isinstance(value, bool)
    # unset sub-options take Kong's defaults: never sent as null
    assert sent["passive"]["healthy"] == UP["healthchecks"]["passive"]["healthy"]
    assert sent["passive"]["type"] == "http" and sent["active"]["http_path"] == "/"


def test_healthchecks_strings_rerun_is_no_change(kong, run_module):
    kong.get(ADMIN + "/upstreams/shop.upstream", json=_with_passive())
    result = run_module(kong_upstream, {"name": "shop.upstream", "healthchecks": {
        "passive": {"unhealthy": {"http_failures": "5", "tcp_failures": "2"}}, "threshold": "0"}})
    assert result["changed"] is False and writes(kong) == []


def test_healthchecks_bad_values_name_the_sub_option_and_change_nothing(kong, run_module):
    cases = [
        ({"active": {"healthy": {"successes": 300}}}, "healthchecks.active.healthy.successes", "300"),
        ({"passive": {"unhealthy": {"timeouts": -1}}}, "healthchecks.passive.unhealthy.timeouts", "-1"),
        ({"threshold": 101}, "healthchecks.threshold", "101"),
        ({"active": {"concurrency": 0}}, "healthchecks.active.concurrency", "0"),
        ({"active": {"http_path": "healthz"}}, "healthchecks.active.http_path", "'healthz'"),
        ({"active": {"unhealthy": {"http_statuses": [500, 1000]}}}, "healthchecks.active.unhealthy.http_statuses", "1000"),
        # Ansible's own type check, with the value added by KongModule
        ({"active": {"healthy": {"interval": "five"}}}, "healthchecks.active.healthy.interval", "'five'"),
        ({"active": {"type": "udp"}}, "type", "udp"),
    ]
    for checks, where, value in cases:
        result = run_module(kong_upstream, {"name": "shop.upstream", "healthchecks": checks})
        assert result["failed"] is True, checks
        assert where in result["msg"] and value in result["msg"], result["msg"]
        assert "Traceback" not in result.raw
    assert len(kong.calls) == 0
