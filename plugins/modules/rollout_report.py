#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: rollout_report
short_description: Write a rollout's per-run report (JSON) and chart (HTML with inline SVG)
version_added: 1.0.0
description:
  - Writes one JSON file per run with every step (planned and achieved share, weights, gate results with their
    measured values and thresholds, timings) and the run's outcome, and a self-contained HTML page (inline SVG, no
    network, no JavaScript) charting the share and every gate's value over time, with thresholds.
  - Returns a readable summary table for the end of the play, with every gate's value at every evaluation.
  - A gate result without a value (C(no_data), or no C(value)) measured nothing, whatever status its no_data policy
    gave it. The table, the chart and the summary show it as C(NO DATA), never as a pass, and the table ends with
    one C(WARNING) line per gate that measured nothing.
  - Runs where the play runs (the controller); no connection to Kong.
author:
  - mixedrun.kong maintainers (@mixedrun)
attributes:
  check_mode:
    description: Builds the table; writes no file.
    support: full
  diff_mode:
    description: Nothing to show.
    support: none
options:
  dest:
    description: Directory for the report files (created when missing).
    type: path
    required: true
  service:
    description: Name of the service (part of the file names).
    type: str
    required: true
  run:
    description:
      - The run's facts, for example C(upstream), C(owner), C(started_at) and C(finished_at) (epoch seconds),
        C(finish_started_at) (when the phase after the last step began, that is VM removal, lock release and
        this report),
        C(origin_share), C(final_share), C(outcome) (V(finished), V(rolled_back), V(frozen), V(stopped), V(paused)),
        C(message).
      - Numbers and booleans may come as strings (ansible-core 2.17 and 2.18 render each templated value of a dict as
        text, and C(none) as an empty string); the report holds them as numbers, booleans and nulls.
      - When a gate failed and the run rolled back, the report adds C(rollback_routed_seconds) (from the end of the
        failing gate evaluation until every Kong node's balancer routed with the rolled-back weights),
        C(rollback_converged_seconds) (the slowest balancer, after the rollback's writes) and C(rollback_nodes).
    type: dict
    required: true
  steps:
    description:
      - The step records the rollout role collected, in order; each may hold C(index), C(total), C(kind)
        (V(step) or V(rollback)), C(planned_share), C(achieved_share), C(previous_share), C(vm_weight),
        C(container_weight), C(weights), C(started_at), C(applied_at), C(finished_at), C(gate) (a
        M(mixedrun.kong.rollout_gate) result), C(decision), C(balancers) and C(converged_seconds) (per Kong node, the
        seconds until its balancer routed with the step's weights).
      - Their numbers may come as strings, as in O(run).
    type: list
    elements: dict
    default: []
  chart:
    description: Write the HTML chart too.
    type: bool
    default: true
seealso:
  - module: mixedrun.kong.rollout_gate
"""

EXAMPLES = r"""
- name: Write the report
  mixedrun.kong.rollout_report:
    dest: reports
    service: shop
    run: {upstream: shop, outcome: finished, started_at: 1767225600, finished_at: 1767226200}
    steps: "{{ __rollout_records }}"
  register: report

- name: Show the summary
  ansible.builtin.debug:
    msg: "{{ report.table }}"
"""

RETURN = r"""
json_path:
  description: Path of the JSON report (null in check mode).
  returned: always
  type: str
  sample: reports/rollout-shop-20260101T000000Z.json
chart_path:
  description: Path of the HTML chart (null in check mode or with O(chart=false)).
  returned: always
  type: str
table:
  description: The summary table, one line per list item.
  returned: always
  type: list
  elements: str
summary:
  description:
    - Counts of the run (steps applied, evaluations, failed evaluations) and its outcome.
    - When a gate measured nothing at one evaluation or more, C(no_data) maps each such gate's name to the number of
      its results without data.
  returned: always
  type: dict
no_data_warnings:
  description: One line per gate that measured nothing at one evaluation or more (also the table's C(WARNING) lines).
  returned: always
  type: list
  elements: str
"""

import json
import os
import time

from ansible.module_utils.basic import AnsibleModule


def _num(value, digits=4):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    try:
        number = round(float(value), digits)
    except (TypeError, ValueError):
        return str(value)
    if number == int(number):
        return str(int(number))
    return ("%.*f" % (digits, number)).rstrip("0").rstrip(".")


def _esc(text):
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;"))


NO_DATA = "NO DATA"


def measured_nothing(result):
    """A gate result without a value measured nothing, whatever status its no_data policy gave it."""
    if "no_data" in result:
        return bool(result["no_data"])
    return result.get("value") is None


def result_text(result):
    """A gate result's value for people: the number, or NO DATA (with the status a policy gave it when not pass)."""
    if measured_nothing(result):
        return NO_DATA if result.get("status") == "pass" else "%s (%s)" % (NO_DATA, result.get("status"))
    text = _num(result.get("value"))
    return text if result.get("status") == "pass" else "%s (%s)" % (text, result.get("status"))


def _label(record):
    index = record.get("index")
    if index is not None and record.get("total"):
        return "%s/%s" % (index, record.get("total"))
    if index is None:
        return record.get("kind") or "step"
    return _num(index)


def no_data_gates(steps):
    """``[(gate name, results without data, results, [step labels])]`` for every gate that measured nothing once."""
    seen = {}
    for record in steps:
        for evaluation in (record.get("gate") or {}).get("evaluations") or []:
            for result in evaluation.get("gates") or []:
                entry = seen.setdefault(result.get("name"), [0, 0, []])
                entry[1] += 1
                if measured_nothing(result):
                    entry[0] += 1
                    if _label(record) not in entry[2]:
                        entry[2].append(_label(record))
    return [(name, e[0], e[1], e[2]) for name, e in sorted(seen.items(), key=lambda kv: str(kv[0])) if e[0]]


def no_data_warnings(steps):
    return ["WARNING: %s: gate '%s' measured nothing at %d of %d evaluations (%s): it guarded nothing there, whatever "
            "its no_data policy counted it as" % (NO_DATA, name, count, total, ", ".join(labels))
            for name, count, total, labels in no_data_gates(steps)]


def gate_lines(steps):
    """Every gate's value at every evaluation of every step, one line per step and gate."""
    rows = []
    for record in steps:
        per_gate = {}
        for evaluation in (record.get("gate") or {}).get("evaluations") or []:
            for result in evaluation.get("gates") or []:
                entry = per_gate.setdefault(result.get("name"), {"threshold": result.get("threshold"), "values": []})
                entry["values"].append(result_text(result))
        for name, entry in per_gate.items():
            rows.append((_label(record), str(name), ", ".join(entry["values"]), str(entry["threshold"])))
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    out = ["gate values at each evaluation:"]
    out.extend("  %s  %s  %s  threshold %s" % (r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].ljust(widths[2]), r[3])
               for r in rows)
    return out


def build_table(run, steps):
    header = ["#", "kind", "planned %", "achieved %", "vm w", "ct w", "split s", "held s", "evals", "failed", "decision",
              "worst gate (value / threshold)"]
    rows = []
    for record in steps:
        gate = record.get("gate") or {}
        evaluations = gate.get("evaluations") or []
        failed = sum(1 for e in evaluations if e.get("status") != "pass")
        worst = gate.get("failing_gate")
        blind = []
        for evaluation in evaluations:
            for result in evaluation.get("gates") or []:
                if measured_nothing(result) and result.get("name") not in blind:
                    blind.append(result.get("name"))
        if worst:
            worst_text = "%s: %s / %s" % (worst.get("name"), NO_DATA if measured_nothing(worst) else _num(worst.get("value")),
                                          worst.get("threshold"))
            if blind and [worst.get("name")] != blind:
                worst_text += "; %s: %s" % (NO_DATA, ", ".join(str(n) for n in blind))
        elif blind:
            worst_text = "%s: %s" % (NO_DATA, ", ".join(str(n) for n in blind))
        else:
            worst_text = "all %d gates passed" % len(gate.get("gates") or []) if gate.get("gates") else "-"
        split_s = None
        if record.get("applied_at") is not None and record.get("started_at") is not None:
            split_s = float(record["applied_at"]) - float(record["started_at"])
        index = record.get("index")
        label = "%s/%s" % (index, record.get("total")) if index is not None and record.get("total") else _num(index)
        decision = record.get("decision") or gate.get("decision") or "-"
        if blind and decision == "pass":
            decision = "pass, %s" % NO_DATA
        rows.append([label, record.get("kind", "step"), _num(record.get("planned_share")), _num(record.get("achieved_share")),
                     _num(record.get("vm_weight")), _num(record.get("container_weight")), _num(split_s, 2),
                     _num(gate.get("held"), 1), str(len(evaluations)), str(failed), decision, worst_text])
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i]) for i in range(len(header))]

    def line(cells):
        return " | ".join(c.ljust(widths[i]) for i, c in enumerate(cells)).rstrip()

    out = ["Rollout of %s (upstream %s): %s; share %s%% -> %s%% (origin %s%%)" % (
        run.get("service", "-"), run.get("upstream", "-"), run.get("outcome", "-"), _num(run.get("start_share")),
        _num(run.get("final_share")), _num(run.get("origin_share")))]
    out.append(line(header))
    out.append("-+-".join("-" * w for w in widths))
    out.extend(line(r) for r in rows)
    out.extend(gate_lines(steps))
    if run.get("finish_started_at") is not None and run.get("finished_at") is not None:
        out.append("finish (VM targets, lock release, report): %s s"
                   % _num(float(run["finished_at"]) - float(run["finish_started_at"]), 1))
    if run.get("rollback_routed_seconds") is not None:
        nodes = len(run.get("rollback_nodes") or [])
        out.append("rollback: every Kong node (%d) routed with the rolled-back weights %s s after the failing gate evaluation "
                   "(slowest balancer %s s after the writes)"
                   % (nodes, _num(run["rollback_routed_seconds"], 2), _num(run.get("rollback_converged_seconds"), 2)))
    out.extend(no_data_warnings(steps))
    if run.get("message"):
        out.append(str(run["message"]))
    return out


