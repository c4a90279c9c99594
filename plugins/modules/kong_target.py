#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kong_target
short_description: Manage one target of a Kong upstream
version_added: 1.0.0
description:
  - Create, re-weight, re-tag or delete one target of a Kong Gateway upstream, or set its health.
  - The target is compared in Kong's normalised form (C(host:port), default port 8000, IPv6 expanded in
    brackets), so V(10.0.0.5) and V(10.0.0.5:8000) are the same target.
  - Since Kong 3.0 a C(POST) only creates; an existing target's weight or tags change with a C(PATCH) by id.
  - To manage the whole target set of an upstream in one task (much faster for many targets), use
    M(mixedrun.kong.kong_upstream_targets).
extends_documentation_fragment:
  - mixedrun.kong.kong
  - mixedrun.kong.kong.ATTRIBUTES
attributes:
  check_mode:
    support: full
    description: Reports what would change and the API calls that would be made; sends no write.
  diff_mode:
    support: full
    description: Returns the target before and after the change.
options:
  upstream:
    description:
      - Name or id of the upstream. The task fails, changing nothing, when it does not exist.
    type: str
    required: true
  target:
    description:
      - The target, C(host[:port]), for example V(10.0.0.5:8080), V(app-1.example.com:80) or V([2001:db8::1]:8080).
        Without a port Kong uses 8000.
    type: str
    required: true
  weight:
    description:
      - Weight of the target, 0 to 65535. Weight 0 keeps the target listed but sends it no traffic (and Kong does
        not health-check it).
      - When the target is created without a weight Kong uses 100; leave out to keep an existing target's weight.
    type: int
  tags:
    description: Tags of the target. Compared without order; V([]) removes all tags; leave out to keep Kong's.
    type: list
    elements: str
  state:
    description:
      - V(present) creates or updates the target; V(absent) deletes it.
      - V(healthy) and V(unhealthy) make sure the target exists (like V(present)) and then set its health in
        Kong's balancer (C(PUT .../healthy) or C(.../unhealthy)), unless C(/upstreams/{u}/health) already reports
        that health, so a re-run is not a change.
      - Kong only keeps a health for a target it health-checks. The task fails before any change, saying so, when
        the upstream has no health checks enabled (Kong runs no health checker for it, reports every target
        C(HEALTHCHECKS_OFF) and refuses the call), when the target's weight is 0 (never health-checked), or when
        the target does not resolve (C(DNS_ERROR)). Enable active or passive checks with
        M(mixedrun.kong.kong_upstream), or use O(weight=0) to take a target out of the balancer.
      - Health is kept by each Kong node's balancer. In traditional mode the node asked sets it and broadcasts it
        through the database's cluster events, so the other nodes follow at their next poll (C(db_update_frequency),
        5 s by default; seen on real Kong 3.9.3). In hybrid mode it cannot be set by hand - the control plane runs
        no balancer (the task fails before any write) and data planes have no Admin API, so their own active and
        passive checks decide.
      - Right after an upstream or target change the node may have no balancer for the upstream yet (Kong answers
        400 "has no balancer") or rebuild it after the call, which forgets the health; the task waits until the
        node's balancer holds the target with its weight, sets the health, reads it back and repeats the call when
        a rebuild lost it, for at most 20 s (RV(health_settle_seconds)).
    type: str
    choices: [present, absent, healthy, unhealthy]
    default: present
seealso:
  - module: mixedrun.kong.kong_upstream_targets
  - module: mixedrun.kong.kong_upstream
  - module: mixedrun.kong.kong_upstream_info
  - name: Kong Admin API, targets
    description: Kong's reference of the target entity.
    link: https://docs.konghq.com/gateway/latest/admin-api/#target-object
author:
  - mixedrun.kong maintainers (@mixedrun)
"""

EXAMPLES = r"""
- name: Add a VM to the shop upstream
  mixedrun.kong.kong_target:
    admin_url: http://127.0.0.1:8001
    upstream: shop.upstream
    target: 10.0.0.5:8080
    weight: 100
    tags: [mixedrun-managed, "mixedrun-kind:vm", "mixedrun-service:shop"]

- name: Drain it (keep it listed, send it nothing)
  mixedrun.kong.kong_target:
    admin_url: http://127.0.0.1:8001
    upstream: shop.upstream
    target: 10.0.0.5:8080
    weight: 0

- name: Take it out of the balancer until it is marked healthy again
  mixedrun.kong.kong_target:
    admin_url: http://127.0.0.1:8001
    upstream: shop.upstream
    target: 10.0.0.5:8080
    state: unhealthy

