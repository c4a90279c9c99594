"""The rollout lock on a real Kong (traditional: contenders on different nodes; hybrid: the control plane).

(1) two acquires at the same instant, 100 rounds: exactly one wins each round;
(2) a contender whose Admin API writes are 1 s late still cannot also win (either way round);
(3) after a forced takeover the old holder's renewal is lock_lost and leaves the new holder's lock, also when the
    takeover lands between the holder's read and its write;
(4) writing the upstream's tags (PATCH, or a PUT that replaces the upstream like decK or kong_upstream) erases
    neither the lock nor the origin and rollback state;
(5) renewals do not change the upstream (its updated_at stays: no balancer rebuild, no health checker restart).

The contenders call the module's ``ensure_lock`` in-process, each with its own client. Run:
    PYTHONPATH=.tmp/collections:. .venv/bin/python -m pytest -p tests.lab.pytest_plugin tests/integration/test_rollout_lock_real.py
(with MIXEDRUN_LAB_JSON pointing at a running lab, or without to start one).
"""

import threading
import time

import pytest
import requests

from ansible_collections.mixedrun.kong.plugins.module_utils._kong_api import KongApiError, KongClient
from ansible_collections.mixedrun.kong.plugins.module_utils._rollout import LockHeld
from ansible_collections.mixedrun.kong.plugins.modules import kong_rollout_lock

UPSTREAM = "mixedrun-lock-test"
ROUNDS = 100


@pytest.fixture(scope="module")
def kong(lab):
    if lab.get("kong_engine", "real") != "real" or lab.get("kong_dbless") or lab.get("kong_mode") == "dbless":
        pytest.skip("the rollout lock needs a real Kong with a database (traditional or hybrid); this lab has %s %s"
                    % (lab.get("kong_engine"), lab.get("kong_mode")))
    urls = [u for u in (lab.get("admin_urls") or [lab["admin_url"]]) if u] or [lab["admin_url"]]
    return {"a": urls[0], "b": urls[-1], "mode": lab.get("kong_mode", "traditional")}


@pytest.fixture
def upstream(kong):
    url = kong["a"]
    resp = requests.put(url + "/upstreams/" + UPSTREAM, json={"tags": ["mixedrun-managed"]}, timeout=10)
    assert resp.status_code == 200, resp.text
    clear(url)
    yield resp.json()
    clear(url)
    requests.delete(url + "/upstreams/" + UPSTREAM, timeout=10)


def clear(url):
    """No lock, no state, no legacy tags."""
    uid = requests.get(url + "/upstreams/" + UPSTREAM, timeout=10).json()["id"]
    for name in ("mixedrun-lock.", "mixedrun-rollout."):
        requests.delete(url + "/consumers/" + name + uid, timeout=10)
    requests.patch(url + "/upstreams/" + UPSTREAM, json={"tags": ["mixedrun-managed"]}, timeout=10)


def params(owner, **extra):
    out = {"upstream": UPSTREAM, "state": "present", "owner": owner, "ttl": 120.0, "force": False, "origin_share": None,
           "settle": 0.5, "keep_origin": False, "rollback_to": None, "renew_only": False}
    out.update(extra)
    return out


params_for = params


def client(url, write_delay=0.0):
    c = KongClient(url, retries=0, timeout=20)
    if write_delay:
        send = c.request

        def late_request(method, path, body=None, params=None, url=None):
            if method.upper() != "GET":
                time.sleep(write_delay)
            return send(method, path, body=body, params=params, url=url)

        c.request = late_request
    return c


def inspect(url):
    return kong_rollout_lock.ensure_lock(client(url), params("inspector", state="inspected"))


