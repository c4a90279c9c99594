# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""kong_rollout_lock: the lock consumer (create / 409 / release / renew / takeover / force), the state consumer and
the legacy upstream tags, HTTP mocked with responses by a small Kong that keeps consumers unique like Kong does; and
binding=kubernetes (the Lease) with a fake API server that keeps resourceVersions."""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest
import responses

from ansible_collections.mixedrun.kong.plugins.module_utils import _k8s_rollout_lock, _rollout_lock
from ansible_collections.mixedrun.kong.plugins.module_utils._k8s_binding import K8sBindingError
from ansible_collections.mixedrun.kong.plugins.module_utils._kong_api import KongClient
from ansible_collections.mixedrun.kong.plugins.modules import kong_rollout_lock

from kong_module_helpers import ADMIN, TOKEN, writes

NOW = 1767225600
UID = "0c2b6b4e-5d5e-4d37-b0a6-0c9f7f4a6a11"
LOCK = "mixedrun-lock." + UID
STATE = "mixedrun-rollout." + UID


@pytest.fixture(autouse=True)
def frozen_time(monkeypatch):
    monkeypatch.setattr(time, "time", lambda: float(NOW))
    monkeypatch.setattr(time, "sleep", lambda _s: None)


def lock_tags(owner, expiry):
    return ["mixedrun-lock", "mixedrun-upstream:" + UID, "mixedrun-lock:%s:%d" % (owner, expiry)]


class FakeKong:
    """The upstream and /consumers as Kong answers them: unique username, 409 on a duplicate, 404 for a PATCH of a
    missing id, 204 for any DELETE. ``on_post`` runs before a POST is applied (another job racing us)."""

    def __init__(self, mock, tags=(), upstream=True):
        self.tags = list(tags)
        self.upstream = upstream
        self.consumers = {}
        self.on_post = None
        self.upstream_writes = 0
        up = re.compile(re.escape(ADMIN) + r"/upstreams/[^/?]+$")
        one = re.compile(re.escape(ADMIN) + r"/consumers/[^/?]+$")
        mock.add_callback(responses.GET, up, callback=self.get_upstream)
        mock.add_callback(responses.PATCH, up, callback=self.patch_upstream)
        mock.add_callback(responses.GET, one, callback=self.get_consumer)
        mock.add_callback(responses.PATCH, one, callback=self.patch_consumer)
        mock.add_callback(responses.PUT, one, callback=self.put_consumer)
        mock.add_callback(responses.DELETE, one, callback=self.delete_consumer)
        mock.add_callback(responses.POST, ADMIN + "/consumers", callback=self.post_consumer)

    def _up(self):
        return {"id": UID, "name": "shop", "tags": self.tags, "updated_at": 1700000000 + self.upstream_writes}

    def get_upstream(self, request):
        if not self.upstream or request.path_url.rsplit("/", 1)[1] not in ("shop", UID):
            return 404, {}, json.dumps({"message": "Not found"})
        return 200, {}, json.dumps(self._up())

    def patch_upstream(self, request):
        self.tags = json.loads(request.body)["tags"]
        self.upstream_writes += 1
        return 200, {}, json.dumps(self._up())

    def find(self, key):
        for name, item in self.consumers.items():
            if key in (name, item["id"]):
                return item
        return None

    def add(self, username, tags, custom_id=None):
        item = {"id": str(uuid.uuid4()), "username": username, "custom_id": custom_id, "tags": list(tags),
                "created_at": NOW, "updated_at": NOW}
        self.consumers[username] = item
        return item

    def get_consumer(self, request):
        item = self.find(request.path_url.rsplit("/", 1)[1])
        return (200, {}, json.dumps(item)) if item else (404, {}, json.dumps({"message": "Not found", "code": 6}))

    def post_consumer(self, request):
        if self.on_post:
            hook, self.on_post = self.on_post, None
            hook()
        body = json.loads(request.body)
        if body["username"] in self.consumers:
            return 409, {}, json.dumps({"code": 5, "name": "unique constraint violation", "fields": {"username": body["username"]},
                                        "message": "UNIQUE violation detected on '{username=\"%s\"}'" % body["username"]})
        return 201, {}, json.dumps(self.add(body["username"], body.get("tags") or [], body.get("custom_id")))

    def patch_consumer(self, request):
        item = self.find(request.path_url.rsplit("/", 1)[1])
        if not item:
            return 404, {}, json.dumps({"message": "could not find the entity", "code": 6})
        item.update(json.loads(request.body))
        return 200, {}, json.dumps(item)

    def put_consumer(self, request):
        name = request.path_url.rsplit("/", 1)[1]
        item = self.find(name) or self.add(name, [])
        item["tags"] = json.loads(request.body)["tags"]
        return 200, {}, json.dumps(item)

    def delete_consumer(self, request):
        item = self.find(request.path_url.rsplit("/", 1)[1])
        if item:
            del self.consumers[item["username"]]
        return 204, {}, ""

    # -- views ------------------------------------------------------------------------------------------------
    def lock(self):
        item = self.consumers.get(LOCK)
        return [t for t in item["tags"] if t.startswith("mixedrun-lock:")][0] if item else None

    def state(self):
        item = self.consumers.get(STATE)
        return sorted(t for t in item["tags"] if t.startswith("mixedrun-rollout-")) if item else None


def run(run_module, **args):
    return run_module(kong_rollout_lock, dict({"upstream": "shop"}, **args))


# -- acquire --------------------------------------------------------------------------------------------------------

def test_acquire_creates_the_lock_consumer_and_the_state_never_touching_the_upstream(kong, run_module):
    store = FakeKong(kong, ["mixedrun-managed"])
    result = run_module(kong_rollout_lock, {"upstream": "shop", "owner": "job-1@ctl", "ttl": 600, "origin_share": 0},
                        diff=True)
    assert result["changed"] is True and result["held"] is True
    assert store.lock() == "mixedrun-lock:job-1@ctl:%d" % (NOW + 600)
    assert store.consumers[LOCK]["custom_id"].startswith("mixedrun-claim.")
    assert store.state() == ["mixedrun-rollout-origin:0"]
    assert store.tags == ["mixedrun-managed"] and store.upstream_writes == 0
    assert result["lock"]["owner"] == "job-1@ctl" and result["lock"]["expires_in"] == 600
    assert result["lock"]["id"] == store.consumers[LOCK]["id"] and result["lock"]["legacy"] is False
    assert result["origin_share"] == 0.0 and result["tags"] == ["mixedrun-managed"]
    assert result["diff"]["before"]["lock"] is None and result["diff"]["after"]["lock"]["owner"] == "job-1@ctl"
    assert [(m, p) for m, p, _b in writes(kong)] == [("POST", "/consumers"), ("PUT", "/consumers/" + STATE)]


def test_second_rollout_is_refused_naming_the_owner_and_nothing_is_written(kong, run_module):
    store = FakeKong(kong)
    store.add(LOCK, lock_tags("job-1@ctl", NOW + 300))
    result = run(run_module, owner="job-2@ctl")
    assert result["failed"] is True
    assert "locked by 'job-1@ctl'" in result["msg"] and "300 s from now" in result["msg"]
    assert "force=true" in result["msg"] and result["locked_by"] == "job-1@ctl"
    assert writes(kong) == []


def test_the_loser_of_a_simultaneous_create_gets_409_and_the_winner_stays(kong, run_module):
    store = FakeKong(kong)
    store.on_post = lambda: store.add(LOCK, lock_tags("job-9@ctl", NOW + 1800))
    result = run(run_module, owner="job-1@ctl", origin_share=0)
    assert result["failed"] is True and "locked by 'job-9@ctl'" in result["msg"]
    assert store.lock() == "mixedrun-lock:job-9@ctl:%d" % (NOW + 1800)
    assert store.state() is None                                # the loser writes no state
    assert [m for m, _p, _b in writes(kong)] == ["POST"]


def test_our_own_post_retried_after_a_lost_answer_is_recognised_by_its_claim(kong, run_module, monkeypatch):
    store = FakeKong(kong)
    real_post = KongClient.post

    def post_twice(client, path, body):
        real_post(client, path, body)          # applied, but the answer "got lost": the retry sees 409
        return real_post(client, path, body)

    monkeypatch.setattr(KongClient, "post", post_twice)
    result = run(run_module, owner="job-1@ctl")
    assert result["held"] is True and store.lock().startswith("mixedrun-lock:job-1@ctl:")


def test_same_owner_renews_in_place_by_id_and_keeps_the_first_origin(kong, run_module):
    store = FakeKong(kong)
    first = store.add(LOCK, lock_tags("job-1@ctl", NOW + 60))
    store.add(STATE, ["mixedrun-rollout", "mixedrun-rollout-origin:0.5"])
    result = run(run_module, owner="job-1@ctl", ttl=100, origin_share=40)
    assert result["changed"] is True and result["held"] is True and result["taken_over"] is False
    assert result["origin_share"] == 0.5 and store.lock() == "mixedrun-lock:job-1@ctl:%d" % (NOW + 100)
    assert store.consumers[LOCK]["id"] == first["id"]
    assert [(m, p) for m, p, _b in writes(kong)] == [("PATCH", "/consumers/" + first["id"]),
                                                     ("PUT", "/consumers/" + STATE)]


def test_a_lock_close_to_its_expiry_is_replaced_not_renewed_in_place(kong, run_module):
    store = FakeKong(kong)
    old = store.add(LOCK, lock_tags("job-1@ctl", NOW + 3))             # within RENEW_MARGIN
    result = run(run_module, owner="job-1@ctl", ttl=100, renew_only=True)
    assert result["held"] is True and store.consumers[LOCK]["id"] != old["id"]
    assert [(m, p) for m, p, _b in writes(kong)] == [("DELETE", "/consumers/" + old["id"]), ("POST", "/consumers")]


def test_a_renewal_that_lands_after_the_expiry_replaces_the_lock(kong, monkeypatch):
    store = FakeKong(kong)
    store.add(LOCK, lock_tags("job-1@ctl", NOW + 60))
    ticks = iter([NOW, NOW + 59])                # the PATCH took 59 s: someone may have judged the lock expired
    client = KongClient(ADMIN, retries=0)
    lock = _rollout_lock.RolloutLock(client, "shop", clock=lambda: next(ticks, NOW + 59)).load()
    out = lock.acquire("job-1@ctl", 100, renew_only=True)
    assert out["renewed"] is True and [c["method"] for c in client.calls][-3:] == ["PATCH", "DELETE", "POST"]


def test_stale_lock_is_taken_over_by_deleting_its_id_then_creating(kong, run_module):
    store = FakeKong(kong)
    old = store.add(LOCK, lock_tags("dead-job@ctl", NOW - 1))
    store.add(STATE, ["mixedrun-rollout", "mixedrun-rollout-origin:0"])
    result = run(run_module, owner="job-2@ctl")
    assert result["changed"] is True and result["taken_over"] is True
    assert result["previous"]["owner"] == "dead-job@ctl" and result["previous"]["expired"] is True
    assert store.lock() == "mixedrun-lock:job-2@ctl:%d" % (NOW + 1800)
    assert result["origin_share"] == 0.0 and store.state() == ["mixedrun-rollout-origin:0"]   # the dead run's origin
    assert [(m, p) for m, p, _b in writes(kong)][:2] == [("DELETE", "/consumers/" + old["id"]), ("POST", "/consumers")]


def test_expiry_takeover_race_two_contenders_exactly_one_wins(kong, run_module):
    store = FakeKong(kong)
    old = store.add(LOCK, lock_tags("dead-job@ctl", NOW - 1))

    def other_contender_first():
        # job-3 read the same expired lock, deleted it by id and created its own just before our POST
        store.consumers.pop(LOCK, None)
        store.add(LOCK, lock_tags("job-3@ctl", NOW + 1800))

    store.on_post = other_contender_first
    result = run(run_module, owner="job-2@ctl")
    assert result["failed"] is True and "locked by 'job-3@ctl'" in result["msg"]
    assert store.lock() == "mixedrun-lock:job-3@ctl:%d" % (NOW + 1800)
    # our DELETE named the expired lock's id, never the winner's
    assert [(m, p) for m, p, _b in writes(kong)] == [("DELETE", "/consumers/" + old["id"]), ("POST", "/consumers")]


def test_force_takes_over_a_live_lock_and_the_old_holders_renewal_is_lock_lost(kong, run_module):
    store = FakeKong(kong)
    old = store.add(LOCK, lock_tags("job-1@ctl", NOW + 999))
    result = run(run_module, owner="operator@ctl", force=True)
    assert result["taken_over"] is True and store.lock() == "mixedrun-lock:operator@ctl:%d" % (NOW + 1800)
    assert ("DELETE", "/consumers/" + old["id"], None) in writes(kong)
    before = len(writes(kong))
    result = run(run_module, owner="job-1@ctl", renew_only=True)
    assert result["failed"] is True and result["lock_lost"] is True and "taken over" in result["msg"]
    assert "locked by 'operator@ctl'" in result["msg"] and len(writes(kong)) == before
    assert store.lock() == "mixedrun-lock:operator@ctl:%d" % (NOW + 1800)


def test_a_renewal_racing_a_forced_takeover_gets_404_and_never_overwrites(kong):
    store = FakeKong(kong)
    store.add(LOCK, lock_tags("job-1@ctl", NOW + 999))
    client = KongClient(ADMIN, retries=0)
    lock = _rollout_lock.RolloutLock(client, "shop").load()
    # between our read and our PATCH an operator forced the lock: new entity, new id
    store.consumers.pop(LOCK)
    store.add(LOCK, lock_tags("operator@ctl", NOW + 1800))
    with pytest.raises(_rollout_lock.LockLost) as err:
        lock.acquire("job-1@ctl", 60, renew_only=True)
    assert "now held by 'operator@ctl'" in str(err.value)
    assert store.lock() == "mixedrun-lock:operator@ctl:%d" % (NOW + 1800)
    assert [c["method"] for c in client.calls if c["method"] != "GET"] == ["PATCH"]


# -- release --------------------------------------------------------------------------------------------------------

def test_release_deletes_the_lock_by_id_and_the_state_unless_keep_origin(kong, run_module):
    store = FakeKong(kong, ["x"])
    lock = store.add(LOCK, lock_tags("job-1@ctl", NOW + 50))
    store.add(STATE, ["mixedrun-rollout", "mixedrun-rollout-origin:0"])
    result = run(run_module, owner="job-1@ctl", state="absent", keep_origin=True)
    assert result["changed"] is True and store.lock() is None and store.state() == ["mixedrun-rollout-origin:0"]
    assert result["origin_share"] == 0.0 and ("DELETE", "/consumers/" + lock["id"], None) in writes(kong)
    result = run(run_module, owner="job-1@ctl", state="absent")
    assert result["changed"] is True and store.state() is None and result["lock"] is None and result["held"] is False
    result = run(run_module, owner="job-1@ctl", state="absent")
    assert result["changed"] is False
    assert store.tags == ["x"] and store.upstream_writes == 0


def test_release_removes_the_state_before_the_lock(kong, run_module):
    store = FakeKong(kong)
    lock = store.add(LOCK, lock_tags("job-1@ctl", NOW + 50))
    store.add(STATE, ["mixedrun-rollout", "mixedrun-rollout-origin:0"])
    run(run_module, owner="job-1@ctl", state="absent")
    assert [p for _m, p, _b in writes(kong)] == ["/consumers/" + STATE, "/consumers/" + lock["id"]]


def test_release_of_another_owners_live_lock_needs_force(kong, run_module):
    store = FakeKong(kong)
    store.add(LOCK, lock_tags("job-1@ctl", NOW + 50))
    result = run(run_module, owner="me@ctl", state="absent")
    assert result["failed"] is True and "Cannot release" in result["msg"] and "job-1@ctl" in result["msg"]
    assert writes(kong) == []
    result = run(run_module, owner="me@ctl", state="absent", force=True)
    assert result["changed"] is True and store.lock() is None


# -- inspect, check mode, bad input -----------------------------------------------------------------------------------

def test_inspected_reads_only(kong, run_module):
    store = FakeKong(kong)
    store.add(LOCK, lock_tags("job-1@ctl", NOW + 50))
    store.add(STATE, ["mixedrun-rollout", "mixedrun-rollout-origin:0", "mixedrun-rollout-rollback:10"])
    result = run(run_module, owner="me@ctl", state="inspected")
    assert result["changed"] is False and result["held"] is False and result["lock"]["owner"] == "job-1@ctl"
    assert result["origin_share"] == 0.0 and result["rolling_back"] == 10.0
    assert writes(kong) == []


def test_check_mode_plans_without_writing(kong, run_module):
    FakeKong(kong)
    result = run_module(kong_rollout_lock, {"upstream": "shop", "owner": "job-1@ctl", "origin_share": 0}, check_mode=True)
    assert result["changed"] is True and result["lock"]["owner"] == "job-1@ctl" and result["origin_share"] == 0.0
    assert writes(kong) == [] and result["api_calls"][-1]["check_mode"] is True


def test_missing_upstream_and_bad_input_fail_clearly_before_any_write(kong, run_module):
    FakeKong(kong, upstream=False)
    result = run(run_module, owner="job-1@ctl")
    assert result["failed"] is True and "upstream 'shop' not found" in result["msg"]
    result = run(run_module, owner="job 1:ctl")
    assert result["failed"] is True and "lock owner must be printable text" in result["msg"]
    result = run(run_module, ttl=0)
    assert result["failed"] is True and "ttl must be more than 0" in result["msg"]
    result = run(run_module, settle=-1)
    assert result["failed"] is True and "settle must be 0 or more" in result["msg"] and "no longer needed" in result["msg"]
    assert writes(kong) == []


def test_bad_rollback_to_fails_before_the_lock_is_taken(kong, run_module):
    store = FakeKong(kong)
    result = run(run_module, owner="job-1@ctl", rollback_to=101)
    assert result["failed"] is True and "rollback_to must be 0 to 100" in result["msg"]
    assert writes(kong) == [] and store.lock() is None


def test_settle_is_accepted_and_ignored(kong, run_module):
    FakeKong(kong)
    result = run(run_module, owner="job-1@ctl", settle=0.5)
    assert result["held"] is True and [c["method"] for c in result["api_calls"]].count("GET") == 3


def test_dbless_write_refusal_is_reported_clearly(kong, run_module):
    kong.add(responses.GET, ADMIN + "/upstreams/shop", json={"id": UID, "name": "shop", "tags": []})
    kong.add(responses.GET, re.compile(re.escape(ADMIN) + "/consumers/.*"), status=404, json={"message": "Not found"})
    kong.add(responses.POST, ADMIN + "/consumers", status=405,
             json={"code": 12, "name": "operation unsupported", "message": "cannot create 'consumers' entities when not using a database"})
    result = run(run_module, owner="job-1@ctl")
    assert result["failed"] is True and "DB-less" in result["msg"]


def test_default_owner_is_user_at_host_and_token_never_leaks(kong, run_module):
    store = FakeKong(kong)
    result = run(run_module, admin_token=TOKEN)
    owner = result["owner"]
    assert "@" in owner and ":" not in owner and " " not in owner
    assert store.lock().startswith("mixedrun-lock:%s:" % owner)
    assert TOKEN not in result.raw
    assert kong.calls[0].request.headers["Kong-Admin-Token"] == TOKEN


@pytest.mark.parametrize("existing, words", [
    (None, "is gone"),
    (("job-2@ctl", NOW + 300), "locked by 'job-2@ctl'"),
    (("job-2@ctl", NOW - 300), "the expired lock of 'job-2@ctl'"),
])
def test_renew_only_fails_with_lock_lost_and_writes_nothing(kong, run_module, existing, words):
    store = FakeKong(kong)
    if existing:
        store.add(LOCK, lock_tags(*existing))
    result = run(run_module, owner="job-1@ctl", renew_only=True, force=True)
    assert result["failed"] is True and result["lock_lost"] is True and result["held"] is False
    assert "Cannot renew the rollout lock on upstream 'shop'" in result["msg"] and words in result["msg"]
    assert writes(kong) == []


def test_rollback_under_way_is_recorded_and_released(kong, run_module):
    store = FakeKong(kong)
    store.add(LOCK, lock_tags("job-1@ctl", NOW + 50))
    store.add(STATE, ["mixedrun-rollout", "mixedrun-rollout-origin:0"])
    result = run(run_module, owner="job-1@ctl", rollback_to=0, renew_only=True)
    assert result["rolling_back"] == 0.0
    assert store.state() == ["mixedrun-rollout-origin:0", "mixedrun-rollout-rollback:0"]
    seen = run(run_module, owner="other@ctl", state="inspected")
    assert seen["rolling_back"] == 0.0 and seen["origin_share"] == 0.0 and seen["changed"] is False
    result = run(run_module, owner="job-1@ctl", state="absent")
    assert result["rolling_back"] is None and store.state() is None and store.lock() is None


# -- legacy tags on the upstream (collection 1.x) -------------------------------------------------------------------

def test_a_live_legacy_lock_of_another_owner_is_respected(kong, run_module):
    store = FakeKong(kong, ["mixedrun-lock:old-job@ctl:%d" % (NOW + 300)])
    result = run(run_module, owner="job-1@ctl")
    assert result["failed"] is True and "locked by 'old-job@ctl'" in result["msg"] and writes(kong) == []
    seen = run(run_module, owner="job-1@ctl", state="inspected")
    assert seen["lock"]["owner"] == "old-job@ctl" and seen["lock"]["legacy"] is True
    result = run(run_module, owner="job-1@ctl", renew_only=True)
    assert result["failed"] is True and result["lock_lost"] is True


def test_legacy_origin_and_rollback_move_into_the_state_and_leave_the_upstream_once(kong, run_module):
    store = FakeKong(kong, ["mixedrun-managed", "mixedrun-lock:dead-job:%d" % (NOW - 5), "mixedrun-rollout-origin:0",
                            "mixedrun-rollout-rollback:10"])
    result = run(run_module, owner="job-1@ctl")
    assert result["held"] is True and result["taken_over"] is True
    assert result["origin_share"] == 0.0 and result["rolling_back"] == 10.0
    assert store.state() == ["mixedrun-rollout-origin:0", "mixedrun-rollout-rollback:10"]
    assert store.tags == ["mixedrun-managed"] and store.upstream_writes == 1 and result["tags"] == ["mixedrun-managed"]
    # the state was written before the legacy tags went
    assert [p for _m, p, _b in writes(kong)] == ["/consumers", "/consumers/" + STATE, "/upstreams/" + UID]
    run(run_module, owner="job-1@ctl", ttl=60)
    assert store.upstream_writes == 1                              # renewals never write the upstream again


def test_our_own_legacy_lock_is_continued_as_a_consumer(kong, run_module):
    store = FakeKong(kong, ["mixedrun-lock:job-1@ctl:%d" % (NOW + 100), "mixedrun-rollout-origin:5"])
    result = run(run_module, owner="job-1@ctl", renew_only=True)
    assert result["held"] is True and result["origin_share"] == 5.0 and store.lock().startswith("mixedrun-lock:job-1@ctl:")
    assert store.tags == []


def test_force_release_clears_legacy_tags_too(kong, run_module):
    store = FakeKong(kong, ["keep", "mixedrun-lock:ghost@ctl:%d" % (NOW + 300), "mixedrun-rollout-origin:0"])
    result = run(run_module, owner="op@ctl", state="absent", force=True)
    assert result["changed"] is True and store.tags == ["keep"] and store.state() is None


# -- binding: kubernetes (a coordination.k8s.io/v1 Lease; the Kong Admin API is never used) ---------------------------

LEASES = "/apis/coordination.k8s.io/v1/namespaces/shop-ns/leases"
LEASE = LEASES + "/mixedrun-rollout-shop"


class FakeLeases:
    """The Lease as the API server keeps it: POST of an existing name, PUT with a stale resourceVersion and DELETE
    with a stale precondition answer 409. ``before_write`` runs once before the next write (another job racing)."""

    def __init__(self):
        self.lease = None
        self.version = 1
        self.writes = []
        self.before_write = None
        self.closed = 0
        self.auth = None

    def set(self, holder, renew, duration=60, annotations=None):
        self.version += 1
        stamp = _k8s_rollout_lock.format_micro_time(renew)
        self.lease = {"metadata": {"name": "mixedrun-rollout-shop", "namespace": "shop-ns", "uid": "uid-1",
                                   "resourceVersion": str(self.version), "annotations": dict(annotations or {})},
                      "spec": {"holderIdentity": holder, "leaseDurationSeconds": duration, "acquireTime": stamp, "renewTime": stamp}}

    def request(self, method, path, query=None, body=None, content_type=None):  # pylint: disable=unused-argument
        if method == "GET":
            return json.loads(json.dumps(self.lease)) if self.lease and path == LEASE else None
        self.writes.append((method, path))
        if self.before_write:
            hook, self.before_write = self.before_write, None
            hook()
        version = (self.lease or {}).get("metadata", {}).get("resourceVersion")
        if method == "POST" and self.lease is not None or method == "PUT" and body["metadata"].get("resourceVersion") != version:
            raise K8sBindingError("%s %s: HTTP 409: conflict" % (method, path), status=409)
        if method == "DELETE":
            self.lease = None
            return {}
        self.version += 1
        self.lease = json.loads(json.dumps(body))
        self.lease["metadata"].update(resourceVersion=str(self.version), uid="uid-1")
        return json.loads(json.dumps(self.lease))


class _ApiClient:
    def __init__(self, leases):
        self.leases = leases

    def close(self):
        self.leases.closed += 1


@pytest.fixture
def leases(monkeypatch):
    fake = FakeLeases()

    def build(auth):
        fake.auth = auth
        return _ApiClient(fake), "default", "fake"

    monkeypatch.setattr(kong_rollout_lock, "build_api_client", build)

    def make_api(client, timeout, secret):
        fake.timeout = timeout
        return client.leases

    monkeypatch.setattr(kong_rollout_lock, "K8sApi", make_api)
    return fake


def run_k8s(run_module, check_mode=False, diff=False, kubernetes=None, **args):
    k8s = dict({"namespace": "shop-ns", "kubeconfig": "/tmp/kubeconfig"}, **(kubernetes or {}))
    return run_module(kong_rollout_lock, dict({"upstream": "shop", "binding": "kubernetes", "kubernetes": k8s}, **args),
                      check_mode=check_mode, diff=diff)


def test_k8s_acquire_creates_the_lease_and_never_calls_kong(kong, leases, run_module):
    result = run_k8s(run_module, owner="job-1@ctl", ttl=90, origin_share=0)
    assert result["changed"] is True and result["held"] is True and result["binding"] == "kubernetes"
    assert result["lock"]["owner"] == "job-1@ctl" and result["lock"]["expires_at"] == NOW + 90 and result["lock"]["id"] == "uid-1"
    assert result["origin_share"] == 0.0 and result["rolling_back"] is None and result["tags"] == [] and result["taken_over"] is False
    assert leases.lease["spec"]["holderIdentity"] == "job-1@ctl" and leases.lease["spec"]["leaseDurationSeconds"] == 90
    assert leases.lease["metadata"]["annotations"] == {"mixedrun.kong/origin-share": "0"}
    assert [(c["method"], c["path"]) for c in result["api_calls"]] == [("GET", LEASE), ("POST", LEASES)]
    assert len(kong.calls) == 0 and leases.closed == 1 and leases.auth["kubeconfig"] == "/tmp/kubeconfig"


def test_k8s_admin_api_binding_reports_its_binding(kong, run_module):
    FakeKong(kong)
    assert run(run_module, owner="job-1@ctl")["binding"] == "admin_api"


def test_k8s_live_lock_of_another_owner_is_refused(kong, leases, run_module):
    leases.set("job-9@ctl", NOW - 10, 60)
    result = run_k8s(run_module, owner="job-1@ctl")
    assert result["failed"] is True and "Cannot acquire the rollout lock of 'shop'" in result["msg"]
    assert "locked by 'job-9@ctl'" in result["msg"] and result["locked_by"] == "job-9@ctl" and result["held"] is False
    assert leases.writes == [] and leases.closed == 1


def test_k8s_expired_lock_is_taken_over_and_force_takes_a_live_one(kong, leases, run_module):
    leases.set("dead@ctl", NOW - 100, 60, {"mixedrun.kong/origin-share": "5"})
    result = run_k8s(run_module, owner="job-2@ctl", origin_share=50)
    assert result["taken_over"] is True and result["previous"]["owner"] == "dead@ctl" and result["origin_share"] == 5.0
    result = run_k8s(run_module, owner="operator@ctl", force=True)
    assert result["taken_over"] is True and leases.lease["spec"]["holderIdentity"] == "operator@ctl"
    result = run_k8s(run_module, owner="job-2@ctl", renew_only=True)
    assert result["failed"] is True and result["lock_lost"] is True and "taken over" in result["msg"]
    assert "Cannot renew the rollout lock on upstream 'shop'" in result["msg"]
    assert leases.lease["spec"]["holderIdentity"] == "operator@ctl"


def test_k8s_renew_only_renews_and_fails_when_the_lease_is_gone(kong, leases, run_module):
    leases.set("job-1@ctl", NOW - 30, 60)
    result = run_k8s(run_module, owner="job-1@ctl", ttl=120, renew_only=True)
    assert result["held"] is True and result["lock"]["expires_at"] == NOW + 120 and result["changed"] is True
    leases.lease = None
    result = run_k8s(run_module, owner="job-1@ctl", renew_only=True)
    assert result["failed"] is True and result["lock_lost"] is True and "is gone" in result["msg"] and leases.lease is None


def test_k8s_race_on_create_the_loser_names_the_winner(kong, leases, run_module):
    leases.before_write = lambda: leases.set("job-3@ctl", NOW, 600)
    result = run_k8s(run_module, owner="job-2@ctl")
    assert result["failed"] is True and "locked by 'job-3@ctl'" in result["msg"]
    assert leases.lease["spec"]["holderIdentity"] == "job-3@ctl" and result["api_calls"][1]["status"] == 409


def test_k8s_release_keep_origin_then_release(kong, leases, run_module):
    leases.set("job-1@ctl", NOW, 60, {"mixedrun.kong/origin-share": "0"})
    result = run_k8s(run_module, owner="job-1@ctl", state="absent", keep_origin=True, diff=True)
    assert result["changed"] is True and result["held"] is False and result["lock"] is None and result["origin_share"] == 0.0
    assert "holderIdentity" not in leases.lease["spec"] and result["diff"]["before"]["lock"]["owner"] == "job-1@ctl"
    seen = run_k8s(run_module, owner="other@ctl", state="inspected")
    assert seen["changed"] is False and seen["origin_share"] == 0.0 and seen["lock"] is None
    result = run_k8s(run_module, owner="job-1@ctl", state="absent")
    assert result["changed"] is True and leases.lease is None and result["origin_share"] is None
    assert [w[0] for w in leases.writes] == ["PUT", "DELETE"]


def test_k8s_check_mode_writes_nothing(kong, leases, run_module):
    result = run_k8s(run_module, check_mode=True, owner="job-1@ctl", origin_share=0)
    assert result["changed"] is True and result["lock"]["owner"] == "job-1@ctl" and leases.writes == []
    assert result["api_calls"][-1]["check_mode"] is True


def test_k8s_bad_input_fails_before_connecting(kong, leases, run_module):
    result = run_module(kong_rollout_lock, {"upstream": "shop", "binding": "kubernetes", "owner": "job-1@ctl"})
    assert result["failed"] is True and "kubernetes.namespace is required with binding=kubernetes" in result["msg"]
    result = run_k8s(run_module, owner="job-1@ctl", kubernetes={"name": "Shop_A"})
    assert result["failed"] is True and "kubernetes.name must be" in result["msg"]
    assert leases.auth is None and len(kong.calls) == 0


def test_k8s_name_defaults_to_upstream_and_api_errors_are_reported(kong, leases, run_module):
    def forbidden(*_args, **_kwargs):
        raise K8sBindingError("GET %s: HTTP 403: leases is forbidden" % LEASE, status=403)

    leases.request = forbidden
    result = run_k8s(run_module, owner="job-1@ctl", kubernetes={"api_key": TOKEN})
    assert result["failed"] is True and result["status"] == 403 and "Lease in namespace shop-ns" in result["msg"]
    assert "forbidden" in result["msg"] and TOKEN not in result.raw and leases.closed == 1


def test_k8s_accepts_the_rollout_roles_shared_kubernetes_dict(kong, leases, run_module):
    shared = {"name": "shop", "route_name": "shop-route", "force_conflicts": True, "request_timeout": 7, "context": "kic"}
    result = run_k8s(run_module, owner="job-1@ctl", kubernetes=shared)
    assert result["held"] is True and leases.timeout == 7.0 and leases.auth["context"] == "kic"
    assert "route_name" not in leases.auth and len(kong.calls) == 0
