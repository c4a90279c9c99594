#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kong_rollout_lock
short_description: Acquire, release or inspect the rollout lock of a Kong upstream
version_added: 1.0.0
description:
  - A progressive rollout holds a lock on the upstream it shifts, so two jobs never move one service's traffic at
    the same time. The lock is a Kong consumer of its own, C(mixedrun-lock.<upstream id>), tagged
    C(mixedrun-lock:<owner>:<expiry-epoch>). Kong keeps consumer names unique, so taking the lock is one
    C(POST /consumers) that exactly one of two jobs wins (the other gets 409), whatever their timing; the upstream
    itself is never written (no balancer rebuild, no health checker restart, nothing for C(kong_upstream) or decK
    to overwrite there).
  - O(state=present) acquires the lock, or renews its expiry when O(owner) already holds it (so a re-run from the
    same seat resumes). A renewal is a C(PATCH) of the lock consumer by its id; when that id is gone (the lock was
    released, or taken over by force), the renewal fails and never overwrites the new holder. A live lock of another
    owner is refused with a message naming that owner and the expiry. An expired (stale) lock is taken over (it is
    deleted by its id and a new one is created, so of two jobs taking over at once only one succeeds). O(force=true)
    takes over a live lock the same way, for operators who made sure the other job is gone.
  - O(state=absent) releases the lock (C(DELETE) by id; refused for another owner's live lock unless O(force=true))
    and removes the rollout state unless O(keep_origin=true).
  - O(state=inspected) only reports the lock and the rollout state.
  - The rollout state is a second consumer, C(mixedrun-rollout.<upstream id>), written only by the lock holder. On
    the first acquire it records the share the rollout starts from (tag C(mixedrun-rollout-origin:<share>)) when
    O(origin_share) is given. It stays while the lock is re-acquired (a resumed rollout rolls back to where the
    interrupted one started) and goes with the release.
  - O(rollback_to) records in the state (tag C(mixedrun-rollout-rollback:<share>)) that a rollback to that share is
    under way. A run killed mid-rollback leaves it behind, so the next run finishes the rollback instead of resuming
    the rollout upward (the C(mixedrun.kong.rollout) role does). It goes with the release.
  - O(renew_only=true) only renews a lock O(owner) already holds and fails with RV(lock_lost=true) when the lock is
    gone or another owner's, so a rollout re-checks the lock right before each weight change and never re-takes a
    lock an operator removed.
  - Legacy (collection 1.x) - the lock, origin and rollback tags on the upstream itself are still read. A live legacy
    lock of another owner is refused (unless O(force=true)); the new holder moves the origin and rollback tags into
    the state consumer and removes the legacy tags from the upstream, once.
  - With O(binding=kubernetes) (Kong managed by the Kong Ingress Controller, whose Admin API is read-only) the lock
    and the rollout state live in Kubernetes instead, as the C(coordination.k8s.io/v1) Lease
    C(mixedrun-rollout-<name>) in the service's namespace (see O(kubernetes)). C(spec.holderIdentity) is the owner,
    C(spec.leaseDurationSeconds) the O(ttl) (whole seconds, rounded up), C(spec.acquireTime) and C(spec.renewTime)
    when it was taken and last renewed (so C(kubectl get lease) shows the holder); the origin and the rollback
    under way are the annotations C(mixedrun.kong/origin-share) and C(mixedrun.kong/rolling-back). Every write is
    conditional on the Lease's C(resourceVersion) read before (a create when there is none), so of two jobs exactly
    one wins and the other fails naming the holder; a renewal after a takeover fails (RV(lock_lost=true)) and never
    overwrites the new holder. A release clears the holder (the Lease stays with the annotations when
    O(keep_origin=true)) or deletes the Lease. The Kong Admin API is not used at all (O(admin_url) may be given
    and is ignored).
author:
  - mixedrun.kong maintainers (@mixedrun)
extends_documentation_fragment:
  - mixedrun.kong.kong
  - mixedrun.kong.kong.ATTRIBUTES
attributes:
  check_mode:
    description: Reports what would be written; writes nothing.
    support: full
  diff_mode:
    description: Shows the lock and the rollout state before and after.
    support: full
options:
  upstream:
    description: Name or id of the upstream the lock is for.
    type: str
    required: true
  state:
    description:
      - V(present) acquires or renews the lock, V(absent) releases it, V(inspected) only reports it.
    type: str
    choices: [present, absent, inspected]
    default: present
  owner:
    description:
      - Who holds the lock, for example V(awx-job-123@controller). Printable text without spaces, C(:), C(,) or C(/).
      - Defaults to C(<user>@<host>) of the host that runs the module (the controller for C(connection=local)).
    type: str
  ttl:
    description:
      - Seconds the lock is valid from now. A rollout renews it at every step; a lock whose job died expires
        after this time and may then be taken over.
      - A holder renews its lock in place only while it has more than 5 seconds left; later (the clocks of two
        controllers may differ) it replaces it like a contender would, so keep O(ttl) well above the time between
        two renewals.
    type: float
    default: 1800
  force:
    description:
      - Take over (V(present)) or remove (V(absent)) another owner's live lock. For operators only, after making sure
        the other job is not running any more. The old holder's next renewal then fails with RV(lock_lost=true).
    type: bool
    default: false
  origin_share:
    description:
      - The container share the rollout starts from, recorded on the first acquire (see the description).
      - Ignored when an origin is recorded already.
    type: float
  keep_origin:
    description:
      - With O(state=absent), keep the rollout state (origin and a rollback under way), so a rollout that stopped
        half-way (frozen, paused) is resumed by a re-run and rolled back to where it first started by
        C(playbooks/rollback.yml).
    type: bool
    default: false
  rollback_to:
    description:
      - With O(state=present), record that a rollback to this container share is under way (see the description);
        replaces an earlier one. Without it an existing record is kept.
    type: float
  renew_only:
    description:
      - With O(state=present), only renew the lock O(owner) holds (also an expired one that nobody took over). Fails
        with RV(lock_lost=true), taking nothing, when there is no lock or it is another owner's.
    type: bool
    default: false
  binding:
    description:
      - Where the lock and the rollout state are stored.
      - V(admin_api) - Kong consumers written through the Admin API (see the description).
      - V(kubernetes) - a Kubernetes Lease, for a Kong managed by the Kong Ingress Controller (see O(kubernetes)).
    type: str
    choices: [admin_api, kubernetes]
    default: admin_api
  kubernetes:
    description:
      - Where the Lease is and how to reach the Kubernetes API server, with O(binding=kubernetes) (ignored otherwise).
      - The connection options resolve as in kubernetes.core and M(mixedrun.kong.kong_k8s_binding) (each option,
        else its E(K8S_AUTH_*) environment variable; O(kubernetes.host) with O(kubernetes.api_key) alone, else the
        given kubeconfig or context, else the in-cluster service account and then the default kubeconfig).
    type: dict
    suboptions:
      name:
        description:
          - The mixed service's name; the Lease is C(mixedrun-rollout-<name>).
          - Default, O(upstream).
        type: str
      namespace:
        description: The service's namespace, where the Lease is. Required with O(binding=kubernetes).
        type: str
      request_timeout:
        description: Seconds to wait for each Kubernetes API request.
        type: float
        default: 30
      route_name:
        description:
          - Not used by this module (the HTTPRoute's name for the modules that write the split); accepted so that one
            O(kubernetes) dictionary serves all modules of a binding, as in the C(mixedrun.kong.rollout) role.
        type: str
      force_conflicts:
        description:
          - Not used by this module (the Lease is written with conditional updates, not server-side apply); accepted
            for the same reason as O(kubernetes.route_name).
        type: bool
        default: false
      kubeconfig:
        description: Path to a kubeconfig file. If not set, the E(K8S_AUTH_KUBECONFIG) environment variable is used.
        type: path
      context:
        description: The kubeconfig context to use. If not set, E(K8S_AUTH_CONTEXT); else the current context.
        type: str
      host:
        description: URL of the Kubernetes API server. If not set, the E(K8S_AUTH_HOST) environment variable is used.
        type: str
      api_key:
        description:
          - Bearer token for the API server. If not set, the E(K8S_AUTH_API_KEY) environment variable is used.
          - Never shown in output, logs or errors.
        type: str
      ca_cert:
        description: CA certificate bundle of the API server. If not set, E(K8S_AUTH_SSL_CA_CERT) is used.
        type: path
        aliases: [ssl_ca_cert]
      validate_certs:
        description:
          - Whether to verify the API server's TLS certificate. Unset keeps the kubeconfig's choice.
          - If not set, the E(K8S_AUTH_VERIFY_SSL) environment variable is used.
        type: bool
        aliases: [verify_ssl]
  settle:
    description:
      - No longer needed and ignored (kept so existing playbooks run unchanged; it will be removed in 3.0.0).
      - Collection 1.x wrote the lock as an upstream tag and read it back after this many seconds to detect a
        concurrent writer, which missed writers that landed later. The lock consumer's unique name decides the race
        inside Kong's database instead.
    type: float
    default: 0
notes:
  - Uses C(GET /upstreams/{upstream}) (its id and legacy tags), C(GET/POST/PATCH/DELETE /consumers/{name or id}) for
    the lock and C(PUT/DELETE /consumers/mixedrun-rollout.<upstream id>) for the state; C(PATCH /upstreams/{id}) only
    once, to remove legacy tags.
  - The lock and state consumers have no credentials, so no authentication plugin ever maps a request to them.
  - A decK sync that manages consumers without C(--select-tag) deletes consumers it does not know, the lock among them.
    Run such syncs with C(--skip-consumers) or select tags. A rollout whose lock was deleted stops at its next renewal
    (RV(lock_lost=true)) without touching the weights.
  - Needs a Kong with a database (traditional, or a hybrid control plane). DB-less nodes refuse the write with an
    error that says so.
  - With O(binding=kubernetes) it uses C(GET/POST/PUT/DELETE) on C(leases) in C(coordination.k8s.io/v1) in the
    namespace (a Role allowing get, create, update and delete on leases is enough) and needs the C(kubernetes) Python
    library. Expiry is C(renewTime) + C(leaseDurationSeconds) compared with the local clock of the job reading it,
    so keep O(ttl) well above the time between renewals plus the clock skew between controllers.
seealso:
  - module: mixedrun.kong.rollout_gate
  - module: mixedrun.kong.kong_traffic_split
"""

EXAMPLES = r"""
- name: Take the rollout lock on the shop upstream for 30 minutes
  mixedrun.kong.kong_rollout_lock:
    admin_url: http://127.0.0.1:8001
    upstream: shop
    owner: "awx-job-{{ awx_job_id | default('manual') }}"
    ttl: 1800
    origin_share: 0
  register: lock

- name: Right before a weight change, make sure the lock is still ours and renew it
  mixedrun.kong.kong_rollout_lock:
    upstream: shop
    owner: "awx-job-{{ awx_job_id | default('manual') }}"
    ttl: 900
    renew_only: true

- name: Who holds the lock?
  mixedrun.kong.kong_rollout_lock:
    upstream: shop
    state: inspected
  register: lock_info

- name: Under the Kong Ingress Controller, take the lock as a Lease in the service's namespace
  mixedrun.kong.kong_rollout_lock:
    upstream: shop
    binding: kubernetes
    kubernetes:
      namespace: shop
      kubeconfig: ~/.kube/config
    owner: "awx-job-{{ awx_job_id | default('manual') }}"
    ttl: 1800
    origin_share: 0

- name: Release it (operators may add force=true for a lock whose job is gone)
  mixedrun.kong.kong_rollout_lock:
    upstream: shop
    owner: "awx-job-{{ awx_job_id | default('manual') }}"
    state: absent
"""

RETURN = r"""
lock:
  description: The lock after the task (the planned one in check mode), or null when there is none.
  returned: always
  type: dict
  contains:
    owner:
      description: Who holds it.
      type: str
    expires_at:
      description: Expiry, seconds since the epoch.
      type: int
    expires_in:
      description: Seconds until it expires (negative when expired).
      type: int
    expired:
      description: Whether it has expired.
      type: bool
    tag:
      description:
        - The lock tag (on the lock consumer; on the upstream for a legacy lock).
        - With O(binding=kubernetes) the same text made from the Lease's holder and expiry (not stored).
      type: str
    id:
      description: The lock consumer's id (null for a legacy lock, and in check mode); with O(binding=kubernetes) the Lease's uid.
      type: str
    legacy:
      description: Whether this is a legacy lock tag on the upstream (collection 1.x).
      type: bool
  sample: {"owner": "awx-job-123@ctl", "expires_at": 1767225600, "expires_in": 1799, "expired": false,
           "tag": "mixedrun-lock:awx-job-123@ctl:1767225600", "id": "0b6e1f6c-3c1e-4a57-9d47-3f5f4a0e2b7d",
           "legacy": false}
held:
  description: Whether O(owner) holds a live lock after the task.
  returned: always
  type: bool
owner:
  description: The owner this task acted for (the default one when O(owner) was not given).
  returned: always
  type: str
previous:
  description: The lock found before the task, or null.
  returned: always
  type: dict
taken_over:
  description: Whether a stale or forced lock of another owner was replaced.
  returned: always
  type: bool
origin_share:
  description: The recorded origin (the share the rollout started from), or null.
  returned: always
  type: float
rolling_back:
  description: The share a rollback under way goes back to (recorded in the rollout state, after the task), or null.
  returned: always
  type: float
binding:
  description: Where the lock is stored, V(admin_api) or V(kubernetes) (the O(binding) option).
  returned: always
  type: str
  sample: admin_api
lock_lost:
  description: True when O(renew_only=true) found the lock gone or another owner's.
  returned: on failure with O(renew_only=true)
  type: bool
tags:
  description:
    - The upstream's tags after the task (planned ones in check mode); legacy rollout tags are removed.
    - Always empty with O(binding=kubernetes) (the upstream is not read).
  returned: always
  type: list
  elements: str
diff:
  description: The lock, the rollout state and the upstream's tags before and after.
  returned: in diff mode
  type: dict
api_calls:
  description: The Admin API calls made, in order (the Kubernetes API calls with O(binding=kubernetes)).
  returned: always
  type: list
  elements: dict
"""

import copy
import getpass
import socket

from ansible_collections.mixedrun.kong.plugins.module_utils._discovery import K8S_AUTH_SPEC
from ansible_collections.mixedrun.kong.plugins.module_utils._k8s_binding import K8sApi, K8sBindingError
from ansible_collections.mixedrun.kong.plugins.module_utils._k8s_discovery import K8sDiscoveryError, build_api_client
from ansible_collections.mixedrun.kong.plugins.module_utils._k8s_rollout_lock import K8sRolloutLock
from ansible_collections.mixedrun.kong.plugins.module_utils._kong_api import KongApiError
from ansible_collections.mixedrun.kong.plugins.module_utils._kong_module import KongModule
from ansible_collections.mixedrun.kong.plugins.module_utils._rollout import (
    LockHeld,
    LockLost,
    RolloutError,
    validate_owner,
)
from ansible_collections.mixedrun.kong.plugins.module_utils._rollout_lock import LockFailure, RolloutLock

K8S_AUTH_KEYS = ("kubeconfig", "context", "host", "api_key", "ca_cert", "validate_certs")


def kubernetes_spec():
    """The ``kubernetes`` option's suboptions: the Lease's service name and namespace plus the connection options
    of ``_discovery.K8S_AUTH_SPEC`` (a fresh copy: AnsibleModule mutates nested specs)."""
    spec = dict(name=dict(type="str"), namespace=dict(type="str"), request_timeout=dict(type="float", default=30.0),
                # accepted and unused, so the one kubernetes dict of the rollout role serves every module of a binding
                route_name=dict(type="str"), force_conflicts=dict(type="bool", default=False))
    spec.update(copy.deepcopy(K8S_AUTH_SPEC))
    return spec


def default_owner():
    try:
        user = getpass.getuser()
    except Exception:  # pylint: disable=broad-except
        user = "ansible"
    host = socket.gethostname().split(".")[0] or "localhost"
    owner = "%s@%s" % (user, host)
    return "".join(c if (33 <= ord(c) <= 126 and c not in ":,/") else "-" for c in owner)


def ensure_lock(client, params, clock=None, store=None):
    """Acquire, renew, release or inspect the lock for ``params`` (the module's options) in ``store`` (default: the
    Admin API binding's RolloutLock on ``client``; K8sRolloutLock has the same interface). Raises LockHeld,
    LockFailure (with a result), RolloutError, KongApiError or K8sBindingError."""
    owner = validate_owner(params.get("owner") or default_owner())
    if store is None:
        store = RolloutLock(client, params["upstream"], clock=clock)
    try:
        store.load()
    except LockFailure as exc:
        exc.result.setdefault("owner", owner)
        raise
    now = store.clock()
    before = store.snapshot(now)
    result = {"changed": False, "owner": owner, "previous": before["lock"], "taken_over": False,
              "origin_share": before["origin_share"], "rolling_back": before["rolling_back"]}
    state = params["state"]
    if state == "present":
        try:
            info = store.acquire(owner, params["ttl"], force=params["force"], origin_share=params.get("origin_share"),
                                 rollback_to=params.get("rollback_to"), renew_only=params.get("renew_only", False))
        except LockLost as exc:
            result.update(lock=exc.lock or store.snapshot(store.clock())["lock"], held=False,
                          tags=store.upstream_tags, lock_lost=True)
            raise LockFailure("Cannot renew the rollout lock on upstream '%s': %s" % (params["upstream"], exc), result)
        result["changed"] = info["changed"]
        result["taken_over"] = info["taken_over"]
    elif state == "absent":
        info = store.release(owner, force=params["force"], keep_origin=params["keep_origin"])
        result["changed"] = info["changed"]
    after = store.snapshot(store.clock())
    lock = after["lock"]
    result.update(lock=lock, tags=after["upstream_tags"], origin_share=after["origin_share"],
                  rolling_back=after["rolling_back"],
                  held=bool(lock and lock["owner"] == owner and not lock["expired"] and not lock["legacy"]))
    result["diff"] = {"before": before, "after": after}
    return result


def kubernetes_target(params):
    """``(namespace, name)`` of the Lease for ``params`` with binding=kubernetes, checked before any connection;
    LockFailure naming the option."""
    k8s = params.get("kubernetes") or {}
    namespace = k8s.get("namespace")
    if not namespace:
        raise LockFailure("kubernetes.namespace is required with binding=kubernetes: the namespace of the mixed service, "
                          "where the Lease mixedrun-rollout-<name> is")
    name = k8s.get("name") or params["upstream"]
    try:
        K8sRolloutLock(None, namespace, name)
    except ValueError as exc:
        raise LockFailure(str(exc))
    return namespace, name


def run_kubernetes(params, check_mode, calls, clock=None):
    """ensure_lock on the Lease (binding=kubernetes): connect as kong_k8s_binding does, close the client after.
    ``calls`` (a list) receives the Kubernetes API calls made, also on failure."""
    namespace, name = kubernetes_target(params)
    k8s = params.get("kubernetes") or {}
    auth = dict((k, k8s.get(k)) for k in K8S_AUTH_KEYS)
    api_client, _namespace, _described = build_api_client(auth)
    try:
        api = K8sApi(api_client, timeout=k8s.get("request_timeout") or 30.0, secret=auth.get("api_key"))
        store = K8sRolloutLock(api, namespace, name, clock=clock, check_mode=check_mode)
        store.calls = calls
        return ensure_lock(None, params, clock=clock, store=store)
    finally:
        api_client.close()


def main_kubernetes(module):
    """binding=kubernetes: never touches module.client (no Kong Admin API needed)."""
    params = module.params
    calls = []
    what = "the rollout lock of '%s'" % ((params.get("kubernetes") or {}).get("name") or params["upstream"])
    try:
        result = run_kubernetes(params, module.check_mode, calls)
    except LockHeld as exc:
        module.fail_json(msg="Cannot %s %s: %s" % ("release" if params["state"] == "absent" else "acquire", what, exc),
                         lock=exc.lock, held=False, locked_by=exc.lock["owner"], binding="kubernetes", api_calls=calls)
    except LockFailure as exc:
        module.fail_json(msg=str(exc), api_calls=calls, **dict(exc.result, binding="kubernetes"))
    except RolloutError as exc:
        module.fail_json(msg=str(exc), binding="kubernetes", api_calls=calls)
    except (K8sBindingError, K8sDiscoveryError) as exc:
        module.fail_json(msg="Failed to %s %s (Lease in namespace %s): %s" % (
            params["state"], what, (params.get("kubernetes") or {}).get("namespace"), exc),
            status=getattr(exc, "status", None), binding="kubernetes", api_calls=calls)
    result["binding"] = "kubernetes"
    result["api_calls"] = calls
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


def main():
    module = KongModule(
        argument_spec=dict(
            upstream=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=["present", "absent", "inspected"]),
            owner=dict(type="str"),
            ttl=dict(type="float", default=1800.0),
            force=dict(type="bool", default=False),
            origin_share=dict(type="float"),
            settle=dict(type="float", default=0.0),
            keep_origin=dict(type="bool", default=False),
            rollback_to=dict(type="float"),
            renew_only=dict(type="bool", default=False),
            binding=dict(type="str", default="admin_api", choices=["admin_api", "kubernetes"]),
            kubernetes=dict(type="dict", options=kubernetes_spec()),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if params["ttl"] <= 0:
        module.fail_json(msg="ttl must be more than 0 seconds, got %s" % params["ttl"], api_calls=[])
    if params["settle"] < 0:
        module.fail_json(msg="settle must be 0 or more seconds, got %s (it is no longer needed: leave it out)"
                         % params["settle"], api_calls=[])
    if params["binding"] == "kubernetes":
        main_kubernetes(module)
        return
    try:
        result = ensure_lock(module.client, params)
    except LockHeld as exc:
        module.fail_json(msg="Cannot %s the rollout lock on upstream '%s': %s" % (
            "release" if params["state"] == "absent" else "acquire", params["upstream"], exc),
            lock=exc.lock, held=False, locked_by=exc.lock["owner"], api_calls=module.api_calls)
    except LockFailure as exc:
        module.fail_json(msg=str(exc), api_calls=module.api_calls, **exc.result)
    except RolloutError as exc:
        module.fail_json(msg=str(exc), api_calls=module.api_calls)
    except KongApiError as exc:
        module.fail_json_kong(exc, "Failed to %s the rollout lock on upstream %s" % (params["state"], params["upstream"]))
    if not module._diff:
        result.pop("diff", None)
    result["binding"] = "admin_api"
    module.exit_kong(**result)


if __name__ == "__main__":
    main()
