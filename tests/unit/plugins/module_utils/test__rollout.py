# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure rollout logic: schedules, resume point, thresholds, failure budget, hold window, lock tags."""

from __future__ import annotations

import math

import pytest

from ansible_collections.mixedrun.kong.plugins.module_utils import _rollout as r


def shares(schedule):
    return [s["share"] for s in schedule]


# -- schedules ----------------------------------------------------------------------------------------------

def test_explicit_schedule_keeps_sub_percent_steps_and_appends_the_target():
    schedule = r.build_schedule(steps=[0.1, 0.5, "2%", 25], hold=30)
    assert shares(schedule) == [0.1, 0.5, 2.0, 25.0, 100.0]
    assert [s["index"] for s in schedule] == [1, 2, 3, 4, 5]
    assert all(s["hold"] == 30.0 and s["approval"] is False for s in schedule)


def test_explicit_dict_steps_override_hold_and_approval_and_beat_the_maps():
    schedule = r.build_schedule(steps=[{"share": 1, "hold": 900}, {"share": 50, "approval": True}, 100], hold=60,
                                holds={"1": 5, "100": 10}, approvals=[100])
    assert [(s["share"], s["hold"], s["approval"]) for s in schedule] == [(1.0, 900.0, False), (50.0, 60.0, True),
                                                                          (100.0, 10.0, True)]


def test_linear_and_exponential_generators():
    assert shares(r.build_schedule("linear", linear_step=30)) == [30.0, 60.0, 90.0, 100.0]
    assert shares(r.build_schedule("linear", linear_step=25, linear_start=5)) == [5.0, 30.0, 55.0, 80.0, 100.0]
    assert shares(r.build_schedule("exponential", exponential_start=1, exponential_factor=2)) == [
        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 100.0]
    assert shares(r.build_schedule("exponential", exponential_start=0.25, exponential_factor=10)) == [0.25, 2.5, 25.0, 100.0]


def test_target_share_below_100_cuts_generated_schedules():
    assert shares(r.build_schedule("linear", linear_step=20, target_share=50)) == [20.0, 40.0, 50.0]


def test_per_share_maps_match_any_spelling():
    schedule = r.build_schedule(steps=[0.5, 25], holds={"0.50": 7, 25.0: 9}, approvals=["25%"])
    assert [(s["hold"], s["approval"]) for s in schedule[:2]] == [(7.0, False), (9.0, True)]


@pytest.mark.parametrize("kwargs, words", [
    (dict(steps=[]), "steps is empty"),
    (dict(steps=[5, 5]), "increase strictly"),
    (dict(steps=[10, 5]), "steps[2] (5) is not above steps[1] (10)"),
    (dict(steps=[0]), "steps[1] must be more than 0"),
    (dict(steps=[101]), "at most 100"),
    (dict(steps=["abc"]), "steps[1] must be a percentage"),
    (dict(steps=[True]), "steps[1] must be a percentage"),
    (dict(steps=[{"hold": 5}]), "steps[1] needs a share"),
    (dict(steps=[{"share": 5, "wait": 5}]), "unknown keys wait"),
    (dict(steps=[{"share": 5, "approval": "yes"}]), "steps[1].approval must be true or false"),
    (dict(steps=[5], hold=-1), "hold must be 0 or more"),
    (dict(steps=[5], holds={"7": 3}), "holds names shares that are not steps of the schedule: 7"),
    (dict(steps=[5], approvals=[8]), "approvals names shares that are not steps"),
    (dict(steps=[60], target_share=50), "above target_share"),
    (dict(mode="linear"), "needs linear_step"),
    (dict(mode="linear", linear_step=0), "linear step must be more than 0"),
    (dict(mode="linear", linear_step=0.01), "more than 1000 steps"),
    (dict(mode="exponential", exponential_start=1), "needs exponential_start"),
    (dict(mode="exponential", exponential_start=1, exponential_factor=1), "factor must be more than 1"),
    (dict(mode="random"), "explicit, linear or exponential"),
])
def test_bad_schedules_name_the_field(kwargs, words):
    with pytest.raises(r.RolloutError) as err:
        r.build_schedule(**kwargs)
    assert words in str(err.value)


