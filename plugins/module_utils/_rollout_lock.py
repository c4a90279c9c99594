# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout lock and the rollout state, each a Kong consumer of their own (I/O on a KongClient).

* The lock of upstream ``U`` is the consumer ``mixedrun-lock.<U's id>``, tagged ``mixedrun-lock``,
  ``mixedrun-upstream:<id>`` and ``mixedrun-lock:<owner>:<expiry-epoch>``, with a random ``custom_id`` (the claim).
  ``username`` is unique in Kong, so taking the lock is ``POST /consumers``: of two jobs exactly one gets 201, the
  other 409 (whatever their timing). Release is ``DELETE /consumers/{id}``; a renewal is ``PATCH /consumers/{id}``
  (404 once the lock was deleted or replaced: the holder learns it lost the lock and never overwrites the new one).
  A lock past its expiry, or one taken by force, is replaced: ``DELETE`` of that entity by id, then ``POST``, so two
  contenders can never both win (the second ``POST`` answers 409), and a delete never hits a newer lock.
  A holder renews in place only when its ``PATCH`` completes ``RENEW_MARGIN`` seconds before the old expiry, so
  nobody can have judged the lock expired; later it replaces its own lock like any contender would.
* The rollout state (origin and rollback share) is the consumer ``mixedrun-rollout.<U's id>`` with tags
  ``mixedrun-rollout-origin:<share>`` and ``mixedrun-rollout-rollback:<share>``, written only by the lock holder.
* Consumers are not on an upstream's proxy path: writing them never changes the upstream (no balancer rebuild, no
  health checker restart); in hybrid mode their hash is not part of the data planes' balancer (or router or
  plugins) hash, so those are not rebuilt either.
* Legacy: the lock, origin and rollback tags on the upstream (collection 1.x) are still read. A live legacy lock of
  another owner is refused; the holder migrates origin and rollback into the state consumer and removes the legacy
  tags from the upstream (one upstream write, once).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time
import uuid

from ansible_collections.mixedrun.kong.plugins.module_utils._kong_api import KongApiError
from ansible_collections.mixedrun.kong.plugins.module_utils._rollout import (
    LOCK_PREFIX,
    ORIGIN_PREFIX,
    ROLLBACK_PREFIX,
    LockHeld,
    LockLost,
    describe_lock_refusal,
    format_lock_tag,
    format_origin_tag,
    format_rollback_tag,
    lock_info,
    parse_origin_tag,
    parse_rollback_tag,
    parse_share,
    validate_owner,
)

LOCK_NAME = "mixedrun-lock."
STATE_NAME = "mixedrun-rollout."
LOCK_MARK = "mixedrun-lock"
STATE_MARK = "mixedrun-rollout"
UPSTREAM_PREFIX = "mixedrun-upstream:"
RENEW_MARGIN = 5.0
CONSUMERS = "/consumers"


class LockFailure(Exception):
    """A failure with a result to return (lock, held, lock_lost, ...)."""

    def __init__(self, message, result=None):
        self.result = result or {}
        super(LockFailure, self).__init__(message)


def lock_name(upstream_id):
    return LOCK_NAME + upstream_id


def state_name(upstream_id):
    return STATE_NAME + upstream_id


def _legacy_tag(tag):
    return isinstance(tag, str) and tag.startswith((LOCK_PREFIX, ORIGIN_PREFIX, ROLLBACK_PREFIX))


def describe(lock, now):
    """The lock as the modules return it (None stays None)."""
    if not lock:
        return None
    out = {"owner": lock["owner"], "expires_at": int(lock["expires_at"]), "tag": lock["tag"],
           "expires_in": int(lock["expires_at"] - now), "expired": lock["expires_at"] <= now,
           "id": lock.get("id"), "legacy": bool(lock.get("legacy"))}
    return out


