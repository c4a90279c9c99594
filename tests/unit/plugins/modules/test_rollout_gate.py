# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""rollout_gate: every gate, the hold window, the failure budget, no-data policies and the lock, HTTP mocked."""

from __future__ import annotations

import time

import pytest
import requests
import responses
from responses import matchers

from ansible_collections.mixedrun.kong.plugins.modules import rollout_gate

from kong_module_helpers import ADMIN, TOKEN, fixture, writes
from test_kong_rollout_lock import LOCK, FakeKong, lock_tags

ADMIN2 = "http://kong-2.test:8001"
PROM = "http://prom.test:9090"
GW = "http://gateway.test"
VM = "10.0.0.5:8080"
CT1 = "10.0.1.7:8080"
CT2 = "10.0.1.8:8080"
NOW = 1767225600.0


class Clock:
    def __init__(self):
        self.now = NOW
        self.sleeps = []

    def time(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(time, "time", fake.time)
    monkeypatch.setattr(time, "sleep", fake.sleep)
    return fake


def target(t, kind, weight=10):
    return {"id": "id-" + t, "target": t, "weight": weight, "tags": ["mixedrun-managed", "mixedrun-kind:" + kind],
            "upstream": {"id": "u1"}, "created_at": 1700000000.1, "updated_at": 1700000000.1}


def health(states):
    items = []
    for t, state in states.items():
        item = target(t, "vm" if t == VM else "container")
        item["health"] = state
        items.append(item)
    return {"data": items, "next": None, "node_id": "node-1"}


def mock_targets(kong):
    data = [target(VM, "vm"), target(CT1, "container"), target(CT2, "container")]
    kong.get(ADMIN + "/upstreams/shop/targets", json={"data": data, "next": None})


def mock_upstream(kong, checks_on=True, role="traditional"):
    """The upstream entity (a real Kong body) with active health checks on (interval 2) or Kong's defaults (off), and
    ``GET /`` of the node (its role)."""
    kong.get(ADMIN + "/", json={"configuration": {"role": role}, "node_id": "node-1", "version": "3.9.3"})
    body = fixture("upstream")
    body["name"] = "shop"
    if checks_on:
        body["healthchecks"]["active"]["healthy"]["interval"] = 2
        body["healthchecks"]["active"]["unhealthy"]["interval"] = 2
    kong.get(ADMIN + "/upstreams/shop", json=body)


def vector(*values):
    return {"status": "success", "data": {"resultType": "vector",
                                          "result": [{"metric": {}, "value": [NOW, str(v)]} for v in values]}}


BASE = {"upstream": "shop", "kong_health": {"enabled": False}}


def test_all_gates_pass_over_the_hold_window_with_values_and_thresholds(kong, run_module, clock):
    mock_targets(kong)
    mock_upstream(kong)
    kong.get(ADMIN + "/upstreams/shop/health", json=health({VM: "HEALTHY", CT1: "HEALTHY", CT2: "HEALTHY"}))
    kong.get(ADMIN2 + "/upstreams/shop/health", json=health({VM: "HEALTHCHECKS_OFF", CT1: "HEALTHY", CT2: "HEALTHY"}))
    kong.get("http://%s/healthz" % CT1, json={"status": "ok"})
    kong.get("http://%s/healthz" % CT2, json={"status": "ok"})
    kong.get(PROM + "/api/v1/query", json=vector(0.001, 0.002))
    kong.get(GW + "/", json={})
    result = run_module(rollout_gate, {
        "upstream": "shop", "hold": 4, "interval": 2, "admin_token": TOKEN,
        "kong_health": {"admin_urls": [ADMIN, ADMIN2]},
        "probes": {"enabled": True, "path": "/healthz"},
        "prometheus": {"url": PROM, "queries": [{"name": "5xx ratio", "query": "x", "max": 0.01}]},
        "traffic": {"url": GW, "host": "shop.example.com", "requests": 10},
    })
    assert not result.get("failed"), result.get("msg")
    assert result["decision"] == "pass" and result["passed"] is True and result["changed"] is False
    assert len(result["evaluations"]) == 2 and result["held"] == 4.0
    gates = {g["name"]: g for g in result["gates"]}
    assert set(gates) == {"kong_health@" + ADMIN, "kong_health@" + ADMIN2, "probes", "5xx ratio", "traffic"}
    assert gates["5xx ratio"]["value"] == 0.002 and gates["5xx ratio"]["threshold"] == "<= 0.01"
    assert gates["traffic"]["value"] == 1.0 and gates["traffic"]["threshold"] == ">= 0.99"
    assert gates["probes"]["value"] == 0.0 and gates["kong_health@" + ADMIN2]["value"] == 0.0
    assert result["container_targets"] == [CT1, CT2]
    traffic_calls = [c for c in kong.calls if c.request.url.startswith(GW)]
    assert len(traffic_calls) == 20 and all(c.request.headers["Host"] == "shop.example.com" for c in traffic_calls)
    probe_calls = [c.request.url for c in kong.calls if "/healthz" in c.request.url]
    assert sorted(probe_calls) == sorted(["http://%s/healthz" % CT1, "http://%s/healthz" % CT2] * 2)
    assert TOKEN not in result.raw
    assert any(c.get("node") == ADMIN2 for c in result["api_calls"])
    assert not result.get("warnings")
    assert result["no_data"] == {} and not any(g["no_data"] for e in result["evaluations"] for g in e["gates"])


def test_an_evaluation_without_data_is_named_even_when_the_step_passes(kong, run_module):
    kong.get(PROM + "/api/v1/query", json=vector())          # the first evaluation: no series yet
    kong.get(PROM + "/api/v1/query", json=vector(0.0))       # then a value
    result = run_module(rollout_gate, dict(BASE, hold=2, interval=1, no_data="pass", step_label="step 1 of 3 (10%)",
                                           prometheus={"url": PROM, "queries": [{"name": "5xx", "query": "x", "max": 0.05}]}))
    assert result["decision"] == "pass"
    assert [g["no_data"] for e in result["evaluations"] for g in e["gates"]] == [True, False]
    assert result["gates"][0]["value"] == 0.0 and result["gates"][0]["no_data"] is False
    assert result["no_data"] == {"5xx": {"evaluations": 2, "no_data": 1, "statuses": ["pass"]}}
    assert any("NO DATA: gate '5xx' measured nothing at 1 of 2 evaluations of step 1 of 3 (10%) (counted as pass" in str(w)
               for w in result["warnings"])


def test_a_failed_step_names_the_gates_that_passed_without_data(kong, run_module):
    kong.get("http://%s/" % CT1, status=500)
    kong.get(PROM + "/api/v1/query", json=vector())
    result = run_module(rollout_gate, dict(BASE, container_targets=[CT1], probes={"enabled": True}, no_data="pass",
                                           prometheus={"url": PROM, "queries": [{"name": "5xx", "query": "x", "max": 0.05}]}))
    assert result["decision"] == "rollback" and result["failing_gate"]["name"] == "probes"
    assert result["msg"].endswith("; NO DATA (measured nothing, counted as pass by the no_data policy): gate '5xx'")


def test_unhealthy_container_on_one_kong_node_rolls_back_naming_the_gate(kong, run_module):
    mock_targets(kong)
    mock_upstream(kong)
    kong.get(ADMIN + "/upstreams/shop/health", json=health({VM: "UNHEALTHY", CT1: "HEALTHY", CT2: "HEALTHY"}))
    kong.get(ADMIN2 + "/upstreams/shop/health", json=health({VM: "HEALTHY", CT1: "HEALTHY", CT2: "DNS_ERROR"}))
    result = run_module(rollout_gate, {"upstream": "shop", "hold": 1, "interval": 1, "step_label": "step 3 of 5 (25%)",
                                       "kong_health": {"admin_urls": [ADMIN, ADMIN2]}})
    assert result["failed"] is True and result["decision"] == "rollback"
    assert "at step 3 of 5 (25%)" in result["msg"]
    assert "gate 'kong_health@%s' (kong_health) failed: measured 1, threshold 0 container targets UNHEALTHY/DNS_ERROR" % ADMIN2 in result["msg"]
    assert "%s DNS_ERROR" % CT2 in result["msg"] and "2 failed evaluations in a row" in result["msg"]
    assert result["failing_gate"]["value"] == 1.0
    # an unhealthy VM does not fail a container gate
    assert [g["status"] for g in result["gates"] if g["name"].endswith(ADMIN)] == ["pass"]
    assert writes(kong) == []


def test_failing_probe_names_the_node_and_the_reason(kong, run_module):
    kong.get("http://%s/healthz" % CT1, status=503)
    kong.get("http://%s/healthz" % CT2, body=requests.exceptions.ConnectionError("refused"))
    result = run_module(rollout_gate, dict(BASE, container_targets=[CT1, CT2], max_consecutive_failures=1,
                                           probes={"enabled": True, "path": "healthz"}))
    assert result["decision"] == "rollback" and result["failing_gate"]["value"] == 2.0
    assert "%s: HTTP 503" % CT1 in result["msg"] and "%s: connection failed" % CT2 in result["msg"]


def test_budget_holds_first_and_a_recovering_gate_passes(kong, run_module, clock):
    kong.get("http://%s/" % CT1, status=500)
    kong.get("http://%s/" % CT1, status=200)
    result = run_module(rollout_gate, dict(BASE, container_targets=[CT1], hold=0, interval=3, probes={"enabled": True}))
    assert result["decision"] == "pass"
    assert [e["status"] for e in result["evaluations"]] == ["fail", "pass"]
    assert result["budget"] == {"failures": 1, "consecutive": 0, "max_failures": 3, "max_consecutive_failures": 2}
    assert 3.0 in clock.sleeps            # the weight was held one interval before re-checking


def test_budget_carried_over_from_earlier_steps(kong, run_module):
    kong.get("http://%s/" % CT1, status=500)
    result = run_module(rollout_gate, dict(BASE, container_targets=[CT1], probes={"enabled": True}, failures_before=2,
                                           max_failures=3))
    assert result["decision"] == "rollback" and "3 failed evaluations in total (max_failures 3)" in result["msg"]
    assert len(result["evaluations"]) == 1


@pytest.mark.parametrize("policy, decision, count", [("fail", "rollback", 2), ("pass", "pass", 1),
                                                     ("inconclusive", "inconclusive", 3)])
def test_no_data_policy(kong, run_module, policy, decision, count):
    kong.get(PROM + "/api/v1/query", json=vector())
    result = run_module(rollout_gate, dict(BASE, no_data=policy, interval=1, prometheus={
        "url": PROM, "queries": [{"name": "p99 ms", "query": "histogram_quantile(0.99, x)", "max": 500}]}))
    assert result["decision"] == decision and len(result["evaluations"]) == count
    gate = result["gates"][0]
    assert gate["value"] is None and "no data" in gate["detail"] and "no_data policy %s" % policy in gate["detail"]
    # whatever the policy counted it as, the result says the gate measured nothing, and a warning says it loudly
    assert gate["no_data"] is True and all(g["no_data"] for e in result["evaluations"] for g in e["gates"])
    assert result["no_data"] == {"p99 ms": {"evaluations": count, "no_data": count, "statuses": [gate["status"]]}}
    assert any("NO DATA: gate 'p99 ms' measured nothing at %d of %d evaluations" % (count, count) in str(w)
               for w in result["warnings"])
    if decision == "inconclusive":
        assert result["failed"] is True and "inconclusive at" in result["msg"] and "a human must decide" in result["msg"]
        assert result["budget"]["failures"] == 0


def test_query_level_no_data_overrides_and_unreachable_prometheus_is_no_data(kong, run_module):
    kong.get(PROM + "/api/v1/query", body=requests.exceptions.ConnectionError("down"))
    result = run_module(rollout_gate, dict(BASE, no_data="fail", prometheus={
        "url": PROM, "queries": [{"name": "q", "query": "up", "min": 1, "no_data": "pass"}]}))
    assert result["decision"] == "pass" and "connection failed" in result["gates"][0]["detail"]


def test_prometheus_threshold_breach_and_rejected_query(kong, run_module):
    kong.get(PROM + "/api/v1/query", json=vector(0.004, 0.2))
    result = run_module(rollout_gate, dict(BASE, prometheus={"url": PROM, "queries": [
        {"name": "5xx ratio", "query": "x", "max": 0.01}]}))
    assert result["decision"] == "rollback"
    assert "gate '5xx ratio' (prometheus) failed: measured 0.2, threshold <= 0.01" in result["msg"]
    kong.replace(responses.GET, PROM + "/api/v1/query", status=400,
                 json={"status": "error", "errorType": "bad_data", "error": "parse error at char 5"})
    result = run_module(rollout_gate, dict(BASE, prometheus={"url": PROM, "queries": [
        {"name": "5xx ratio", "query": "x(", "max": 0.01}]}))
    assert result["decision"] == "rollback" and "rejected the query: parse error at char 5" in result["msg"]


def test_traffic_success_ratio(kong, run_module):
    for _attempt in range(3):
        kong.get(GW + "/shop", status=502)
    kong.get(GW + "/shop", status=200)
    result = run_module(rollout_gate, dict(BASE, max_consecutive_failures=1, traffic={
        "url": GW, "path": "shop", "requests": 20, "min_success_ratio": 0.9}))
    assert result["decision"] == "rollback"
    assert result["failing_gate"]["value"] == 0.85
    assert "17/20 requests succeeded" in result["msg"] and "HTTP 502 x3" in result["msg"]


def test_lock_is_refreshed_past_the_hold_by_id_without_writing_the_upstream(kong, run_module):
    store = FakeKong(kong)
    lock = store.add(LOCK, lock_tags("job-1@ctl", NOW + 10))
    kong.get("http://%s/" % CT1, status=200)
    result = run_module(rollout_gate, dict(BASE, container_targets=[CT1], hold=30, interval=30, probes={"enabled": True},
                                           lock={"owner": "job-1@ctl", "ttl": 60}))
    assert result["decision"] == "pass" and result["changed"] is False
    # before the hold: 60 s past its end (NOW + 30 + 60); after the passed hold (at NOW + 30) again: 60 s from then
    body = {"tags": lock_tags("job-1@ctl", NOW + 90)}
    assert writes(kong) == [("PATCH", "/consumers/" + lock["id"], body)] * 2
    assert result["lock"]["owner"] == "job-1@ctl" and result["lock"]["id"] == lock["id"]
    assert store.upstream_writes == 0


def test_a_lock_taken_over_during_the_hold_is_lost_after_it(kong, run_module, monkeypatch):
    store = FakeKong(kong)
    store.add(LOCK, lock_tags("job-1@ctl", NOW + 10))
    kong.get("http://%s/" % CT1, status=200)
    real_evaluate = rollout_gate.GateRunner.evaluate

    def evaluate_then_force(runner):
        # an operator forces the lock during the hold: a new consumer with a new id
        store.consumers.pop(LOCK, None)
        store.add(LOCK, lock_tags("operator@ctl", NOW + 999))
        return real_evaluate(runner)

    monkeypatch.setattr(rollout_gate.GateRunner, "evaluate", evaluate_then_force)
    result = run_module(rollout_gate, dict(BASE, container_targets=[CT1], hold=5, interval=5, probes={"enabled": True},
                                           step_label="step 2 of 3 (50%)", lock={"owner": "job-1@ctl", "ttl": 60}))
    assert result["failed"] is True and result["decision"] == "lock_lost" and result["passed"] is False
    assert "after the hold at step 2 of 3 (50%): the rollout lock of 'job-1@ctl' was taken over" in result["msg"]
    assert "locked by 'operator@ctl'" in result["msg"] and len(result["evaluations"]) == 1
    assert len(writes(kong)) == 1                       # only the refresh before the hold; the operator's lock stays
    assert store.lock() == "mixedrun-lock:operator@ctl:%d" % (NOW + 999)


@pytest.mark.parametrize("holder, words", [
    ("operator@ctl", "taken over"),
    (None, "is gone"),
])
def test_lost_lock_stops_at_once_without_evaluating(kong, run_module, holder, words):
    store = FakeKong(kong)
    if holder:
        store.add(LOCK, lock_tags(holder, NOW + 100))
    result = run_module(rollout_gate, dict(BASE, container_targets=[CT1], probes={"enabled": True},
                                           lock={"owner": "job-1@ctl"}))
    assert result["failed"] is True and result["decision"] == "lock_lost" and words in result["msg"]
    assert result["evaluations"] == [] and writes(kong) == []
    assert not any("/healthz" in c.request.url or CT1 in c.request.url for c in kong.calls)


def test_check_mode_evaluates_once_without_holding_or_refreshing(kong, run_module, clock):
    kong.get("http://%s/" % CT1, status=200)
    result = run_module(rollout_gate, dict(BASE, container_targets=[CT1], hold=600, probes={"enabled": True},
                                           lock={"owner": "job-1@ctl"}), check_mode=True)
    assert result["decision"] == "pass" and len(result["evaluations"]) == 1 and clock.sleeps == []
    assert writes(kong) == []


@pytest.mark.parametrize("args, words", [
    (dict(BASE), "no gate is enabled"),
    (dict(BASE, prometheus={"url": PROM, "queries": [{"name": "q", "query": "up"}]}), "needs a threshold"),
    (dict(BASE, prometheus={"url": PROM, "queries": [{"name": "q", "query": "up", "min": 2, "max": 1}]}), "min 2.0 is above max 1.0"),
    (dict(BASE, traffic={"url": GW, "min_success_ratio": 99}), "a ratio, not percent"),
    (dict(BASE, hold=-1, probes={"enabled": True}, container_targets=[CT1]), "hold must be 0 or more"),
    (dict(BASE, max_failures=0, probes={"enabled": True}, container_targets=[CT1]), "max_failures must be"),
    (dict(upstream="shop", kong_health={"enabled": True}), "no target tagged 'mixedrun-kind:container'"),
])
def test_bad_input_fails_before_anything_is_evaluated(kong, run_module, args, words):
    kong.get(ADMIN + "/upstreams/shop/targets", json={"data": [target(VM, "vm")], "next": None})
    result = run_module(rollout_gate, args)
    assert result["failed"] is True and words in result["msg"], result["msg"]
    assert result["decision"] == "error"
    assert not any(PROM in c.request.url or GW in c.request.url for c in kong.calls)


def test_prometheus_headers_are_secret(kong, run_module):
    kong.get(PROM + "/api/v1/query", json=vector(1))
    result = run_module(rollout_gate, dict(BASE, prometheus={"url": PROM, "headers": {"Authorization": "Bearer " + TOKEN},
                                                             "queries": [{"name": "up", "query": "up", "min": 1}]}))
    assert result["decision"] == "pass" and TOKEN not in result.raw
    assert kong.calls[-1].request.headers["Authorization"] == "Bearer " + TOKEN


def test_health_fixture_of_real_kong_is_read(kong, run_module):
    mock_upstream(kong)
    body = fixture("health")
    kong.get(ADMIN + "/upstreams/shop/health", json=body)
    result = run_module(rollout_gate, {"upstream": "shop", "container_targets": ["10.0.1.7:8080"],
                                       "max_consecutive_failures": 1})
    assert result["decision"] == "rollback" and "10.0.1.7:8080 UNHEALTHY" in result["msg"]
    # one gate, for the one Kong node, naming the unhealthy container; the healthy VM of the body is not counted
    assert [(g["gate"], g["status"], g["value"]) for g in result["gates"]] == [("kong_health", "fail", 1.0)]
    assert result["gates"][0]["detail"] == "unhealthy: 10.0.1.7:8080 UNHEALTHY"
    assert result["gates"][0]["threshold"] == "0 container targets UNHEALTHY/DNS_ERROR"


def test_container_target_missing_from_a_nodes_health_fails(kong, run_module):
    mock_targets(kong)
    mock_upstream(kong)
    kong.get(ADMIN + "/upstreams/shop/health", json=health({VM: "HEALTHY", CT1: "HEALTHY"}))
    result = run_module(rollout_gate, {"upstream": "shop", "max_consecutive_failures": 1})
    assert result["decision"] == "rollback" and result["failing_gate"]["value"] == 1.0
    assert "1 container target(s) missing from the node's /health (not loaded by this node): %s" % CT2 in result["msg"]


def test_healthchecks_off_for_weighted_containers_while_configured_is_inconclusive(kong, run_module):
    mock_targets(kong)
    mock_upstream(kong, checks_on=True)
    kong.get(ADMIN + "/upstreams/shop/health", json=health({VM: "HEALTHY", CT1: "HEALTHCHECKS_OFF", CT2: "HEALTHCHECKS_OFF"}))
    result = run_module(rollout_gate, {"upstream": "shop", "interval": 1, "inconclusive_limit": 2})
    assert result["failed"] is True and result["decision"] == "inconclusive" and len(result["evaluations"]) == 2
    assert result["budget"]["failures"] == 0
    assert "reports HEALTHCHECKS_OFF for 2 container target(s) with weight: %s, %s" % (CT1, CT2) in result["msg"]


def test_healthchecks_off_on_the_upstream_passes_with_a_warning(kong, run_module):
    mock_targets(kong)
    mock_upstream(kong, checks_on=False)
    kong.get(ADMIN + "/upstreams/shop/health", json=health({VM: "HEALTHCHECKS_OFF", CT1: "HEALTHCHECKS_OFF",
                                                            CT2: "HEALTHCHECKS_OFF"}))
    result = run_module(rollout_gate, {"upstream": "shop"})
    assert result["decision"] == "pass"
    assert "health checks are off on the upstream" in result["gates"][0]["detail"]
    # ansible-core returns warnings as text or as structured events, depending on the version (and in one test
    # process, the warnings of earlier tests' module runs may still be listed)
    texts = [str(w) for w in result["warnings"]]
    assert sum("upstream 'shop': health checks are off" in t for t in texts) == 1
    assert result["no_data"] == {} and result["gates"][0]["no_data"] is False


def test_weight_zero_containers_are_not_checked_by_kong_and_say_so(kong, run_module):
    mock_upstream(kong, checks_on=True)
    body = health({VM: "HEALTHY", CT1: "HEALTHCHECKS_OFF"})
    body["data"][1]["weight"] = 0
    kong.get(ADMIN + "/upstreams/shop/health", json=body)
    result = run_module(rollout_gate, {"upstream": "shop", "container_targets": [CT1]})
    assert result["decision"] == "pass" and result["gates"][0]["detail"] == "1 container targets checked, 0 with weight"


# -- real Kong 3.9: health without a balancer, hybrid control planes, the settle rule ------------------------------
DP1 = "http://dp-1.test:8100"
DP2 = "http://dp-2.test:8100"


def no_balancer(states):
    """/health of a node with no balancer for the upstream (a hybrid control plane always): targets without health."""
    body = health(states)
    for item in body["data"]:
        del item["health"]
    return body


@pytest.mark.parametrize("policy, decision", [("fail", "rollback"), ("inconclusive", "inconclusive")])
def test_targets_without_health_are_no_data_never_a_pass(kong, run_module, clock, policy, decision):
    mock_targets(kong)
    mock_upstream(kong)
    kong.get(ADMIN + "/upstreams/shop/health", json=no_balancer({VM: None, CT1: None, CT2: None}))
    result = run_module(rollout_gate, {"upstream": "shop", "no_data": policy, "max_consecutive_failures": 1,
                                       "inconclusive_limit": 1, "kong_health": {"settle": 2}})
    assert result["failed"] is True and result["decision"] == decision, result["msg"]
    gate = result["gates"][0]
    assert gate["value"] is None and gate["detail"].startswith("no data: 2 of 2 container target(s) have no health")
    assert "measured nothing" in gate["detail"] and "no_data policy %s" % policy in gate["detail"]
    # the settle rule read the node again for 2 s before judging
    assert sum(s for s in clock.sleeps if s == rollout_gate.SETTLE_POLL) >= 2


def test_no_data_passed_by_policy_is_a_warning(kong, run_module):
    mock_targets(kong)
    mock_upstream(kong)
    kong.get(ADMIN + "/upstreams/shop/health", json=no_balancer({VM: None, CT1: None, CT2: None}))
    result = run_module(rollout_gate, {"upstream": "shop", "no_data": "pass", "kong_health": {"settle": 0}})
    assert result["decision"] == "pass" and result["gates"][0]["value"] is None
    assert any("measured nothing" in str(w) for w in result["warnings"])


def test_a_node_catching_up_is_read_again_until_it_settles(kong, run_module, clock):
    mock_targets(kong)
    mock_upstream(kong)
    kong.get(ADMIN + "/upstreams/shop/health", json=no_balancer({VM: None, CT1: None, CT2: None}))
    kong.get(ADMIN + "/upstreams/shop/health", json=health({VM: "HEALTHY", CT1: "DNS_ERROR", CT2: "HEALTHY"}))
    kong.get(ADMIN + "/upstreams/shop/health", json=health({VM: "HEALTHY", CT1: "HEALTHY", CT2: "HEALTHY"}))
    result = run_module(rollout_gate, {"upstream": "shop"})
    assert result["decision"] == "pass" and result["gates"][0]["detail"] == "2 container targets checked, 2 with weight"
    assert clock.sleeps.count(rollout_gate.SETTLE_POLL) == 2


def test_dns_error_after_the_settle_time_fails(kong, run_module):
    mock_targets(kong)
    mock_upstream(kong)
    kong.get(ADMIN + "/upstreams/shop/health", json=health({VM: "HEALTHY", CT1: "DNS_ERROR", CT2: "HEALTHY"}))
    result = run_module(rollout_gate, {"upstream": "shop", "max_consecutive_failures": 1, "kong_health": {"settle": 1}})
    assert result["decision"] == "rollback" and "%s DNS_ERROR" % CT1 in result["msg"]


def test_a_hybrid_control_plane_as_health_source_is_refused(kong, run_module):
    mock_targets(kong)
    mock_upstream(kong, role="control_plane")
    kong.get(ADMIN + "/upstreams/shop/health", json=no_balancer({VM: None, CT1: None, CT2: None}))
    result = run_module(rollout_gate, {"upstream": "shop"})
    assert result["failed"] is True and result.get("evaluations") in (None, [])
    assert "a hybrid-mode control plane" in result["msg"] and "kong_health.balancer_urls" in result["msg"]
    assert "rollout_balancer_urls" in result["msg"]


def test_health_is_read_from_every_data_plane_without_the_token(kong, run_module):
    mock_targets(kong)
    mock_upstream(kong, role="control_plane")
    kong.get(DP1 + "/upstreams/shop/health", json=health({VM: "HEALTHY", CT1: "HEALTHY", CT2: "HEALTHY"}))
    kong.get(DP2 + "/upstreams/shop/health", json=health({VM: "HEALTHY", CT1: "UNHEALTHY", CT2: "HEALTHY"}))
    result = run_module(rollout_gate, {"upstream": "shop", "admin_token": TOKEN, "max_consecutive_failures": 1,
                                       "kong_health": {"balancer_urls": [DP1, DP2]}})
    assert result["decision"] == "rollback" and "kong_health@%s" % DP2 in result["msg"]
    assert sorted(g["name"] for g in result["gates"]) == ["kong_health@%s" % DP1, "kong_health@%s" % DP2]
    for call in kong.calls:
        if call.request.url.startswith((DP1, DP2)):
            assert "Kong-Admin-Token" not in call.request.headers


def test_a_data_plane_listing_only_100_targets_is_completed_from_its_balancer(kong, run_module):
    """Kong 3.9.3 DB-less nodes (data planes) list at most 100 targets of an upstream in /health, no next page;
    the balancer's details hold them all: the containers left out of the listing are judged from there."""
    mock_upstream(kong)
    vms = ["10.0.2.%d:8080" % i for i in range(1, 101)]
    listing = {"data": [dict(target(t, "vm"), health="HEALTHY") for t in vms], "next": None, "node_id": "dp-1"}
    hosts = [{"host": t.split(":")[0], "port": 8080, "nodeWeight": 10, "addresses": [{"weight": 10, "healthy": True}]} for t in vms]
    hosts += [{"host": "10.0.1.7", "port": 8080, "nodeWeight": 10, "addresses": [{"weight": 10, "healthy": False}]},
              {"host": "10.0.1.8", "port": 8080, "nodeWeight": 10, "addresses": [{"weight": 10, "healthy": True}]}]
    kong.get(DP1 + "/upstreams/shop/health", match=[matchers.query_param_matcher({"size": "1000"})], json=listing)
    kong.get(DP1 + "/upstreams/shop/health", match=[matchers.query_param_matcher({"balancer_health": "1"})],
             json={"data": {"health": "HEALTHY", "balancer_health": "HEALTHY", "details": {"hosts": hosts}}, "node_id": "dp-1"})
    result = run_module(rollout_gate, {"upstream": "shop", "container_targets": [CT1, CT2], "max_consecutive_failures": 1,
                                       "kong_health": {"balancer_urls": [DP1]}})
    assert result["decision"] == "rollback" and "%s UNHEALTHY" % CT1 in result["msg"] and "missing" not in result["msg"]


PROM_QUERY = {"name": "5xx ratio", "max": 0.01,
              "query": 'sum(rate(kong_http_requests_total{service="shop",code=~"5.."}[1m])) / sum(rate(kong_http_requests_total{service="shop"}[1m]))'}


def test_a_query_on_a_metric_without_series_stops_before_anything_is_held(kong, run_module):
    """Kong 3.9's prometheus plugin exports kong_http_requests_total only with status_code_metrics on (off by default)."""
    kong.get(PROM + "/api/v1/series", json={"status": "success", "data": []})
    result = run_module(rollout_gate, dict(BASE, hold=30, prometheus={"url": PROM, "queries": [PROM_QUERY]}))
    assert result["failed"] is True and not result.get("evaluations")
    assert "prometheus.queries[1] (5xx ratio) reads kong_http_requests_total, which has no series" in result["msg"]
    assert "could never see data" in result["msg"] and "status_code_metrics" in result["msg"]
    assert not any("/api/v1/query" in c.request.url for c in kong.calls)


def test_check_only_checks_the_series_and_evaluates_no_query(kong, run_module):
    kong.get(PROM + "/api/v1/series", json={"status": "success", "data": [{"__name__": "kong_http_requests_total"}]})
    kong.get("http://%s/" % CT1, status=200)
    result = run_module(rollout_gate, dict(BASE, probes={"enabled": True, "targets": [CT1]},
                                           prometheus={"url": PROM, "queries": [PROM_QUERY], "check_only": True}))
    assert result["decision"] == "pass", result.get("msg")
    assert not any("/api/v1/query" in c.request.url for c in kong.calls)
    assert any("/api/v1/series" in c.request.url for c in kong.calls)
    assert all(g["gate"] != "prometheus" for g in result.get("gates") or [])
