# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout lock and the rollout state of the Kubernetes binding: one ``coordination.k8s.io/v1`` Lease.

Under the Kong Ingress Controller Kong's Admin API is read-only, so the lock cannot be a Kong consumer (as in
``_rollout_lock``); it lives in Kubernetes, next to the objects the binding writes.

* Why a Lease: it is Kubernetes' own lock object (leader election, node heartbeats), so ``kubectl get lease -n <ns>``
  shows who holds a rollout (HOLDER) and ``kubectl describe lease mixedrun-rollout-<name>`` when it was taken and
  renewed, with no custom resource to install. The Lease of mixed service ``<name>`` is ``mixedrun-rollout-<name>``
  in the service's namespace:

  - ``spec.holderIdentity`` the owner (cleared by a release), ``spec.leaseDurationSeconds`` the ttl (an integer,
    rounded up, at least 1), ``spec.acquireTime`` when the owner took it, ``spec.renewTime`` its last renewal (RFC
    3339 micro time, ``2026-12-05T10:00:00.000000Z``), ``spec.leaseTransitions`` counts holder changes;
  - the rollout state as annotations ``mixedrun.kong/origin-share`` (the share the rollout started from) and
    ``mixedrun.kong/rolling-back`` (the share a rollback under way goes back to), written only by the holder. They
    outlive a release with ``keep_origin`` (the Lease stays, without holder); a release that leaves no state
    deletes the Lease.

* Every write is conditional on what was read: a replace (``PUT``) carries the ``metadata.resourceVersion`` read, a
  delete carries it as a precondition, and an absent Lease is created with ``POST`` (409 when another job created it
  first). So of two jobs that read the same Lease exactly one write succeeds; the other gets ``409 Conflict``,
  re-reads and decides again, as ``RolloutLock`` does after a lost ``POST``: another owner's live lock (or any
  other owner with ``renew_only``) is a LockHeld / LockLost naming that holder. A renewal is a replace of our own
  Lease: once anybody else wrote it (a takeover, an operator's force) our resourceVersion is stale and the renewal
  fails, never overwriting the new holder. Unlike the consumer lock there is therefore no renewal margin: a renewal
  that lands late still only succeeds when nobody wrote the Lease since we read it.

* Expiry: the lock expires at ``renewTime + leaseDurationSeconds``; ``renewTime`` is written by the job (from its
  local clock, as client-go's leader election does) and compared with the local clock of the job that reads it. As
  with the consumer lock's expiry tag, controllers whose clocks differ judge expiry differently by that skew: keep
  the ttl well above the time between two renewals plus any clock skew. A Lease with a holder but no readable
  ``renewTime``/``acquireTime`` or duration (edited by hand) reads as expired long ago, so it can be replaced.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import calendar
import math
import re
import time

from ansible_collections.mixedrun.kong.plugins.module_utils._k8s_binding import K8sBindingError
from ansible_collections.mixedrun.kong.plugins.module_utils._rollout import (
    LockHeld,
    LockLost,
    RolloutError,
    describe_lock_refusal,
    format_lock_tag,
    parse_share,
    share_key,
    validate_owner,
)
from ansible_collections.mixedrun.kong.plugins.module_utils._rollout_lock import LockFailure, describe

__all__ = ["K8sRolloutLock", "LockFailure", "LEASE_PREFIX", "ORIGIN_ANNOTATION", "ROLLBACK_ANNOTATION", "lease_name",
           "lease_path", "format_micro_time", "parse_micro_time", "renew_k8s_lock"]

LEASE_PREFIX = "mixedrun-rollout-"
ORIGIN_ANNOTATION = "mixedrun.kong/origin-share"
ROLLBACK_ANNOTATION = "mixedrun.kong/rolling-back"
MANAGED_LABEL = "app.kubernetes.io/managed-by"
MANAGED_VALUE = "mixedrun.kong"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/%s/leases"
# K8sApi.request serialises a body to JSON text itself; sent as application/json the kubernetes client would encode
# that text again (a JSON string: 400 from the API server). JSON text is YAML, so it goes as application/yaml, which
# the client passes through unchanged and the API server decodes as the same object.
BODY_TYPE = "application/yaml"
ATTEMPTS = 5     # conflicts re-read and decided again at most this often (each one means somebody else wrote)

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_MICRO_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})$")


class _Conflict(Exception):
    """A conditional write found the Lease changed (409): re-read and decide again."""


