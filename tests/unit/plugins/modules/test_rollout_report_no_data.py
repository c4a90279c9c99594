# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""rollout_report: a gate that measured nothing is NO DATA in the table, the chart and the summary, never a pass."""

from __future__ import annotations

import json

from ansible_collections.mixedrun.kong.plugins.modules import rollout_report


def result(name, value, status="pass", threshold="<= 0.05", **extra):
    out = {"gate": "prometheus" if name != "traffic" else "traffic", "name": name, "status": status, "value": value,
           "threshold": threshold}
    out.update(extra)
    return out


def step(index, evaluations, decision="pass", failing=None):
    return {"kind": "step", "index": index, "total": 2, "planned_share": 10 * index, "achieved_share": 10.0 * index,
            "vm_weight": 9, "container_weight": 1, "started_at": 1000.0 + 10 * index, "applied_at": 1000.5 + 10 * index,
            "finished_at": 1003.0 + 10 * index, "decision": decision,
            "gate": {"started_at": 1001.0 + 10 * index, "held": 2.0, "decision": decision, "failing_gate": failing,
                     "gates": evaluations[-1], "evaluations": [{"at": float(i + 1), "status": "pass", "gates": gates}
                                                               for i, gates in enumerate(evaluations)]}}


def squash(table):
    return [" ".join(line.split()) for line in table]


def write(tmp_path, steps, outcome="finished"):
    return rollout_report.write_report({"dest": str(tmp_path), "service": "shop", "chart": True, "steps": steps, "run": {
        "upstream": "shop", "outcome": outcome, "started_at": 1000.0, "finished_at": 1040.0, "message": "done"}})


def test_a_gate_that_passed_by_its_no_data_policy_is_no_data_everywhere(tmp_path):
    blind = result("pods 5xx ratio", None, detail="no data (empty result or NaN), no_data policy pass")
    steps = [step(1, [[blind, result("traffic", 1.0, threshold=">= 0.99")]] * 2),
             step(2, [[dict(blind, no_data=True), result("traffic", 1.0, threshold=">= 0.99")]] * 2)]
    out = write(tmp_path, steps)
    table = out["table"]
    rows = [line for line in table if line.startswith(("1/2 |", "2/2 |"))]
    # the step row does not say "all gates passed": it names the gate that measured nothing
    assert all("pass, NO DATA" in row and "NO DATA: pods 5xx ratio" in row and "gates passed" not in row for row in rows)
    assert "1/2 pods 5xx ratio NO DATA, NO DATA threshold <= 0.05" in squash(table)
    assert "2/2 traffic 1, 1 threshold >= 0.99" in squash(table)
    warning = ("WARNING: NO DATA: gate 'pods 5xx ratio' measured nothing at 4 of 4 evaluations (1/2, 2/2): it guarded "
               "nothing there, whatever its no_data policy counted it as")
    assert warning in table and table[-1] == "done" and out["no_data_warnings"] == [warning]
    assert out["summary"]["no_data"] == {"pods 5xx ratio": 4}
    with open(out["json_path"]) as handle:
        assert json.load(handle)["summary"]["no_data"] == {"pods 5xx ratio": 4}
    with open(out["chart_path"]) as handle:
        html = handle.read()
    assert 'class="nodata"' in html and "measured nothing at 4 of 4 evaluations" in html
    assert "pods 5xx ratio (threshold &lt;= 0.05) - NO DATA at 4 of 4 evaluations" in html
    assert "NO DATA at every evaluation: this gate measured nothing" in html
    assert html.count(">NO DATA</text>") == 4          # one marker per evaluation without data
    panel = html.split('aria-label="pods 5xx ratio', 1)[1].split("</svg>", 1)[0]
    assert "<circle" not in panel and "<polyline" not in panel      # no point drawn as if it had a value


def test_a_failed_gate_without_data_and_a_failed_gate_with_a_value(tmp_path):
    nothing = result("pods 5xx ratio", None, status="fail", detail="Prometheus rejected the query")
    tripped = result("traffic", 0.85, status="fail", threshold=">= 0.99")
    out = write(tmp_path, [step(1, [[nothing, tripped]], decision="rollback", failing=tripped)], outcome="rolled_back")
    row = [line for line in out["table"] if line.startswith("1/2 |")][0]
    assert "| rollback | traffic: 0.85 / >= 0.99; NO DATA: pods 5xx ratio" in " ".join(row.split())
    assert "1/2 pods 5xx ratio NO DATA (fail) threshold <= 0.05" in squash(out["table"])
    assert "1/2 traffic 0.85 (fail) threshold >= 0.99" in squash(out["table"])
    only = write(tmp_path, [step(1, [[nothing]], decision="rollback", failing=nothing)], outcome="rolled_back")
    assert "| rollback | pods 5xx ratio: NO DATA / <= 0.05" in squash(only["table"])[3]


def test_every_gate_measured_a_value_no_warning(tmp_path):
    first = [[result("pods 5xx ratio", None), result("traffic", 1.0)],
             [result("pods 5xx ratio", 0.0, no_data=False), result("traffic", 1.0)]]
    steps = [step(1, first),
             step(2, [[result("pods 5xx ratio", 0.01), result("traffic", 1.0)]] * 2)]
    out = write(tmp_path, steps)
    assert "1/2 pods 5xx ratio NO DATA, 0 threshold <= 0.05" in squash(out["table"])
    assert [line for line in squash(out["table"]) if line.startswith("2/2 |")][0].endswith("| pass | all 2 gates passed")
    assert out["summary"]["no_data"] == {"pods 5xx ratio": 1} and len(out["no_data_warnings"]) == 1
    clean = write(tmp_path, steps[1:])
    assert "no_data" not in clean["summary"] and clean["no_data_warnings"] == []
    assert not any(line.startswith("WARNING") for line in clean["table"])
    with open(clean["chart_path"]) as handle:
        html = handle.read()
    assert 'class="nodata"' not in html and "NO DATA</text>" not in html
