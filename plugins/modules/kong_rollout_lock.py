#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kong_rollout_lock
short_description: Acquire, release or inspect the rollout lock on a Kong upstream
version_added: 1.0.0
description:
  - A progressive rollout holds a lock on the upstream it shifts, so two jobs never move one service's traffic at
    the same time. The lock is a tag C(mixedrun-lock:<owner>:<expiry-epoch>) on the upstream; nothing is stored
    anywhere else.
  - O(state=present) acquires the lock, or refreshes its expiry when O(owner) already holds it (so a re-run from
    the same seat resumes). A live lock of another owner is refused with a message naming that owner and the
    expiry. An expired (stale) lock is taken over. O(force=true) takes over a live lock, for operators who made
    sure the other job is gone.
  - O(state=absent) releases the lock (refused for another owner's live lock unless O(force=true)) and removes the
    origin tag unless O(keep_origin=true).
  - O(state=inspected) only reports the lock.
  - On the first acquire the share the rollout starts from is recorded in a second tag,
    C(mixedrun-rollout-origin:<share>), when O(origin_share) is given. It stays while the lock is re-acquired
    (a resumed rollout rolls back to where the interrupted one started) and goes with the release.
  - O(rollback_to) records in a third tag, C(mixedrun-rollout-rollback:<share>), that a rollback to that share is
    under way. A run killed mid-rollback leaves it behind, so the next run finishes the rollback instead of resuming
    the rollout upward (the C(mixedrun.kong.rollout) role does). It goes with the release.
  - O(renew_only=true) only renews a lock O(owner) already holds and fails with RV(lock_lost=true) when the lock is
    gone or another owner's, so a rollout re-checks the lock right before each weight change and never re-takes a
    lock an operator removed.
  - Kong has no conditional writes. After writing, the module waits O(settle) seconds and reads the tags back;
    if another owner's lock is there (two jobs wrote at the same moment) it has lost the race and fails without
    touching that lock. Renewing a live lock the owner holds needs no read-back (nobody else may take a live lock).
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
    description: Shows the upstream's tags before and after.
    support: full
options:
  upstream:
    description: Name or id of the upstream that carries the lock.
    type: str
    required: true
  state:
    description:
      - V(present) acquires or refreshes the lock, V(absent) releases it, V(inspected) only reports it.
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
      - Seconds the lock is valid from now. A rollout refreshes it at every step; a lock whose job died expires
        after this time and may then be taken over.
    type: float
    default: 1800
  force:
    description:
      - Take over (V(present)) or remove (V(absent)) another owner's live lock. For operators only, after making sure
        the other job is not running any more.
    type: bool
    default: false
  origin_share:
    description:
      - The container share the rollout starts from, recorded on the first acquire (see the description).
      - Ignored when an origin tag already exists.
    type: float
  keep_origin:
    description:
      - With O(state=absent), keep the origin tag (and a rollback tag), so a rollout that stopped half-way (frozen,
        paused) is resumed by a re-run and rolled back to where it first started by C(playbooks/rollback.yml).
    type: bool
    default: false
  rollback_to:
    description:
      - With O(state=present), record that a rollback to this container share is under way (see the description);
        replaces an earlier rollback tag. Without it an existing rollback tag is kept.
    type: float
  renew_only:
    description:
      - With O(state=present), only renew the lock O(owner) holds (also an expired one that nobody took over). Fails
        with RV(lock_lost=true), writing nothing, when there is no lock or it is another owner's.
    type: bool
    default: false
  settle:
    description:
      - Seconds to wait after writing before reading the tags back to detect a concurrent writer. V(0) skips the
        read-back.
    type: float
    default: 0.5
notes:
  - Uses C(GET /upstreams/{upstream}) and C(PATCH /upstreams/{upstream}) with the whole tag list; other tags are
    kept as they are.
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
      description: The tag on the upstream.
      type: str
  sample: {"owner": "awx-job-123@ctl", "expires_at": 1767225600, "expires_in": 1799, "expired": false,
           "tag": "mixedrun-lock:awx-job-123@ctl:1767225600"}
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
  description: The share recorded in the origin tag (the share the rollout started from), or null.
  returned: always
  type: float
rolling_back:
  description: The share a rollback under way goes back to (the rollback tag, after the task), or null.
  returned: always
  type: float
lock_lost:
  description: True when O(renew_only=true) found the lock gone or another owner's.
  returned: on failure with O(renew_only=true)
  type: bool
tags:
  description: The upstream's tags after the task (planned ones in check mode).
  returned: always
  type: list
  elements: str
diff:
  description: The upstream's tags before and after.
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
import time

from ansible_collections.mixedrun.kong.plugins.module_utils._kong_api import KongApiError
from ansible_collections.mixedrun.kong.plugins.module_utils._kong_module import KongModule
from ansible_collections.mixedrun.kong.plugins.module_utils._rollout import (
    LockHeld,
    LockLost,
    RolloutError,
    lock_info,
    parse_origin_tag,
    parse_rollback_tag,
    plan_acquire,
    plan_release,
    validate_owner,
)


class LockFailure(Exception):
    def __init__(self, message, result):
        self.result = result
        super(LockFailure, self).__init__(message)


def default_owner():
    try:
        user = getpass.getuser()
    except Exception:  # pylint: disable=broad-except
        user = "ansible"
    host = socket.gethostname().split(".")[0] or "localhost"
    owner = "%s@%s" % (user, host)
    return "".join(c if (33 <= ord(c) <= 126 and c not in ":,/") else "-" for c in owner)


def _describe(tags, now):
    info = lock_info(tags, now)
    if info:
        info.pop("count", None)
    return info


def ensure_lock(client, params, now=None, sleep=None, clock=None):
    sleep = sleep or time.sleep
    clock = clock or time.time
    upstream = params["upstream"]
    owner = validate_owner(params.get("owner") or default_owner())
    now = int(clock() if now is None else now)
    path = "/upstreams/%s" % client.quote(upstream)
    current = client.get(path)
    if current is None:
        raise LockFailure("upstream '%s' not found: create it first (mixedrun.kong.kong_upstream or the mixed_service role)"
                          % upstream, {"owner": owner})
    tags = list(current.get("tags") or [])
    state = params["state"]
    previous = _describe(tags, now)
    result = {"changed": False, "owner": owner, "previous": previous, "taken_over": False,
              "origin_share": parse_origin_tag(tags), "rolling_back": parse_rollback_tag(tags)}
    # Renewing a live lock of our own needs no read-back: nobody else may write a live lock (force aside).
    settle = params["settle"]
    if state == "inspected":
        new_tags = tags
    elif state == "present":
        try:
            new_tags, info = plan_acquire(tags, owner, now, params["ttl"], force=params["force"],
                                          origin_share=params.get("origin_share"), rollback_to=params.get("rollback_to"),
                                          renew_only=params.get("renew_only", False))
        except LockLost as exc:
            result.update(lock=previous, held=False, tags=tags, lock_lost=True)
            raise LockFailure("Cannot renew the rollout lock on upstream '%s': %s" % (upstream, exc), result)
        result["taken_over"] = info["taken_over"]
        result["origin_share"] = info["origin_share"]
        result["rolling_back"] = info["rolling_back"]
        if previous and previous["owner"] == owner and not previous["expired"]:
            settle = 0
    else:
        new_tags, info = plan_release(tags, owner, now, force=params["force"], keep_origin=params["keep_origin"])
        result["origin_share"] = parse_origin_tag(new_tags)
        result["rolling_back"] = parse_rollback_tag(new_tags)
    changed = new_tags != tags
    result["changed"] = changed
    result["diff"] = {"before": {"tags": tags}, "after": {"tags": new_tags}}
    if changed:
        client.write("PATCH", path, {"tags": new_tags})
        if not client.check_mode and state == "present" and settle > 0:
            sleep(settle)
            again = client.get(path) or {}
            seen = list(again.get("tags") or [])
            lock = lock_info(seen, now)
            if not lock or lock["owner"] != owner:
                result["lock"] = _describe(seen, now)
                result["held"] = False
                result["tags"] = seen
                who = lock["owner"] if lock else "nobody"
                raise LockFailure("lost the race for the lock on upstream '%s': after writing it, the upstream shows "
                                  "the lock of '%s' (another job wrote at the same moment); retry later" % (upstream, who),
                                  result)
            new_tags = seen
    lock = _describe(new_tags, now)
    result["lock"] = lock
    result["tags"] = new_tags
    result["held"] = bool(lock and lock["owner"] == owner and not lock["expired"])
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
            settle=dict(type="float", default=0.5),
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
        module.fail_json(msg="settle must be 0 or more seconds, got %s" % params["settle"], api_calls=[])
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