def lease_name(name):
    """``mixedrun-rollout-<name>``; ValueError naming the option for a name the API server would refuse."""
    full = LEASE_PREFIX + (name or "")
    if not name or not isinstance(name, str) or len(full) > 253 or not _SUBDOMAIN.match(full):
        raise ValueError("kubernetes.name must be the mixed service's name, lowercase letters, digits, '-' and '.' "
                         "(the Lease is 'mixedrun-rollout-<name>', a DNS subdomain of at most 253 characters), got %r" % (name,))
    return full


def lease_path(namespace, name=None):
    if not namespace or not isinstance(namespace, str) or len(namespace) > 63 or not _DNS_LABEL.match(namespace):
        raise ValueError("kubernetes.namespace must be the service's namespace, a DNS label (lowercase letters, digits, "
                         "'-'), got %r" % (namespace,))
    return LEASES % namespace + ("/" + name if name else "")


def format_micro_time(epoch):
    """RFC 3339 with microseconds in UTC, as the API server writes a MicroTime: ``2026-12-05T10:00:00.000000Z``."""
    whole = int(math.floor(epoch))
    micro = int(round((epoch - whole) * 1000000))
    if micro >= 1000000:
        whole, micro = whole + 1, micro - 1000000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + ".%06dZ" % micro


