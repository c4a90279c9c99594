#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kong_traffic_split
short_description: Split an upstream's traffic exactly between VM and container targets
version_added: 1.0.0
description:
  - Sets the weights of a Kong upstream's targets so that the container targets receive O(container_share)
    percent of the traffic and the VM targets the rest, or reports the current share when O(container_share)
    is left out.
  - Weights are equal within a kind and computed exactly for any number of targets (for example 7 VMs and
    3 containers), with a share within O(max_error) of the plan, never above Kong's limit of 65535. Shares 0
    and 100 are exact (the other kind gets weight 0); any share strictly between them gives both kinds some
    traffic. The task fails, saying why and what is possible, when no weights can meet the plan.
  - Applies the plan with the fewest writes. When the current weights (equal within each kind) already give
    the planned share within O(max_error), nothing is written. Otherwise, of all the weight pairs that meet
    the plan, the one that changes the fewest targets wins, one that keeps a kind's current weight when there
    is one (7 VMs at 27 and 3 containers at 7, moved to 50 %, keep the VMs at 27 and move the 3 containers to
    63, 3 writes instead of 10), else the smallest readable pair. Only targets whose weight differs get a C(PATCH).
  - Raises weights before lowering them, so the upstream never has a moment with no weight at all, then reads
    every weight back from the Admin API of every Kong node given, and waits until every node's balancer routes
    with the plan (O(verify_balancer_urls)); it fails, naming each node still behind and what it routes with,
    when that takes longer than O(verify_timeout).
  - The current share is always derived from the weights Kong holds; there is no state anywhere else, so a
    re-run resumes from what Kong shows.
  - The targets of both groups must already exist in the upstream (bind them with the
    M(mixedrun.kong.kong_upstream_targets) module or the C(mixedrun.kong.mixed_service) role).
  - With O(binding=kubernetes) (Kong under the Kong Ingress Controller) the same plan is written as the HTTPRoute's two
    backendRef weights, chosen so that KIC's division over each Service's ready endpoints gives the planned per-target
    weights; the groups are the two Services' ready endpoints (tags and O(vm_targets)/O(container_targets) are not used),
    and every Kong node given is read until its route for the HTTPRoute's hostnames leads to an upstream with exactly
    those targets and weights, and its balancer routes with them.
extends_documentation_fragment:
  - mixedrun.kong.kong
  - mixedrun.kong.kong.ATTRIBUTES
  - mixedrun.kong.kic_binding
attributes:
  check_mode:
    support: full
    description: Computes the plan and reports the writes it would make (in RV(api_calls)); writes and verifies nothing.
  diff_mode:
    support: full
    description: Returns the share and the weights before and after.