def parse_lock_entity(consumer):
    """``{owner, expires_at, tag, id, claim}`` from the lock consumer, None when absent; a lock consumer without a
    readable lock tag (edited by hand) reads as expired long ago, so it can be replaced."""
    if not consumer:
        return None
    info = lock_info(consumer.get("tags") or [], 0)
    if info is None:
        info = {"owner": "(unreadable lock consumer)", "expires_at": 0, "tag": None}
    return {"owner": info["owner"], "expires_at": info["expires_at"], "tag": info["tag"], "id": consumer.get("id"),
            "claim": consumer.get("custom_id"), "legacy": False}


class RolloutLock:
    """The lock and state of one upstream. ``clock`` is injectable (seconds since the epoch)."""

    def __init__(self, client, upstream, clock=None):
        self.client = client
        self.upstream = upstream
        self.clock = clock or time.time
        self.upstream_obj = None
        self.entity = None
        self.state = None

    # -- reading ------------------------------------------------------------------------------------------------
    def load(self):
        up = self.client.get("/upstreams/%s" % self.client.quote(self.upstream))
        if up is None:
            raise LockFailure("upstream '%s' not found: create it first (mixedrun.kong.kong_upstream or the "
                              "mixed_service role)" % self.upstream)
        self.upstream_obj = up
        self.entity = self.client.get(self._lock_path())
        self.state = self.client.get(self._state_path())
        return self

    @property
    def upstream_id(self):
        return self.upstream_obj["id"]

    @property
    def upstream_tags(self):
        return list(self.upstream_obj.get("tags") or [])

    def _lock_path(self, ident=None):
        return "%s/%s" % (CONSUMERS, self.client.quote(ident or lock_name(self.upstream_id)))

    def _state_path(self):
        return "%s/%s" % (CONSUMERS, self.client.quote(state_name(self.upstream_id)))

    def lock(self):
        return parse_lock_entity(self.entity)

    def legacy_lock(self, now):
        info = lock_info(self.upstream_tags, now)
        if info:
            info = {"owner": info["owner"], "expires_at": info["expires_at"], "tag": info["tag"], "id": None,
                    "legacy": True}
        return info

    def current(self, now):
        """The lock that counts: the lock consumer, else a legacy lock tag on the upstream."""
        return self.lock() or self.legacy_lock(now)

    def origin(self):
        value = parse_origin_tag((self.state or {}).get("tags"))
        return value if value is not None else parse_origin_tag(self.upstream_tags)

    def rolling_back(self):
        value = parse_rollback_tag((self.state or {}).get("tags"))
        return value if value is not None else parse_rollback_tag(self.upstream_tags)

    def snapshot(self, now):
        return {"lock": describe(self.current(now), now), "origin_share": self.origin(),
                "rolling_back": self.rolling_back(), "upstream_tags": self.upstream_tags}

    # -- writing ------------------------------------------------------------------------------------------------
    def _lock_body(self, owner, expiry, claim):
        return {"username": lock_name(self.upstream_id), "custom_id": claim,
                "tags": [LOCK_MARK, UPSTREAM_PREFIX + self.upstream_id, format_lock_tag(owner, expiry)]}

    def _create(self, owner, expiry):
        """POST the lock consumer: the entity on success, None when another job holds it (409)."""
        claim = "mixedrun-claim.%s" % uuid.uuid4()
        body = self._lock_body(owner, expiry, claim)
        if self.client.check_mode:
            self.client.write("POST", CONSUMERS, body)
            return dict(body, id=None)
        try:
            return self.client.post(CONSUMERS, body)
        except KongApiError as exc:
            if exc.status != 409:
                raise
        # 409: the name is taken. Our own POST, retried after an answer got lost, would carry our claim.
        seen = self.client.get(self._lock_path())
        if seen and seen.get("custom_id") == claim:
            return seen
        self.entity = seen
        return None

    def _delete(self, ident):
        self.client.write("DELETE", self._lock_path(ident))

    def _replace(self, old, owner, expiry):
        """Delete ``old`` (by its id: never a newer lock) and create ours; None when another job got in first."""
        if old and old.get("id"):
            self._delete(old["id"])
        return self._create(owner, expiry)

    def _renew_in_place(self, lock, owner, expiry):
        """PATCH our live lock by id. Returns the entity, None when it is gone (404), or "late" when the write may
        have landed after the old expiry (then the caller replaces it, as any contender could have)."""
        body = {"tags": [LOCK_MARK, UPSTREAM_PREFIX + self.upstream_id, format_lock_tag(owner, expiry)]}
        if self.client.check_mode:
            self.client.write("PATCH", self._lock_path(lock["id"]), body)
            return dict(self.entity, **body)
        try:
            entity = self.client.patch(self._lock_path(lock["id"]), body)
        except KongApiError as exc:
            if exc.status == 404:
                return None
            raise
        if self.clock() >= lock["expires_at"] - RENEW_MARGIN:
            return "late"
        return entity

    def _write_state(self, origin, rolling_back):
        """Make the state consumer say ``origin``/``rolling_back`` (None = no tag); delete it when both are None."""
        tags = [STATE_MARK, UPSTREAM_PREFIX + self.upstream_id]
        if origin is not None:
            tags.append(format_origin_tag(origin))
        if rolling_back is not None:
            tags.append(format_rollback_tag(rolling_back))
        if origin is None and rolling_back is None:
            if self.state is not None:
                self.client.write("DELETE", self._state_path())
                self.state = None
                return True
            return False
        if self.state is not None and list(self.state.get("tags") or []) == tags:
            return False
        written = self.client.write("PUT", self._state_path(), {"tags": tags})
        self.state = written or {"username": state_name(self.upstream_id), "tags": tags}
        return True

    def _drop_legacy_tags(self, keep=()):
        """Remove the legacy lock/origin/rollback tags from the upstream (one upstream write), once."""
        tags = self.upstream_tags
        new_tags = [t for t in tags if not _legacy_tag(t) or t in keep]
        if new_tags == tags:
            return False
        written = self.client.write("PATCH", "/upstreams/%s" % self.client.quote(self.upstream_id), {"tags": new_tags})
        self.upstream_obj = written or dict(self.upstream_obj, tags=new_tags)
        return True

    # -- the operations -------------------------------------------------------------------------------------------
    def acquire(self, owner, ttl, force=False, origin_share=None, rollback_to=None, renew_only=False):
        """Take, renew or take over the lock for ``owner`` until now + ``ttl``; record origin/rollback.

        Raises LockHeld (another owner's live lock, or a lost race), LockLost (``renew_only`` and the lock is not
        ours any more). Returns ``{changed, taken_over, forced, renewed, previous, lock, origin_share,
        rolling_back}``."""
        validate_owner(owner)
        # Every input is checked before the first write.
        if origin_share is not None:
            origin_share = parse_share(origin_share, "origin_share", allow_zero=True)
        if rollback_to is not None:
            rollback_to = parse_share(rollback_to, "rollback_to", allow_zero=True)
        now = self.clock()
        expiry = now + ttl
        mine = self.lock()
        legacy = self.legacy_lock(now)
        previous = mine or legacy
        legacy_foreign = legacy and legacy["owner"] != owner and legacy["expires_at"] > now
        result = {"changed": False, "taken_over": False, "forced": False, "renewed": False,
                  "previous": describe(previous, now)}
        if renew_only:
            self._check_renewable(owner, mine, legacy, legacy_foreign, now)
        if legacy_foreign and not force:
            raise LockHeld(describe(legacy, now), now)
        if mine and mine["owner"] != owner and mine["expires_at"] > now and not force:
            raise LockHeld(describe(mine, now), now)
        entity = None
        if mine and mine["owner"] == owner:
            if now < mine["expires_at"] - RENEW_MARGIN:
                entity = self._renew_in_place(mine, owner, expiry)
                if entity is None and renew_only:
                    self._lost(owner, renew_only, now, "it was deleted while being renewed")
                result["renewed"] = entity not in (None, "late")
            if entity in (None, "late"):
                entity = self._replace(mine, owner, expiry)
                result["renewed"] = entity is not None
        else:
            if mine:
                result["taken_over"] = True
                result["forced"] = mine["expires_at"] > now
            entity = self._replace(mine, owner, expiry)
        if entity is None:
            self._lost(owner, renew_only, now, "another job took it at the same moment")
        if legacy and legacy["owner"] != owner:
            result["taken_over"] = True
            result["forced"] = result["forced"] or bool(legacy_foreign)
        self.entity = entity
        result["changed"] = True
        # We hold the lock: the state (origin, a rollback under way) is ours to write.
        origin = self.origin()
        if origin is None:
            origin = origin_share
        rolling_back = self.rolling_back() if rollback_to is None else rollback_to
        self._write_state(origin, rolling_back)
        self._drop_legacy_tags()
        result.update(lock=describe(self.lock(), now), origin_share=origin, rolling_back=rolling_back)
        return result

    def _check_renewable(self, owner, mine, legacy, legacy_foreign, now):
        if mine is None and not (legacy and legacy["owner"] == owner):
            if legacy_foreign:
                raise LockLost("the rollout lock of '%s' was taken over: the upstream shows the legacy lock tag of "
                               "'%s'; stopping without touching the weights" % (owner, legacy["owner"]),
                               describe(legacy, now))
            raise LockLost("the rollout lock of '%s' is gone (released, or removed by an operator): stopping without "
                           "touching the weights" % owner)
        if mine is not None and mine["owner"] != owner:
            seen = (describe_lock_refusal(mine, now) if mine["expires_at"] > now else
                    "the upstream shows the expired lock of '%s'" % mine["owner"])
            raise LockLost("the rollout lock of '%s' was taken over: %s; stopping without touching the weights"
                           % (owner, seen), describe(mine, now))

    def _lost(self, owner, renew_only, now, why):
        if not self.client.check_mode:
            self.entity = self.client.get(self._lock_path())
        winner = self.lock()
        if renew_only or winner is None or winner["owner"] == owner:
            raise LockLost("the rollout lock of '%s' was lost (%s)%s; stopping without touching the weights"
                           % (owner, why, (": it is now held by '%s'" % winner["owner"]) if winner else ""),
                           describe(winner, now))
        raise LockHeld(describe(winner, now), now)

    def release(self, owner, force=False, keep_origin=False):
        """Give the lock back (delete it by id). The state goes too unless ``keep_origin``; legacy tags go.

        Raises LockHeld for another owner's live lock unless ``force``. Returns ``{changed, forced, previous,
        origin_share, rolling_back}``."""
        now = self.clock()
        mine = self.lock()
        legacy = self.legacy_lock(now)
        for lock in (mine, legacy):
            if lock and lock["owner"] != owner and lock["expires_at"] > now and not force:
                raise LockHeld(describe(lock, now), now)
        forced = any(lk and lk["owner"] != owner and lk["expires_at"] > now for lk in (mine, legacy))
        changed = False
        # The state first: once the lock is gone another job may take it and write its own state.
        if keep_origin:
            changed = self._write_state(self.origin(), self.rolling_back()) or changed
        else:
            changed = self._write_state(None, None) or changed
        changed = self._drop_legacy_tags() or changed
        if mine:
            self._delete(mine["id"])
            self.entity = None
            changed = True
        return {"changed": changed, "forced": bool(forced), "previous": describe(mine or legacy, now),
                "origin_share": self.origin(), "rolling_back": self.rolling_back()}


def renew_lock(client, upstream, owner, ttl, clock=None):
    """Renew the lock ``owner`` holds (a rollout's re-check before a weight change): the lock as returned by
    ``describe``. LockLost when it is gone or another owner's; LockFailure for a missing upstream."""
    store = RolloutLock(client, upstream, clock=clock).load()
    out = store.acquire(owner, ttl, renew_only=True)
    return out["lock"]
