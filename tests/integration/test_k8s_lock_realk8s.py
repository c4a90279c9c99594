# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""kong_rollout_lock with binding=kubernetes against a REAL Kubernetes control plane (the kit in ../shared/realk8s, or
$MIXEDRUN_REALK8S_KIT), started here (``k8s-cluster.sh up`` in a temporary state directory of its own, on ports the
kit picks free, ``down`` at the end), so the API server's own resourceVersion checks decide every race: acquire,
renew, takeover, a create race and an update race (409 Conflict), keep_origin release and release, through the
module's code (``run_kubernetes``, and one task through ansible-playbook), with the Lease read back raw as
``kubectl get lease`` shows it (holderIdentity, leaseDurationSeconds, renewTime).

Skipped, with the reason printed, where the kit is absent.

Run: cd /work/main && PYTHONPATH=.:.tmp/collections .venv/bin/pytest -q -rs tests/integration/test_k8s_lock_realk8s.py
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess
import sys
import time

import pytest

kubernetes = pytest.importorskip("kubernetes")
yaml = pytest.importorskip("yaml")

from ansible_collections.mixedrun.kong.plugins.module_utils import _k8s_rollout_lock as k8slock  # noqa: E402
from ansible_collections.mixedrun.kong.plugins.module_utils._k8s_binding import K8sApi  # noqa: E402
from ansible_collections.mixedrun.kong.plugins.module_utils._k8s_discovery import build_api_client  # noqa: E402
from ansible_collections.mixedrun.kong.plugins.module_utils._rollout import LockHeld, LockLost  # noqa: E402
from ansible_collections.mixedrun.kong.plugins.module_utils._rollout_lock import LockFailure  # noqa: E402
from ansible_collections.mixedrun.kong.plugins.modules.kong_rollout_lock import run_kubernetes  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
KIT = os.environ.get("MIXEDRUN_REALK8S_KIT") or os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "realk8s"))
NS = "rollout-lock"
LEASE = "/apis/coordination.k8s.io/v1/namespaces/%s/leases/mixedrun-rollout-%%s" % NS


def _kit_reason():
    if not os.path.isfile(os.path.join(KIT, "k8s-cluster.sh")):
        return "the realk8s kit is absent (no %s/k8s-cluster.sh; set MIXEDRUN_REALK8S_KIT)" % KIT
    return None


class Cluster:
    def __init__(self, info):
        self.info = info
        self.api_client, _ns, _described = build_api_client({"kubeconfig": info["kubeconfig"]})
        self.api = K8sApi(self.api_client)

    def lease(self, name):
        """The Lease as the API server has it (what ``kubectl get lease -o json`` prints), None when absent."""
        return self.api.request("GET", LEASE % name)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = _kit_reason()
    if reason:
        print("SKIP: " + reason)
        pytest.skip(reason)
    state = str(tmp_path_factory.mktemp("realk8s-lock"))
    env = dict(os.environ, REALK8S_STATE=state)
    started = time.time()
    proc = subprocess.run([os.path.join(KIT, "k8s-cluster.sh"), "up"], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=240, check=False)
    if proc.returncode != 0:
        pytest.fail("k8s-cluster.sh up failed (exit %d): %s" % (proc.returncode, (proc.stderr or proc.stdout)[-2000:]))
    info = json.loads(proc.stdout[proc.stdout.index("{"):])
    print("realk8s up in %.1f s: %s" % (time.time() - started, info.get("server")))
    handle = None
    try:
        handle = Cluster(info)
        handle.api.request("POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
                           content_type=k8slock.BODY_TYPE)
        yield handle
    finally:
        if handle is not None:
            handle.api_client.close()
        down = subprocess.run([os.path.join(KIT, "k8s-cluster.sh"), "down"], env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=120, check=False)
        print("realk8s down: exit %d" % down.returncode)


def params(cluster, name, **overrides):
    base = dict(upstream=name, state="present", owner=None, ttl=1800.0, force=False, origin_share=None, settle=0.0,
                keep_origin=False, rollback_to=None, renew_only=False, binding="kubernetes",
                kubernetes=dict(name=None, namespace=NS, request_timeout=20.0, route_name=None, force_conflicts=False,
                                kubeconfig=cluster.info["kubeconfig"], context=None, host=None, api_key=None, ca_cert=None,
                                validate_certs=None))
    base.update(overrides)
    return base


def lock(cluster, name, clock=None, check_mode=False, **overrides):
    calls = []
    result = run_kubernetes(params(cluster, name, **overrides), check_mode, calls, clock=clock)
    return result, calls


def store(cluster, name, clock=None):
    return k8slock.K8sRolloutLock(cluster.api, NS, name, clock=clock).load()