def parse_micro_time(text):
    """Seconds since the epoch (float) of an RFC 3339 time, None when unreadable."""
    match = _MICRO_TIME.match(text) if isinstance(text, str) else None
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        epoch = calendar.timegm((int(year), int(month), int(day), int(hour), int(minute), int(second), 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    if fraction:
        epoch += float("0." + fraction)
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        epoch -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return epoch


def _duration(ttl):
    """``leaseDurationSeconds`` for a ttl: an integer, rounded up, at least 1."""
    return max(1, int(math.ceil(float(ttl))))


def _read_share(value):
    if value is None:
        return None
    try:
        return parse_share(value, "annotation", allow_zero=True)
    except RolloutError:
        return None


def parse_lease(lease):
    """``{owner, expires_at, tag, id, legacy}`` of a Lease with a holder, None without one (absent, or released)."""
    spec = (lease or {}).get("spec") or {}
    owner = spec.get("holderIdentity")
    if not owner:
        return None
    renewed = parse_micro_time(spec.get("renewTime")) or parse_micro_time(spec.get("acquireTime"))
    duration = spec.get("leaseDurationSeconds")
    if renewed is None or isinstance(duration, bool) or not isinstance(duration, int):
        expires_at = 0
    else:
        expires_at = renewed + duration
    try:
        tag = format_lock_tag(owner, expires_at)
    except RolloutError:         # a holder this collection would not write (kubectl edit): shown, and replaceable
        tag = None
    return {"owner": owner, "expires_at": expires_at, "tag": tag, "id": ((lease or {}).get("metadata") or {}).get("uid"),
            "legacy": False}


class K8sRolloutLock:
    """The lock and state of one mixed service as a Lease, with ``RolloutLock``'s interface and semantics.

    ``api`` is a ``_k8s_binding.K8sApi``; ``clock`` is injectable (seconds since the epoch); ``check_mode`` (default:
    ``api.check_mode`` when it has one) plans the writes without sending them."""

    def __init__(self, api, namespace, name, clock=None, check_mode=None):
        self.api = api
        self.namespace = namespace
        self.name = name
        self.lease_name = lease_name(name)
        self.path = lease_path(namespace, self.lease_name)
        self.clock = clock or time.time
        self.check_mode = bool(getattr(api, "check_mode", False) if check_mode is None else check_mode)
        self.lease = None
        self.calls = []

    # -- I/O ------------------------------------------------------------------------------------------------------
    def _call(self, method, path, body=None):
        if self.check_mode and method != "GET":
            self.calls.append({"method": method, "path": path, "status": None, "check_mode": True})
            return None
        entry = {"method": method, "path": path, "status": None}
        self.calls.append(entry)
        try:
            out = self.api.request(method, path, body=body, content_type=BODY_TYPE if body is not None else None)
        except K8sBindingError as exc:
            entry["status"] = exc.status
            if exc.status == 409 and method != "GET":
                raise _Conflict(str(exc))
            raise
        entry["status"] = 404 if out is None else (201 if method == "POST" else 200)
        return out

    # -- reading ------------------------------------------------------------------------------------------------
    def load(self):
        self.lease = self._call("GET", self.path)
        return self

    @property
    def upstream_tags(self):
        """No upstream is written in this binding (RolloutLock's snapshot has the upstream's tags): always []."""
        return []

    def _annotations(self):
        return dict(((self.lease or {}).get("metadata") or {}).get("annotations") or {})

    def lock(self):
        return parse_lease(self.lease)

    def current(self, now):  # pylint: disable=unused-argument
        return self.lock()

    def origin(self):
        return _read_share(self._annotations().get(ORIGIN_ANNOTATION))

    def rolling_back(self):
        return _read_share(self._annotations().get(ROLLBACK_ANNOTATION))

    def snapshot(self, now):
        return {"lock": describe(self.current(now), now), "origin_share": self.origin(),
                "rolling_back": self.rolling_back(), "upstream_tags": self.upstream_tags}

    # -- writing ------------------------------------------------------------------------------------------------
    def _state_annotations(self, origin, rolling_back):
        annotations = dict((k, v) for k, v in self._annotations().items() if k not in (ORIGIN_ANNOTATION, ROLLBACK_ANNOTATION))
        if origin is not None:
            annotations[ORIGIN_ANNOTATION] = share_key(origin)
        if rolling_back is not None:
            annotations[ROLLBACK_ANNOTATION] = share_key(rolling_back)
        return annotations

    def _body(self, spec, annotations):
        metadata = dict((self.lease or {}).get("metadata") or {})
        metadata["name"] = self.lease_name
        metadata["namespace"] = self.namespace
        labels = dict(metadata.get("labels") or {})
        labels.setdefault(MANAGED_LABEL, MANAGED_VALUE)
        metadata["labels"] = labels
        if annotations:
            metadata["annotations"] = annotations
        else:
            metadata.pop("annotations", None)
        metadata.pop("managedFields", None)
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}

    def _write(self, spec, annotations):
        """Replace the Lease read (conditional on its resourceVersion) or create it; the new Lease. _Conflict on 409."""
        body = self._body(spec, annotations)
        if self.lease is None:
            for key in ("resourceVersion", "uid", "creationTimestamp"):
                body["metadata"].pop(key, None)
            written = self._call("POST", lease_path(self.namespace), body)
        else:
            written = self._call("PUT", self.path, body)
        if written is None:          # check mode: the planned Lease
            written = body
        self.lease = written
        return written

    def _delete(self):
        """Delete the Lease read, on condition that nobody wrote it since (the resourceVersion precondition)."""
        version = ((self.lease or {}).get("metadata") or {}).get("resourceVersion")
        body = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if version:
            body["preconditions"] = {"resourceVersion": version}
        if not self.check_mode:
            entry = {"method": "DELETE", "path": self.path, "status": None}
            self.calls.append(entry)
            try:
                out = self.api.request("DELETE", self.path, body=body, content_type=BODY_TYPE)
            except K8sBindingError as exc:
                entry["status"] = exc.status
                if exc.status == 409:
                    raise _Conflict(str(exc))
                raise
            entry["status"] = 404 if out is None else 200
        else:
            self.calls.append({"method": "DELETE", "path": self.path, "status": None, "check_mode": True})
        self.lease = None

    def _reread(self):
        if not self.check_mode:
            self.lease = self._call("GET", self.path)

    # -- the operations -------------------------------------------------------------------------------------------
    def acquire(self, owner, ttl, force=False, origin_share=None, rollback_to=None, renew_only=False):
        """Take, renew or take over the lock for ``owner`` for ``ttl`` seconds; record origin/rollback.

        Raises LockHeld (another owner's live lock, or a lost race), LockLost (``renew_only`` and the lock is not
        ours any more). Returns ``{changed, taken_over, forced, renewed, previous, lock, origin_share,
        rolling_back}``."""
        validate_owner(owner)
        if origin_share is not None:
            origin_share = parse_share(origin_share, "origin_share", allow_zero=True)
        if rollback_to is not None:
            rollback_to = parse_share(rollback_to, "rollback_to", allow_zero=True)
        now = self.clock()
        previous = describe(self.lock(), now)
        for attempt in range(ATTEMPTS):
            try:
                result = self._acquire_once(owner, ttl, force, origin_share, rollback_to, renew_only)
            except _Conflict:
                self._reread()
                now = self.clock()
                winner = self.lock()
                if winner and winner["owner"] != owner and (renew_only or winner["expires_at"] > now):
                    self._lost(owner, renew_only, now, "another job took it at the same moment")
                if attempt == ATTEMPTS - 1:
                    raise LockFailure("Cannot take the rollout lock '%s': the Lease changed under every one of %d writes"
                                      % (self.lease_name, ATTEMPTS), {"lock": describe(winner, now), "held": False})
                continue
            result["previous"] = previous
            return result
        raise AssertionError("unreachable")   # pragma: no cover

    def _acquire_once(self, owner, ttl, force, origin_share, rollback_to, renew_only):
        now = self.clock()
        mine = self.lock()
        result = {"changed": False, "taken_over": False, "forced": False, "renewed": False,
                  "previous": describe(mine, now)}
        if renew_only:
            self._check_renewable(owner, mine, now)
        if mine and mine["owner"] != owner and mine["expires_at"] > now and not force:
            raise LockHeld(describe(mine, now), now)
        spec = dict((self.lease or {}).get("spec") or {})
        stamp = format_micro_time(now)
        if mine and mine["owner"] == owner:
            result["renewed"] = True
            spec.setdefault("acquireTime", stamp)
        else:
            if mine:
                result["taken_over"] = True
                result["forced"] = mine["expires_at"] > now
            if self.lease is not None and spec.get("holderIdentity") != owner:
                spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
            spec["acquireTime"] = stamp
        spec.update(holderIdentity=owner, leaseDurationSeconds=_duration(ttl), renewTime=stamp)
        # We (are about to) hold the lock: the state (origin, a rollback under way) is ours to write.
        origin = self.origin()
        if origin is None:
            origin = origin_share
        rolling_back = self.rolling_back() if rollback_to is None else rollback_to
        self._write(spec, self._state_annotations(origin, rolling_back))
        result.update(changed=True, lock=describe(self.lock(), now), origin_share=self.origin(),
                      rolling_back=self.rolling_back())
        return result

    def _check_renewable(self, owner, mine, now):
        if mine is None:
            raise LockLost("the rollout lock of '%s' is gone (released, or removed by an operator): stopping without "
                           "touching the weights" % owner)
        if mine["owner"] != owner:
            seen = (describe_lock_refusal(mine, now) if mine["expires_at"] > now else
                    "the Lease shows the expired lock of '%s'" % mine["owner"])
            raise LockLost("the rollout lock of '%s' was taken over: %s; stopping without touching the weights"
                           % (owner, seen), describe(mine, now))

    def _lost(self, owner, renew_only, now, why):
        winner = self.lock()
        if renew_only or winner is None or winner["owner"] == owner:
            raise LockLost("the rollout lock of '%s' was lost (%s)%s; stopping without touching the weights"
                           % (owner, why, (": it is now held by '%s'" % winner["owner"]) if winner else ""),
                           describe(winner, now))
        raise LockHeld(describe(winner, now), now)

    def release(self, owner, force=False, keep_origin=False):
        """Give the lock back: clear the holder (the Lease stays with the state when ``keep_origin`` and there is
        state), else delete the Lease. Raises LockHeld for another owner's live lock unless ``force``.
        Returns ``{changed, forced, previous, origin_share, rolling_back}``."""
        now = self.clock()
        previous = describe(self.lock(), now)
        forced = False
        for attempt in range(ATTEMPTS):
            now = self.clock()
            mine = self.lock()
            if mine and mine["owner"] != owner and mine["expires_at"] > now and not force:
                raise LockHeld(describe(mine, now), now)
            forced = forced or bool(mine and mine["owner"] != owner and mine["expires_at"] > now)
            try:
                changed = self._release_once(mine, keep_origin)
            except _Conflict:
                self._reread()
                if attempt == ATTEMPTS - 1:
                    raise LockFailure("Cannot release the rollout lock '%s': the Lease changed under every one of %d writes"
                                      % (self.lease_name, ATTEMPTS))
                continue
            return {"changed": changed, "forced": forced, "previous": previous, "origin_share": self.origin(),
                    "rolling_back": self.rolling_back()}
        raise AssertionError("unreachable")   # pragma: no cover

    def _release_once(self, mine, keep_origin):
        if self.lease is None:
            return False
        origin, rolling_back = (self.origin(), self.rolling_back()) if keep_origin else (None, None)
        if origin is None and rolling_back is None:
            self._delete()
            return True
        if mine is None:
            return False         # released already; the state stays
        spec = dict(self.lease.get("spec") or {})
        for key in ("holderIdentity", "acquireTime", "renewTime"):
            spec.pop(key, None)
        self._write(spec, self._state_annotations(origin, rolling_back))
        return True


def renew_k8s_lock(api, namespace, name, owner, ttl, clock=None):
    """Renew the lock ``owner`` holds (a rollout's re-check before a weight change): the lock as returned by
    ``describe``. LockLost when it is gone or another owner's."""
    store = K8sRolloutLock(api, namespace, name, clock=clock).load()
    out = store.acquire(owner, ttl, renew_only=True)
    return out["lock"]
