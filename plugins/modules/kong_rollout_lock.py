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
      description: The lock tag (on the lock consumer; on the upstream for a legacy lock).
      type: str
    id:
      description: The lock consumer's id (null for a legacy lock, and in check mode).
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
lock_lost:
  description: True when O(renew_only=true) found the lock gone or another owner's.
  returned: on failure with O(renew_only=true)
  type: bool
tags:
  description: The upstream's tags after the task (planned ones in check mode); legacy rollout tags are removed.
  returned: always
  type: list
  elements: str
diff:
  description: The lock, the rollout state and the upstream's tags before and after.
  returned: in diff mode
  type: dict
api_calls:
  description: The Admin API calls made, in order.
  returned: always
  type: list
  elements: dict
"""

import getpass
import socket

from ansible_collections.mixedrun.kong.plugins.module_utils._kong_api import KongApiError
from ansible_collections.mixedrun.kong.plugins.module_utils._kong_module import KongModule
from ansible_collections.mixedrun.kong.plugins.module_utils._rollout import (
    LockHeld,
    LockLost,
    RolloutError,
    validate_owner,
)
from ansible_collections.mixedrun.kong.plugins.module_utils._rollout_lock import LockFailure, RolloutLock


def default_owner():
    try:
        user = getpass.getuser()
    except Exception:  # pylint: disable=broad-except
        user = "ansible"
    host = socket.gethostname().split(".")[0] or "localhost"
    owner = "%s@%s" % (user, host)
    return "".join(c if (33 <= ord(c) <= 126 and c not in ":,/") else "-" for c in owner)


def ensure_lock(client, params, clock=None):
    """Acquire, renew, release or inspect the lock for ``params`` (the module's options). Raises LockHeld,
    LockFailure (with a result), RolloutError or KongApiError."""
    owner = validate_owner(params.get("owner") or default_owner())
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
        ),
        supports_check_mode=True,
    )
    params = module.params
    if params["ttl"] <= 0:
        module.fail_json(msg="ttl must be more than 0 seconds, got %s" % params["ttl"], api_calls=[])
    if params["settle"] < 0:
        module.fail_json(msg="settle must be 0 or more seconds, got %s (it is no longer needed: leave it out)"
                         % params["settle"], api_calls=[])
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
    module.exit_kong(**result)


if __name__ == "__main__":
    main()
