#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: rollout_plan
short_description: Build a progressive rollout's schedule and find where a run resumes
version_added: 1.0.0
description:
  - Pure computation, no connection. Turns an explicit list of shares (sub-1 % steps allowed), a linear step or an
    exponential start and factor into the schedule of a rollout, with a hold time and an approval flag per step.
  - Given the share Kong holds now (RV(mixedrun.kong.kong_traffic_split#module:achieved_share) in read-only mode),
    returns the steps still to do. The weights are the state; a run interrupted mid-rollout is resumed from the
    next step, nothing is lost or repeated.
  - Also returns the way back (RV(rollback_path)) from the current share to the rollback target, at once or through
    the schedule's steps, and what the run must do (RV(action)); a rollback that was under way when its run stopped
    (O(rolling_back_to)) is finished, never resumed upward.
  - Used by the C(mixedrun.kong.rollout) role; bad input fails naming the field, before anything is changed.
author:
  - mixedrun.kong maintainers (@mixedrun)
attributes:
  check_mode:
    description: Computes the same plan.
    support: full
  diff_mode:
    description: Nothing to show.
    support: none
options:
  mode:
    description: How the shares are given.
    type: str
    choices: [explicit, linear, exponential]
    default: explicit
  steps:
    description:
      - For O(mode=explicit), the shares in increasing order, as numbers (V(0.5), V(25)) or dicts
        C({share, hold, approval}).
    type: list
    elements: raw
  linear_step:
    description: For O(mode=linear), the percentage points added per step.
    type: float
  linear_start:
    description: For O(mode=linear), the first share (default O(linear_step)).
    type: float
  exponential_start:
    description: For O(mode=exponential), the first share.
    type: float
  exponential_factor:
    description: For O(mode=exponential), the factor between steps, more than 1.
    type: float
  target_share:
    description: The last step (100 = a full migration). Appended when the list stops short of it.
    type: float
    default: 100
  hold:
    description: Default hold seconds of every step.
    type: float
    default: 300
  holds:
    description: "Hold seconds per step, keyed by share, for example C({\"1\": 900, \"50\": 600})."
    type: dict
    default: {}
  approvals:
    description: Shares whose step needs a manual approval before it is applied.
    type: list
    elements: raw
    default: []
  approved:
    description: Shares already approved (for example by an AWX workflow approval node).
    type: list
    elements: raw
    default: []
  current_share:
    description: The container share Kong holds now (0 when no target has weight).
    type: float
    required: true
  origin_share:
    description:
      - The share the rollout started from, when an interrupted rollout left it on the upstream
        (RV(mixedrun.kong.kong_rollout_lock#module:origin_share)); default O(current_share).
    type: float
  resume_tolerance:
    description:
      - Percentage points within which the current share counts as being at a step (never more than half the gap
        to a neighbouring step).
    type: float
    default: 0.5
  rolling_back_to:
    description:
      - The share a rollback under way goes back to, when an interrupted run left its rollback tag on the upstream
        (RV(mixedrun.kong.kong_rollout_lock#module:rolling_back)). Then RV(action) is V(finish_rollback).
    type: float
  rollback_to:
    description:
      - Where a rollback goes (for example an operator's choice). Default O(rolling_back_to), else the origin share.
    type: float
  rollback_mode:
    description: V(immediate) goes back in one weight change; V(gradual) back through the schedule's steps.
    type: str
    choices: [immediate, gradual]
    default: immediate
  capacity:
    description:
      - Capacity-aware steps. The service's traffic (C(demand)) and what a VM (C(vm)) and a pod (C(container)) carry, in one
        unit (for example requests per second; default 1 each, equal per node). Without C(demand), the VMs are taken to carry the
        whole service now at their capacity (O(vm_count) times C(vm)).
      - Each step then gets C(replicas), the ready pods its share needs with C(headroom) (default 0.25), at least C(min_replicas)
        (default 1); a step needing more than C(max_replicas) fails the plan, naming the numbers.
    type: dict
  vm_count:
    description: The VMs that serve the service now (for the default demand of O(capacity)).
    type: int
seealso:
  - module: mixedrun.kong.rollout_gate
  - module: mixedrun.kong.kong_traffic_split
"""

EXAMPLES = r"""
- name: Plan 0.1 -> 1 -> 5 -> 25 -> 50 -> 100, approval before 50
  mixedrun.kong.rollout_plan:
    steps: [0.1, 1, 5, 25, 50, 100]
    hold: 300
    holds: {"0.1": 900}
    approvals: [50]
    current_share: "{{ split.achieved_share | default(0, true) }}"
  register: plan

- name: The way back from 60 % to the origin 0 %, through the steps
  mixedrun.kong.rollout_plan:
    steps: [1, 5, 25, 50, 100]
    current_share: 60
    origin_share: 0
    rollback_mode: gradual
  register: back            # back.rollback_path == [50.0, 25.0, 5.0, 1.0, 0.0]

- name: Exponential 1, 2, 4, ... 64, 100
  mixedrun.kong.rollout_plan:
    mode: exponential
    exponential_start: 1
    exponential_factor: 2
    current_share: 0
"""

RETURN = r"""
steps:
  description: The whole schedule; each step has C(index) (1-based), C(share), C(hold), C(approval), C(approved), with
    O(capacity) C(replicas), C(needed) and C(carries), and
    C(needs_approval).
  returned: always
  type: list
  elements: dict
  sample: [{"index": 1, "share": 0.5, "hold": 60.0, "approval": false, "approved": false, "needs_approval": false}]
remaining:
  description: The steps this run still has to apply, in order.
  returned: always
  type: list
  elements: dict
total:
  description: Number of steps of the schedule.
  returned: always
  type: int
next_position:
  description: 0-based position in RV(steps) of the first remaining step (RV(total) when nothing is left).
  returned: always
  type: int
at_step:
  description: The step whose share Kong holds now, or null.
  returned: always
  type: dict
resuming:
  description: Whether an interrupted rollout is being resumed (the share differs from the recorded origin).
  returned: always
  type: bool
done:
  description: Whether nothing is left (the share is at the target already).
  returned: always
  type: bool
current_share:
  description: The share Kong holds now.
  returned: always
  type: float
origin_share:
  description: The share the rollout started from (a rollback of the rollout returns to it).
  returned: always
  type: float
action:
  description:
    - What the run must do. V(rollout) (steps remain), V(done) (the target is reached) or V(finish_rollback) (a
      rollback was under way when its run stopped, so finish it and do not resume).
  returned: always
  type: str
  sample: rollout
rollback_target:
  description: The share a rollback goes back to (O(rollback_to), else O(rolling_back_to), else RV(origin_share)).
  returned: always
  type: float
rollback_replicas:
  description: With O(capacity), the pods the rollback's target share needs (what a rollback scales down to).
  returned: when O(capacity) is given
  type: int
capacity:
  description: The capacity settings used, with defaults and the demand (null without O(capacity)).
  returned: always
  type: dict
rollback_path:
  description:
    - The shares a rollback from RV(current_share) applies, in order, ending at RV(rollback_target) (empty when it is
      there already).
  returned: always
  type: list
  elements: float
  sample: [25.0, 5.0, 0.0]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mixedrun.kong.plugins.module_utils._capacity import CapacityError, normalize, replicas_for
from ansible_collections.mixedrun.kong.plugins.module_utils._rollout import RolloutError, build_schedule, make_plan


def with_capacity(result, params):
    """Replicas per step (and for the rollback's target) when ``capacity`` is given."""
    if params.get("capacity") is None:
        result["capacity"] = None
        return result
    capacity = normalize(params["capacity"], params.get("vm_count") or 0)
    for key in ("steps", "remaining"):
        for step in result[key]:
            step.update(replicas_for(step["share"], capacity))
    result["rollback_replicas"] = replicas_for(result["rollback_target"], capacity)["replicas"]
    result["capacity"] = capacity
    return result


def plan(params):
    schedule = build_schedule(
        mode=params["mode"], steps=params.get("steps"), linear_step=params.get("linear_step"),
        linear_start=params.get("linear_start"), exponential_start=params.get("exponential_start"),
        exponential_factor=params.get("exponential_factor"), hold=params["hold"], holds=params.get("holds"),
        approvals=params.get("approvals"), target_share=params["target_share"])
    return with_capacity(make_plan(schedule, params["current_share"], params.get("origin_share"),
                                   tolerance=params["resume_tolerance"], approved=params.get("approved"),
                                   rolling_back_to=params.get("rolling_back_to"), rollback_mode=params["rollback_mode"],
                                   rollback_to=params.get("rollback_to")), params)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            mode=dict(type="str", default="explicit", choices=["explicit", "linear", "exponential"]),
            steps=dict(type="list", elements="raw"),
            linear_step=dict(type="float"),
            linear_start=dict(type="float"),
            exponential_start=dict(type="float"),
            exponential_factor=dict(type="float"),
            target_share=dict(type="float", default=100.0),
            hold=dict(type="float", default=300.0),
            holds=dict(type="dict", default={}),
            approvals=dict(type="list", elements="raw", default=[]),
            approved=dict(type="list", elements="raw", default=[]),
            current_share=dict(type="float", required=True),
            origin_share=dict(type="float"),
            resume_tolerance=dict(type="float", default=0.5),
            rolling_back_to=dict(type="float"),
            rollback_to=dict(type="float"),
            rollback_mode=dict(type="str", default="immediate", choices=["immediate", "gradual"]),
            capacity=dict(type="dict"),
            vm_count=dict(type="int"),
        ),
        supports_check_mode=True,
    )
    try:
        result = plan(module.params)
    except RolloutError as exc:
        module.fail_json(msg="Invalid rollout schedule: %s" % exc)
    except CapacityError as exc:
        module.fail_json(msg="Invalid rollout capacity: %s; nothing was changed" % exc)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
