# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""rollout_plan (schedule + resume point) and rollout_report (JSON, HTML chart, table)."""

from __future__ import annotations

import copy
import json
import os

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.mixedrun.kong.plugins.modules import rollout_plan, rollout_report


@pytest.fixture
def run(capsys):
    def _run(module, args, check_mode=False):
        full = {"_ansible_check_mode": check_mode}
        full.update(copy.deepcopy(args))
        with patch_module_args(full):
            with pytest.raises(SystemExit):
                module.main()
        return json.loads(capsys.readouterr().out)
    return _run


def test_plan_resumes_from_the_share_kong_holds(run):
    result = run(rollout_plan, {"steps": [0.5, 5, {"share": 25, "hold": 9}, 50], "hold": 2, "approvals": [50],
                                "current_share": 5.0, "origin_share": 0})
    assert [s["share"] for s in result["remaining"]] == [25.0, 50.0, 100.0]
    assert result["remaining"][0]["hold"] == 9.0 and result["remaining"][1]["needs_approval"] is True
    assert result["resuming"] is True and result["total"] == 5 and result["changed"] is False


def test_plan_generators_and_errors(run):
    result = run(rollout_plan, {"mode": "exponential", "exponential_start": 1, "exponential_factor": 4, "current_share": 0})
    assert [s["share"] for s in result["steps"]] == [1.0, 4.0, 16.0, 64.0, 100.0]
    result = run(rollout_plan, {"steps": [10, 5], "current_share": 0})
    assert result["failed"] is True and "Invalid rollout schedule: steps must increase strictly" in result["msg"]


def steps_fixture():
    gate = {"started_at": 1000.5, "held": 2.0, "decision": "pass", "gates": [
        {"gate": "traffic", "name": "traffic", "status": "pass", "value": 1.0, "threshold": ">= 0.99"}],
        "evaluations": [{"at": 1.0, "status": "pass", "gates": [
            {"gate": "traffic", "name": "traffic", "status": "pass", "value": 1.0, "threshold": ">= 0.99"}]},
            {"at": 2.0, "status": "fail", "gates": [
                {"gate": "prometheus", "name": "p99 <ms>", "status": "fail", "value": 900, "threshold": "<= 500"}]}],
        "failing_gate": None}
    return [{"kind": "step", "index": 1, "total": 2, "planned_share": 10, "achieved_share": 10.0, "vm_weight": 9,
             "container_weight": 1, "started_at": 1000.0, "applied_at": 1000.4, "finished_at": 1002.6, "gate": gate,
             "decision": "pass"},
            {"kind": "rollback", "planned_share": 0, "achieved_share": 0.0, "vm_weight": 1, "container_weight": 0,
             "started_at": 1003.0, "applied_at": 1003.2, "decision": "rollback"}]


def test_report_writes_json_html_and_a_table(run, tmp_path):
    dest = str(tmp_path / "reports")
    result = run(rollout_report, {"dest": dest, "service": "shop/web", "steps": steps_fixture(), "run": {
        "upstream": "shop", "outcome": "rolled_back", "started_at": 1000.0, "finished_at": 1004.0, "origin_share": 0,
        "final_share": 0, "message": "gate failed"}})
    assert result["changed"] is True and os.path.dirname(result["json_path"]) == dest
    assert "shop-web" in os.path.basename(result["json_path"])
    with open(result["json_path"]) as handle:
        doc = json.load(handle)
    assert doc["format"] == "mixedrun.kong/rollout-report/v1" and len(doc["steps"]) == 2
    assert doc["summary"] == {"outcome": "rolled_back", "steps_applied": 1, "evaluations": 2, "failed_evaluations": 1,
                              "final_share": 0}
    with open(result["chart_path"]) as handle:
        html = handle.read()
    assert html.count("<svg") == 3 and "p99 &lt;ms&gt;" in html and "http" not in html.split("<svg", 1)[1].replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    table = result["table"]
    assert table[0].startswith("Rollout of shop/web (upstream shop): rolled_back")
    assert any(line.startswith("1/2 | step") and "| 10 " in line for line in table)
    assert any(line.startswith("-   | rollback") for line in table) and table[-1] == "gate failed"


def test_report_check_mode_writes_nothing(run, tmp_path):
    result = run(rollout_report, {"dest": str(tmp_path / "r"), "service": "shop", "run": {"outcome": "finished"},
                                  "steps": []}, check_mode=True)
    assert result["json_path"] is None and not os.path.exists(str(tmp_path / "r"))


def test_plan_returns_the_way_back_and_what_to_do(run):
    result = run(rollout_plan, {"steps": [1, 5, 25, 50], "current_share": 60, "origin_share": 0, "rollback_mode": "gradual"})
    assert result["action"] == "rollout" and result["rollback_path"] == [50.0, 25.0, 5.0, 1.0, 0.0]
    result = run(rollout_plan, {"steps": [1, 5, 25, 50], "current_share": 25, "origin_share": 0, "rolling_back_to": 0})
    assert result["action"] == "finish_rollback" and result["rollback_path"] == [0.0] and result["remaining"]
    result = run(rollout_plan, {"steps": [1, 5], "current_share": 5, "rollback_to": 1, "rollback_mode": "gradual"})
    assert result["rollback_path"] == [1.0] and result["rollback_target"] == 1.0
