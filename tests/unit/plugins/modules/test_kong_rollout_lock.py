# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""kong_rollout_lock: acquire / refresh / refuse / take over / release / inspect, HTTP mocked with responses."""

from __future__ import annotations

import json
import time

import pytest
import responses

from ansible_collections.mixedrun.kong.plugins.modules import kong_rollout_lock

from kong_module_helpers import ADMIN, TOKEN, writes

NOW = 1767225600
UP = ADMIN + "/upstreams/shop"


@pytest.fixture(autouse=True)
def frozen_time(monkeypatch):
    monkeypatch.setattr(time, "time", lambda: float(NOW))
    monkeypatch.setattr(time, "sleep", lambda _s: None)


def upstream(tags):
    return {"id": "0c2b6b4e-5d5e-4d37-b0a6-0c9f7f4a6a11", "name": "shop", "tags": tags, "algorithm": "round-robin",
            "slots": 10000, "created_at": 1700000000, "updated_at": 1700000000}


class TagStore:
    """Answers GET/PATCH of the upstream from a tag list, like Kong does."""

    def __init__(self, mock, tags, steal_with=None):
        self.tags = list(tags) if tags is not None else None
        self.steal_with = steal_with
        mock.add_callback(responses.GET, UP, callback=self.get)
        mock.add_callback(responses.PATCH, UP, callback=self.patch)

    def get(self, _request):
        if self.tags is None:
            return 404, {}, json.dumps({"message": "Not found"})
        return 200, {}, json.dumps(upstream(self.tags))

    def patch(self, request):
        self.tags = json.loads(request.body)["tags"]
        if self.steal_with:           # another job writes right after us
            self.tags = [t for t in self.tags if not t.startswith("mixedrun-lock:")] + [self.steal_with]
        return 200, {}, json.dumps(upstream(self.tags))


def test_acquire_writes_lock_and_origin_keeping_other_tags(kong, run_module):
    store = TagStore(kong, ["mixedrun-managed"])
    result = run_module(kong_rollout_lock, {"upstream": "shop", "owner": "job-1@ctl", "ttl": 600, "origin_share": 0},
                        diff=True)
    assert result["changed"] is True and result["held"] is True
    assert store.tags == ["mixedrun-managed", "mixedrun-lock:job-1@ctl:%d" % (NOW + 600), "mixedrun-rollout-origin:0"]
    assert result["lock"]["owner"] == "job-1@ctl" and result["lock"]["expires_in"] == 600
    assert result["origin_share"] == 0.0
    assert result["diff"]["before"]["tags"] == ["mixedrun-managed"]
    assert [c["method"] for c in result["api_calls"]] == ["GET", "PATCH", "GET"]


def test_second_rollout_is_refused_naming_the_owner_and_nothing_is_written(kong, run_module):
    TagStore(kong, ["mixedrun-lock:job-1@ctl:%d" % (NOW + 300)])
    result = run_module(kong_rollout_lock, {"upstream": "shop", "owner": "job-2@ctl"})
    assert result["failed"] is True
    assert "locked by 'job-1@ctl'" in result["msg"] and "300 s from now" in result["msg"]
    assert "force=true" in result["msg"]
    assert result["locked_by"] == "job-1@ctl"
    assert writes(kong) == []


def test_same_owner_refreshes_and_keeps_the_first_origin(kong, run_module):
    store = TagStore(kong, ["mixedrun-lock:job-1@ctl:%d" % (NOW + 5), "mixedrun-rollout-origin:0.5"])
    result = run_module(kong_rollout_lock, {"upstream": "shop", "owner": "job-1@ctl", "ttl": 100, "origin_share": 40})
    assert result["changed"] is True and result["held"] is True and result["taken_over"] is False
    assert result["origin_share"] == 0.5
    assert "mixedrun-lock:job-1@ctl:%d" % (NOW + 100) in store.tags