def test_acquire_renew_release_as_kubectl_shows_it(cluster):
    result, calls = lock(cluster, "shop", check_mode=True, owner="job-1@ctl", origin_share=0)
    assert result["changed"] and result["lock"]["owner"] == "job-1@ctl" and calls[-1]["check_mode"] is True
    assert cluster.lease("shop") is None
    before = time.time()
    result, calls = lock(cluster, "shop", owner="job-1@ctl", ttl=90, origin_share=0)
    assert result["changed"] and result["held"] and result["taken_over"] is False and result["origin_share"] == 0.0
    assert [(c["method"], c["status"]) for c in calls] == [("GET", 404), ("POST", 201)]
    lease = cluster.lease("shop")
    spec = lease["spec"]
    assert spec["holderIdentity"] == "job-1@ctl" and spec["leaseDurationSeconds"] == 90
    renewed = k8slock.parse_micro_time(spec["renewTime"])
    assert before - 1 <= renewed <= time.time() + 1 and spec["acquireTime"] == spec["renewTime"]
    assert len(spec["renewTime"]) == len("2026-12-05T10:00:00.000000Z") and spec["renewTime"].endswith("Z")
    assert lease["metadata"]["annotations"]["mixedrun.kong/origin-share"] == "0"
    assert result["lock"]["id"] == lease["metadata"]["uid"]
    version = lease["metadata"]["resourceVersion"]

    def later():                          # the renewal happens 5 s "later"
        return time.time() + 5

    result, calls = lock(cluster, "shop", clock=later, owner="job-1@ctl", ttl=120, renew_only=True)
    assert result["held"] and result["lock"]["expires_in"] >= 119
    assert [c["method"] for c in calls] == ["GET", "PUT"]
    spec = cluster.lease("shop")["spec"]
    assert spec["leaseDurationSeconds"] == 120 and spec["acquireTime"] != spec["renewTime"]
    assert k8slock.parse_micro_time(spec["renewTime"]) >= renewed + 4
    assert cluster.lease("shop")["metadata"]["resourceVersion"] != version

    with pytest.raises(LockHeld) as err:                       # another job: refused, naming the holder
        lock(cluster, "shop", owner="job-2@ctl")
    assert "locked by 'job-1@ctl'" in str(err.value)

    result, calls = lock(cluster, "shop", owner="job-1@ctl", state="absent", keep_origin=True)
    assert result["changed"] and result["lock"] is None and result["held"] is False and result["origin_share"] == 0.0
    lease = cluster.lease("shop")
    assert "holderIdentity" not in lease["spec"] and lease["metadata"]["annotations"]["mixedrun.kong/origin-share"] == "0"
    result, calls = lock(cluster, "shop", owner="job-3@ctl", state="inspected")
    assert result["changed"] is False and result["origin_share"] == 0.0 and [c["method"] for c in calls] == ["GET"]
    result, calls = lock(cluster, "shop", owner="job-3@ctl", origin_share=50)      # resumes from the recorded origin
    assert result["held"] and result["origin_share"] == 0.0 and cluster.lease("shop")["spec"]["leaseTransitions"] == 1
    result, calls = lock(cluster, "shop", owner="job-3@ctl", state="absent")
    assert result["changed"] and result["origin_share"] is None and cluster.lease("shop") is None
    assert [c["method"] for c in calls] == ["GET", "DELETE"]
    result, calls = lock(cluster, "shop", owner="job-3@ctl", state="absent")
    assert result["changed"] is False


def test_expired_lock_taken_over_force_and_the_old_holders_renewal_is_lock_lost(cluster):
    lock(cluster, "cart", owner="dead-job@ctl", ttl=1, origin_share=5)
    time.sleep(1.2)
    result, _calls = lock(cluster, "cart", owner="job-2@ctl", ttl=60, origin_share=40)
    assert result["taken_over"] and result["previous"]["owner"] == "dead-job@ctl" and result["previous"]["expired"]
    assert result["origin_share"] == 5.0
    result, _calls = lock(cluster, "cart", owner="operator@ctl", force=True, rollback_to=0)
    assert result["taken_over"] and result["rolling_back"] == 0.0
    assert cluster.lease("cart")["spec"]["holderIdentity"] == "operator@ctl"
    with pytest.raises(LockLost) as err:
        k8slock.renew_k8s_lock(cluster.api, NS, "cart", "job-2@ctl", 60)
    assert "taken over" in str(err.value) and "operator@ctl" in str(err.value)
    assert cluster.lease("cart")["spec"]["holderIdentity"] == "operator@ctl"
    assert cluster.lease("cart")["metadata"]["annotations"]["mixedrun.kong/rolling-back"] == "0"


