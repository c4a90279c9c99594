# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""rollout_plan (schedule + resume point) and rollout_report (JSON, HTML chart, table)."""

from __future__ import annotations

import copy
import json
import os

import pytest

from kong_module_helpers import patch_module_args

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


def test_report_times_the_finish_apart_from_the_steps(run, tmp_path):
    result = run(rollout_report, {"dest": str(tmp_path), "service": "shop", "steps": steps_fixture()[:1], "run": {
        "outcome": "finished", "started_at": 1000.0, "finish_started_at": 1002.5, "finished_at": 1003.7}})
    assert "finish (VM targets, lock release, report): 1.2 s" in result["table"]
    without = run(rollout_report, {"dest": str(tmp_path), "service": "shop", "steps": [], "run": {"outcome": "finished"}})
    assert not any(line.startswith("finish") for line in without["table"])


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


# -- the AWX workflow example (playbooks/awx/controller_config.yml) -------------------------------------------------

AWX_CONFIG = os.path.join(os.path.dirname(__file__), *([os.pardir] * 4), "playbooks", "awx", "controller_config.yml")


def awx_config():
    """The file as infra.aap_configuration reads it, with its own '{{ var }}' references resolved."""
    import re
    from ansible.parsing.utils.yaml import from_yaml
    with open(AWX_CONFIG) as handle:
        data = from_yaml(handle.read(), file_name=AWX_CONFIG)

    def resolve(value):
        if isinstance(value, dict):
            return dict((k, resolve(v)) for k, v in value.items())
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if isinstance(value, str):
            # only the file's own mixedrun_awx_* variables; '{{ admin_url }}' and the like are AWX's (!unsafe)
            whole = re.match(r"^\{\{ (mixedrun_awx_\w+) \}\}$", value)
            if whole:
                return resolve(data[whole.group(1)])
            return re.sub(r"\{\{ (mixedrun_awx_\w+) \}\}", lambda m: str(resolve(data[m.group(1)])), value)
        return value
    return resolve(data)


def test_awx_workflow_segments_and_approvals_match_the_schedule(run):
    cfg = awx_config()
    roll = cfg["mixedrun_awx_rollout_vars"]
    assert roll["rollout_approval_mode"] == "stop"
    templates = dict((t["name"], t) for t in cfg["controller_templates"])
    workflow = cfg["controller_workflows"][0]
    nodes = dict((n["identifier"], n) for n in workflow["simplified_workflow_nodes"])
    linked = set(i for n in nodes.values() for key in ("success_nodes", "failure_nodes", "always_nodes")
                 for i in n.get(key) or [])
    assert linked <= set(nodes)
    roots = [i for i in nodes if i not in linked]
    assert roots == ["segment-1"]

    share, approved_so_far, pending, segments, approvals = 0.0, [], None, [], []
    node = nodes["segment-1"]
    while node is not None:
        nxt = node.get("success_nodes") or []
        if "approval_node" in node:
            # it approves exactly the share the previous segment stopped before, and denial/timeout rolls back
            assert pending is not None and node["approval_node"]["name"].endswith("approve %s %%" % rollout_plan_key(pending))
            assert node["failure_nodes"] == ["rollback"] and node["approval_node"]["timeout"] > 0
            approvals.append(pending)
            approved_so_far.append(pending)
        else:
            template = templates[node["unified_job_template"]]
            assert template["playbook"] == "playbooks/rollout.yml" and template["ask_variables_on_launch"] is True
            assert not node.get("failure_nodes") and not node.get("always_nodes")   # a failed segment ends the workflow red
            approved = node["extra_data"]["rollout_approved_shares"]
            assert sorted(approved) == sorted(approved_so_far)
            plan = run(rollout_plan, {"steps": roll["rollout_steps"], "approvals": roll["rollout_approval_steps"],
                                      "hold": roll["rollout_hold"], "holds": roll["rollout_holds"],
                                      "current_share": share, "approved": approved})
            applied = []
            pending = None
            for step in plan["remaining"]:
                if step["needs_approval"]:
                    pending = step["share"]
                    break
                applied.append(step["share"])
            assert applied, "segment %s would apply nothing" % node["identifier"]
            share = applied[-1]
            segments.append(applied)
            if pending is None:
                assert nxt == [] and share == 100.0
        node = nodes[nxt[0]] if nxt else None
        assert len(nxt) <= 1
    assert segments == [[1.0, 5.0], [25.0, 50.0], [100.0]]
    assert approvals == [float(s) for s in roll["rollout_approval_steps"]]

    rollback = nodes["rollback"]
    assert templates[rollback["unified_job_template"]]["playbook"] == "playbooks/rollback.yml"
    # the deny path must end the workflow failed: the rollback fails on purpose and has nowhere to go on failure
    assert rollback["extra_data"] == {"rollout_fail_after_rollback": True}
    assert not any(rollback.get(key) for key in ("success_nodes", "failure_nodes", "always_nodes"))


def rollout_plan_key(share):
    from ansible_collections.mixedrun.kong.plugins.module_utils._rollout import share_key
    return share_key(share)