def contend(contenders):
    """Run ``ensure_lock`` for each (client, owner) at the same instant; {owner: "won" | "refused" | error text}."""
    barrier = threading.Barrier(len(contenders))
    outcome = {}

    def run(c, owner):
        barrier.wait()
        try:
            result = kong_rollout_lock.ensure_lock(c, params(owner, origin_share=0))
            outcome[owner] = "won" if result.get("held") else "not held"
        except (LockHeld, kong_rollout_lock.LockFailure) as exc:
            outcome[owner] = "refused: %s" % exc
        except KongApiError as exc:  # pragma: no cover - reported in the assertion
            outcome[owner] = "error: %s" % exc

    threads = [threading.Thread(target=run, args=pair) for pair in contenders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcome


def test_1_two_acquires_at_the_same_instant_exactly_one_wins_100_times(kong, upstream):
    doubles, nobody = [], []
    started = time.time()
    for n in range(ROUNDS):
        clear(kong["a"])
        out = contend([(client(kong["a"]), "job-a-%d" % n), (client(kong["b"]), "job-b-%d" % n)])
        winners = [o for o, v in out.items() if v == "won"]
        if len(winners) > 1:
            doubles.append((n, out))
        if not winners:
            nobody.append((n, out))
        else:
            assert inspect(kong["a"])["lock"]["owner"] == winners[0]
    took = time.time() - started
    print("\n%d rounds on %s Kong in %.1f s (%.0f ms a round): %d with two winners, %d with none"
          % (ROUNDS, kong["mode"], took, 1000 * took / ROUNDS, len(doubles), len(nobody)))
    assert doubles == [] and nobody == [], (doubles[:3], nobody[:3])


@pytest.mark.parametrize("late", ["a", "b"])
def test_2_a_contender_whose_writes_are_one_second_late_cannot_also_win(kong, upstream, late):
    for n in range(3):
        clear(kong["a"])
        pair = [(client(kong["a"], 1.0 if late == "a" else 0), "%s-a-%d" % ("late" if late == "a" else "direct", n)),
                (client(kong["b"], 1.0 if late == "b" else 0), "%s-b-%d" % ("late" if late == "b" else "direct", n))]
        started = time.time()
        out = contend(pair)
        winners = [o for o, v in out.items() if v == "won"]
        assert len(winners) == 1, out
        assert inspect(kong["a"])["lock"]["owner"] == winners[0]
        loser = [v for o, v in out.items() if o not in winners][0]
        assert "locked by '%s'" % winners[0] in loser, out
        print("\nround %d (late %s): %s won, the other was refused, %.2f s" % (n, late, winners[0], time.time() - started))


def test_3_after_a_forced_takeover_the_old_holders_renewal_is_lock_lost(kong, upstream):
    old = client(kong["a"])
    kong_rollout_lock.ensure_lock(old, params("job-1@ctl", origin_share=0))
    forced = kong_rollout_lock.ensure_lock(client(kong["b"]), params("operator@ctl", force=True))
    assert forced["held"] is True and forced["taken_over"] is True
    with pytest.raises(kong_rollout_lock.LockFailure) as err:
        kong_rollout_lock.ensure_lock(old, params("job-1@ctl", renew_only=True))
    assert err.value.result["lock_lost"] is True and "operator@ctl" in str(err.value)
    seen = inspect(kong["a"])
    assert seen["lock"]["owner"] == "operator@ctl" and seen["lock"].get("id") == forced["lock"].get("id")
    assert seen["origin_share"] == 0.0


def test_3b_a_renewal_racing_a_forced_takeover_never_overwrites_it(kong, upstream):
    kong_rollout_lock.ensure_lock(client(kong["a"]), params("job-1@ctl"))
    holder = client(kong["a"])
    send = holder.request
    forced = {}

    def force_between_read_and_write(method, path, body=None, params=None, url=None):
        # the operator forces the lock after the holder has read it and before the holder's first write
        if method.upper() != "GET" and not forced:
            forced.update(kong_rollout_lock.ensure_lock(client(kong["b"]), params_for("operator@ctl", force=True)))
        return send(method, path, body=body, params=params, url=url)

    holder.request = force_between_read_and_write
    with pytest.raises(kong_rollout_lock.LockFailure) as err:
        kong_rollout_lock.ensure_lock(holder, params("job-1@ctl", renew_only=True))
    assert err.value.result.get("lock_lost") is True, str(err.value)
    seen = inspect(kong["a"])
    assert forced["held"] is True and seen["lock"]["owner"] == "operator@ctl"


def test_4_writing_the_upstreams_tags_erases_neither_lock_nor_state(kong, upstream):
    c = client(kong["a"])
    kong_rollout_lock.ensure_lock(c, params("job-1@ctl", origin_share=5))
    kong_rollout_lock.ensure_lock(c, params("job-1@ctl", rollback_to=1, renew_only=True))
    # what kong_upstream with tags, or a decK sync of the upstream, does
    assert requests.patch(kong["a"] + "/upstreams/" + UPSTREAM, json={"tags": ["deck-managed"]}, timeout=10).status_code == 200
    assert requests.put(kong["b"] + "/upstreams/" + UPSTREAM, json={"tags": ["other-writer"]}, timeout=10).status_code == 200
    seen = inspect(kong["b"])
    assert seen["lock"]["owner"] == "job-1@ctl" and not seen["lock"]["expired"]
    assert seen["origin_share"] == 5.0 and seen["rolling_back"] == 1.0
    assert seen["tags"] == ["other-writer"]
    renewed = kong_rollout_lock.ensure_lock(c, params("job-1@ctl", renew_only=True))
    assert renewed["held"] is True


def test_5_renewals_do_not_change_the_upstream(kong, upstream):
    c = client(kong["a"])
    kong_rollout_lock.ensure_lock(c, params("job-1@ctl", origin_share=0))
    before = requests.get(kong["a"] + "/upstreams/" + UPSTREAM, timeout=10).json()
    for _renewal in range(3):
        time.sleep(1.1)                       # updated_at has a resolution of one second
        kong_rollout_lock.ensure_lock(c, params("job-1@ctl", renew_only=True))
    kong_rollout_lock.ensure_lock(c, params("job-1@ctl", rollback_to=0, renew_only=True))
    kong_rollout_lock.ensure_lock(c, params("job-1@ctl", state="absent"))
    after = requests.get(kong["a"] + "/upstreams/" + UPSTREAM, timeout=10).json()
    assert after["updated_at"] == before["updated_at"] and after["tags"] == before["tags"]


def test_6_a_legacy_lock_tag_is_respected_and_migrated_once(kong, upstream):
    url = kong["a"]
    live = "mixedrun-lock:old-job@ctl:%d" % (time.time() + 300)
    requests.patch(url + "/upstreams/" + UPSTREAM, json={"tags": ["mixedrun-managed", live, "mixedrun-rollout-origin:0"]},
                   timeout=10)
    with pytest.raises(LockHeld):
        kong_rollout_lock.ensure_lock(client(url), params("job-1@ctl"))
    dead = "mixedrun-lock:old-job@ctl:%d" % (time.time() - 5)
    requests.patch(url + "/upstreams/" + UPSTREAM, json={"tags": ["mixedrun-managed", dead, "mixedrun-rollout-origin:0"]},
                   timeout=10)
    result = kong_rollout_lock.ensure_lock(client(url), params("job-1@ctl", origin_share=40))
    assert result["held"] and result["taken_over"] and result["origin_share"] == 0.0
    assert requests.get(url + "/upstreams/" + UPSTREAM, timeout=10).json()["tags"] == ["mixedrun-managed"]