def test_create_race_the_api_server_lets_exactly_one_win(cluster):
    first, second = store(cluster, "race"), store(cluster, "race")      # both read: no Lease
    out = first.acquire("job-a@ctl", 60)
    assert out["changed"] and cluster.lease("race")["spec"]["holderIdentity"] == "job-a@ctl"
    with pytest.raises(LockHeld) as err:                    # its POST gets 409 from the API server, it re-reads
        second.acquire("job-b@ctl", 60)
    assert "locked by 'job-a@ctl'" in str(err.value)
    assert [(c["method"], c["status"]) for c in second.calls] == [("GET", 404), ("POST", 409), ("GET", 200)]
    assert cluster.lease("race")["spec"]["holderIdentity"] == "job-a@ctl"


def test_update_race_on_a_stale_resource_version(cluster):
    lock(cluster, "upd", owner="job-a@ctl", ttl=60)
    stale = store(cluster, "upd")                            # job-a read the Lease ...
    lock(cluster, "upd", owner="operator@ctl", force=True)   # ... an operator forces it meanwhile
    with pytest.raises(LockLost) as err:                     # job-a's renewal: PUT with the old resourceVersion
        stale.acquire("job-a@ctl", 60, renew_only=True)
    assert "another job took it at the same moment" in str(err.value) and "now held by 'operator@ctl'" in str(err.value)
    assert [(c["method"], c["status"]) for c in stale.calls] == [("GET", 200), ("PUT", 409), ("GET", 200)]
    assert cluster.lease("upd")["spec"]["holderIdentity"] == "operator@ctl"
    stale_release = store(cluster, "upd")
    lock(cluster, "upd", owner="operator@ctl", ttl=120)      # renewed between the read and the conditional DELETE
    with pytest.raises(LockHeld):
        stale_release.release("someone@ctl")
    assert [(c["method"], c["status"]) for c in stale_release.calls] == [("GET", 200)]
    gone = store(cluster, "upd")
    lock(cluster, "upd", owner="operator@ctl", ttl=120)
    out = gone.release("operator@ctl")                       # DELETE precondition fails (409), re-read, deleted
    assert out["changed"] and cluster.lease("upd") is None
    assert [(c["method"], c["status"]) for c in gone.calls] == [("GET", 200), ("DELETE", 409), ("GET", 200), ("DELETE", 200)]


def test_missing_namespace_and_bad_name_fail_clearly(cluster):
    with pytest.raises(Exception) as err:
        run_kubernetes(dict(params(cluster, "shop", owner="job-1@ctl"), kubernetes=dict(
            params(cluster, "shop")["kubernetes"], namespace="no-such-ns")), False, [])
    assert getattr(err.value, "status", None) == 404 and "no-such-ns" in str(err.value)
    with pytest.raises(LockFailure) as err:
        run_kubernetes(params(cluster, "Shop_A", owner="job-1@ctl"), False, [])
    assert "kubernetes.name must be" in str(err.value)


PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: take the lock as a Lease (admin_url given but unused, as the rollout role passes it)
      mixedrun.kong.kong_rollout_lock:
        admin_url: http://127.0.0.1:9
        upstream: web
        binding: kubernetes
        kubernetes:
          namespace: rollout-lock
          kubeconfig: "{{ kubeconfig }}"
        owner: play@ctl
        ttl: 300
        origin_share: 0
      register: taken
    - name: another owner is refused
      mixedrun.kong.kong_rollout_lock:
        upstream: web
        binding: kubernetes
        kubernetes: {namespace: rollout-lock, kubeconfig: "{{ kubeconfig }}", route_name: web, force_conflicts: false}
        owner: other@ctl
      register: refused
      ignore_errors: true
    - name: release
      mixedrun.kong.kong_rollout_lock:
        upstream: web
        binding: kubernetes
        kubernetes: {namespace: rollout-lock, kubeconfig: "{{ kubeconfig }}"}
        owner: play@ctl
        state: absent
      register: released
    - name: results
      ansible.builtin.copy:
        content: "{{ {'taken': taken, 'refused': refused, 'released': released} | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
"""


def test_task_through_ansible_playbook(cluster, tmp_path):
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    out = tmp_path / "out.json"
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".tmp", "collections"), ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"))
    for name in ("K8S_AUTH_KUBECONFIG", "K8S_AUTH_HOST", "K8S_AUTH_API_KEY", "KONG_ADMIN_URL"):
        env.pop(name, None)
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "play.yml"),
               "-e", json.dumps({"kubeconfig": cluster.info["kubeconfig"], "out": str(out)})]
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["taken"]["changed"] and result["taken"]["held"] and result["taken"]["binding"] == "kubernetes"
    assert [c["method"] for c in result["taken"]["api_calls"]] == ["GET", "POST"]
    assert result["refused"]["failed"] and result["refused"]["locked_by"] == "play@ctl"
    assert result["released"]["changed"] and result["released"]["lock"] is None
    assert cluster.lease("web") is None