def _series(run, steps):
    """Share over time and each gate's values over time, seconds from the run's start."""
    origin = float(run.get("started_at") or 0) or None
    share = []
    gates = {}
    for record in steps:
        for key in ("started_at", "applied_at", "finished_at"):
            if record.get(key) is not None and origin is None:
                origin = float(record[key])
        if origin is None:
            continue
        if record.get("applied_at") is not None and record.get("achieved_share") is not None:
            share.append((float(record["applied_at"]) - origin, float(record["achieved_share"])))
        gate = record.get("gate") or {}
        hold_start = gate.get("started_at")
        for evaluation in gate.get("evaluations") or []:
            if hold_start is None:
                continue
            t = float(hold_start) + float(evaluation.get("at") or 0) - origin
            for result in evaluation.get("gates") or []:
                entry = gates.setdefault(result.get("name"), {"threshold": result.get("threshold"), "points": []})
                entry["points"].append((t, None if measured_nothing(result) else result.get("value"), result.get("status")))
    end = None
    if run.get("finished_at") is not None and origin is not None:
        end = float(run["finished_at"]) - origin
    return share, gates, end


def _panel(title, points, y_max, width, height, x_max, step_line=False, y_min=0.0, threshold=None):
    left, right, top, bottom = 60, 20, 24, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    y_span = (y_max - y_min) or 1.0

    def x(t):
        return left + plot_w * (t / x_max if x_max else 0)

    def y(v):
        return top + plot_h * (1 - (v - y_min) / y_span)
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img" aria-label="%s">' % (width, height, _esc(title)),
             '<text x="%d" y="16" font-size="13" font-weight="bold">%s</text>' % (left, _esc(title)),
             '<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>' % (left, top, plot_w, plot_h)]
    for frac in (0, 0.5, 1):
        value = y_min + y_span * frac
        parts.append('<text x="%d" y="%.1f" font-size="10" text-anchor="end">%s</text>' % (left - 4, y(value) + 3, _esc(_num(value, 3))))
    for frac in (0, 0.25, 0.5, 0.75, 1):
        parts.append('<text x="%.1f" y="%d" font-size="10" text-anchor="middle">%ss</text>' % (x(x_max * frac), height - 8, _num(x_max * frac, 1)))
    if threshold is not None and y_min <= threshold <= y_max:
        parts.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#d33" stroke-dasharray="4 3"/>' % (left, left + plot_w, y(threshold), y(threshold)))
    coords = []
    for i, point in enumerate(points):
        t, v = point[0], point[1]
        if v is None:
            continue
        if step_line and coords:
            coords.append("%.1f,%s" % (x(t), coords[-1].split(",")[1]))
        coords.append("%.1f,%.1f" % (x(t), y(float(v))))
    if step_line and coords and x_max:
        coords.append("%.1f,%s" % (x(x_max), coords[-1].split(",")[1]))
    if coords:
        parts.append('<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="%s"/>' % " ".join(coords))
    for point in points:
        if len(point) > 2 and point[1] is not None:
            colour = {"pass": "#2da44e", "fail": "#d33", "inconclusive": "#bf8700"}.get(point[2], "#555")
            parts.append('<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s at %ss: %s</title></circle>' % (
                x(point[0]), y(float(point[1])), colour, _esc(point[2]), _num(point[0], 1), _esc(_num(point[1]))))
        elif len(point) > 2:
            # a gate evaluation that measured nothing: a hatched band over the whole height, never a point on the line
            parts.append('<rect x="%.1f" y="%d" width="8" height="%d" fill="#d33" fill-opacity="0.25"><title>%s at %ss '
                         '(counted as %s by the no_data policy)</title></rect>' % (x(point[0]) - 4, top, plot_h, NO_DATA,
                                                                                   _num(point[0], 1), _esc(point[2])))
            parts.append('<text x="%.1f" y="%d" font-size="10" font-weight="bold" fill="#d33" text-anchor="middle">%s</text>'
                         % (x(point[0]), top + 12, NO_DATA))
    if points and all(len(p) > 2 and p[1] is None for p in points):
        parts.append('<text x="%.1f" y="%.1f" font-size="16" font-weight="bold" fill="#d33" text-anchor="middle">%s at every '
                     'evaluation: this gate measured nothing</text>' % (left + plot_w / 2.0, top + plot_h / 2.0, NO_DATA))
    parts.append("</svg>")
    return "\n".join(parts)