- name: Remove it
  mixedrun.kong.kong_target:
    admin_url: http://127.0.0.1:8001
    upstream: shop.upstream
    target: 10.0.0.5:8080
    state: absent
"""

RETURN = r"""
target:
  description: The target as Kong holds it after the task (predicted in check mode); null when absent.
  returned: always
  type: dict
  sample:
    id: 2d2a3a64-5f6d-4b8b-9a77-0e3c1c9b8f10
    target: 10.0.0.5:8080
    weight: 100
    tags: [mixedrun-managed, "mixedrun-kind:vm"]
    upstream: {id: 0c2b6b4e-5d5e-4d37-b0a6-0c9f7f4a6a11}
    created_at: 1700000000.123
    updated_at: 1700000000.123
upstream:
  description: Id and name of the upstream.
  returned: always
  type: dict
  sample: {id: 0c2b6b4e-5d5e-4d37-b0a6-0c9f7f4a6a11, name: shop.upstream}
health_before:
  description:
    - The target's health reported by C(/upstreams/{u}/health) before the task (V(HEALTHY), V(UNHEALTHY),
      V(HEALTHCHECKS_OFF), V(DNS_ERROR)); null when the target did not exist.
  returned: when O(state) is V(healthy) or V(unhealthy)
  type: str
  sample: HEALTHY
health_settle_seconds:
  description:
    - Seconds from the first read of this node's balancer until it reported the health asked for (waiting for the
      balancer to hold the target, and repeating the call when a rebuild lost it).
  returned: when the health was set (not in check mode)
  type: float
  sample: 1.61
diff:
  description: The target (id, target, weight, tags) before and after the task.
  returned: in diff mode
  type: dict
  contains:
    before:
      description: The target before; empty when it did not exist.
      type: dict
      returned: in diff mode
    after:
      description: The target after; empty when deleted.
      type: dict
      returned: in diff mode
api_calls:
  description:
    - The Admin API calls made, in order. In check mode the writes are listed with C(check_mode=true) and not sent.
  returned: always
  type: list
  elements: dict
  sample:
    - {method: GET, path: /upstreams/shop.upstream, status: 200}
    - {method: GET, path: "/upstreams/0c2b6b4e-5d5e-4d37-b0a6-0c9f7f4a6a11/targets/10.0.0.5:8080", status: 200}
    - {method: PATCH, path: /upstreams/0c2b6b4e-5d5e-4d37-b0a6-0c9f7f4a6a11/targets/2d2a3a64-5f6d-4b8b-9a77-0e3c1c9b8f10, status: 200}
kong_error:
  description:
    - The failed Admin API call as Kong answered it, C(method), C(path), C(status), C(code), C(name), C(message)
      and C(fields). Never holds request headers or credentials.
    - C(status) is null when Kong was not reached (connection refused, timeout, TLS failure).
  returned: when the task failed on an Admin API call
  type: dict
  sample:
    method: POST
    path: /upstreams/0c2b6b4e-5d5e-4d37-b0a6-0c9f7f4a6a11/targets
    status: 409
    code: 5
    name: unique constraint violation
    message: UNIQUE violation detected on '{target="10.0.0.5:8080",upstream={id="0c2b6b4e-5d5e-4d37-b0a6-0c9f7f4a6a11"}}'
    fields: {target: "10.0.0.5:8080", upstream: {id: 0c2b6b4e-5d5e-4d37-b0a6-0c9f7f4a6a11}}
status:
  description:
    - The HTTP status of the failed Admin API call (the same as C(status) in RV(kong_error)); null when Kong was not
      reached. Not returned when the task failed before calling Kong (bad input).
  returned: when the task failed on an Admin API call
  type: int
  sample: 409
"""

from ansible_collections.mixedrun.kong.plugins.module_utils._kong_api import KongApiError
from ansible_collections.mixedrun.kong.plugins.module_utils._kong_module import KongModule
from ansible_collections.mixedrun.kong.plugins.module_utils._entities import ensure_target

ARGUMENT_SPEC = dict(
    upstream=dict(type="str", required=True),
    target=dict(type="str", required=True),
    weight=dict(type="int"),
    tags=dict(type="list", elements="str"),
    state=dict(type="str", default="present", choices=["present", "absent", "healthy", "unhealthy"]),
)


def main():
    module = KongModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    verb = "delete" if params["state"] == "absent" else "ensure"
    try:
        result = ensure_target(module.client, params)
    except (KongApiError, ValueError) as exc:
        module.fail_json_kong(exc, "Failed to %s target %s of upstream %s" % (verb, params["target"], params["upstream"]),
                              **getattr(exc, "result", {}))
    module.exit_kong(**result)


if __name__ == "__main__":
    main()
