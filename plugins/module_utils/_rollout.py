# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure rollout logic (no I/O): schedules, resume point, gate thresholds, failure budget, lock tags.

Everything here is deterministic and side-effect free; time and waiting are injected (``clock``/``sleep``)
so the hold-window loop is unit-tested without sleeping.

Vocabulary:

* share: the percentage (0..100, floats allowed, sub-1 % steps are fine) of traffic the containers get.
* schedule: the increasing list of shares a rollout walks through; the last one is the target (100 by default).
* evaluation: one run of every gate; its status is ``pass``, ``fail`` or ``inconclusive``.
* failure budget: how many failed evaluations a rollout tolerates, in total and in a row, before it rolls back.
* lock: a tag ``mixedrun-lock:<owner>:<expiry-epoch>`` (on the lock consumer, see _rollout_lock; on the upstream
  in collection 1.x); ``mixedrun-rollout-origin:<share>``
  records the share the (possibly interrupted) rollout started from, so a resumed run rolls back to it;
  ``mixedrun-rollout-rollback:<share>`` records that a rollback to that share is under way, so a re-run of a run
  killed mid-rollback finishes the rollback instead of resuming upward.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import re

from ansible_collections.mixedrun.kong.plugins.module_utils._compare import healthchecks_enabled

LOCK_PREFIX = "mixedrun-lock:"
ORIGIN_PREFIX = "mixedrun-rollout-origin:"
ROLLBACK_PREFIX = "mixedrun-rollout-rollback:"
SHARE_DECIMALS = 4
DEFAULT_RESUME_TOLERANCE = 0.5
NO_DATA_POLICIES = ("fail", "pass", "inconclusive")
STATUS_PASS = "pass"
STATUS_FAIL = "fail"
STATUS_INCONCLUSIVE = "inconclusive"
DECISION_PASS = "pass"
DECISION_ROLLBACK = "rollback"
DECISION_INCONCLUSIVE = "inconclusive"
DECISION_LOCK_LOST = "lock_lost"
ACTION_ROLLOUT = "rollout"
ACTION_DONE = "done"
ACTION_FINISH_ROLLBACK = "finish_rollback"
ROLLBACK_MODES = ("immediate", "gradual")
MAX_STEPS = 1000

# Kong tag rules: printable ASCII without spaces, ',' and '/'. The owner must not hold ':' either.
_OWNER_RE = re.compile(r"^[!-~]+$")
_OWNER_FORBIDDEN = (":", ",", "/")


class RolloutError(ValueError):
    """Invalid rollout input; the message names the field and says how to fix it."""


class LockHeld(Exception):
    """Another owner holds an unexpired lock."""

    def __init__(self, lock, now):
        self.lock = lock
        self.now = now
        super(LockHeld, self).__init__(describe_lock_refusal(lock, now))


class LockLost(Exception):
    """A renewal found the lock gone or in another owner's hands: the run must stop without touching the weights."""

    def __init__(self, message, lock=None):
        self.lock = lock
        super(LockLost, self).__init__(message)


# -- shares and schedules -------------------------------------------------------------------------------

def round_share(value):
    return round(float(value), SHARE_DECIMALS)


def share_key(value):
    """Canonical text of a share, used to match per-step overrides: 25 -> '25', 0.50 -> '0.5'."""
    text = ("%.*f" % (SHARE_DECIMALS, round_share(value))).rstrip("0").rstrip(".")
    return text or "0"


def parse_share(value, field, allow_zero=False):
    """A share as a float in (0, 100] (or [0, 100] with ``allow_zero``); RolloutError naming ``field``."""
    if isinstance(value, bool) or value is None:
        raise RolloutError("%s must be a percentage between 0 and 100, got %r" % (field, value))
    if isinstance(value, str):
        text = value.strip().rstrip("%").strip()
        try:
            value = float(text)
        except ValueError:
            raise RolloutError("%s must be a percentage between 0 and 100 such as 0.5 or 25, got %r" % (field, value))
    if not isinstance(value, (int, float)) or math.isnan(value) or math.isinf(value):
        raise RolloutError("%s must be a percentage between 0 and 100, got %r" % (field, value))
    value = float(value)
    low_ok = value >= 0 if allow_zero else value > 0
    if not low_ok or value > 100:
        bound = "0 to 100" if allow_zero else "more than 0 and at most 100"
        raise RolloutError("%s must be %s (percent of traffic to the containers), got %s" % (field, bound, share_key(value)))
    return round_share(value)