def _threshold_number(text):
    if not text:
        return None
    for token in str(text).replace(">=", " ").replace("<=", " ").split():
        try:
            return float(token)
        except ValueError:
            continue
    return None


def build_html(run, steps, table):
    share, gates, end = _series(run, steps)
    times = [p[0] for p in share] + [p[0] for g in gates.values() for p in g["points"]]
    x_max = max([end or 0] + times + [1.0])
    panels = [_panel("Container share (%)", share, 100.0, 900, 220, x_max, step_line=True)]
    for name, entry in sorted(gates.items(), key=lambda kv: str(kv[0])):
        values = [p[1] for p in entry["points"] if p[1] is not None]
        threshold = _threshold_number(entry["threshold"])
        top = max(values + ([threshold] if threshold is not None else []) + [0.0])
        low = min(values + ([threshold] if threshold is not None else []) + [0.0])
        top = top * 1.1 if top > 0 else 1.0
        blind = sum(1 for p in entry["points"] if p[1] is None)
        title = "%s (threshold %s)" % (name, entry["threshold"])
        if blind:
            title += " - %s at %d of %d evaluations" % (NO_DATA, blind, len(entry["points"]))
        panels.append(_panel(title, entry["points"], top, 900, 160, x_max, y_min=low, threshold=threshold))
    title = "Rollout of %s: %s" % (run.get("service", ""), run.get("outcome", ""))
    warnings = no_data_warnings(steps)
    banner = ""
    if warnings:
        banner = '<div class="nodata">%s</div>\n' % "<br>".join(_esc(w) for w in warnings)
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>%s</title>\n"
            "<style>body{font-family:sans-serif;margin:20px}pre{background:#f6f8fa;padding:10px;overflow:auto}"
            ".nodata{background:#ffebe9;border:2px solid #d33;color:#82071e;font-weight:bold;padding:10px;margin:10px 0}</style>"
            "</head><body>\n<h1>%s</h1>\n%s<pre>%s</pre>\n%s\n</body></html>\n" % (
                _esc(title), _esc(title), banner, _esc("\n".join(table)), "\n".join(panels)))