def test_awx_example_defines_everything_it_references():
    cfg = awx_config()
    projects = set(p["name"] for p in cfg["controller_projects"])
    inventories = set(i["name"] for i in cfg["controller_inventories"])
    credentials = dict((c["name"], c) for c in cfg["controller_credentials"])
    types = dict((t["name"], t) for t in cfg["controller_credential_types"])
    templates = set(t["name"] for t in cfg["controller_templates"])
    for template in cfg["controller_templates"]:
        assert template["project"] in projects and template["inventory"] in inventories
        assert set(template["credentials"]) <= set(credentials)
    for node in cfg["controller_workflows"][0]["simplified_workflow_nodes"]:
        assert "approval_node" in node or node["unified_job_template"] in templates
    assert set(h["inventory"] for h in cfg["controller_hosts"]) <= inventories
    for credential in credentials.values():
        kind = types[credential["credential_type"]]
        fields = dict((f["id"], f) for f in kind["inputs"]["fields"])
        assert set(credential["inputs"]) <= set(fields) and set(kind["inputs"]["required"]) <= set(credential["inputs"])
        # the modules read these variables; the token is a secret input, injected as the literal AWX template
        assert set(kind["injectors"]["env"]) == {"KONG_ADMIN_URL", "KONG_ADMIN_TOKEN"}
        assert fields["admin_token"]["secret"] is True
        assert str(kind["injectors"]["env"]["KONG_ADMIN_URL"]) == "{{ admin_url }}"


def test_report_times_the_rollback_until_every_node_routes_with_it(run, tmp_path):
    steps = steps_fixture()
    steps[0]["decision"] = "rollback"
    steps[0]["gate"] = dict(steps[0]["gate"], finished_at=1002.6, decision="rollback")
    steps[1].update(applied_at=1007.35, converged_seconds=4.1,
                    balancers={"http://dp-1:8100": {"node_id": "a", "seconds": 1.2}, "http://dp-2:8100": {"node_id": "b", "seconds": 4.1}})
    result = run(rollout_report, {"dest": str(tmp_path), "service": "shop", "steps": steps, "run": {"outcome": "rolled_back"}})
    with open(result["json_path"]) as handle:
        doc = json.load(handle)
    assert doc["run"]["rollback_routed_seconds"] == 4.75 and doc["run"]["rollback_converged_seconds"] == 4.1
    assert doc["run"]["rollback_nodes"] == ["http://dp-1:8100", "http://dp-2:8100"]
    assert ("rollback: every Kong node (2) routed with the rolled-back weights 4.75 s after the failing gate evaluation "
            "(slowest balancer 4.1 s after the writes)") in result["table"]
    # a run that did not roll back after a failed gate has no such line
    plain = run(rollout_report, {"dest": str(tmp_path), "service": "shop", "steps": steps_fixture()[:1], "run": {"outcome": "finished"}})
    assert not any(line.startswith("rollback:") for line in plain["table"])


def test_report_types_numbers_the_role_hands_over_as_text(run, tmp_path):
    # ansible-core 2.17 and 2.18 render every templated value of a dict as text, and a template giving None as ""
    steps = [dict((k, v if k in ("kind", "decision", "gate") else str(v)) for k, v in s.items()) for s in steps_fixture()]
    steps.insert(0, {"kind": "preflight", "planned_share": "0.0", "achieved_share": "0.0", "started_at": "999.0",
                     "finished_at": "999.5", "decision": "pass", "index": "", "converged_seconds": ""})
    result = run(rollout_report, {"dest": str(tmp_path), "service": "shop", "steps": steps,
                                  "run": {"upstream": "shop", "outcome": "rolled_back", "started_at": "999.0",
                                          "finished_at": "1004.0", "origin_share": "0.0", "final_share": "0.0",
                                          "finish_started_at": "", "resumed": "False"}})
    assert not result.get("failed"), result.get("msg")
    with open(result["json_path"]) as handle:
        report = json.load(handle)
    assert report["run"]["started_at"] == 999.0 and report["run"]["finish_started_at"] is None
    assert report["run"]["resumed"] is False
    assert report["steps"][0]["index"] is None and report["steps"][0]["converged_seconds"] is None
    assert report["steps"][1]["index"] == 1 and report["steps"][1]["vm_weight"] == 9
    assert report["steps"][1]["achieved_share"] == 10.0 and report["steps"][2]["applied_at"] == 1003.2


def test_plan_shows_the_pods_each_step_needs(run):
    result = run(rollout_plan, {"steps": [10, 50, 100], "current_share": 0, "capacity": {}, "vm_count": 3})
    assert [(s["share"], s["replicas"]) for s in result["steps"]] == [(10.0, 1), (50.0, 2), (100.0, 4)]
    assert result["rollback_replicas"] == 1 and result["capacity"]["demand"] == 3.0
    for step in result["steps"]:
        assert step["carries"] >= step["share"]                      # the pods can carry the step's share
    assert run(rollout_plan, {"steps": [10], "current_share": 0})["capacity"] is None
    failed = run(rollout_plan, {"steps": [10, 100], "current_share": 0, "capacity": {"max_replicas": 2}, "vm_count": 3})
    assert failed["failed"] and "100 % needs 4 ready pods" in failed["msg"] and "nothing was changed" in failed["msg"]
