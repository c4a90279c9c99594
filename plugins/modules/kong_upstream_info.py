#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kong_upstream_info
short_description: Read a Kong upstream, its targets, their health and the traffic split
version_added: 1.0.0
description:
  - Reads one Kong Gateway upstream (by name or id), all its targets (one paginated list), and the health of
    every target from C(/upstreams/{u}/health) on each Kong node asked.
  - Computes the share of traffic each target, each tag and each label group gets from the current weights
    (weight divided by the total weight), so the split of a rollout can be read from Kong alone, without any
    hidden state.
  - Read-only. Returns RV(exists=false) when the upstream does not exist (not an error).
extends_documentation_fragment:
  - mixedrun.kong.kong
  - mixedrun.kong.kong.ATTRIBUTES
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
options:
  upstream:
    description: Name or id of the upstream.
    type: str
    required: true
  admin_urls:
    description:
      - More Kong nodes to ask for health, as Admin API URLs. Health is per Kong node (each node's balancer
        runs its own checks); each node answers for itself with its C(node_id).
      - The node of O(admin_url) is always asked first; the other connection options apply to every node.
      - A C(user:password@) in a URL is handled as in O(admin_url); RV(nodes[].admin_url), RV(api_calls) and
        RV(targets[].health_by_node) show the URL as C(scheme://***@host:port).
    type: list
    elements: str
    default: []
  balancer_urls:
    description:
      - Where each Kong proxy node's balancer can be read instead (C(/upstreams/{u}/health)), in hybrid mode the
        Status API (C(status_listen)) of every data plane, since a control plane runs no balancer and lists the
        targets without health. When set, these are the nodes asked (no admin token is sent to a URL that is not
        O(admin_url) or in O(admin_urls)).
    type: list
    elements: str
    default: []
  balancer_health:
    description:
      - Also ask each node for the health of the upstream's balancer as a whole (C(?balancer_health=1)).
    type: bool
    default: false
  tag_prefix:
    description:
      - Only tags starting with this prefix are counted in RV(share_by_tag) and RV(share_by_label), for
        example V(mixedrun-kind:). Without it every tag is counted.
    type: str
seealso:
  - module: mixedrun.kong.kong_upstream_targets
  - module: mixedrun.kong.kong_upstream
  - name: Kong Admin API, upstream health
    description: How Kong reports the health of targets.
    link: https://docs.konghq.com/gateway/latest/admin-api/#show-upstream-health-for-node
author:
  - mixedrun.kong maintainers (@mixedrun)
"""

EXAMPLES = r"""
- name: How is shop's traffic split between VMs and containers right now?
  mixedrun.kong.kong_upstream_info:
    admin_url: http://127.0.0.1:8001
    upstream: shop.upstream
    tag_prefix: "mixedrun-kind:"
  register: shop

- name: Show it
  ansible.builtin.debug:
    msg: "containers get {{ shop.share_by_label['mixedrun-kind'].container | default(0) }} %"

- name: Ask both Kong nodes for target health; fail if any weighted target is unhealthy on any node
  mixedrun.kong.kong_upstream_info:
    admin_url: http://kong-1.example.com:8001
    admin_urls: [http://kong-2.example.com:8001]
    upstream: shop.upstream
    balancer_health: true
  register: shop_health
  failed_when: >-
    shop_health.targets | selectattr('weight', 'gt', 0) | selectattr('health', 'in', ['UNHEALTHY', 'MIXED', 'DNS_ERROR'])
    | list | length > 0
"""

RETURN = r"""
exists:
  description: Whether the upstream exists.
  returned: always
  type: bool
  sample: true
upstream:
  description: The upstream as Kong returns it; null when it does not exist.
  returned: always
  type: dict
  sample: {id: 0c2b6b4e-5d5e-4d37-b0a6-0c9f7f4a6a11, name: shop.upstream, algorithm: round-robin}
targets:
  description: The upstream's targets, sorted by target.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Target id.
      type: str
      returned: always
    target:
      description: The target, C(host:port) as Kong stores it.
      type: str
      returned: always
    weight:
      description: The target's weight.
      type: int
      returned: always
    tags:
      description: The target's tags (sorted; empty list when none).
      type: list
      elements: str
      returned: always
    created_at:
      description: Creation time (epoch seconds with a fraction).
      type: float
      returned: always
    share:
      description: Percentage of the traffic the target gets from the weights (0 when the total weight is 0).
      type: float
      returned: always
    health_by_node:
      description:
        - The target's health per Kong node, keyed by C(node_id) (by the node's URL, without credentials, when a
          node reports no C(node_id)); null where a node does not list it.
      type: dict
      returned: always
    health:
      description:
        - The health all nodes agree on (V(HEALTHY), V(UNHEALTHY), V(HEALTHCHECKS_OFF), V(DNS_ERROR)), V(MIXED)
          when nodes disagree, null when no node reports it.
      type: str
      returned: always
  sample:
    - id: 2d2a3a64-5f6d-4b8b-9a77-0e3c1c9b8f10
      target: 10.0.0.5:8080
      weight: 70
      tags: [mixedrun-managed, "mixedrun-kind:vm"]
      created_at: 1700000000.123
      share: 70.0
      health_by_node: {8e2f0e4c-4a57-4bd4-b4f0-3c5a8b1f2d6e: HEALTHY}
      health: HEALTHY
nodes:
  description: Each Kong node asked, with its health answer.
  returned: always
  type: list
  elements: dict
  contains:
    admin_url:
      description: The node's Admin API URL, without any C(user:password@) part (shown as C(***@)).
      type: str
      returned: always
    node_id:
      description: The node's id, as the node reports it.
      type: str
      returned: always
    targets:
      description:
        - Per target (C(host:port)), its C(health), resolved C(addresses) and C(balancer_weight), the weight this
          node's balancer routes with (V(null) while it does not hold the target).
      type: dict
      returned: always
    follows:
      description:
        - Whether this node's balancer routes with the weights the database holds. Every Admin API shows a write at
          once; each node's balancer follows at its next cluster-event poll (C(db_update_frequency)) or, for a data
          plane, when it gets the new configuration.
      type: bool
      returned: always
    lagging:
      description: The targets whose balancer weight differs from the database's, with the weight the balancer uses.
      type: dict
      returned: always
    balancer_health:
      description: V(HEALTHY) or V(UNHEALTHY), the balancer as a whole.
      type: str
      returned: when O(balancer_health=true)
    balancer_details:
      description: Kong's balancer details.
      type: dict
      returned: when O(balancer_health=true)
consistent:
  description: Whether every node asked routes with the weights the database holds (V(null) when no node was asked).
  returned: always
  type: bool
  sample: true
total_weight:
  description: Sum of the weights of all targets.
  returned: always
  type: int
  sample: 100
share_by_tag:
  description: Percentage of traffic per tag (targets with the tag / total weight), for tags matching O(tag_prefix).
  returned: always
  type: dict
  sample: {"mixedrun-kind:vm": 70.0, "mixedrun-kind:container": 30.0}
share_by_label:
  description:
    - Tags of the form C(label:value) grouped by label, percentage of traffic per value.
  returned: always
  type: dict
  sample: {"mixedrun-kind": {vm: 70.0, container: 30.0}, "mixedrun-service": {shop: 100.0}}
api_calls:
  description: The Admin API calls made (those to the nodes of O(admin_urls) carry their C(admin_url)).
  returned: always
  type: list
  elements: dict
  sample:
    - {method: GET, path: /upstreams/shop.upstream, status: 200}
kong_error:
  description:
    - The failed Admin API call as Kong answered it, C(method), C(path), C(status), C(code), C(name), C(message)
      and C(fields). Never holds request headers or credentials.
    - C(status) is null when Kong was not reached (connection refused, timeout, TLS failure).
  returned: when the task failed on an Admin API call
  type: dict
  sample:
    method: GET
    path: /upstreams/0c2b6b4e-5d5e-4d37-b0a6-0c9f7f4a6a11/health
    status: 401
    code: null
    name: null
    message: Invalid credentials. Token or User credentials required
    fields: null
status:
  description:
    - The HTTP status of the failed Admin API call (the same as C(status) in RV(kong_error)); null when Kong was not
      reached. Not returned when the task failed before calling Kong (bad input).
  returned: when the task failed on an Admin API call
  type: int
  sample: 401
"""

from ansible_collections.mixedrun.kong.plugins.module_utils._kong_api import KongApiError
from ansible_collections.mixedrun.kong.plugins.module_utils._kong_module import KongModule
from ansible_collections.mixedrun.kong.plugins.module_utils._entities import upstream_info

ARGUMENT_SPEC = dict(
    upstream=dict(type="str", required=True),
    admin_urls=dict(type="list", elements="str", default=[]),
    balancer_urls=dict(type="list", elements="str", default=[]),
    balancer_health=dict(type="bool", default=False),
    tag_prefix=dict(type="str"),
)


def main():
    module = KongModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        result = upstream_info(module.client, module.params)
    except (KongApiError, ValueError) as exc:
        module.fail_json_kong(exc, "Failed to read upstream %s" % module.params["upstream"])
    module.exit_kong(**result)


if __name__ == "__main__":
    main()
