# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bad input, module by module: every error names the option and the value and says what to do, comes before any
request (so before any write or lock), and never as a traceback."""

from __future__ import annotations

import copy

import pytest

from ansible_collections.mixedrun.kong.plugins.modules import (
    kong_rollout_lock,
    kong_route,
    kong_service,
    kong_target,
    kong_traffic_split,
    kong_upstream,
    kong_upstream_info,
    kong_upstream_targets,
    rollout_gate,
)

from kong_module_helpers import ADMIN, fixture, writes

UP = fixture("upstream")
UID = UP["id"]

# The smallest valid arguments of each module that has an ``upstream`` option.
UPSTREAM_MODULES = [
    (kong_target, {"target": "10.0.0.5:8080"}),
    (kong_upstream_info, {}),
    (kong_upstream_targets, {"targets": [{"target": "10.0.0.5:8080"}]}),
    (kong_traffic_split, {"container_share": 10}),
    (rollout_gate, {"probes": {"enabled": True, "targets": ["10.0.1.7:8080"]}, "kong_health": {"enabled": False}}),
    (kong_rollout_lock, {"owner": "job-1@ctl"}),
]
ALL_MODULES = [
    (kong_service, {"name": "shop", "host": "shop.upstream"}),
    (kong_route, {"name": "shop", "hosts": ["shop.example.com"]}),
    (kong_upstream, {"name": "shop.upstream"}),
] + [(module, dict(args, upstream="shop.upstream")) for module, args in UPSTREAM_MODULES]


def _ids(cases):
    return [module.__name__.rsplit(".", 1)[-1] for module, _args in cases]


def assert_clean_failure(result, kong, *words):
    """Failed, naming every word, no request at all, no traceback."""
    assert result["failed"] is True, result
    for word in words:
        assert word in result["msg"], (word, result["msg"])
    assert len(kong.calls) == 0, [c.request.url for c in kong.calls]
    assert writes(kong) == []
    assert "Traceback" not in result.raw and "exception" not in result


@pytest.mark.parametrize("module, args", UPSTREAM_MODULES, ids=_ids(UPSTREAM_MODULES))
@pytest.mark.parametrize("bad", ["", "   "])
def test_empty_upstream_is_refused_before_any_request(kong, run_module, module, args, bad):
    result = run_module(module, dict(args, upstream=bad))
    assert_clean_failure(result, kong, "upstream %r is empty" % bad, "shop.upstream")
    assert result["api_calls"] == []


@pytest.mark.parametrize("module, args", UPSTREAM_MODULES, ids=_ids(UPSTREAM_MODULES))
def test_upstream_that_is_not_a_name_is_refused(kong, run_module, module, args):
    result = run_module(module, dict(args, upstream="shop/../upstreams"))
    assert_clean_failure(result, kong, "upstream 'shop/../upstreams' is not a valid hostname")


@pytest.mark.parametrize("module, args", ALL_MODULES, ids=_ids(ALL_MODULES))
@pytest.mark.parametrize("bad, words", [
    ("kong-admin:8001", ["admin_url 'kong-admin:8001'", "no scheme", "http://kong-admin:8001"]),
    ("kong-admin.example.com", ["admin_url 'kong-admin.example.com'", "https://kong-admin.example.com"]),
    ("ftp://kong:8001", ["admin_url 'ftp://kong:8001'", "scheme 'ftp'"]),
    ("http://[::1:8001", ["admin_url 'http://[::1:8001'", "not a valid URL"]),
    ("http://kong:80010", ["admin_url 'http://kong:80010'", "invalid port"]),
])
def test_admin_url_is_checked_before_any_request(kong, run_module, module, args, bad, words):
    result = run_module(module, dict(args, admin_url=bad))
    assert_clean_failure(result, kong, *words)


def test_targets_as_host_port_strings_are_accepted(kong, run_module):
    kong.get(ADMIN + "/upstreams/shop.upstream", json=UP)
    kong.get(ADMIN + "/upstreams/%s/targets/all" % UID, json={"data": [], "next": None})
    kong.post(ADMIN + "/upstreams/%s/targets" % UID, json={"id": "t1", "target": "10.0.0.5:8080", "weight": 100})
    result = run_module(kong_upstream_targets, {"upstream": "shop.upstream",
                                                "targets": ["10.0.0.5:8080", {"target": "10.0.0.6:8080", "weight": "30"}]},
                        check_mode=True)
    assert result.get("failed") is not True, result["msg"]
    assert result["counts"]["created"] == 2 and writes(kong) == []
    after = dict((t["target"], t["weight"]) for t in result["after"])
    assert after == {"10.0.0.5:8080": 100, "10.0.0.6:8080": 30}


def test_targets_string_that_is_not_a_target_names_the_entry(kong, run_module):
    result = run_module(kong_upstream_targets, {"upstream": "shop.upstream", "targets": ["10.0.0.5:8080", "not a target"]})
    assert_clean_failure(result, kong, "targets[1].target", "'not a target'", "nothing was changed")


@pytest.mark.parametrize("module, args, field", [
    (kong_target, {"upstream": "shop.upstream", "target": "http://10.0.0.5:8080"}, "target"),
    (kong_upstream_targets, {"upstream": "shop.upstream", "targets": [{"target": "http://10.0.0.5:8080"}]},
     "targets[0].target"),
    (kong_upstream_targets, {"upstream": "shop.upstream", "targets": ["http://10.0.0.5:8080"]}, "targets[0].target"),
    (kong_traffic_split, {"upstream": "shop.upstream", "container_share": 10, "vm_targets": ["http://10.0.0.5:8080"]},
     "vm_targets[0]"),
    (rollout_gate, {"upstream": "shop.upstream", "container_targets": ["http://10.0.0.5:8080"],
                    "kong_health": {"enabled": False}, "probes": {"enabled": True}}, "container_targets"),
], ids=["kong_target", "kong_upstream_targets", "kong_upstream_targets-string", "kong_traffic_split", "rollout_gate"])
def test_target_given_as_url_says_so(kong, run_module, module, args, field):
    result = run_module(module, args)
    assert_clean_failure(result, kong, field, "'http://10.0.0.5:8080' is a URL", "'10.0.0.5:8080'")
    assert "ipv6" not in result["msg"].lower()


GATE = {"upstream": "shop.upstream", "container_targets": ["10.0.1.7:8080"], "kong_health": {"enabled": False},
        "lock": {"owner": "job-1@ctl"}}


@pytest.mark.parametrize("gate, words", [
    ({"traffic": {"url": "gateway.example.com"}},
     ["traffic.url 'gateway.example.com'", "no scheme", "https://gateway.example.com"]),
    ({"traffic": {"url": "  "}}, ["traffic.url is empty"]),
    ({"traffic": {"url": "tcp://gateway:80"}}, ["traffic.url 'tcp://gateway:80'", "scheme 'tcp'"]),
    ({"prometheus": {"url": "prometheus:9090", "queries": [{"name": "errors", "query": "up", "max": 1}]}},
     ["prometheus.url 'prometheus:9090'", "http://prometheus:9090"]),
    ({"kong_health": {"enabled": True, "admin_urls": ["kong-2:8001"]}}, ["kong_health.admin_urls[0] 'kong-2:8001'"]),
], ids=["traffic-no-scheme", "traffic-empty", "traffic-scheme", "prometheus-no-scheme", "kong-health-admin-urls"])
def test_gate_urls_are_checked_before_any_request_and_the_lock(kong, run_module, gate, words):
    args = copy.deepcopy(GATE)
    args.update(gate)
    result = run_module(rollout_gate, args)
    assert_clean_failure(result, kong, "Cannot evaluate the rollout gates", *words)
    assert result["decision"] == "error" and result["passed"] is False


@pytest.mark.parametrize("field, bad", [("verify_admin_urls", "kong-2:8001"), ("verify_admin_urls", "http://")])
def test_traffic_split_verify_urls_are_checked_first(kong, run_module, field, bad):
    result = run_module(kong_traffic_split, {"upstream": "shop.upstream", "container_share": 10, field: [bad]})
    assert_clean_failure(result, kong, "%s[0] %r" % (field, bad))


def test_traffic_split_targets_strings_stay_accepted(kong, run_module):
    # the shorthand kong_upstream_targets now shares: a string target, or a dict with target
    result = run_module(kong_traffic_split, {"upstream": "shop.upstream", "container_share": 10,
                                             "vm_targets": ["10.0.0.5:8080"], "container_targets": ["10.0.0.5:8080"]})
    assert_clean_failure(result, kong, "10.0.0.5:8080", "in both the VM and the container group")


def test_a_value_ansible_cannot_convert_is_named_with_the_option(kong, run_module):
    result = run_module(kong_upstream, {"name": "shop.upstream", "slots": "many"})
    assert_clean_failure(result, kong, "'slots'", "got 'many'")
    result = run_module(kong_upstream_targets, {"upstream": "shop.upstream", "concurrency": "eight"})
    assert_clean_failure(result, kong, "'concurrency'", "got 'eight'")


def test_a_secret_option_that_cannot_be_converted_is_not_shown(kong, run_module):
    result = run_module(kong_upstream, {"name": "shop.upstream", "headers": "X-Secret-Value-123"})
    assert_clean_failure(result, kong, "'headers'")
    assert "X-Secret-Value-123" not in result.raw