# -- resume ---------------------------------------------------------------------------------------------------

SCHED = r.build_schedule(steps=[0.1, 0.5, 5, 25, 50])


@pytest.mark.parametrize("current, expected", [
    (0, (0, None)),          # fresh: start with the first step
    (0.1, (1, 0)),           # at step 1: continue with step 2
    (0.49, (2, 1)),          # within tolerance of 0.5
    (5.3, (3, 2)),
    (30, (4, None)),         # between steps (someone moved it): continue with the next higher one
    (100, (6, 5)),           # done
])
def test_resume_point(current, expected):
    assert r.resume_point(SCHED, current) == expected


def test_resume_tolerance_never_reaches_a_neighbour():
    # 0.3 is 0.2 from 0.1 and 0.2 from 0.5: inside neither step's half-gap tolerance -> next is 0.5
    assert r.resume_point(SCHED, 0.3) == (1, None)
    assert r.resume_point(SCHED, 0.04) == (0, None)     # nearer 0 than 0.1: step 1 not applied yet
    assert r.resume_point(SCHED, 0.06) == (1, 0)


def test_plan_from_an_interrupted_run_continues_and_rolls_back_to_the_origin():
    plan = r.make_plan(SCHED, current_share=5, origin_share=0, approved=[25])
    assert plan["resuming"] is True and plan["origin_share"] == 0.0
    assert [s["share"] for s in plan["remaining"]] == [25.0, 50.0, 100.0]
    assert plan["at_step"]["share"] == 5.0 and plan["next_position"] == 3 and not plan["done"]


def test_plan_marks_approved_steps_and_done():
    schedule = r.build_schedule(steps=[10, 50], approvals=[10, 50])
    plan = r.make_plan(schedule, 0, approved=["50"])
    assert [(s["share"], s["needs_approval"]) for s in plan["steps"]] == [(10.0, True), (50.0, False), (100.0, False)]
    assert plan["resuming"] is False
    assert r.make_plan(schedule, 100)["done"] is True


def test_plan_says_what_the_run_must_do_and_the_way_back():
    plan = r.make_plan(SCHED, current_share=25, origin_share=0, rollback_mode="gradual")
    assert plan["action"] == "rollout" and plan["rollback_target"] == 0.0
    assert plan["rollback_path"] == [5.0, 0.5, 0.1, 0.0]
    assert r.make_plan(SCHED, 25, origin_share=0)["rollback_path"] == [0.0]
    assert r.make_plan(SCHED, 100)["action"] == "done"
    assert r.make_plan(SCHED, 0)["rollback_path"] == []          # nothing to go back to


def test_a_rollback_under_way_is_finished_never_resumed_upward():
    # killed at 5 % while rolling back from 50 % to the origin 0 %: the steps above 5 % must not run
    plan = r.make_plan(SCHED, current_share=5, origin_share=0, rolling_back_to=0, rollback_mode="gradual")
    assert plan["action"] == "finish_rollback" and plan["rollback_target"] == 0.0
    assert plan["rollback_path"] == [0.5, 0.1, 0.0]
    # also at the target already (killed after the last rollback step, before the release) and at 100 %
    assert r.make_plan(SCHED, 0, origin_share=0, rolling_back_to=0)["action"] == "finish_rollback"
    assert r.make_plan(SCHED, 0, origin_share=0, rolling_back_to=0)["rollback_path"] == []
    assert r.make_plan(SCHED, 100, origin_share=0, rolling_back_to=0)["action"] == "finish_rollback"
    # an operator's explicit target wins over the recorded one
    assert r.make_plan(SCHED, 50, rolling_back_to=0, rollback_to=25)["rollback_path"] == [25.0]
    with pytest.raises(r.RolloutError):
        r.make_plan(SCHED, 50, rollback_mode="slowly")


