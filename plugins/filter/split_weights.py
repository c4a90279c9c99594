# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: split_weights
short_description: Per-target weights for a VM/container traffic split
version_added: 1.0.0
description:
  - Computes the weight of each VM target and each container target that sends O(_input) percent of the
    traffic to the containers, with the same arithmetic as M(mixedrun.kong.kong_traffic_split) (exact
    fractions, the smallest readable weights within O(max_error), never above 65535; 0 and 100 exact).
  - Pure arithmetic, no Kong call; use it to create new targets with the right weights in one write, for
    example when binding a service that already has a share.
  - Given the weights the existing targets hold now (O(current_vm), O(current_container)), it picks the pair
    that meets the plan with the fewest changes to them, like M(mixedrun.kong.kong_traffic_split) - the current
    weights themselves when they already give the share within O(max_error), else a pair that keeps one kind's
    weight, else the smallest readable pair. The result's C(writes) counts the listed targets that change.
options:
  _input:
    description:
      - The planned container share in percent, 0 to 100; decimals (V(0.5)) and exact fraction texts
        (V("100/3"), the share some weights give) are allowed.
    type: raw
    required: true
  vm_count:
    description: Number of VM targets.
    type: int
    required: true
  container_count:
    description: Number of container targets.
    type: int
    required: true
  max_error:
    description: Largest allowed difference between the planned and the achieved share, in percentage points.
    type: float
    default: 0.05
  current_vm:
    description: The weight each existing VM target holds now, one entry per target (new targets are left out).
    type: list
    elements: int
  current_container:
    description: The weight each existing container target holds now, like O(current_vm).
    type: list
    elements: int
seealso:
  - module: mixedrun.kong.kong_traffic_split
author:
  - mixedrun.kong maintainers (@mixedrun)
"""

EXAMPLES = r"""
- name: Weights for 25 % over 7 VMs and 3 containers
  ansible.builtin.debug:
    msg: "{{ 25 | mixedrun.kong.split_weights(7, 3) }}"
  # {"vm_weight": 9, "container_weight": 7, "achieved_share": 25.0, "error": 0.0, ...}

- name: 50 % while 7 VMs hold 27 and 3 containers 7 - the VMs keep 27, only the containers change
  ansible.builtin.debug:
    msg: "{{ 50 | mixedrun.kong.split_weights(7, 3, current_vm=[27] * 7, current_container=[7] * 3) }}"
  # {"vm_weight": 27, "container_weight": 63, "writes": 3, ...}
"""

RETURN = r"""
_value:
  description: The plan.
  type: dict
  contains:
    vm_weight:
      description: Weight of each VM target.
      type: int
    container_weight:
      description: Weight of each container target.
      type: int
    planned_share:
      description: The share asked for, in percent.
      type: float
    achieved_share:
      description: The share the weights give, in percent.
      type: float
    error:
      description: Absolute difference between the two, in percentage points.
      type: float
    exact:
      description: Whether the weights give the planned share exactly.
      type: bool
    counts:
      description: The target counts, C(vm) and C(container).
      type: dict
    writes:
      description: How many of the targets listed in O(current_vm) and O(current_container) change weight.
      type: int
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.mixedrun.kong.plugins.module_utils._weights import WeightPlanError, plan_weights


def _count(value, name):
    try:
        if isinstance(value, bool):
            raise ValueError()
        number = int(value)
        if number != value and str(number) != str(value).strip():
            raise ValueError()
    except (TypeError, ValueError):
        raise AnsibleFilterError("split_weights: %s must be a whole number, got %r" % (name, value))
    return number


def split_weights(share, vm_count, container_count, max_error=0.05, current_vm=None, current_container=None):
    """The plan_weights() dict for ``share`` over ``vm_count`` VM and ``container_count`` container targets."""
    try:
        return plan_weights(_count(vm_count, "vm_count"), _count(container_count, "container_count"),
                            share, max_error=max_error, current_vm=current_vm,
                            current_container=current_container)
    except WeightPlanError as exc:
        raise AnsibleFilterError("split_weights: %s" % exc)


class FilterModule(object):
    def filters(self):
        return {"split_weights": split_weights}