options:
  upstream:
    description: Name or id of the Kong upstream whose targets are weighted.
    type: str
    required: true
  container_share:
    description:
      - Percent of the traffic to send to the container targets, from V(0) to V(100); decimals such as V(0.5)
        are allowed, and so is an exact fraction text such as V(100/3) (the share some weights give, free of
        rounding). The VM targets get the rest.
      - Leave out to only report the current share (read-only; nothing is written).
    type: raw
  vm_targets:
    description:
      - The VM targets, as target strings (V(10.0.0.5:8080)) or dicts with a C(target) key (or C(address) and
        C(port)), for example the C(nodes) output of M(mixedrun.kong.node_discovery) filtered to VMs.
      - Without it, the VM group comes from O(nodes) when given, otherwise from the targets carrying O(vm_tag).
    type: list
    elements: raw
  container_targets:
    description:
      - The container targets, written like O(vm_targets).
      - Without it, the container group comes from O(nodes) when given, otherwise from the targets carrying
        O(container_tag).
    type: list
    elements: raw
  nodes:
    description:
      - The C(nodes) list returned by M(mixedrun.kong.node_discovery); split into the two groups by each node's
        C(kind) (V(vm) or V(container)). Each node gives its C(target) (or C(address) and C(port)).
      - Mutually exclusive with O(vm_targets) and O(container_targets).
    type: list
    elements: dict
  vm_tag:
    description: Tag that marks an existing target as a VM, used when neither O(vm_targets) nor O(nodes) is given.
    type: str
    default: mixedrun-kind:vm
  container_tag:
    description:
      - Tag that marks an existing target as a container, used when neither O(container_targets) nor O(nodes)
        is given.
    type: str
    default: mixedrun-kind:container
  other_targets:
    description:
      - What to do with targets of the upstream that are in neither group, since they would receive traffic too.
      - V(fail) fails when any of them has a weight above 0 (the split could not be exact); V(zero) sets their
        weight to 0; V(ignore) leaves them alone and computes the share over the two groups only.
    type: str
    choices: [fail, zero, ignore]
    default: fail
  max_error:
    description:
      - Largest allowed difference, in percentage points, between the planned share and the share the integer
        weights give. V(0) asks for an exact split.
    type: float
    default: 0.05
  verify_admin_urls:
    description:
      - Admin API URLs of other Kong nodes (same credentials and TLS options) that must show the planned weights
        too; the module's own O(admin_url) is always verified.
      - Credentials written into a URL (V(https://user:password@kong-2:8444)), here or in O(admin_url), never
        show in the task's results or errors (URLs are shown as V(https://***@kong-2:8444)).
    type: list
    elements: str
    default: []
  verify_balancer_urls:
    description:
      - URLs where each Kong proxy node's own balancer can be read (its C(/upstreams/{upstream}/health), which
        reports the weight the node routes with, C(data.nodeWeight)), that is a traditional-mode node's Admin API, or
        a data plane's Status API (C(status_listen)) in hybrid mode.
      - After the writes the task waits, up to O(verify_timeout), until every one of these balancers routes with
        the planned weights, and reports how long each took (RV(balancers), RV(converged_seconds)). The Admin API of
        every traditional node shows a write at once (they read one database), but each node's balancer follows
        only at its next cluster-event poll (C(db_update_frequency), 5 s by default); a data plane follows when it
        receives the new configuration from the control plane.
      - Empty (the default) means O(admin_url) plus every URL of O(verify_admin_urls). When O(admin_url) is a
        hybrid-mode control plane, which runs no balancer, the task refuses to run until the data planes are
        given here, and also when the control plane lists more connected data planes than given.
    type: list
    elements: str
    default: []
  verify_timeout:
    description: Seconds to wait for every node to show the planned weights (Admin API and balancer) before the task fails.
    type: float
    default: 30
  concurrency:
    description: How many target writes are sent at once (1 to 64).
    type: int
    default: 8
  approximate:
    description:
      - Only Kong's C(round-robin) algorithm splits traffic in proportion to the weights. C(least-connections) sends
        each request to the address with the lowest (connections + 1) / weight, C(latency) compares latency / weight
        of two random addresses, and C(consistent-hashing) keeps each hash key on one address; with any of them a
        1 % step can carry about 0 % or much more.
      - V(false) (the default) refuses to set a share on an upstream whose algorithm is not C(round-robin), before
        any write, naming the fix. V(true) sets the weights anyway and reports RV(approximate=true); the share is then
        only a weight ratio, not the traffic the containers get; measure it (the rollout role's traffic gate).
    type: bool
    default: false
notes:
  - Kong does not health-check targets of weight 0; before giving containers their first traffic, probe them
    directly (the C(mixedrun.kong.rollout) role does).
seealso:
  - module: mixedrun.kong.kong_upstream_targets
  - module: mixedrun.kong.kong_upstream_info
  - module: mixedrun.kong.node_discovery
  - name: Kong Admin API, targets
    description: Kong's reference of the target entity and its weight.
    link: https://docs.konghq.com/gateway/latest/admin-api/#target-object
author:
  - mixedrun.kong maintainers (@mixedrun)
"""

EXAMPLES = r"""
- name: Send 25 % of shop's traffic to its containers (groups from the targets' mixedrun-kind tags)
  mixedrun.kong.kong_traffic_split:
    admin_url: http://127.0.0.1:8001
    upstream: shop
    container_share: 25

- name: A 0.5 % canary over 7 VMs and 3 containers, verified on two Kong nodes
  mixedrun.kong.kong_traffic_split:
    admin_url: https://kong-cp.example.com:8444
    upstream: shop
    container_share: 0.5
    max_error: 0.01
    vm_targets: [10.0.0.1:8080, 10.0.0.2:8080, 10.0.0.3:8080, 10.0.0.4:8080, 10.0.0.5:8080, 10.0.0.6:8080, 10.0.0.7:8080]
    container_targets: [10.1.0.1:8080, 10.1.0.2:8080, 10.1.0.3:8080]
    verify_admin_urls:
      - https://kong-1.example.com:8444
      - https://kong-2.example.com:8444

- name: Groups from node discovery
  mixedrun.kong.kong_traffic_split:
    upstream: shop
    container_share: 50
    nodes: "{{ shop_nodes.nodes }}"
  module_defaults:
    group/mixedrun.kong.kong:
      admin_url: "{{ kong_admin_url }}"

- name: Read the current share only
  mixedrun.kong.kong_traffic_split:
    admin_url: http://127.0.0.1:8001
    upstream: shop
  register: shop_split

- name: Show it
  ansible.builtin.debug:
    msg: "shop sends {{ shop_split.achieved_share }} % to containers"
"""

RETURN = r"""
planned_share:
  description: The container share asked for, in percent; null in read-only mode.
  returned: always
  type: float
  sample: 10.0
achieved_share:
  description:
    - The container share the weights give, in percent (after the task; predicted in check mode). In read-only
      mode, the current share. Null when no target has any weight.
  returned: always
  type: float
  sample: 10.0
error:
  description: Absolute difference between RV(achieved_share) and RV(planned_share), in percentage points; null in read-only mode.
  returned: always
  type: float
  sample: 0.0
previous_share:
  description: The container share Kong held before the task, derived from its weights; null when no target had any weight.
  returned: always
  type: float
  sample: 0.0
weights_before:
  description: Weight of every target of the upstream before the task, by target (C(host:port)).
  returned: always
  type: dict
  sample: {"127.0.10.1:18080": 1, "127.0.20.1:18080": 0}
weights_after:
  description: Weight of every target after the task (the planned weights in check mode), by target.
  returned: always
  type: dict
  sample: {"127.0.10.1:18080": 9, "127.0.20.1:18080": 1}
vm_weight:
  description:
    - The weight of each VM target (planned). In read-only mode the current one; null when the VM targets
      do not all have the same weight.
  returned: always
  type: int
  sample: 9
container_weight:
  description: The weight of each container target, like RV(vm_weight).
  returned: always
  type: int
  sample: 1
counts:
  description: Number of targets per group.
  returned: always
  type: dict
  contains:
    vm:
      description: VM targets.
      type: int
    container:
      description: Container targets.
      type: int
    other:
      description: Targets of the upstream in neither group.
      type: int
  sample: {"vm": 3, "container": 3, "other": 0}
targets:
  description: The targets of each group (C(host:port)).
  returned: always
  type: dict
  sample: {"vm": ["127.0.10.1:18080"], "container": ["127.0.20.1:18080"], "other": []}
balancers:
  description:
    - Per balancer URL of O(verify_balancer_urls) (credentials removed), the node's C(node_id) and C(seconds), the
      time from the end of the writes until that node's balancer routed with the planned weights.
    - In read-only mode, per node C(node_id), C(follows) (its balancer routes with the weights the database holds,
      waited for up to O(verify_timeout) when it is still following a recent change), C(seconds) until it did, and
      C(lagging) (target -> the weight it routes with, V(null) when the balancer does not hold it).
    - Empty in check mode.
  returned: always
  type: dict
  sample: {"http://127.0.0.1:8001": {"node_id": "6f4a5ec6-8d8f-4c41-9a0d-b0b2f9f0fbf3", "seconds": 3.75}}
approximate:
  description:
    - V(true) when the upstream's algorithm is not C(round-robin), so the weights set the share only approximately
      (see O(approximate)); RV(algorithm) names it.
  returned: always
  type: bool
  sample: false
algorithm:
  description: The upstream's load-balancing algorithm.
  returned: when the upstream exists
  type: str
  sample: round-robin
converged_seconds:
  description: Seconds from the end of the writes until every balancer routed with the plan (the slowest node); V(0) when nothing was written.
  returned: when weights were written and verified
  type: float
  sample: 3.75
verified_nodes:
  description:
    - The Kong node id (C(node_id) of C(GET /)) of each Admin API URL that was read back and shows the plan,
      by URL (credentials removed). Empty in check mode. In read-only mode, the nodes that were read.
  returned: always
  type: dict
  sample: {"http://127.0.0.1:8001": "6f4a5ec6-8d8f-4c41-9a0d-b0b2f9f0fbf3"}
writes:
  description: Number of target weights written (in check mode, that would be written); 0 in read-only mode.
  returned: always
  type: int
  sample: 3
consistent:
  description: Whether every Kong node read shows the same weights (read-only mode reads every node too).
  returned: always
  type: bool
  sample: true
diff:
  description: The share and the weights before and after.
  returned: in diff mode
  type: dict
  contains:
    before:
      description: C(container_share) and C(weights) before.
      type: dict
      returned: in diff mode
    after:
      description: C(container_share) and C(weights) after.
      type: dict
      returned: in diff mode
api_calls:
  description:
    - The Admin API calls made, in order; calls to the extra nodes of O(verify_admin_urls) carry a C(node) key.
      In check mode the writes are listed with C(check_mode=true) and not sent.
  returned: always
  type: list
  elements: dict
  sample:
    - {method: GET, path: /upstreams/shop, status: 200}
    - {method: GET, path: /upstreams/shop/targets, status: 200}
    - {method: PATCH, path: /upstreams/shop/targets/2b3c..., status: 200}
kong_error:
  description: Kong's error (method, path, status, code, name, message, fields) when the task failed on an API call.
  returned: on failure
  type: dict
"""

import time

from ansible_collections.mixedrun.kong.plugins.module_utils._balancer import (
    BalancerError,
    connected_data_planes,
    snapshot_balancers,
    wait_balancers,
)
from ansible_collections.mixedrun.kong.plugins.module_utils._kic_split import (
    KUBERNETES_OPTIONS,
    KicSplitError,
    apply_backends,
    kong_targets,
    kong_upstream,
    binding_target,
    connect,
    kic_share,
    kic_weights,
    plan_backends,
    read_binding,
    wait_nodes,
)
from ansible_collections.mixedrun.kong.plugins.module_utils._kong_api import KongApiError, KongClient, redact_url, validate_admin_url
from ansible_collections.mixedrun.kong.plugins.module_utils._kong_module import KongModule
from ansible_collections.mixedrun.kong.plugins.module_utils._targets import TargetError, format_target, split_target, target_key
from ansible_collections.mixedrun.kong.plugins.module_utils._weights import (
    WeightPlanError,
    as_float,
    plan_weights,
    share_from_totals,
    validate_max_error,
    validate_share,
)

ARGUMENT_SPEC = dict(
    upstream=dict(type="str", required=True),
    container_share=dict(type="raw"),
    vm_targets=dict(type="list", elements="raw"),
    container_targets=dict(type="list", elements="raw"),
    nodes=dict(type="list", elements="dict"),
    vm_tag=dict(type="str", default="mixedrun-kind:vm"),
    container_tag=dict(type="str", default="mixedrun-kind:container"),
    other_targets=dict(type="str", default="fail", choices=["fail", "zero", "ignore"]),
    max_error=dict(type="float", default=0.05),
    verify_admin_urls=dict(type="list", elements="str", default=[]),
    verify_balancer_urls=dict(type="list", elements="str", default=[]),
    verify_timeout=dict(type="float", default=30.0),
    concurrency=dict(type="int", default=8),
    approximate=dict(type="bool", default=False),
    binding=dict(type="str", default="admin_api", choices=["admin_api", "kubernetes"]),
    kubernetes=dict(type="dict", options=KUBERNETES_OPTIONS),
)

# Kong 3.9's balancer algorithms; only round-robin picks targets in proportion to their weights.
PROPORTIONAL = "round-robin"
ALGORITHM_BEHAVIOUR = {
    "least-connections": "sends each request to the address with the lowest (connections + 1) / weight",
    "latency": "compares the latency / weight of two random addresses",
    "consistent-hashing": "keeps every hash key on one address",
    "sticky-sessions": "keeps every session on one address",
}

KINDS = ("vm", "container")
VERIFY_INTERVAL = 0.25


class SplitError(Exception):
    """The split cannot be done; ``result`` holds what is known so far (returned with the failure)."""

    def __init__(self, message, result=None):
        super(SplitError, self).__init__(message)
        self.result = result or {}


# -- inputs ---------------------------------------------------------------------------------------------------
def _entry_target(entry, field, index):
    """Normalised target of one list entry: a string, or a dict with ``target`` or ``address`` + ``port``."""
    where = "%s[%d]" % (field, index)
    try:
        if isinstance(entry, dict):
            if entry.get("target"):
                return target_key(str(entry["target"]))
            if entry.get("address") and entry.get("port") is not None:
                return format_target(entry["address"], int(entry["port"]))
            raise SplitError("%s must have a 'target' (host:port) or an 'address' and a 'port', got keys %s"
                             % (where, sorted(entry)))
        if isinstance(entry, str):
            return target_key(entry)
    except (TargetError, ValueError, TypeError) as exc:
        raise SplitError("%s is not a valid target: %s" % (where, exc))
    raise SplitError("%s must be a target string such as '10.0.0.5:8080' or a dict with 'target', got %r"
                     % (where, entry))


def _explicit_groups(params):
    """{kind: [targets] or None (use the tag)} from vm_targets / container_targets / nodes."""
    groups = {"vm": None, "container": None}
    if params.get("nodes") is not None:
        groups = {"vm": [], "container": []}
        for index, node in enumerate(params["nodes"]):
            kind = node.get("kind")
            if kind not in KINDS:
                raise SplitError("nodes[%d] (%s) has kind %r; each node must have kind 'vm' or 'container'"
                                 % (index, node.get("name") or node.get("target") or "?", kind))
            groups[kind].append(_entry_target(node, "nodes", index))
    for kind in KINDS:
        field = "%s_targets" % kind
        if params.get(field) is not None:
            groups[kind] = [_entry_target(entry, field, i) for i, entry in enumerate(params[field])]
    for kind in KINDS:
        if groups[kind] is not None:
            seen = []
            for key in groups[kind]:
                if key not in seen:
                    seen.append(key)
            groups[kind] = seen
    return groups


def check_params(params):
    """Validate what can be validated before any API call; raise SplitError naming the field and the fix."""
    try:
        if params.get("container_share") is not None:
            validate_share(params["container_share"])
        validate_max_error(params["max_error"])
    except WeightPlanError as exc:
        raise SplitError(str(exc))
    if params["concurrency"] < 1 or params["concurrency"] > 64:
        raise SplitError("concurrency must be between 1 and 64, got %d" % params["concurrency"])
    if params["verify_timeout"] < 0:
        raise SplitError("verify_timeout must be 0 seconds or more, got %s" % params["verify_timeout"])
    for field in ("verify_admin_urls", "verify_balancer_urls"):
        for index, url in enumerate(params.get(field) or []):
            try:
                validate_admin_url(url, "%s[%d]" % (field, index))
            except ValueError as exc:
                raise SplitError(str(exc))
    for field in ("vm_tag", "container_tag"):
        if not params.get(field):
            raise SplitError("%s must be a non-empty tag" % field)
    if params["vm_tag"] == params["container_tag"]:
        raise SplitError("vm_tag and container_tag are both %r; they must differ" % params["vm_tag"])
    for field in ("vm_targets", "container_targets"):
        if params.get("nodes") is not None and params.get(field) is not None:
            raise SplitError("nodes and %s are mutually exclusive: give the groups either as nodes (split by kind) or as "
                             "vm_targets/container_targets" % field)
    groups = _explicit_groups(params)
    if groups["vm"] is not None and groups["container"] is not None:
        both = sorted(set(groups["vm"]) & set(groups["container"]))
        if both:
            raise SplitError("target(s) %s are in both the VM and the container group; list each target in one group"
                             % ", ".join(both))
    return groups


# -- reading Kong ---------------------------------------------------------------------------------------------
def _targets_path(client, upstream):
    return "/upstreams/%s/targets" % client.quote(upstream)


def read_targets(client, upstream):
    """{normalised target: Kong's target object} of the upstream."""
    found = {}
    for item in client.list(_targets_path(client, upstream)):
        found[target_key(item["target"])] = item
    return found


def classify(current, groups, params):
    """Assign every current target to vm / container / other; fail on missing or doubly marked targets."""
    explicit = {}
    missing = {"vm": [], "container": []}
    for kind in KINDS:
        for key in groups[kind] or []:
            if key in current:
                explicit[key] = kind
            else:
                missing[kind].append(key)
    if missing["vm"] or missing["container"]:
        text = "; ".join("%s: %s" % (kind, ", ".join(missing[kind])) for kind in KINDS if missing[kind])
        raise SplitError("target(s) not in upstream %s (%s): bind them first, with the mixedrun.kong.mixed_service "
                         "role or mixedrun.kong.kong_upstream_targets" % (params["upstream"], text))
    tag_of = {"vm": params["vm_tag"], "container": params["container_tag"]}
    members = {"vm": [], "container": [], "other": []}
    doubly = []
    for key, item in current.items():
        tags = item.get("tags") or []
        marks = set(kind for kind in KINDS if groups[kind] is None and tag_of[kind] in tags)
        if key in explicit:
            marks.add(explicit[key])
        if len(marks) > 1:
            doubly.append(key)
            continue
        members[marks.pop() if marks else "other"].append(key)
    if doubly:
        raise SplitError("target(s) %s are marked as both VM and container (tags %s and %s, or listed in one group and "
                         "tagged for the other): fix their tags or list both groups explicitly"
                         % (", ".join(sorted(doubly)), params["vm_tag"], params["container_tag"]))
    for kind in members:
        members[kind].sort()
    return members


def refuse_host_names(members, other_policy, upstream):
    """Kong's balancer gives a host-name target's weight to every address the name resolves to (and an SRV answer
    replaces the weight): the share would follow DNS, not the plan. Refuse them before any write."""
    kinds = ("vm", "container") + (("other",) if other_policy != "ignore" else ())
    names = sorted(key for kind in kinds for key in members[kind] if split_target(key)[0] == "name")
    if names:
        raise SplitError("upstream %s has host-name target(s) %s: Kong's balancer gives a host name's weight to every address "
                         "it resolves to, and an SRV record replaces the weight, so the split would follow DNS answers instead "
                         "of the plan. Bind the nodes by IP address (for VMs, an IP in the host variable node_discovery's vm.address_var "
                         "names, ansible_host by default). Nothing was changed" % (upstream, ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")))


def _weights_of(current):
    return dict((key, int(item.get("weight", 100))) for key, item in current.items())


def _share(weights, members, other_policy):
    totals = dict((kind, sum(weights[key] for key in members[kind])) for kind in ("vm", "container", "other"))
    other = 0 if other_policy == "ignore" else totals["other"]
    return share_from_totals(totals["vm"], totals["container"], other)


def _uniform(weights, keys):
    values = set(weights[key] for key in keys)
    return values.pop() if len(values) == 1 else None


# -- the split ------------------------------------------------------------------------------------------------
def plan_split(current, members, params):
    """Planned weights of every target that changes or is checked, and the arithmetic behind them.

    The pair of weights is the one that meets the plan with the fewest writes: the current weights when they
    already give the share within max_error, else a pair that keeps one kind's weight, else the smallest
    readable pair (see _weights.plan_weights)."""
    weights = _weights_of(current)
    plan = plan_weights(len(members["vm"]), len(members["container"]), params["container_share"],
                        max_error=params["max_error"],
                        current_vm=[weights[key] for key in members["vm"]],
                        current_container=[weights[key] for key in members["container"]])
    desired = {}
    for key in members["vm"]:
        desired[key] = plan["vm_weight"]
    for key in members["container"]:
        desired[key] = plan["container_weight"]
    loaded_others = [key for key in members["other"] if weights[key] > 0]
    if loaded_others and params["other_targets"] == "fail":
        raise SplitError("target(s) %s of upstream %s are in neither group but have weight above 0, so they would "
                         "receive traffic and the split could not be exact: tag them (%s or %s), list them in a "
                         "group, or set other_targets to 'zero' (weight 0) or 'ignore'"
                         % (", ".join("%s (weight %d)" % (k, weights[k]) for k in loaded_others), params["upstream"],
                            params["vm_tag"], params["container_tag"]))
    if params["other_targets"] == "zero":
        for key in members["other"]:
            desired[key] = 0
    return plan, desired


def apply_weights(client, upstream, current, desired, concurrency):
    """PATCH only what differs: raises first, then lowers (never a moment with no weight). Returns applied."""
    path = _targets_path(client, upstream)
    weights = _weights_of(current)
    changes = [(key, weight) for key, weight in sorted(desired.items()) if weights[key] != weight]
    raises = [c for c in changes if c[1] > weights[c[0]]]
    lowers = [c for c in changes if c[1] < weights[c[0]]]
    applied = {}

    def patch(change):
        key, weight = change
        return client.write("PATCH", "%s/%s" % (path, client.quote(current[key]["id"])), {"weight": weight})

    for phase in (raises, lowers):
        failures = []
        for change, _result, error in client.map_concurrent(patch, phase, concurrency):
            if error is None:
                applied[change[0]] = change[1]
            else:
                failures.append((change, error))
        if failures:
            (key, weight), error = failures[0]
            raise SplitError("failed to set the weight of %d target(s) of upstream %s (first: %s to %d: %s); %d "
                             "write(s) were applied, the upstream now holds a mix: re-run to finish, or set the "
                             "previous share" % (len(failures), upstream, key, weight, error.describe(), len(applied)),
                             {"applied": applied, "kong_error": error.as_dict()})
    return changes, applied


def _node_id(client):
    try:
        info = client.node_info() or {}
    except KongApiError:
        return None
    return info.get("node_id")


def verify_nodes(clients, upstream, expected, timeout):
    """Read the weights back from every node until all show ``expected``; return {url: node_id}."""
    verified = {}
    deadline = time.time() + timeout
    for url, client in clients:
        while True:
            try:
                seen = _weights_of(read_targets(client, upstream))
            except KongApiError as exc:
                if exc.status == 404:
                    seen = {}
                else:
                    raise SplitError("cannot read the targets of upstream %s back from the Kong node at %s: %s"
                                     % (upstream, url, exc.describe()), {"kong_error": exc.as_dict()})
            wrong = dict((key, seen.get(key)) for key, weight in expected.items() if seen.get(key) != weight)
            if not wrong:
                verified[url] = _node_id(client)
                break
            if time.time() >= deadline:
                detail = ", ".join("%s shows %s, planned %d" % (key, "nothing" if value is None else value, expected[key])
                                   for key, value in sorted(wrong.items())[:10])
                raise SplitError("the Kong node at %s does not show the planned weights of upstream %s after %ss (%s%s); "
                                 "the nodes may not share a database, or another job is changing the weights"
                                 % (url, upstream, timeout, detail, "; ..." if len(wrong) > 10 else ""),
                                 {"verified_nodes": verified})
            time.sleep(VERIFY_INTERVAL)
    return verified


def _other_clients(params, check_mode):
    clients = []
    own = redact_url(params["admin_url"]) if params.get("admin_url") else None
    for url in params.get("verify_admin_urls") or []:
        if redact_url(url).rstrip("/") == (own or "").rstrip("/"):
            continue
        try:
            clients.append((redact_url(url), KongClient.from_params(params, check_mode=check_mode, admin_url=url)))
        except ValueError as exc:
            raise SplitError("verify_admin_urls: %s" % exc)
    return clients


def _balancer_clients(params, client, extra_clients, check_mode):
    """[(url, client)] whose /upstreams/{u}/health shows each node's balancer: verify_balancer_urls (Status API
    clients carry no admin token), else the Admin API clients themselves."""
    admin_clients = [(redact_url(client.base_url), client)] + list(extra_clients)
    if not params.get("verify_balancer_urls"):
        return admin_clients
    known = dict((url.rstrip("/"), (url, other)) for url, other in admin_clients)
    out = []
    for url in params["verify_balancer_urls"]:
        if redact_url(url).rstrip("/") in known:            # a traditional node's Admin API: its own client
            out.append(known[redact_url(url).rstrip("/")])
            continue
        try:
            out.append((redact_url(url), KongClient.from_params(params, check_mode=check_mode, admin_url=url, admin_token=None,
                                                                workspace=None)))
        except ValueError as exc:
            raise SplitError("verify_balancer_urls: %s" % exc)
    return out


def check_cluster(client, params, result):
    """Refuse, before any write, a verification that would only read a hybrid control plane (it runs no balancer),
    or that leaves out data planes the control plane lists as connected."""
    try:
        info = client.node_info() or {}
    except KongApiError:
        return
    role = (info.get("configuration") or {}).get("role")
    result["kong_role"] = role
    if role != "control_plane":
        return
    if not params.get("verify_balancer_urls"):
        raise SplitError("admin_url is a hybrid-mode control plane: it runs no balancer, so it cannot show what the data "
                         "planes route with; give verify_balancer_urls: the Status API URL (status_listen) of every data "
                         "plane, e.g. [http://dp-1:8100, http://dp-2:8100]. Nothing was changed")
    try:
        planes = client.list("/clustering/data-planes")
    except KongApiError:
        return
    connected = connected_data_planes(planes, time.time())
    result["data_planes"] = len(connected)
    if len(connected) > len(params["verify_balancer_urls"]):
        raise SplitError("the control plane lists %d connected data planes (%s) but verify_balancer_urls names %d: every "
                         "data plane's Status API must be verified, or a node could keep routing with the old weights. "
                         "Nothing was changed" % (len(connected), ", ".join(sorted(p.get("id", "?") for p in connected)),
                                                  len(params["verify_balancer_urls"])))


def _all_calls(client, extra_clients, balancer_clients=()):
    calls = list(client.calls)
    seen = {id(client)}
    for url, other in list(extra_clients) + list(balancer_clients):
        if id(other) in seen:
            continue
        seen.add(id(other))
        calls.extend(dict(call, node=url) for call in other.calls)
    return calls


def ensure_traffic_split(client, params, check_mode=False, diff=False):
    """Report or set the split. Returns the result dict; raises SplitError or KongApiError with ``result``."""
    groups = check_params(params)
    extra_clients = _other_clients(params, check_mode)
    balancer_clients = _balancer_clients(params, client, extra_clients, check_mode)
    result = {"changed": False, "planned_share": None, "error": None, "verified_nodes": {}, "consistent": True,
              "writes": 0, "balancers": {}, "approximate": False}
    try:
        if params.get("binding") == "kubernetes":
            _split_kubernetes(client, extra_clients, balancer_clients, params, check_mode, diff, result)
        else:
            _split(client, extra_clients, balancer_clients, groups, params, check_mode, diff, result)
    except KicSplitError as exc:
        details = dict(result)
        details.update(exc.result)
        details["api_calls"] = _all_calls(client, extra_clients, balancer_clients)
        raise SplitError(str(exc), details)
    except (SplitError, KongApiError, BalancerError) as exc:
        details = dict(result)
        details.update(getattr(exc, "result", None) or {})
        details["api_calls"] = _all_calls(client, extra_clients, balancer_clients)
        if isinstance(exc, BalancerError):
            exc = SplitError(str(exc), details)
        exc.result = details
        raise exc
    result["api_calls"] = _all_calls(client, extra_clients, balancer_clients)
    return result


def _split_kubernetes(client, extra_clients, balancer_clients, params, check_mode, diff, result):
    """binding: kubernetes. The groups are the two Services' ready endpoints as KIC counts them; the write is the
    HTTPRoute's two backendRef weights; Kong's nodes are only read."""
    for field in ("vm_targets", "container_targets", "nodes"):
        if params.get(field) is not None:
            raise SplitError("%s is not used with binding: kubernetes (the groups are the ready endpoints of the VM Service and of the "
                             "containers' Service): leave it out" % field)
    namespace, name, route_name = binding_target(params, params["upstream"])
    api, api_client = connect(params)
    try:
        _split_kic(api, client, extra_clients, balancer_clients, (namespace, name, route_name), params, check_mode, diff, result)
    finally:
        result["kubernetes_calls"] = list(api.calls)
        api_client.close()


def _split_kic(api, client, extra_clients, balancer_clients, where, params, check_mode, diff, result):
    state = read_binding(api, *where)
    own_url = redact_url(client.base_url)
    members = {"vm": sorted(state["vm"]["targets"]), "container": sorted(state["container"]["targets"]), "other": []}
    upstream = kong_upstream(client, state["hostnames"])
    before = kong_targets(client, upstream)
    members["other"] = sorted(t for t in before if t not in state["vm"]["targets"] and t not in state["container"]["targets"])
    live_backends = {"vm": state["vm"]["weight"], "container": state["container"]["weight"]}
    # what Kong routes with; before the controller's first push, what KIC makes of the live weights
    previous = _share(dict((t, before.get(t, 0)) for t in members["vm"] + members["container"] + members["other"]), members, "fail") \
        if upstream else kic_share(state)
    result.update({
        "binding": "kubernetes",
        "previous_share": as_float(previous),
        "weights_before": before,
        "counts": dict((kind, len(keys)) for kind, keys in members.items()),
        "targets": members,
        "kubernetes": {"namespace": state["namespace"], "route": state["route_name"], "hostnames": state["hostnames"],
                       "vm_service": state["vm"]["service"], "container_service": state["container"]["service"],
                       "backend_weights_before": live_backends, "backend_weights": live_backends, "kong_upstream": upstream},
    })
    nodes = [(own_url, client)] + list(extra_clients)
    if params.get("container_share") is None:
        translated = kic_weights(state)
        result.update({"achieved_share": as_float(previous), "weights_after": dict(before),
                       "vm_weight": _uniform(before, [t for t in members["vm"] if t in before]) if upstream else None,
                       "container_weight": _uniform(before, [t for t in members["container"] if t in before]) if upstream else None})
        for url, other in nodes:
            result["verified_nodes"][url] = _node_id(other)
            if url != own_url and (kong_upstream(other, state["hostnames"]) != upstream or
                                   kong_targets(other, kong_upstream(other, state["hostnames"])) != before):
                result["consistent"] = False
        if before != translated:
            # the controller has not pushed the live weights yet (or another writer changed Kong): not consistent
            result["consistent"] = False
            result["pending"] = {"kic_targets": translated}
        return
    plan, weights = plan_backends(state, params["container_share"], params["max_error"])
    expected = kic_weights(state, weights)
    result.update({
        "planned_share": plan["planned_share"], "achieved_share": plan["achieved_share"], "error": plan["error"],
        "vm_weight": plan["vm_weight"], "container_weight": plan["container_weight"], "weights_after": expected,
    })
    result["kubernetes"]["backend_weights"] = weights
    if diff:
        result["diff"] = {"before": {"container_share": result["previous_share"], "backend_weights": live_backends, "weights": before},
                          "after": {"container_share": result["achieved_share"], "backend_weights": weights, "weights": expected}}
    written = apply_backends(api, state, weights, check_mode=check_mode, force=bool((params.get("kubernetes") or {}).get("force_conflicts")))
    result["changed"] = written
    result["writes"] = 1 if written else 0
    if check_mode:
        return
    started = time.monotonic()
    found, seconds = wait_nodes(nodes, state["hostnames"], expected, params["verify_timeout"])
    result["verified_nodes"] = dict((url, _node_id(other)) for url, other in nodes)
    upstreams = sorted(set(found.values()))
    result["kubernetes"]["kong_upstream"] = upstreams[0] if len(upstreams) == 1 else upstreams
    remaining = max(0.0, params["verify_timeout"] - (time.monotonic() - started))
    result["balancers"] = wait_balancers(balancer_clients, upstreams[0], expected, remaining, started=started) if len(upstreams) == 1 else {}
    result["converged_seconds"] = max([seconds] + [node["seconds"] for node in result["balancers"].values()])


def _split(client, extra_clients, balancer_clients, groups, params, check_mode, diff, result):
    upstream = params["upstream"]
    own_url = redact_url(client.base_url)
    check_cluster(client, params, result)
    entity = client.get("/upstreams/%s" % client.quote(upstream))
    if entity is None:
        raise SplitError("upstream %s does not exist: bind the service first (the mixedrun.kong.mixed_service role, "
                         "or mixedrun.kong.kong_upstream and kong_upstream_targets)" % upstream)
    algorithm = entity.get("algorithm") or PROPORTIONAL
    result["algorithm"] = algorithm
    result["approximate"] = algorithm != PROPORTIONAL
    if result["approximate"] and params.get("container_share") is not None and not params.get("approximate"):
        raise SplitError("upstream %s uses the %s algorithm, which %s: the weights would not give the containers %s %% of the "
                         "traffic, a small step could carry about nothing or much more. Set algorithm: round-robin on the "
                         "upstream (mixedrun.kong.kong_upstream), or pass approximate: true to set the weights anyway and "
                         "measure the share the containers really get. Nothing was changed"
                         % (upstream, algorithm, ALGORITHM_BEHAVIOUR.get(algorithm, "does not split in proportion to the weights"),
                            params["container_share"]))
    current = read_targets(client, upstream)
    members = classify(current, groups, params)
    if params.get("container_share") is not None:
        refuse_host_names(members, params["other_targets"], upstream)
    before = _weights_of(current)
    previous = _share(before, members, params["other_targets"])
    result.update({
        "previous_share": as_float(previous),
        "weights_before": before,
        "counts": dict((kind, len(keys)) for kind, keys in members.items()),
        "targets": members,
    })

    if params.get("container_share") is None:
        # Read-only: the share Kong holds, as every node shows it.
        result.update({"achieved_share": as_float(previous), "weights_after": dict(before),
                       "vm_weight": _uniform(before, members["vm"]),
                       "container_weight": _uniform(before, members["container"])})
        result["verified_nodes"][own_url] = _node_id(client)
        for url, other in extra_clients:
            try:
                seen = _weights_of(read_targets(other, upstream))
            except KongApiError as exc:
                raise SplitError("cannot read upstream %s from the Kong node at %s: %s" % (upstream, url, exc.describe()),
                                 {"kong_error": exc.as_dict()})
            result["verified_nodes"][url] = _node_id(other)
            if seen != before:
                result["consistent"] = False
        # ... and as every node's balancer routes with it: a node still following a recent change is waited for
        # (bounded by verify_timeout); one that does not follow in time makes the answer inconsistent
        started = time.monotonic()
        try:
            followed = wait_balancers(balancer_clients, upstream, before, params["verify_timeout"], started=started)
            result["balancers"] = dict((url, dict(node, follows=True, lagging={})) for url, node in followed.items())
        except BalancerError:
            result["balancers"] = snapshot_balancers(balancer_clients, upstream, before)
        if not all(node["follows"] for node in result["balancers"].values()):
            result["consistent"] = False
        return

    try:
        plan, desired = plan_split(current, members, params)
    except WeightPlanError as exc:
        raise SplitError("cannot split upstream %s: %s" % (upstream, exc))
    after = dict(before)
    after.update(desired)
    result.update({
        "planned_share": plan["planned_share"],
        "achieved_share": plan["achieved_share"],
        "error": plan["error"],
        "vm_weight": plan["vm_weight"],
        "container_weight": plan["container_weight"],
        "weights_after": after,
    })
    if diff:
        result["diff"] = {"before": {"container_share": result["previous_share"], "weights": before},
                          "after": {"container_share": result["achieved_share"], "weights": after}}
    changes, _applied = apply_weights(client, upstream, current, desired, params["concurrency"])
    written_at = time.monotonic()
    result["changed"] = bool(changes)
    result["writes"] = len(changes)
    if not check_mode:
        result["verified_nodes"] = verify_nodes([(own_url, client)] + extra_clients, upstream, desired,
                                                params["verify_timeout"])
        # what the database holds is not yet what the nodes route with: wait for every node's balancer
        remaining = max(0.0, params["verify_timeout"] - (time.monotonic() - written_at))
        result["balancers"] = wait_balancers(balancer_clients, upstream, after, remaining, started=written_at)
        result["converged_seconds"] = max([node["seconds"] for node in result["balancers"].values()] or [0.0])


def main():
    module = KongModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        result = ensure_traffic_split(module.client, module.params, check_mode=module.check_mode, diff=module._diff)
    except (SplitError, KongApiError, ValueError) as exc:
        module.fail_json_kong(exc, "Failed to split the traffic of upstream %s" % module.params["upstream"],
                              **getattr(exc, "result", {}))
    module.exit_kong(**result)


if __name__ == "__main__":
    main()
