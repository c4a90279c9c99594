#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kong_upstream_targets
short_description: Manage the whole target set of a Kong upstream in one task
version_added: 1.0.0
description:
  - Reconciles the targets of one Kong Gateway upstream with a list in one task, the fast way to set many
    weights at once (a traffic split, a rollout step).
  - Reads the current set with one paginated list of C(/upstreams/{u}/targets/all) and one C(GET) of the
    upstream, so a run that changes nothing makes two or three requests and no write.
  - Creates missing targets (C(POST)), changes the weight or tags of existing ones (C(PATCH) by id, never
    delete and re-create, so Kong keeps their health state) and, with O(purge), deletes targets that are not
    listed. Writes run in parallel, at most O(concurrency) at a time.
  - Targets are compared in Kong's normalised form (C(host:port), default port 8000, IPv6 expanded in brackets).
  - All input is validated before the first request; a bad entry fails the task naming it and changes nothing.
  - When some writes fail, the others are still applied; the task fails and reports both (RV(applied), RV(failures)).
extends_documentation_fragment:
  - mixedrun.kong.kong
  - mixedrun.kong.kong.ATTRIBUTES
attributes:
  check_mode:
    support: full
    description: Reports the plan (counts, before/after) and the writes that would be made; sends no write.
  diff_mode:
    support: full
    description: Returns the target lists before and after, sorted by target.
