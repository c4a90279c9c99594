# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The split_weights filter: directly and through a real Jinja template, as a playbook uses it."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess
import sys
from fractions import Fraction

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.mixedrun.kong.plugins.filter.split_weights import FilterModule, split_weights

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))

PLAY = """
- hosts: localhost
  gather_facts: false
  vars:
    counts: {vm: 7, container: 3}
    kept: [27, 27, 27, 27, 27, 27, 27]
    ct: [7, 7, 7]
  tasks:
    - name: Plan with the filter, as templates do
      ansible.builtin.set_fact:
        plain: "{{ 25 | mixedrun.kong.split_weights(counts.vm, counts.container) }}"
        kept_plan: "{{ 50 | mixedrun.kong.split_weights(7, 3, 0.05, current_vm=kept, current_container=ct) }}"
        fraction: "{{ '100/3' | mixedrun.kong.split_weights(2, 1, 0) }}"
    - name: An impossible plan
      ansible.builtin.set_fact:
        impossible: "{{ 10 | mixedrun.kong.split_weights(3, 0) }}"
      ignore_errors: true
      register: impossible_result
    - name: Write what was found
      ansible.builtin.copy:
        dest: "{{ out }}"
        mode: "0600"
        content: "{{ {'plain': plain, 'kept': kept_plan, 'fraction': fraction, 'impossible': impossible_result} | to_json }}"
"""


def test_registered_name():
    assert FilterModule().filters() == {"split_weights": split_weights}


@pytest.mark.parametrize("share,m,n,weights", [
    (25, 7, 3, (9, 7)),          # the example of the docs
    (10, 7, 3, (27, 7)),
    (0, 3, 3, (1, 0)),
    (100, 3, 3, (0, 1)),
    (0.5, 1, 1, (199, 1)),
    ("50", "7", "3", (3, 7)),    # Jinja often hands numbers over as text
    ("12.5%", 7, 3, (3, 1)),     # 3 / 24
])
def test_plans(share, m, n, weights):
    plan = split_weights(share, m, n)
    assert (plan["vm_weight"], plan["container_weight"]) == weights
    real = Fraction(100 * int(n) * weights[1], int(m) * weights[0] + int(n) * weights[1])
    assert plan["achieved_share"] == pytest.approx(float(real), abs=1e-6)
    assert plan["error"] <= 0.05
    assert plan["counts"] == {"vm": int(m), "container": int(n)} and plan["writes"] == 0


def test_exact_fraction_text_and_current_weights_keep_the_pair():
    """What the mixed_service role does on a re-run: the exact share Kong holds + the weights now."""
    first = split_weights(0.6, 3, 3)
    share = "%d/%d" % (100 * 3 * first["container_weight"], 3 * first["vm_weight"] + 3 * first["container_weight"])
    again = split_weights(share, 3, 3, 0.05, current_vm=[first["vm_weight"]] * 3,
                          current_container=[first["container_weight"]] * 3)
    assert (again["vm_weight"], again["container_weight"], again["writes"]) == (first["vm_weight"], first["container_weight"], 0)
    # without the current weights, the rounded share replans to another pair (the drift the role had)
    drift = split_weights(first["achieved_share"], 3, 3)
    assert (drift["vm_weight"], drift["container_weight"]) != (first["vm_weight"], first["container_weight"])


def test_keeps_one_kind():
    plan = split_weights(50, 7, 3, current_vm=[27] * 7, current_container=[7] * 3)
    assert (plan["vm_weight"], plan["container_weight"], plan["writes"]) == (27, 63, 3)
    plan = split_weights(50, 7, 3, current_vm=["27"] * 7, current_container=["7"] * 3)
    assert plan["writes"] == 3


@pytest.mark.parametrize("args,kwargs,pattern", [
    ((10, 1.5, 3), {}, "vm_count must be a whole number"),
    ((10, 3, "x"), {}, "container_count must be a whole number"),
    ((10, True, 3), {}, "vm_count must be a whole number"),
    ((120, 3, 3), {}, "container_share must be between 0 and 100"),
    (("abc", 3, 3), {}, "container_share must be a number"),
    ((10, 3, 3, -1), {}, "max_error"),
    ((10, 3, 0), {}, "no container targets"),
    ((10, 0, 0), {}, "nothing can receive traffic"),
    ((50, 1000000, 1), {}, "Kong's maximum of 65535"),
    ((10, 3, 3), {"current_vm": [70000]}, r"current_vm\[0\] must be a weight"),
    ((10, 3, 3), {"current_container": "7"}, "current_container must be a list"),
])
def test_bad_input_is_a_filter_error(args, kwargs, pattern):
    with pytest.raises(AnsibleFilterError, match=pattern) as err:
        split_weights(*args, **kwargs)
    assert str(err.value).startswith("split_weights: ")


def test_through_a_playbook(tmp_path):
    """As a playbook uses it: by FQCN in a template, numbers and lists from variables."""
    play = tmp_path / "play.yml"
    play.write_text(PLAY)
    out = tmp_path / "out.json"
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".tmp", "collections"), ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
                           "-c", "local", "-e", "out=%s" % out, "-e", "ansible_python_interpreter=%s" % sys.executable, str(play)],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    tasks = json.loads(out.read_text())
    plan = tasks["plain"]
    assert (plan["vm_weight"], plan["container_weight"]) == (9, 7)
    plan = tasks["kept"]
    assert (plan["vm_weight"], plan["container_weight"], plan["writes"]) == (27, 63, 3)
    plan = tasks["fraction"]
    assert plan["exact"] and (plan["vm_weight"], plan["container_weight"]) == (1, 1)
    failed = tasks["impossible"]
    assert failed["failed"] and "split_weights: a container share of 10% is impossible" in failed["msg"]