def test_rollback_paths():
    assert r.rollback_path(SCHED, 50, 0) == [0.0]
    assert r.rollback_path(SCHED, 50, 0, "gradual") == [25.0, 5.0, 0.5, 0.1, 0.0]
    assert r.rollback_path(SCHED, 30, 0.5, "gradual") == [25.0, 5.0, 0.5]
    assert r.rollback_path(SCHED, 0, 0) == []
    with pytest.raises(r.RolloutError):
        r.rollback_path(SCHED, 50, 0, "slowly")


# -- thresholds and Prometheus answers ------------------------------------------------------------------------

def test_thresholds_and_their_words():
    assert r.check_threshold(0.5, maximum=1) and not r.check_threshold(1.5, maximum=1)
    assert r.check_threshold(5, minimum=1, maximum=10) and not r.check_threshold(0.5, minimum=1)
    assert r.describe_threshold(maximum=0.01) == "<= 0.01"
    assert r.describe_threshold(minimum=0.99) == ">= 0.99"
    assert r.describe_threshold(1.0, 2.5) == ">= 1 and <= 2.5"


def vector(*values):
    return {"status": "success", "data": {"resultType": "vector",
                                          "result": [{"metric": {}, "value": [1700000000.0, v]} for v in values]}}


def test_prometheus_values_skip_nan_and_handle_result_types():
    assert r.prometheus_values(vector("0.5", "NaN", "+Inf", "2")) == [0.5, 2.0]
    assert r.prometheus_values({"status": "success", "data": {"resultType": "scalar", "result": [1, "3"]}}) == [3.0]
    assert r.prometheus_values({"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {}, "values": [[1, "1"], [2, "7"]]}]}}) == [7.0]
    assert r.prometheus_values(vector()) == []
    with pytest.raises(r.RolloutError) as err:
        r.prometheus_values({"status": "error", "error": "parse error at char 3"})
    assert "parse error" in str(err.value)


@pytest.mark.parametrize("values, kwargs, expected", [
    ([0.001, 0.004], dict(maximum=0.01), ("pass", 0.004)),
    ([0.001, 0.02], dict(maximum=0.01), ("fail", 0.02)),
    ([0.995], dict(minimum=0.99), ("pass", 0.995)),
    ([], dict(maximum=1, no_data="fail"), ("fail", None)),
    ([], dict(maximum=1, no_data="pass"), ("pass", None)),
    ([], dict(maximum=1, no_data="inconclusive"), ("inconclusive", None)),
])
def test_judge_values_applies_threshold_and_no_data_policy(values, kwargs, expected):
    assert r.judge_values(values, **kwargs) == expected


def test_combine_and_summary():
    assert r.combine(["pass", "inconclusive", "pass"]) == "inconclusive"
    assert r.combine(["inconclusive", "fail"]) == "fail"
    assert r.combine(["pass"]) == "pass"
    text = r.gate_summary({"gate": "prometheus", "name": "5xx", "status": "fail", "value": 0.12, "threshold": "<= 0.01"})
    assert text == "gate '5xx' (prometheus) failed: measured 0.12, threshold <= 0.01"
    nodata = {"gate": "prometheus", "name": "p99", "status": "inconclusive", "value": None, "threshold": "<= 500"}
    assert "measured no data" in r.gate_summary(nodata)


def test_no_data_policy_is_validated():
    with pytest.raises(r.RolloutError):
        r.validate_no_data("ignore")


# -- failure budget and hold window ---------------------------------------------------------------------------

def test_budget_total_and_consecutive():
    budget = r.FailureBudget(max_failures=3, max_consecutive=2)
    assert budget.record("fail") is False
    assert budget.record("pass") is False and budget.consecutive == 0
    assert budget.record("inconclusive") is False and budget.failures == 1
    assert budget.record("fail") is False
    assert budget.record("fail") is True
    assert "2 failed evaluations in a row" in budget.reason()
    total = r.FailureBudget(max_failures=2, max_consecutive=5, failures=1)
    assert total.record("fail") is True and "2 failed evaluations in total" in total.reason()
    with pytest.raises(r.RolloutError):
        r.FailureBudget(max_failures=0)


class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def time(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


def scripted(statuses):
    items = list(statuses)

    def evaluate():
        return {"status": items.pop(0), "gates": []}
    return evaluate


def test_hold_schedule_offsets():
    assert r.hold_schedule(10, 3) == [3, 6, 9, 10]
    assert r.hold_schedule(5, 0) == [5.0]
    assert r.hold_schedule(2, 5) == [2.0]
    assert r.hold_schedule(0, 1) == [0.0]


def test_window_passes_after_holding_the_full_time():
    clock = FakeClock()
    out = r.run_hold_window(scripted(["pass"] * 3), hold=6, interval=2, budget=r.FailureBudget(),
                            clock=clock.time, sleep=clock.sleep)
    assert out["decision"] == "pass" and len(out["evaluations"]) == 3
    assert out["held"] == 6.0 and [e["at"] for e in out["evaluations"]] == [2.0, 4.0, 6.0]


def test_failing_gate_first_holds_then_rolls_back_when_the_budget_is_spent():
    clock = FakeClock()
    out = r.run_hold_window(scripted(["pass", "fail", "fail"]), hold=2, interval=1, budget=r.FailureBudget(3, 2),
                            clock=clock.time, sleep=clock.sleep)
    assert out["decision"] == "rollback"
    assert [e["in_window"] for e in out["evaluations"]] == [True, True, False]
    assert out["budget"]["consecutive"] == 2


def test_a_recovering_gate_passes_after_extra_evaluations():
    clock = FakeClock()
    out = r.run_hold_window(scripted(["fail", "pass"]), hold=0, interval=1, budget=r.FailureBudget(3, 2),
                            clock=clock.time, sleep=clock.sleep)
    assert out["decision"] == "pass" and out["budget"]["failures"] == 1 and len(out["evaluations"]) == 2


def test_inconclusive_holds_then_pauses_without_rollback():
    clock = FakeClock()
    out = r.run_hold_window(scripted(["inconclusive"] * 3), hold=1, interval=1, budget=r.FailureBudget(),
                            inconclusive_limit=3, clock=clock.time, sleep=clock.sleep)
    assert out["decision"] == "inconclusive" and len(out["evaluations"]) == 3
    assert out["budget"]["failures"] == 0


def test_abort_stops_at_once():
    clock = FakeClock()
    out = r.run_hold_window(lambda: {"status": "fail", "abort": "lock_lost"}, hold=10, interval=1,
                            budget=r.FailureBudget(), clock=clock.time, sleep=clock.sleep)
    assert out["decision"] == "lock_lost" and len(out["evaluations"]) == 1


def test_budget_carried_from_earlier_steps_counts():
    clock = FakeClock()
    out = r.run_hold_window(scripted(["fail"]), hold=0, interval=1, budget=r.FailureBudget(3, 2, failures=2),
                            clock=clock.time, sleep=clock.sleep)
    assert out["decision"] == "rollback" and out["budget"]["failures"] == 3


# -- lock tags ----------------------------------------------------------------------------------------------------

def test_lock_tag_round_trip_and_garbage():
    tag = r.format_lock_tag("awx-job-12@ctl", 1700000000.9)
    assert tag == "mixedrun-lock:awx-job-12@ctl:1700000000"
    assert r.parse_lock_tag(tag) == {"owner": "awx-job-12@ctl", "expires_at": 1700000000, "tag": tag}
    for bad in ("mixedrun-lock:", "mixedrun-lock:x", "mixedrun-lock:a:b:1", "mixedrun-lock:x:soon", "other", None):
        assert r.parse_lock_tag(bad) is None


@pytest.mark.parametrize("owner", ["", "a b", "a:b", "a,b", "a/b", "é", "x" * 201, None])
def test_bad_owners_are_refused(owner):
    with pytest.raises(r.RolloutError):
        r.validate_owner(owner)


def test_origin_and_rollback_tags_round_trip_and_garbage():
    assert r.format_origin_tag(0) == "mixedrun-rollout-origin:0" and r.format_rollback_tag(12.5) == "mixedrun-rollout-rollback:12.5"
    assert r.parse_origin_tag(["x", "mixedrun-rollout-origin:0.5"]) == 0.5
    assert r.parse_rollback_tag(["mixedrun-rollout-rollback:x", "y"]) is None
    assert r.parse_origin_tag(None) is None


def test_a_refusal_names_the_owner_and_the_way_out():
    text = r.describe_lock_refusal({"owner": "job-1@ctl", "expires_at": 200}, 100)
    assert "locked by 'job-1@ctl'" in text and "100 s from now" in text and "force=true" in text


def test_healthchecks_configured_follows_kongs_rule():
    assert not r.healthchecks_configured({})
    assert not r.healthchecks_configured({"healthchecks": {"active": {"healthy": {"interval": 0}}}})
    assert r.healthchecks_configured({"healthchecks": {"active": {"unhealthy": {"interval": 5}}}})
    assert r.healthchecks_configured({"healthchecks": {"passive": {"unhealthy": {"http_failures": 3}}}})
    assert not r.healthchecks_configured({"healthchecks": {"passive": {"unhealthy": {"tcp_failures": True}}}})


@pytest.mark.parametrize("entries, checks_on, expected", [
    ([("c1", "HEALTHY", 5), ("c2", "HEALTHY", 5), ("v1", "UNHEALTHY", 5)], True, ("pass", 0.0)),
    ([("c1", "UNHEALTHY", 5), ("c2", "dns_error", 5)], True, ("fail", 2.0)),
    ([("c1", "HEALTHY", 5)], True, ("fail", 1.0)),                                  # c2 not listed by the node
    ([("c1", "HEALTHCHECKS_OFF", 5), ("c2", "HEALTHY", 5)], True, ("inconclusive", None)),
    ([("c1", "HEALTHCHECKS_OFF", 0), ("c2", "HEALTHCHECKS_OFF", 0)], True, ("pass", 0.0)),   # weight 0: never checked
    ([("c1", "HEALTHCHECKS_OFF", 5), ("c2", "HEALTHCHECKS_OFF", 5)], False, ("pass", 0.0)),  # blind: with a warning
    ([], False, ("fail", 2.0)),
])
def test_target_health_never_passes_vacuously(entries, checks_on, expected):
    status, value, detail, warning = r.judge_target_health(entries, ["c1", "c2"], ["UNHEALTHY", "DNS_ERROR"], checks_on)
    assert (status, value) == expected, detail
    assert (warning is not None) == (not checks_on and status == "pass")
    if status == "fail" and value and len(entries) < 2:
        assert "missing from the node's /health" in detail and "c2" in detail


def test_lock_info_picks_the_latest_and_reports_expiry():
    info = r.lock_info(["mixedrun-lock:a@h:50", "mixedrun-lock:b@h:150"], now=100)
    assert info["owner"] == "b@h" and info["expires_in"] == 50 and info["expired"] is False and info["count"] == 2
    assert r.lock_info(["x"], now=1) is None


def test_share_helpers():
    assert r.share_key(25.0) == "25" and r.share_key(0.50) == "0.5" and r.share_key(0) == "0"
    assert r.parse_share("0.5%", "f") == 0.5
    with pytest.raises(r.RolloutError):
        r.parse_share(float("nan"), "f")
    assert r.parse_share(0, "f", allow_zero=True) == 0.0
    assert not math.isnan(r.round_share(1 / 3))