def _positive_number(value, field, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise RolloutError("%s must be a number, got %r" % (field, value))
    if value < 0 or (value == 0 and not allow_zero):
        raise RolloutError("%s must be %s, got %r" % (field, "0 or more" if allow_zero else "more than 0", value))
    return float(value)


def linear_shares(step, start=None, target=100.0):
    """``step``, 2*``step``, ... up to ``target`` (``start`` replaces the first value when given)."""
    step = _positive_number(step, "linear step")
    if step > 100:
        raise RolloutError("linear step must be at most 100, got %s" % share_key(step))
    first = parse_share(start, "linear start") if start is not None else step
    shares = []
    value = first
    while value < target - 1e-9:
        shares.append(round_share(value))
        value = first + step * len(shares) if start is not None else step * (len(shares) + 1)
        if len(shares) > MAX_STEPS:
            raise RolloutError("linear step %s gives more than %d steps: use a larger step" % (share_key(step), MAX_STEPS))
    shares.append(round_share(target))
    return shares


def exponential_shares(start, factor, target=100.0):
    """``start``, ``start*factor``, ``start*factor^2``, ... capped at ``target``."""
    start = parse_share(start, "exponential start")
    factor = _positive_number(factor, "exponential factor")
    if factor <= 1:
        raise RolloutError("exponential factor must be more than 1 (each step multiplies the share), got %s" % factor)
    shares = []
    value = start
    while value < target - 1e-9:
        shares.append(round_share(value))
        value = value * factor
        if len(shares) > MAX_STEPS:
            raise RolloutError("exponential schedule gives more than %d steps: raise the factor" % MAX_STEPS)
    shares.append(round_share(target))
    return shares


def _override_map(mapping, field, convert):
    out = {}
    for key, value in (mapping or {}).items():
        share = parse_share(key, "%s key %r" % (field, key))
        out[share_key(share)] = convert(value, "%s[%s]" % (field, key))
    return out


def _hold_value(value, field):
    return _positive_number(value, field, allow_zero=True)


def build_schedule(mode="explicit", steps=None, linear_step=None, linear_start=None, exponential_start=None,
                   exponential_factor=None, hold=0, holds=None, approvals=None, target_share=100):
    """Return the schedule: ``[{"index": 1-based, "share", "hold", "approval"}]``, strictly increasing.

    mode: ``explicit`` (``steps``: numbers or dicts ``{share, hold, approval}``), ``linear`` (``linear_step``,
    optional ``linear_start``) or ``exponential`` (``exponential_start``, ``exponential_factor``).
    hold: default hold seconds; holds: ``{share: seconds}`` overrides; approvals: shares that need approval
    before the share is applied. target_share: the last step (100 = full migration); steps above it are an error
    for explicit lists and cut off for generated ones; the target is appended when the list stops short of it.
    """
    target = parse_share(target_share, "target_share")
    default_hold = _hold_value(hold, "hold")
    hold_map = _override_map(holds, "holds", _hold_value)
    approval_set = set()
    for item in approvals or []:
        approval_set.add(share_key(parse_share(item, "approvals item %r" % (item,))))
    entries = []
    if mode == "explicit":
        if not steps:
            raise RolloutError("steps is empty: give the shares to walk through, e.g. [1, 5, 25, 50, 100], or "
                               "use the linear or exponential schedule")
        if not isinstance(steps, (list, tuple)):
            raise RolloutError("steps must be a list of percentages, got %r" % (steps,))
        for pos, item in enumerate(steps, 1):
            field = "steps[%d]" % pos
            if isinstance(item, dict):
                unknown = set(item) - set(["share", "hold", "approval"])
                if unknown:
                    raise RolloutError("%s has unknown keys %s; use share, hold and approval" % (field, ", ".join(sorted(unknown))))
                if "share" not in item:
                    raise RolloutError("%s needs a share, e.g. {share: 5, hold: 600}" % field)
                share = parse_share(item["share"], field + ".share")
                entry = {"share": share}
                if item.get("hold") is not None:
                    entry["hold"] = _hold_value(item["hold"], field + ".hold")
                if item.get("approval") is not None:
                    if not isinstance(item["approval"], bool):
                        raise RolloutError("%s.approval must be true or false, got %r" % (field, item["approval"]))
                    entry["approval"] = item["approval"]
            else:
                entry = {"share": parse_share(item, field)}
            entries.append(entry)
        for pos in range(1, len(entries)):
            if entries[pos]["share"] <= entries[pos - 1]["share"]:
                raise RolloutError("steps must increase strictly: steps[%d] (%s) is not above steps[%d] (%s)" % (
                    pos + 1, share_key(entries[pos]["share"]), pos, share_key(entries[pos - 1]["share"])))
        if entries[-1]["share"] > target:
            raise RolloutError("steps[%d] (%s) is above target_share (%s): drop it or raise target_share" % (
                len(entries), share_key(entries[-1]["share"]), share_key(target)))
    elif mode == "linear":
        if linear_step is None:
            raise RolloutError("the linear schedule needs linear_step (percentage points per step), e.g. 10")
        entries = [{"share": s} for s in linear_shares(linear_step, linear_start, target)]
    elif mode == "exponential":
        if exponential_start is None or exponential_factor is None:
            raise RolloutError("the exponential schedule needs exponential_start (e.g. 1) and exponential_factor (e.g. 2)")
        entries = [{"share": s} for s in exponential_shares(exponential_start, exponential_factor, target)]
    else:
        raise RolloutError("schedule mode must be explicit, linear or exponential, got %r" % (mode,))
    if entries[-1]["share"] < target:
        entries.append({"share": target})
    if len(entries) > MAX_STEPS:
        raise RolloutError("the schedule has %d steps; at most %d are allowed" % (len(entries), MAX_STEPS))
    known = set(share_key(e["share"]) for e in entries)
    for field, keys in (("holds", hold_map), ("approvals", approval_set)):
        stray = sorted(set(keys) - known, key=float)
        if stray:
            raise RolloutError("%s names shares that are not steps of the schedule: %s (steps: %s)" % (
                field, ", ".join(stray), ", ".join(share_key(e["share"]) for e in entries)))
    schedule = []
    for index, entry in enumerate(entries, 1):
        key = share_key(entry["share"])
        schedule.append({
            "index": index,
            "share": entry["share"],
            "hold": entry.get("hold", hold_map.get(key, default_hold)),
            "approval": bool(entry.get("approval", key in approval_set)),
        })
    return schedule


def _tolerance_at(schedule, pos, tolerance):
    tol = tolerance
    share = schedule[pos]["share"]
    # Strictly less than half the gap: a share exactly between two steps belongs to neither.
    below = schedule[pos - 1]["share"] if pos > 0 else 0.0
    tol = min(tol, (share - below) / 2.0 * 0.999)
    if pos + 1 < len(schedule):
        tol = min(tol, (schedule[pos + 1]["share"] - share) / 2.0 * 0.999)
    return tol


def resume_point(schedule, current_share, tolerance=DEFAULT_RESUME_TOLERANCE):
    """Where a run continues: ``(next_position, at_position)`` (0-based; ``next_position == len(schedule)``
    when nothing is left). ``at_position`` is the step whose share Kong holds now (within ``tolerance``
    percentage points, never more than half the gap to a neighbouring step), else None."""
    current = parse_share(current_share, "current_share", allow_zero=True)
    tolerance = _positive_number(tolerance, "resume tolerance", allow_zero=True)
    for pos in range(len(schedule)):
        if abs(current - schedule[pos]["share"]) <= _tolerance_at(schedule, pos, tolerance) + 1e-9:
            return pos + 1, pos
    for pos, step in enumerate(schedule):
        if step["share"] > current:
            return pos, None
    return len(schedule), None


def rollback_path(schedule, from_share, to_share, mode="immediate"):
    """Shares to walk back through: ``[to_share]`` at once, or every schedule step strictly between
    ``to_share`` and ``from_share`` in descending order, then ``to_share`` (gradual)."""
    if mode not in ROLLBACK_MODES:
        raise RolloutError("rollback mode must be immediate or gradual, got %r" % (mode,))
    start = parse_share(from_share, "rollback from share", allow_zero=True)
    end = parse_share(to_share, "rollback to share", allow_zero=True)
    if start <= end:
        return [end] if abs(start - end) > 1e-9 else []
    path = []
    if mode == "gradual":
        path = [s["share"] for s in reversed(schedule) if end < s["share"] < start]
    path.append(end)
    return path


def make_plan(schedule, current_share, origin_share=None, tolerance=DEFAULT_RESUME_TOLERANCE, approved=None,
              rolling_back_to=None, rollback_mode="immediate", rollback_to=None):
    """The run's plan from the share Kong holds now.

    Returns ``{steps, remaining, next_position, at_step, resuming, done, current_share, origin_share, total,
    action, rollback_target, rollback_path}``.
    ``origin_share`` is the share the (possibly interrupted) rollout started from; None = ``current_share``.
    ``approved``: shares already approved (AWX workflow approval nodes); their steps need no further approval.
    ``rolling_back_to``: the share a rollback that was under way when its run stopped goes back to (the rollback
    tag on the upstream); then ``action`` is ``finish_rollback``: the run must finish that rollback, never resume
    upward. Otherwise ``action`` is ``done`` (nothing left) or ``rollout``.
    ``rollback_path``: the shares a rollback walks through from ``current_share`` to ``rollback_target``
    (``rollback_to``, else ``rolling_back_to``, else the origin), at once or through the schedule's steps.
    """
    current = parse_share(current_share, "current_share", allow_zero=True)
    origin = current if origin_share is None else parse_share(origin_share, "origin_share", allow_zero=True)
    approved_keys = set(share_key(parse_share(a, "approved item %r" % (a,))) for a in (approved or []))
    steps = []
    for step in schedule:
        step = dict(step)
        step["approved"] = share_key(step["share"]) in approved_keys
        step["needs_approval"] = bool(step["approval"] and not step["approved"])
        steps.append(step)
    next_pos, at_pos = resume_point(steps, current, tolerance)
    remaining = steps[next_pos:]
    if rollback_to is not None:
        target = parse_share(rollback_to, "rollback_to", allow_zero=True)
    elif rolling_back_to is not None:
        target = parse_share(rolling_back_to, "rolling_back_to", allow_zero=True)
    else:
        target = origin
    if rolling_back_to is not None:
        action = ACTION_FINISH_ROLLBACK
    elif not remaining:
        action = ACTION_DONE
    else:
        action = ACTION_ROLLOUT
    return {
        "steps": steps,
        "total": len(steps),
        "remaining": remaining,
        "next_position": next_pos,
        "at_step": steps[at_pos] if at_pos is not None else None,
        "resuming": origin_share is not None and abs(current - origin) > 1e-9,
        "done": not remaining,
        "current_share": current,
        "origin_share": origin,
        "action": action,
        "rollback_target": target,
        "rollback_path": rollback_path(steps, current, target, rollback_mode),
    }


# -- gate thresholds ---------------------------------------------------------------------------------------

def check_threshold(value, minimum=None, maximum=None):
    """True when ``value`` is within ``[minimum, maximum]`` (either bound optional)."""
    if minimum is not None and value < minimum:
        return False
    if maximum is not None and value > maximum:
        return False
    return True


def describe_threshold(minimum=None, maximum=None):
    if minimum is not None and maximum is not None:
        return ">= %s and <= %s" % (_num(minimum), _num(maximum))
    if minimum is not None:
        return ">= %s" % _num(minimum)
    if maximum is not None:
        return "<= %s" % _num(maximum)
    return "any"


def _num(value):
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return ("%.6f" % value).rstrip("0").rstrip(".")
    return str(value)


def validate_no_data(policy, field="no_data"):
    if policy not in NO_DATA_POLICIES:
        raise RolloutError("%s must be one of %s, got %r" % (field, ", ".join(NO_DATA_POLICIES), policy))
    return policy


def prometheus_values(body):
    """Numbers of an instant query answer (``/api/v1/query``); NaN/Inf and empty results give no values.

    Raises RolloutError when the answer is not a successful Prometheus answer."""
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else None
        raise RolloutError("Prometheus answered with an error: %s" % (error or "not a Prometheus API answer"))
    data = body.get("data") or {}
    kind = data.get("resultType")
    result = data.get("result")
    samples = []
    if kind in ("scalar", "string"):
        samples = [result] if result else []
    elif kind == "vector":
        samples = [item.get("value") for item in result or []]
    elif kind == "matrix":
        for item in result or []:
            values = item.get("values") or []
            if values:
                samples.append(values[-1])
    else:
        raise RolloutError("Prometheus answered with an unknown resultType %r" % (kind,))
    out = []
    for sample in samples:
        try:
            number = float(sample[1])
        except (TypeError, ValueError, IndexError):
            continue
        if math.isnan(number) or math.isinf(number):
            continue
        out.append(number)
    return out


def judge_values(values, minimum=None, maximum=None, no_data="fail"):
    """``(status, measured)`` for a gate with numeric samples: every sample must be within the threshold;
    ``measured`` is the worst sample (None when there is no data, then ``no_data`` decides)."""
    if not values:
        return (STATUS_PASS if no_data == "pass" else STATUS_FAIL if no_data == "fail" else STATUS_INCONCLUSIVE), None
    worst = None
    for value in values:
        if not check_threshold(value, minimum, maximum):
            return STATUS_FAIL, value
    if maximum is not None:
        worst = max(values)
    elif minimum is not None:
        worst = min(values)
    else:
        worst = values[0]
    return STATUS_PASS, worst


# Kong's rule for "this upstream is health-checked", kept in one place.
healthchecks_configured = healthchecks_enabled


def _listed(items, limit=10):
    items = sorted(items)
    text = ", ".join(items[:limit])
    if len(items) > limit:
        text += "; and %d more" % (len(items) - limit)
    return text


def judge_target_health(entries, wanted, unhealthy_states, checks_on, no_data="fail"):
    """The Kong-health gate of one Kong node from its ``/health`` answer, never passing vacuously.

    ``entries``: ``[(target_key, health, weight)]`` for the upstream's targets the node lists; ``wanted``: the
    container targets. Returns ``(status, value, detail, warning)``: ``fail`` with the unhealthy ones (value = their
    count) or with container targets the node does not list at all (it has not loaded them); container targets
    listed without a health (the node has no balancer for the upstream yet, or never will: a hybrid control plane)
    are *no data*, judged by ``no_data`` and never counted as healthy; ``inconclusive`` when health checks are
    configured but the node reports HEALTHCHECKS_OFF for container targets that have weight (it is not checking
    them); ``pass`` otherwise. With health checks off Kong checks nothing: ``pass`` with a ``warning`` saying the
    gate is blind."""
    states = set(s.upper() for s in unhealthy_states)
    wanted = set(wanted)
    seen = {}
    for key, health, weight in entries:
        if key in wanted:
            seen[key] = (str(health or "").upper(), weight)
    bad = ["%s %s" % (key, health) for key, (health, _weight) in seen.items() if health in states]
    missing = wanted - set(seen)
    blank = sorted(key for key, (health, _weight) in seen.items() if not health)
    if blank and not (bad or missing):
        status = judge_values([], no_data=no_data)[0]
        detail = ("no data: %d of %d container target(s) have no health on this node (%s): it has no balancer for the "
                  "upstream, so it measured nothing; no_data policy %s" % (len(blank), len(seen), _listed(blank), no_data))
        warning = detail if status == STATUS_PASS else None
        return status, None, detail, warning
    if bad or missing:
        parts = []
        if bad:
            parts.append("unhealthy: %s" % _listed(bad))
        if missing:
            parts.append("%d container target(s) missing from the node's /health (not loaded by this node): %s"
                         % (len(missing), _listed(missing)))
        return STATUS_FAIL, float(len(bad) + len(missing)), "; ".join(parts), None
    weighted = [key for key, (_health, weight) in seen.items() if isinstance(weight, (int, float)) and weight > 0]
    off = [key for key in weighted if seen[key][0] == "HEALTHCHECKS_OFF"]
    if not checks_on:
        warning = ("health checks are off on the upstream: Kong reports HEALTHCHECKS_OFF and this gate cannot see a "
                   "failing container; configure active or passive health checks (the mixed_service role's healthchecks)")
        return STATUS_PASS, 0.0, "%d container targets listed; %s" % (len(seen), warning), warning
    if off:
        return (STATUS_INCONCLUSIVE, None, "health checks are configured but the node reports HEALTHCHECKS_OFF for %d "
                "container target(s) with weight: %s (it is not checking them yet)" % (len(off), _listed(off)), None)
    return STATUS_PASS, 0.0, "%d container targets checked, %d with weight" % (len(seen), len(weighted)), None


def health_settling(entries, wanted, checks_on):
    """The container targets whose health says the node is still catching up with a change: listed without health
    (no balancer yet), DNS_ERROR (the balancer's resolution of a new target), or HEALTHCHECKS_OFF with weight while
    checks are configured (a health checker not started yet). The gate reads these again until its settle time."""
    wanted = set(wanted)
    out = []
    for key, health, weight in entries:
        if key not in wanted:
            continue
        health = str(health or "").upper()
        weighted = isinstance(weight, (int, float)) and weight > 0
        if not health or health == "DNS_ERROR" or (checks_on and weighted and health == "HEALTHCHECKS_OFF"):
            out.append(key)
    return sorted(out)


def combine(statuses):
    """An evaluation's status from its gates' statuses: any fail -> fail, else any inconclusive -> inconclusive."""
    statuses = list(statuses)
    if STATUS_FAIL in statuses:
        return STATUS_FAIL
    if STATUS_INCONCLUSIVE in statuses:
        return STATUS_INCONCLUSIVE
    return STATUS_PASS


def gate_summary(result):
    """One line naming a gate, its measured value and its threshold."""
    name = result.get("name") or result.get("gate")
    text = "gate '%s' (%s) %s: measured %s, threshold %s" % (
        name, result.get("gate"), "failed" if result.get("status") == STATUS_FAIL else result.get("status"),
        "no data" if result.get("value") is None else _num(result.get("value")), result.get("threshold"))
    if result.get("detail"):
        text += " (%s)" % result["detail"]
    return text


# -- failure budget and the hold window --------------------------------------------------------------------

class FailureBudget:
    """Failed evaluations in total and in a row. Spent when either count REACHES its limit.

    ``max_failures=3`` rolls back at the 3rd failed evaluation of the run; ``max_consecutive=2`` at the 2nd
    failed evaluation in a row. A passed evaluation resets the consecutive count; an inconclusive one leaves
    both counts alone."""

    def __init__(self, max_failures=3, max_consecutive=2, failures=0, consecutive=0):
        for field, value in (("max_failures", max_failures), ("max_consecutive_failures", max_consecutive)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise RolloutError("%s must be a whole number of at least 1, got %r" % (field, value))
        for field, value in (("failures so far", failures), ("consecutive failures so far", consecutive)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise RolloutError("%s must be a whole number of 0 or more, got %r" % (field, value))
        self.max_failures = max_failures
        self.max_consecutive = max_consecutive
        self.failures = failures
        self.consecutive = consecutive

    def record(self, status):
        if status == STATUS_FAIL:
            self.failures += 1
            self.consecutive += 1
        elif status == STATUS_PASS:
            self.consecutive = 0
        return self.spent

    @property
    def spent(self):
        return self.failures >= self.max_failures or self.consecutive >= self.max_consecutive

    def reason(self):
        if self.consecutive >= self.max_consecutive:
            return "%d failed evaluations in a row (max_consecutive_failures %d)" % (self.consecutive, self.max_consecutive)
        if self.failures >= self.max_failures:
            return "%d failed evaluations in total (max_failures %d)" % (self.failures, self.max_failures)
        return "budget not spent"

    def as_dict(self):
        return {"failures": self.failures, "consecutive": self.consecutive, "max_failures": self.max_failures,
                "max_consecutive_failures": self.max_consecutive}


def hold_schedule(hold, interval):
    """Offsets (seconds from the start of the hold) of the evaluations inside the hold window.

    Every ``interval`` seconds, the last one exactly at ``hold``; one evaluation at ``hold`` when
    ``interval`` is 0 or not shorter than ``hold``."""
    hold = _positive_number(hold, "hold", allow_zero=True)
    interval = _positive_number(interval, "interval", allow_zero=True)
    if interval <= 0 or interval >= hold:
        return [hold]
    offsets = []
    t = interval
    while t < hold - 1e-9:
        offsets.append(round(t, 6))
        t += interval
        if len(offsets) > 100000:
            raise RolloutError("interval %s is too short for hold %s" % (interval, hold))
    offsets.append(hold)
    return offsets


def run_hold_window(evaluate, hold, interval, budget, inconclusive_limit=3, clock=None, sleep=None,
                    max_extra_evaluations=None):
    """Hold the current weight for ``hold`` seconds, evaluating the gates at the ``hold_schedule`` offsets.

    ``evaluate()`` returns ``{"status": pass|fail|inconclusive, ...}``. After the window, a step passes when
    the LAST evaluation passed. While it fails (and the budget is not spent) or is inconclusive, the weight
    keeps being held and the gates are evaluated again every ``interval`` (at least 1 s when 0) until they
    pass, the failure budget is spent (decision ``rollback``) or ``inconclusive_limit`` evaluations in a row
    were inconclusive (decision ``inconclusive``: pause, neither forward nor back).
    ``evaluate`` may return ``{"status": ..., "abort": "lock_lost"}`` to stop at once.

    Returns ``{"decision", "evaluations", "budget", "held"}``.
    """
    import time as _time
    clock = clock or _time.time
    sleep = sleep or _time.sleep
    if isinstance(inconclusive_limit, bool) or not isinstance(inconclusive_limit, int) or inconclusive_limit < 1:
        raise RolloutError("inconclusive_limit must be a whole number of at least 1, got %r" % (inconclusive_limit,))
    offsets = hold_schedule(hold, interval)
    retry_every = interval if interval > 0 else 1.0
    if max_extra_evaluations is None:
        # A bound that the budget or the inconclusive limit always reaches first; belt and braces.
        max_extra_evaluations = budget.max_consecutive + inconclusive_limit + 1
    start = clock()
    evaluations = []
    inconclusive_run = 0
    extra = 0
    pos = 0
    while True:
        if pos < len(offsets):
            due = start + offsets[pos]
            pos += 1
        else:
            due = clock() + retry_every
            extra += 1
        wait = due - clock()
        if wait > 0:
            sleep(wait)
        outcome = evaluate()
        status = outcome.get("status")
        outcome["at"] = round(clock() - start, 3)
        outcome["in_window"] = extra == 0
        evaluations.append(outcome)
        if outcome.get("abort"):
            return _window_result(outcome["abort"], evaluations, budget, clock() - start)
        if budget.record(status):
            return _window_result(DECISION_ROLLBACK, evaluations, budget, clock() - start)
        inconclusive_run = inconclusive_run + 1 if status == STATUS_INCONCLUSIVE else 0
        if pos < len(offsets):
            continue
        if status == STATUS_PASS:
            return _window_result(DECISION_PASS, evaluations, budget, clock() - start)
        if status == STATUS_INCONCLUSIVE and inconclusive_run >= inconclusive_limit:
            return _window_result(DECISION_INCONCLUSIVE, evaluations, budget, clock() - start)
        if extra >= max_extra_evaluations:
            # Cannot normally happen (a failing evaluation spends the budget); stop holding and roll back.
            return _window_result(DECISION_ROLLBACK, evaluations, budget, clock() - start)


def _window_result(decision, evaluations, budget, held):
    return {"decision": decision, "evaluations": evaluations, "budget": budget.as_dict(), "held": round(held, 3)}


# -- lock tags ------------------------------------------------------------------------------------------------

def validate_owner(owner):
    if not isinstance(owner, str) or not owner or not _OWNER_RE.match(owner) or any(c in owner for c in _OWNER_FORBIDDEN):
        raise RolloutError("lock owner must be printable text without spaces, ':', ',' or '/' (it is stored in a "
                           "Kong tag), e.g. 'awx-job-123@controller'; got %r" % (owner,))
    if len(owner) > 200:
        raise RolloutError("lock owner is too long (%d characters, at most 200)" % len(owner))
    return owner


def format_lock_tag(owner, expiry):
    validate_owner(owner)
    return "%s%s:%d" % (LOCK_PREFIX, owner, int(expiry))


def parse_lock_tag(tag):
    """``{"owner", "expires_at", "tag"}`` for a lock tag, None for any other tag or a malformed lock tag."""
    if not isinstance(tag, str) or not tag.startswith(LOCK_PREFIX):
        return None
    rest = tag[len(LOCK_PREFIX):]
    owner, sep, expiry = rest.rpartition(":")
    if not sep or not owner or ":" in owner or not re.match(r"^\d+$", expiry):
        return None
    return {"owner": owner, "expires_at": int(expiry), "tag": tag}


def format_origin_tag(share):
    return ORIGIN_PREFIX + share_key(parse_share(share, "origin share", allow_zero=True))


def parse_origin_tag(tags):
    for tag in tags or []:
        if isinstance(tag, str) and tag.startswith(ORIGIN_PREFIX):
            try:
                return parse_share(tag[len(ORIGIN_PREFIX):], "origin tag", allow_zero=True)
            except RolloutError:
                continue
    return None


def format_rollback_tag(share):
    return ROLLBACK_PREFIX + share_key(parse_share(share, "rollback share", allow_zero=True))


def parse_rollback_tag(tags):
    """The share a rollback under way goes back to (the rollback tag), or None."""
    for tag in tags or []:
        if isinstance(tag, str) and tag.startswith(ROLLBACK_PREFIX):
            try:
                return parse_share(tag[len(ROLLBACK_PREFIX):], "rollback tag", allow_zero=True)
            except RolloutError:
                continue
    return None


def lock_info(tags, now):
    """The lock found in ``tags`` (the latest expiry when several), described at time ``now``."""
    locks = [parse_lock_tag(t) for t in tags or []]
    locks = [lk for lk in locks if lk]
    if not locks:
        return None
    lock = max(locks, key=lambda lk: lk["expires_at"])
    info = dict(lock)
    info["expired"] = lock["expires_at"] <= now
    info["expires_in"] = int(lock["expires_at"] - now)
    info["count"] = len(locks)
    return info


def describe_lock_refusal(lock, now):
    return ("the upstream is locked by '%s' until %s (epoch %d, %d s from now): another rollout is running. Wait for "
            "it, or after checking that it is really gone use force=true (playbooks/rollback.yml -e rollout_lock_force=true)"
            % (lock["owner"], _iso(lock["expires_at"]), lock["expires_at"], max(0, int(lock["expires_at"] - now))))


def _iso(epoch):
    import time as _time
    return _time.strftime("%Y-%m-%dT%H:%M:%SZ", _time.gmtime(epoch))