def rollback_timing(steps):
    """When a gate failed and the run rolled back: seconds from the end of the failing gate evaluation until every Kong
    node's balancer routed with the rolled-back weights (the last rollback step returned only once each had), and the
    slowest node's own time after the writes. None when the run did not roll back after a failed gate."""
    failed = [s for s in steps if s.get("kind", "step") == "step" and s.get("decision") == "rollback"]
    backs = [s for s in steps if s.get("kind") == "rollback" and s.get("applied_at") is not None]
    if not failed or not backs:
        return None
    failed_at = (failed[-1].get("gate") or {}).get("finished_at") or failed[-1].get("finished_at")
    if failed_at is None:
        return None
    last = backs[-1]
    return {"rollback_routed_seconds": round(float(last["applied_at"]) - float(failed_at), 2),
            "rollback_converged_seconds": last.get("converged_seconds"),
            "rollback_nodes": sorted((last.get("balancers") or {}).keys())}


_RUN_NUMBERS = ("started_at", "finish_started_at", "finished_at", "start_share", "origin_share", "final_share")
_STEP_NUMBERS = ("planned_share", "achieved_share", "previous_share", "error", "converged_seconds", "started_at", "applied_at",
                 "finished_at")
_STEP_INTEGERS = ("index", "total", "vm_weight", "container_weight")