options:
  upstream:
    description: Name or id of the upstream. The task fails, changing nothing, when it does not exist.
    type: str
    required: true
  targets:
    description:
      - The targets the upstream should have. Each target may be listed once.
      - An entry may also be a plain C(host:port) string, the same as a dict with only O(targets[].target) (as
        M(mixedrun.kong.kong_traffic_split) accepts them).
    type: list
    elements: dict
    default: []
    suboptions:
      target:
        description:
          - The target, C(host[:port]); without a port Kong uses 8000. IPv6 addresses in brackets, C([2001:db8::7]:8080).
          - Not a URL; V(http://10.0.0.5:8080) is refused before any request, naming the target and the fix.
        type: str
        required: true
      weight:
        description:
          - Weight, 0 to 65535. Without it, O(default_weight) applies; without that, a new target gets Kong's
            default (100) and an existing one keeps its weight.
        type: int
      tags:
        description: Tags of this target, added to O(tags). Leave out (with O(tags) unset) to keep Kong's tags.
        type: list
        elements: str
  default_weight:
    description: Weight of every listed target that gives none, 0 to 65535.
    type: int
  tags:
    description:
      - Tags applied to every listed target, merged with each target's own O(targets[].tags).
      - When O(tags) or a target's own tags are given, the target's tags are set to exactly that union.
    type: list
    elements: str
  purge:
    description: Delete the upstream's targets that are not listed (see O(purge_tag)).
    type: bool
    default: false
  purge_tag:
    description:
      - With O(purge), only delete unlisted targets carrying this tag, so targets made by hand or by another
        tool survive. For example V(mixedrun-managed).
      - The tag is also added to every listed target, so the targets this task creates can be purged by it later.
      - Requires O(purge=true).
    type: str
  concurrency:
    description:
      - Maximum number of writes in flight at once, 1 to 64. The client keeps one connection to Kong per write in
        flight (at least 16), so every write reuses a kept-alive connection.
    type: int
    default: 8
seealso:
  - module: mixedrun.kong.kong_target
  - module: mixedrun.kong.kong_upstream
  - module: mixedrun.kong.kong_upstream_info
author:
  - mixedrun.kong maintainers (@mixedrun)
"""

EXAMPLES = r"""
- name: 70 % of shop's traffic on the VMs, 30 % on the containers; drop managed targets not listed
  mixedrun.kong.kong_upstream_targets:
    admin_url: http://127.0.0.1:8001
    upstream: shop.upstream
    tags: [mixedrun-managed, "mixedrun-service:shop"]
    targets:
      - {target: "10.0.0.5:8080", weight: 35, tags: ["mixedrun-kind:vm"]}
      - {target: "10.0.0.6:8080", weight: 35, tags: ["mixedrun-kind:vm"]}
      - {target: "10.0.1.7:8080", weight: 30, tags: ["mixedrun-kind:container"]}
    purge: true
    purge_tag: mixedrun-managed

- name: Register three nodes at the same weight, eight writes in flight at most (check mode shows the plan)
  mixedrun.kong.kong_upstream_targets:
    admin_url: http://127.0.0.1:8001
    upstream: shop.upstream
    default_weight: 100
    concurrency: 8
    targets:
      - target: 10.0.0.5:8080
      - 10.0.0.6:8080                   # a plain string is the same as {target: 10.0.0.6:8080}
      - target: "[2001:db8::7]:8080"
  check_mode: true
  register: shop_plan

- name: Show what would change
  ansible.builtin.debug:
    var: shop_plan.counts
"""

RETURN = r"""
upstream:
  description: Id and name of the upstream.
  returned: success
  type: dict
  sample: {id: 0c2b6b4e-5d5e-4d37-b0a6-0c9f7f4a6a11, name: shop.upstream}
counts:
  description: How many targets were created, updated, deleted and left unchanged (in check mode, would be).
  returned: success
  type: dict
  sample: {created: 1, updated: 2, deleted: 0, unchanged: 997}
before:
  description: The targets before the task (id, target, weight, tags), sorted by target.
  returned: success
  type: list
  elements: dict
  sample:
    - {id: 2d2a3a64-5f6d-4b8b-9a77-0e3c1c9b8f10, target: "10.0.0.5:8080", weight: 100, tags: [mixedrun-managed]}
after:
  description: The targets after the task (predicted in check mode), sorted by target.
  returned: success
  type: list
  elements: dict
  sample:
    - {id: 2d2a3a64-5f6d-4b8b-9a77-0e3c1c9b8f10, target: "10.0.0.5:8080", weight: 35, tags: [mixedrun-managed]}
diff:
  description: The target lists before and after, each under the key C(targets).
  returned: in diff mode
  type: dict
  contains:
    before:
      description: The targets before, under C(targets).
      type: dict
      returned: in diff mode
    after:
      description: The targets after, under C(targets).
      type: dict
      returned: in diff mode
applied:
  description: On a partial failure, the writes that were applied (C(action) create/update/delete and C(target)).
  returned: on partial failure
  type: list
  elements: dict
failures:
  description: On a partial failure, the writes that failed, with Kong's error.
  returned: on partial failure
  type: list
  elements: dict
  sample:
    - {action: create, target: "10.0.0.9:8080", status: 409, error: "POST /upstreams/.../targets -> HTTP 409 ..."}
api_calls:
  description:
    - The Admin API calls made. In check mode the writes are listed with C(check_mode=true) and not sent.
    - Writes run in parallel, so their order may differ from run to run.
  returned: always
  type: list
  elements: dict
  sample:
    - {method: GET, path: /upstreams/shop.upstream, status: 200}
    - {method: GET, path: /upstreams/0c2b6b4e-5d5e-4d37-b0a6-0c9f7f4a6a11/targets/all, status: 200}
kong_error:
  description:
    - The failed Admin API call as Kong answered it, C(method), C(path), C(status), C(code), C(name), C(message)
      and C(fields) (of the first failed write of a batch). Never holds request headers or credentials.
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
from ansible_collections.mixedrun.kong.plugins.module_utils._entities import ensure_upstream_targets

ARGUMENT_SPEC = dict(
    upstream=dict(type="str", required=True),
    targets=dict(type="list", elements="dict", default=[], options=dict(
        target=dict(type="str", required=True),
        weight=dict(type="int"),
        tags=dict(type="list", elements="str"),
    )),
    default_weight=dict(type="int"),
    tags=dict(type="list", elements="str"),
    purge=dict(type="bool", default=False),
    purge_tag=dict(type="str"),
    concurrency=dict(type="int", default=8),
)


def targets_shorthand(params):
    """``targets`` entries given as ``host:port`` strings become ``{target: host:port}`` before Ansible checks them."""
    targets = params.get("targets")
    if isinstance(targets, list):
        params["targets"] = [{"target": item} if isinstance(item, str) else item for item in targets]


def main():
    module = KongModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True, prepare_params=targets_shorthand)
    try:
        result = ensure_upstream_targets(module.client, module.params)
    except (KongApiError, ValueError) as exc:
        module.fail_json_kong(exc, "Failed to ensure the targets of upstream %s" % module.params["upstream"],
                              **getattr(exc, "result", {}))
    module.exit_kong(**result)


if __name__ == "__main__":
    main()