def test_stale_lock_is_taken_over(kong, run_module):
    store = TagStore(kong, ["mixedrun-lock:dead-job@ctl:%d" % (NOW - 1)])
    result = run_module(kong_rollout_lock, {"upstream": "shop", "owner": "job-2@ctl"})
    assert result["changed"] is True and result["taken_over"] is True
    assert result["previous"]["owner"] == "dead-job@ctl" and result["previous"]["expired"] is True
    assert store.tags == ["mixedrun-lock:job-2@ctl:%d" % (NOW + 1800)]


def test_force_takes_over_a_live_lock(kong, run_module):
    store = TagStore(kong, ["mixedrun-lock:job-1@ctl:%d" % (NOW + 999)])
    result = run_module(kong_rollout_lock, {"upstream": "shop", "owner": "operator@ctl", "force": True})
    assert result["taken_over"] is True and store.tags == ["mixedrun-lock:operator@ctl:%d" % (NOW + 1800)]


def test_losing_a_race_fails_without_touching_the_winner(kong, run_module):
    winner = "mixedrun-lock:job-9@ctl:%d" % (NOW + 1800)
    store = TagStore(kong, [], steal_with=winner)
    result = run_module(kong_rollout_lock, {"upstream": "shop", "owner": "job-1@ctl"})
    assert result["failed"] is True and "lost the race" in result["msg"] and "job-9@ctl" in result["msg"]
    assert store.tags == [winner] and len(writes(kong)) == 1


def test_release_removes_lock_and_origin_or_keeps_origin(kong, run_module):
    store = TagStore(kong, ["x", "mixedrun-lock:job-1@ctl:%d" % (NOW + 50), "mixedrun-rollout-origin:0"])
    result = run_module(kong_rollout_lock, {"upstream": "shop", "owner": "job-1@ctl", "state": "absent", "keep_origin": True})
    assert result["changed"] is True and store.tags == ["x", "mixedrun-rollout-origin:0"] and result["origin_share"] == 0.0
    result = run_module(kong_rollout_lock, {"upstream": "shop", "owner": "job-1@ctl", "state": "absent"})
    assert result["changed"] is True and store.tags == ["x"] and result["lock"] is None and result["held"] is False
    result = run_module(kong_rollout_lock, {"upstream": "shop", "owner": "job-1@ctl", "state": "absent"})
    assert result["changed"] is False


def test_release_of_another_owners_live_lock_needs_force(kong, run_module):
    store = TagStore(kong, ["mixedrun-lock:job-1@ctl:%d" % (NOW + 50)])
    result = run_module(kong_rollout_lock, {"upstream": "shop", "owner": "me@ctl", "state": "absent"})
    assert result["failed"] is True and "Cannot release" in result["msg"] and "job-1@ctl" in result["msg"]
    result = run_module(kong_rollout_lock, {"upstream": "shop", "owner": "me@ctl", "state": "absent", "force": True})
    assert result["changed"] is True and store.tags == []


def test_info_reads_only(kong, run_module):
    TagStore(kong, ["mixedrun-lock:job-1@ctl:%d" % (NOW + 50)])
    result = run_module(kong_rollout_lock, {"upstream": "shop", "owner": "me@ctl", "state": "inspected"})
    assert result["changed"] is False and result["held"] is False and result["lock"]["owner"] == "job-1@ctl"
    assert writes(kong) == []


def test_check_mode_plans_without_writing(kong, run_module):
    TagStore(kong, [])
    result = run_module(kong_rollout_lock, {"upstream": "shop", "owner": "job-1@ctl"}, check_mode=True)
    assert result["changed"] is True and result["lock"]["owner"] == "job-1@ctl"
    assert writes(kong) == [] and result["api_calls"][-1]["check_mode"] is True