def _typed(record, numbers=(), integers=(), booleans=()):
    """``record`` with its number and boolean fields as such: ansible-core 2.17 and 2.18 hand every templated value of
    a dict over as text ("25.0", "True") and a template giving None as ""."""
    out = dict(record)
    for key in numbers + integers + booleans:
        value = out.get(key)
        if not isinstance(value, str):
            continue
        text = value.strip()
        if text in ("", "None", "null"):
            out[key] = None
        elif key in booleans:
            out[key] = text.lower() in ("true", "yes", "1")
        else:
            try:
                number = float(text)
            except ValueError:
                continue
            out[key] = int(number) if key in integers and number == int(number) else number
    return out


def write_report(params, check_mode=False, clock=time.time):
    run = _typed(params["run"], _RUN_NUMBERS, booleans=("resumed",))
    run.setdefault("service", params["service"])
    steps = [_typed(step, _STEP_NUMBERS, _STEP_INTEGERS) for step in params["steps"] or []]
    run.update(rollback_timing(steps) or {})
    table = build_table(run, steps)
    applied = [s for s in steps if s.get("kind", "step") == "step"]
    evaluations = sum(len((s.get("gate") or {}).get("evaluations") or []) for s in steps)
    failed = sum(1 for s in steps for e in (s.get("gate") or {}).get("evaluations") or [] if e.get("status") == "fail")
    summary = {"outcome": run.get("outcome"), "steps_applied": len(applied), "evaluations": evaluations,
               "failed_evaluations": failed, "final_share": run.get("final_share")}
    blind = no_data_gates(steps)
    if blind:
        summary["no_data"] = dict((name, count) for name, count, _total, _labels in blind)
    result = {"changed": False, "json_path": None, "chart_path": None, "table": table, "summary": summary,
              "no_data_warnings": no_data_warnings(steps)}
    if check_mode:
        return result
    dest = params["dest"]
    if not os.path.isdir(dest):
        os.makedirs(dest)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(run.get("started_at") or clock()))
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in params["service"])
    base = os.path.join(dest, "rollout-%s-%s" % (safe, stamp))
    document = {"format": "mixedrun.kong/rollout-report/v1", "service": params["service"], "run": run,
                "summary": summary, "steps": steps}
    tmp = base + ".json.tmp"
    with open(tmp, "w") as handle:
        json.dump(document, handle, indent=2, sort_keys=True, default=str)
    os.rename(tmp, base + ".json")
    result["json_path"] = base + ".json"
    if params["chart"]:
        with open(base + ".html", "w") as handle:
            handle.write(build_html(run, steps, table))
        result["chart_path"] = base + ".html"
    result["changed"] = True
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            dest=dict(type="path", required=True),
            service=dict(type="str", required=True),
            run=dict(type="dict", required=True),
            steps=dict(type="list", elements="dict", default=[]),
            chart=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    try:
        result = write_report(module.params, module.check_mode)
    except (OSError, IOError) as exc:
        module.fail_json(msg="Cannot write the rollout report to %s: %s (set rollout_report_dir to a writable directory)"
                         % (module.params["dest"], exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
