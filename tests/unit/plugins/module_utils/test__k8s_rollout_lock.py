# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""K8sRolloutLock: the rollout lock and state as a coordination.k8s.io/v1 Lease, against a fake API server that keeps
resourceVersions as the real one does (PUT with a stale resourceVersion, POST of an existing name and DELETE with a
stale precondition answer 409)."""

from __future__ import annotations

import copy

import pytest

from ansible_collections.mixedrun.kong.plugins.module_utils import _k8s_rollout_lock as k8slock
from ansible_collections.mixedrun.kong.plugins.module_utils._k8s_binding import K8sBindingError
from ansible_collections.mixedrun.kong.plugins.module_utils._rollout import LockHeld, LockLost, RolloutError
from ansible_collections.mixedrun.kong.plugins.module_utils._rollout_lock import LockFailure, RolloutLock

NOW = 1796464800.0            # 2026-12-05T10:00:00Z
NS = "shop-ns"
PATH = "/apis/coordination.k8s.io/v1/namespaces/shop-ns/leases/mixedrun-rollout-shop"
COLLECTION = "/apis/coordination.k8s.io/v1/namespaces/shop-ns/leases"


class FakeLeaseApi:
    """Leases by path; ``before_write`` runs once before the next write is applied (another job racing us)."""

    def __init__(self):
        self.leases = {}
        self.version = 100
        self.writes = []
        self.before_write = None

    def _bump(self, obj):
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        return obj

    def put_lease(self, holder=None, renew=NOW, duration=60, annotations=None, transitions=0):
        spec = {"leaseTransitions": transitions}
        if holder:
            spec.update(holderIdentity=holder, leaseDurationSeconds=duration, acquireTime=k8slock.format_micro_time(renew),
                        renewTime=k8slock.format_micro_time(renew))
        meta = {"name": "mixedrun-rollout-shop", "namespace": NS, "uid": "uid-%d" % (self.version + 1)}
        if annotations:
            meta["annotations"] = dict(annotations)
        self.leases[PATH] = self._bump({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": spec})
        return self.leases[PATH]

    def lease(self):
        return self.leases.get(PATH)

    def request(self, method, path, query=None, body=None, content_type=None):  # pylint: disable=unused-argument
        if method == "GET":
            return copy.deepcopy(self.leases.get(path))
        self.writes.append((method, path))
        if self.before_write:
            hook, self.before_write = self.before_write, None
            hook()
        if method == "POST":
            key = path + "/" + body["metadata"]["name"]
            if key in self.leases:
                raise K8sBindingError("POST %s: HTTP 409: already exists" % path, status=409)
            obj = copy.deepcopy(body)
            obj["metadata"]["uid"] = "uid-%d" % (self.version + 1)
            self.leases[key] = self._bump(obj)
            return copy.deepcopy(obj)
        current = self.leases.get(path)
        if method == "PUT":
            if current is None:
                raise K8sBindingError("PUT %s: HTTP 404: not found" % path, status=404)
            if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                raise K8sBindingError("PUT %s: HTTP 409: the object has been modified" % path, status=409)
            obj = copy.deepcopy(body)
            obj["metadata"]["uid"] = current["metadata"]["uid"]
            self.leases[path] = self._bump(obj)
            return copy.deepcopy(obj)
        if method == "DELETE":
            if current is None:
                return None
            wanted = ((body or {}).get("preconditions") or {}).get("resourceVersion")
            if wanted and wanted != current["metadata"]["resourceVersion"]:
                raise K8sBindingError("DELETE %s: HTTP 409: precondition failed" % path, status=409)
            del self.leases[path]
            return {"kind": "Status", "status": "Success"}
        raise AssertionError(method)


@pytest.fixture
def api():
    return FakeLeaseApi()


def store(api, now=NOW, **kwargs):
    return k8slock.K8sRolloutLock(api, NS, "shop", clock=lambda: now, **kwargs).load()


def test_same_public_interface_as_rollout_lock():
    for name in ("load", "current", "origin", "rolling_back", "snapshot", "acquire", "release", "lock", "upstream_tags"):
        assert hasattr(k8slock.K8sRolloutLock, name) and hasattr(RolloutLock, name)
    assert k8slock.LockFailure is LockFailure


def test_micro_time_round_trip_and_lease_names():
    assert k8slock.format_micro_time(NOW) == "2026-12-05T10:00:00.000000Z"
    assert k8slock.format_micro_time(NOW + 0.25) == "2026-12-05T10:00:00.250000Z"
    assert k8slock.parse_micro_time("2026-12-05T10:00:00.250000Z") == NOW + 0.25
    assert k8slock.parse_micro_time("2026-12-05T11:00:00+01:00") == NOW
    assert k8slock.parse_micro_time("yesterday") is None and k8slock.parse_micro_time(None) is None
    assert k8slock.lease_name("shop") == "mixedrun-rollout-shop"
    with pytest.raises(ValueError, match="kubernetes.name"):
        k8slock.lease_name("Shop_1")
    with pytest.raises(ValueError, match="kubernetes.namespace"):
        k8slock.K8sRolloutLock(None, "Bad NS", "shop")


def test_acquire_a_free_lock_creates_the_lease(api):
    lock = store(api)
    out = lock.acquire("job-1@ctl", 90.5, origin_share=0)
    assert out["changed"] is True and out["renewed"] is False and out["taken_over"] is False and out["previous"] is None
    assert out["lock"]["owner"] == "job-1@ctl" and out["lock"]["expires_at"] == int(NOW) + 91 and out["origin_share"] == 0.0
    assert out["lock"]["tag"] == "mixedrun-lock:job-1@ctl:%d" % (NOW + 91) and out["lock"]["id"] and out["lock"]["legacy"] is False
    assert api.writes == [("POST", COLLECTION)]
    lease = api.lease()
    assert lease["spec"]["holderIdentity"] == "job-1@ctl" and lease["spec"]["leaseDurationSeconds"] == 91
    assert lease["spec"]["renewTime"] == lease["spec"]["acquireTime"] == "2026-12-05T10:00:00.000000Z"
    assert lease["metadata"]["annotations"] == {"mixedrun.kong/origin-share": "0"}
    assert "resourceVersion" not in api.writes[0] and lock.calls[0] == {"method": "GET", "path": PATH, "status": 404}
    snap = store(api).snapshot(NOW + 1)
    assert snap["lock"]["expires_in"] == 90 and snap["origin_share"] == 0.0 and snap["rolling_back"] is None
    assert snap["upstream_tags"] == []


def test_ttl_below_one_second_is_one_second(api):
    store(api).acquire("job-1@ctl", 0.2)
    assert api.lease()["spec"]["leaseDurationSeconds"] == 1


def test_live_lock_of_another_owner_is_refused_naming_it(api):
    api.put_lease("job-9@ctl", renew=NOW - 10, duration=60)
    with pytest.raises(LockHeld) as err:
        store(api).acquire("job-1@ctl", 60)
    assert isinstance(err.value, Exception) and "locked by 'job-9@ctl'" in str(err.value)
    assert err.value.lock["expires_in"] == 50 and api.writes == []


def test_expired_lock_is_taken_over_keeping_the_dead_runs_origin(api):
    api.put_lease("dead@ctl", renew=NOW - 100, duration=60, annotations={"mixedrun.kong/origin-share": "5"}, transitions=2)
    out = store(api).acquire("job-2@ctl", 60, origin_share=40)
    assert out["taken_over"] is True and out["forced"] is False and out["previous"]["owner"] == "dead@ctl"
    assert out["previous"]["expired"] is True and out["origin_share"] == 5.0
    spec = api.lease()["spec"]
    assert spec["holderIdentity"] == "job-2@ctl" and spec["leaseTransitions"] == 3 and spec["acquireTime"] == spec["renewTime"]
    assert api.writes == [("PUT", PATH)]


def test_force_takes_over_a_live_lock_and_the_old_holders_renewal_is_lock_lost(api):
    api.put_lease("job-1@ctl", renew=NOW, duration=600)
    out = store(api).acquire("operator@ctl", 60, force=True)
    assert out["taken_over"] is True and out["forced"] is True and api.lease()["spec"]["holderIdentity"] == "operator@ctl"
    with pytest.raises(LockLost) as err:
        k8slock.renew_k8s_lock(api, NS, "shop", "job-1@ctl", 60, clock=lambda: NOW)
    assert "taken over" in str(err.value) and "locked by 'operator@ctl'" in str(err.value)
    assert api.lease()["spec"]["holderIdentity"] == "operator@ctl" and len(api.writes) == 1


def test_renew_keeps_the_acquire_time_and_moves_the_renew_time(api):
    api.put_lease("job-1@ctl", renew=NOW - 30, duration=60, annotations={"mixedrun.kong/origin-share": "0"})
    lock = k8slock.renew_k8s_lock(api, NS, "shop", "job-1@ctl", 120, clock=lambda: NOW)
    assert lock["owner"] == "job-1@ctl" and lock["expires_at"] == int(NOW) + 120
    spec = api.lease()["spec"]
    assert spec["acquireTime"] == k8slock.format_micro_time(NOW - 30) and spec["renewTime"] == k8slock.format_micro_time(NOW)
    assert spec["leaseTransitions"] == 0 and api.lease()["metadata"]["annotations"] == {"mixedrun.kong/origin-share": "0"}


def test_a_holder_renews_its_own_expired_lock_that_nobody_took(api):
    api.put_lease("job-1@ctl", renew=NOW - 300, duration=60)
    out = store(api).acquire("job-1@ctl", 60, renew_only=True)
    assert out["renewed"] is True and out["taken_over"] is False and out["lock"]["expired"] is False


@pytest.mark.parametrize("existing, words", [
    (None, "is gone"),
    ({"holder": None}, "is gone"),
    ({"holder": "job-2@ctl", "renew": NOW}, "locked by 'job-2@ctl'"),
    ({"holder": "job-2@ctl", "renew": NOW - 300}, "the expired lock of 'job-2@ctl'"),
])
def test_renew_only_when_lost_fails_and_writes_nothing(api, existing, words):
    if existing is not None:
        api.put_lease(existing["holder"], renew=existing.get("renew", NOW))
    with pytest.raises(LockLost) as err:
        store(api).acquire("job-1@ctl", 60, renew_only=True, force=True)
    assert words in str(err.value) and api.writes == []


def test_race_on_create_exactly_one_wins_the_loser_names_the_holder(api):
    lock = store(api)
    api.before_write = lambda: api.put_lease("job-3@ctl", renew=NOW, duration=600)
    with pytest.raises(LockHeld) as err:
        lock.acquire("job-2@ctl", 60)
    assert "locked by 'job-3@ctl'" in str(err.value) and api.lease()["spec"]["holderIdentity"] == "job-3@ctl"
    assert api.writes == [("POST", COLLECTION)]


def test_race_on_takeover_of_an_expired_lock_409_then_refused(api):
    api.put_lease("dead@ctl", renew=NOW - 100)
    lock = store(api)
    api.before_write = lambda: api.put_lease("job-3@ctl", renew=NOW, duration=600)
    with pytest.raises(LockHeld) as err:
        lock.acquire("job-2@ctl", 60)
    assert "job-3@ctl" in str(err.value) and api.lease()["spec"]["holderIdentity"] == "job-3@ctl"
    assert [m for m, _p in api.writes] == ["PUT"]


def test_renewal_racing_a_forced_takeover_gets_409_and_never_overwrites(api):
    api.put_lease("job-1@ctl", renew=NOW, duration=600)
    lock = store(api)
    api.before_write = lambda: api.put_lease("operator@ctl", renew=NOW, duration=600)
    with pytest.raises(LockLost) as err:
        lock.acquire("job-1@ctl", 60, renew_only=True)
    assert "another job took it at the same moment" in str(err.value) and "now held by 'operator@ctl'" in str(err.value)
    assert api.lease()["spec"]["holderIdentity"] == "operator@ctl"


def test_a_conflict_from_an_unrelated_edit_is_re_read_and_retried(api):
    api.put_lease("job-1@ctl", renew=NOW, duration=600)
    lock = store(api)

    def operator_labels_it():
        api.leases[PATH]["metadata"]["labels"] = {"team": "shop"}
        api._bump(api.leases[PATH])

    api.before_write = operator_labels_it
    out = lock.acquire("job-1@ctl", 60, renew_only=True)
    assert out["renewed"] is True and [m for m, _p in api.writes] == ["PUT", "PUT"]
    assert api.lease()["metadata"]["labels"]["team"] == "shop" and api.lease()["spec"]["leaseDurationSeconds"] == 60


def test_bad_input_is_refused_before_any_write(api):
    with pytest.raises(RolloutError, match="rollback_to must be 0 to 100"):
        store(api).acquire("job-1@ctl", 60, rollback_to=101)
    with pytest.raises(RolloutError, match="lock owner must be"):
        store(api).acquire("job 1", 60)
    assert api.writes == []


def test_release_keep_origin_clears_the_holder_and_keeps_the_state(api):
    api.put_lease("job-1@ctl", renew=NOW, annotations={"mixedrun.kong/origin-share": "0", "mixedrun.kong/rolling-back": "10"})
    out = store(api).release("job-1@ctl", keep_origin=True)
    assert out["changed"] is True and out["forced"] is False and out["previous"]["owner"] == "job-1@ctl"
    assert out["origin_share"] == 0.0 and out["rolling_back"] == 10.0
    lease = api.lease()
    assert "holderIdentity" not in lease["spec"] and "renewTime" not in lease["spec"]
    assert lease["metadata"]["annotations"]["mixedrun.kong/rolling-back"] == "10"
    again = store(api)
    assert again.snapshot(NOW)["lock"] is None and again.origin() == 0.0
    assert again.release("job-1@ctl", keep_origin=True)["changed"] is False
    # a new rollout resumes from the recorded origin
    assert store(api).acquire("job-2@ctl", 60, origin_share=50)["origin_share"] == 0.0
    out = store(api).release("job-2@ctl")
    assert out["changed"] is True and out["origin_share"] is None and api.lease() is None
    assert store(api).release("job-2@ctl")["changed"] is False


def test_release_of_another_owners_live_lock_needs_force(api):
    api.put_lease("job-1@ctl", renew=NOW)
    with pytest.raises(LockHeld):
        store(api).release("me@ctl")
    assert api.writes == []
    out = store(api).release("me@ctl", force=True)
    assert out["changed"] is True and out["forced"] is True and api.lease() is None


def test_release_racing_a_takeover_re_reads_and_refuses(api):
    api.put_lease("job-1@ctl", renew=NOW - 300)               # expired: anyone may release or take it
    lock = store(api)
    api.before_write = lambda: api.put_lease("job-3@ctl", renew=NOW, duration=600)
    with pytest.raises(LockHeld) as err:
        lock.release("job-1@ctl")
    assert "job-3@ctl" in str(err.value) and api.lease()["spec"]["holderIdentity"] == "job-3@ctl"
    assert api.writes == [("DELETE", PATH)]


def test_check_mode_plans_without_writing(api):
    lock = store(api, check_mode=True)
    out = lock.acquire("job-1@ctl", 60, origin_share=0)
    assert out["lock"]["owner"] == "job-1@ctl" and out["origin_share"] == 0.0 and api.writes == []
    assert lock.calls[-1] == {"method": "POST", "path": COLLECTION, "status": None, "check_mode": True}


def test_a_lease_edited_by_hand_reads_as_expired_and_is_replaceable(api):
    api.put_lease("someone", renew=NOW)
    api.leases[PATH]["spec"].pop("renewTime")
    api.leases[PATH]["spec"].pop("acquireTime")
    lock = store(api)
    assert lock.lock()["expires_at"] == 0
    assert lock.acquire("job-1@ctl", 60)["taken_over"] is True


def test_other_api_errors_propagate(api):
    def boom(*_args, **_kwargs):
        raise K8sBindingError("POST: HTTP 403: forbidden", status=403)

    lock = store(api)
    api.request = boom
    with pytest.raises(K8sBindingError, match="403"):
        lock.acquire("job-1@ctl", 60)