def test_missing_upstream_and_bad_owner_fail_clearly(kong, run_module):
    TagStore(kong, None)
    result = run_module(kong_rollout_lock, {"upstream": "shop", "owner": "job-1@ctl"})
    assert result["failed"] is True and "upstream 'shop' not found" in result["msg"]
    result = run_module(kong_rollout_lock, {"upstream": "shop", "owner": "job 1:ctl"})
    assert result["failed"] is True and "lock owner must be printable text" in result["msg"]
    result = run_module(kong_rollout_lock, {"upstream": "shop", "ttl": 0})
    assert result["failed"] is True and "ttl must be more than 0" in result["msg"]
    assert writes(kong) == []


def test_default_owner_is_user_at_host_and_token_never_leaks(kong, run_module):
    store = TagStore(kong, [])
    result = run_module(kong_rollout_lock, {"upstream": "shop", "admin_token": TOKEN})
    owner = result["owner"]
    assert "@" in owner and ":" not in owner and " " not in owner
    assert any(t.startswith("mixedrun-lock:%s:" % owner) for t in store.tags)
    assert TOKEN not in result.raw
    assert kong.calls[0].request.headers["Kong-Admin-Token"] == TOKEN


def test_renewing_our_live_lock_needs_no_read_back(kong, run_module):
    store = TagStore(kong, ["mixedrun-lock:job-1@ctl:%d" % (NOW + 5)])
    result = run_module(kong_rollout_lock, {"upstream": "shop", "owner": "job-1@ctl", "ttl": 100, "renew_only": True})
    assert result["held"] is True and store.tags == ["mixedrun-lock:job-1@ctl:%d" % (NOW + 100)]
    assert [c["method"] for c in result["api_calls"]] == ["GET", "PATCH"]


def test_renewing_our_expired_lock_reads_it_back(kong, run_module):
    TagStore(kong, ["mixedrun-lock:job-1@ctl:%d" % (NOW - 5)], steal_with="mixedrun-lock:job-2@ctl:%d" % (NOW + 900))
    result = run_module(kong_rollout_lock, {"upstream": "shop", "owner": "job-1@ctl", "renew_only": True})
    assert result["failed"] is True and "lost the race" in result["msg"] and "job-2@ctl" in result["msg"]


@pytest.mark.parametrize("tags, words", [
    ([], "is gone"),
    (["mixedrun-lock:job-2@ctl:%d" % (NOW + 300)], "locked by 'job-2@ctl'"),
    (["mixedrun-lock:job-2@ctl:%d" % (NOW - 300)], "the expired lock of 'job-2@ctl'"),
])
def test_renew_only_fails_with_lock_lost_and_writes_nothing(kong, run_module, tags, words):
    store = TagStore(kong, tags)
    result = run_module(kong_rollout_lock, {"upstream": "shop", "owner": "job-1@ctl", "renew_only": True, "force": True})
    assert result["failed"] is True and result["lock_lost"] is True and result["held"] is False
    assert "Cannot renew the rollout lock on upstream 'shop'" in result["msg"] and words in result["msg"]
    assert writes(kong) == [] and store.tags == tags


def test_rollback_under_way_is_recorded_and_released(kong, run_module):
    store = TagStore(kong, ["mixedrun-lock:job-1@ctl:%d" % (NOW + 50), "mixedrun-rollout-origin:0"])
    result = run_module(kong_rollout_lock, {"upstream": "shop", "owner": "job-1@ctl", "rollback_to": 0, "renew_only": True})
    assert result["rolling_back"] == 0.0 and "mixedrun-rollout-rollback:0" in store.tags
    seen = run_module(kong_rollout_lock, {"upstream": "shop", "owner": "other@ctl", "state": "inspected"})
    assert seen["rolling_back"] == 0.0 and seen["origin_share"] == 0.0 and seen["changed"] is False
    result = run_module(kong_rollout_lock, {"upstream": "shop", "owner": "job-1@ctl", "state": "absent"})
    assert result["rolling_back"] is None and store.tags == []
    result = run_module(kong_rollout_lock, {"upstream": "shop", "owner": "job-1@ctl", "rollback_to": 101})
    assert result["failed"] is True and "rollback_to must be 0 to 100" in result["msg"]
