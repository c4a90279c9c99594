# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""k8s_workload against a REAL Kubernetes v1.26 control plane: a lab of its own with ``k8s.engine: real`` (the kit in
../shared/realk8s, or $MIXEDRUN_REALK8S_KIT; the Kong simulator), whose kubelet player runs the pods of the lab
service ``seed`` (labels ``app: wl``) in namespace ``workload``: the Deployment ``web`` this test applies has the
labels ``app: wl, role: web``, so the player binds its pods, starts a node for each and reports them Running and Ready
(or not: the player's template conventions, tests/lab/realk8s.py), and kube-controller-manager's real Deployment,
ReplicaSet, EndpointSlice and HPA controllers do the rest.

Apply and wait, scale 1 -> 3 -> 1 with the Service's endpoints, an HPA (minimum raised; a maximum too low fails with
nothing changed), a failing version that times out naming its pod, a conflicting field manager, a playbook task.
Skipped, with the reason printed, where the kit is absent.

Run: cd /work/main && PYTHONPATH=.:.tmp/collections .venv/bin/pytest -q -rs tests/integration/test_k8s_workload_realk8s.py
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json
import os
import sys
import time

import pytest
import yaml

kubernetes = pytest.importorskip("kubernetes")

from ansible_collections.mixedrun.kong.plugins.module_utils._k8s_binding import K8sBindingError  # noqa: E402
from ansible_collections.mixedrun.kong.plugins.module_utils._k8s_discovery import build_api_client  # noqa: E402
from ansible_collections.mixedrun.kong.plugins.module_utils._k8s_workload import WorkloadApi, WorkloadError, WorkloadInputError  # noqa: E402
from ansible_collections.mixedrun.kong.plugins.modules.k8s_workload import run  # noqa: E402
from tests.lab import config as labconfig  # noqa: E402
from tests.lab.pytest_plugin import start_lab, stop_lab  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
NS = "workload"
DEP = "/apis/apps/v1/namespaces/workload/deployments/web"
HPA = "/apis/autoscaling/v2/namespaces/workload/horizontalpodautoscalers"
IMAGE = "registry.lab.test/mixedrun/node:1.0"
# loopback addresses of this test's own (other labs may run at once); free ports
LAB = {"node_port": "auto",
       "k8s": {"engine": "real", "nodes": {"count": 2, "address_base": "127.0.58.1"}},
       "services": [{"name": "seed", "namespace": NS, "labels": {"app": "wl"}, "cluster_ip": "127.0.58.250", "node_port": "auto",
                     "containers": {"count": 1, "address_base": "127.0.58.101"}}]}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not labconfig.realk8s_kit():
        reason = "the real Kubernetes kit is absent (neither $%s nor ../shared/realk8s holds k8s-cluster.sh)" % labconfig.REALK8S_KIT_ENV
        print("test_k8s_workload_realk8s: skipped: " + reason, file=sys.stderr)
        pytest.skip(reason)
    state_dir = str(tmp_path_factory.mktemp("lab-workload"))
    started = time.monotonic()
    info = start_lab(state_dir, extra_config=LAB, kong_engine="simulator")
    print("lab with the real control plane up in %.1f s" % (time.monotonic() - started), file=sys.stderr)
    try:
        yield info
    finally:
        stop_lab(state_dir)


class Api:
    def __init__(self, info):
        self.info = info
        self.client, _ns, _described = build_api_client({"kubeconfig": info["kubeconfig"], "context": info.get("k8s_context")})

    def raw(self, method, path, body=None, query=None, content_type=None):
        return WorkloadApi(self.client).request(method, path, query=query, body=body, content_type=content_type)

    def deployment(self):
        return self.raw("GET", DEP)

    def pods(self):
        items = self.raw("GET", "/api/v1/namespaces/%s/pods" % NS, query={"labelSelector": "app=wl,role=web"})["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]


@pytest.fixture(scope="module")
def k8s(lab):  # pylint: disable=redefined-outer-name
    handle = Api(lab)
    yield handle
    handle.client.close()


def deployment_manifest(env=None, image=IMAGE):
    container = {"name": "app", "image": image, "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                 "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1, "failureThreshold": 1}}
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in sorted(env.items())]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "wl", "role": "web"}},
            "spec": {"selector": {"matchLabels": {"app": "wl", "role": "web"}}, "progressDeadlineSeconds": 600,
                     "template": {"metadata": {"labels": {"app": "wl", "role": "web"}},
                                  "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]}}}}


SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"selector": {"app": "wl", "role": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}}


def params(lab, **overrides):  # pylint: disable=redefined-outer-name
    base = dict(kubeconfig=lab["kubeconfig"], context=lab.get("k8s_context"), host=None, api_key=None, ca_cert=None, validate_certs=None,
                namespace=NS, deployment="web", manifests=[], replicas=None, lower_hpa_min=False, service="web", port_name="http",
                wait=True, wait_timeout=90.0, force_conflicts=False, request_timeout=20.0)
    base.update(overrides)
    return base


def pod_ips(k8s):  # pylint: disable=redefined-outer-name
    return sorted(p["status"].get("podIP") for p in k8s.pods())


def test_1_apply_and_wait(lab, k8s):  # pylint: disable=redefined-outer-name
    args = params(lab, manifests=[deployment_manifest(), SERVICE], replicas=1)
    checked = run(copy.deepcopy(args), True)
    assert checked["changed"] and all(c.endswith("(check mode: not sent)") for c in checked["calls"])
    assert k8s.deployment() is None
    started = time.monotonic()
    result = run(copy.deepcopy(args), False)
    print("created and rolled out in %.1f s" % (time.monotonic() - started))
    assert result["changed"] and [(o["kind"], o["action"]) for o in result["objects"]] == [("Deployment", "created"), ("Service", "created")]
    assert result["deployment"]["ready"] == 1 and result["deployment"]["images"] == [IMAGE]
    assert [e["address"] for e in result["endpoints"]] == pod_ips(k8s) and len(result["endpoints"]) == 1
    again = run(copy.deepcopy(args), False)
    assert not again["changed"] and again["calls"] == []


def test_2_scale_up_and_down_with_endpoints(lab, k8s):  # pylint: disable=redefined-outer-name
    started = time.monotonic()
    up = run(params(lab, replicas=3), False)
    print("1 -> 3 ready in the Service in %.1f s" % (time.monotonic() - started))
    assert up["changed"] and up["calls"] == ["PATCH %s/scale" % DEP] and up["deployment"]["replicas"] == 3
    assert len(up["endpoints"]) == 3 and sorted(e["address"] for e in up["endpoints"]) == pod_ips(k8s)
    # Kubernetes 1.26 records no field owner for a write through the scale subresource: the manifest (without
    # spec.replicas) applied again leaves the scale alone
    assert k8s.deployment()["spec"]["replicas"] == 3
    again = run(params(lab, manifests=[deployment_manifest(), SERVICE]), False)
    assert not again["changed"] and k8s.deployment()["spec"]["replicas"] == 3
    down = run(params(lab, replicas=1), False)
    assert down["changed"] and len(down["endpoints"]) == 1 and down["deployment"]["replicas"] == 1
    up = run(params(lab, replicas=3), False)
    assert len(up["endpoints"]) == 3


def test_3_hpa_minimum_and_maximum(lab, k8s):  # pylint: disable=redefined-outer-name
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web", "namespace": NS},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5,
                    "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]}}
    k8s.raw("PATCH", HPA + "/web", body=hpa, query={"fieldManager": "test-hpa"}, content_type="application/apply-patch+yaml")
    try:
        result = run(params(lab, replicas=3), False)
        assert result["hpa"] == {"name": "web", "min_before": 1, "min_after": 3, "max": 5}
        assert k8s.raw("GET", HPA + "/web")["spec"]["minReplicas"] == 3 and result["deployment"]["replicas"] >= 3
        assert not run(params(lab, replicas=3), False)["changed"]
        low = dict(hpa, spec=dict(hpa["spec"], minReplicas=1, maxReplicas=2))
        k8s.raw("PATCH", HPA + "/web", body=low, query={"fieldManager": "test-hpa", "force": "true"}, content_type="application/apply-patch+yaml")
        versions = (k8s.raw("GET", HPA + "/web")["metadata"]["resourceVersion"], k8s.deployment()["metadata"]["generation"])
        with pytest.raises(WorkloadInputError) as info:
            run(params(lab, replicas=3, manifests=[deployment_manifest(image=IMAGE + "-new")]), False)
        message = str(info.value)
        assert "HorizontalPodAutoscaler web" in message and "maxReplicas 2" in message and "nothing was changed" in message
        assert (k8s.raw("GET", HPA + "/web")["metadata"]["resourceVersion"], k8s.deployment()["metadata"]["generation"]) == versions
    finally:
        k8s.raw("DELETE", HPA + "/web")
    assert run(params(lab, replicas=3), False)["deployment"]["ready"] == 3


def test_4_failing_version_times_out_with_the_reason(lab, k8s):  # pylint: disable=redefined-outer-name
    bad = deployment_manifest(env={"MIXEDRUN_LAB_READY": "false"})
    started = time.monotonic()
    with pytest.raises(WorkloadError) as info:
        run(params(lab, manifests=[bad], replicas=3, wait_timeout=15.0), False)
    elapsed = time.monotonic() - started
    message = str(info.value)
    print(message)
    new = [p["metadata"]["name"] for p in k8s.pods()
           if any(e.get("name") == "MIXEDRUN_LAB_READY" for e in p["spec"]["containers"][0].get("env") or [])]
    assert new and 15 <= elapsed < 40
    assert "was not rolled out within 15 s" in message and "pod %s not ready" % new[0] in message
    assert "containers with unready status: [app]" in message and "readiness probe" in message and "rollout undo" in message
    assert "events: Unhealthy: Readiness probe failed" in message
    assert info.value.details["not_ready_pods"] == sorted(new) and info.value.details["changed"]
    # back to the good version: the failing pod goes, the rollout completes
    good = run(params(lab, manifests=[deployment_manifest()], replicas=3), False)
    assert good["changed"] and good["deployment"]["ready"] == 3 and len(good["endpoints"]) == 3


def test_5_conflicting_field_manager(lab, k8s):  # pylint: disable=redefined-outer-name
    other = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": NS},
             "spec": {"template": {"spec": {"containers": [{"name": "app", "image": IMAGE + "-hotfix"}]}}}}
    k8s.raw("PATCH", DEP, body=other, query={"fieldManager": "kubectl-hotfix", "force": "true"}, content_type="application/apply-patch+yaml")
    with pytest.raises(K8sBindingError) as info:
        run(params(lab, manifests=[deployment_manifest()], wait=False), False)
    assert info.value.status == 409 and info.value.managers == ["kubectl-hotfix"] and "force_conflicts" in str(info.value)
    assert k8s.deployment()["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE + "-hotfix"
    forced = run(params(lab, manifests=[deployment_manifest()], force_conflicts=True, replicas=3), False)
    assert forced["changed"] and forced["deployment"]["images"] == [IMAGE] and len(forced["endpoints"]) == 3


PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  module_defaults:
    group/mixedrun.kong.k8s:
      kubeconfig: "{{ kubeconfig }}"
  tasks:
    - name: scale in check mode with diff
      mixedrun.kong.k8s_workload: &scale
        namespace: workload
        deployment: web
        replicas: 2
        service: web
        port_name: http
        wait_timeout: 90
      check_mode: true
      diff: true
      register: checked
    - name: scale
      mixedrun.kong.k8s_workload: *scale
      register: scaled
    - name: a kind it does not manage
      mixedrun.kong.k8s_workload:
        namespace: workload
        deployment: web
        manifests: [{apiVersion: v1, kind: ConfigMap, metadata: {name: x}}]
      register: bad
      ignore_errors: true
    - name: results
      ansible.builtin.copy:
        content: "{{ {'checked': checked, 'scaled': scaled, 'bad': bad} | to_json }}"
        dest: "{{ out }}"
      check_mode: false
"""


def test_6_task_through_ansible_playbook(lab, k8s, tmp_path):  # pylint: disable=redefined-outer-name,unused-argument
    import subprocess  # pylint: disable=import-outside-toplevel
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    out = tmp_path / "out.json"
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".tmp", "collections"), ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"))
    for name in ("K8S_AUTH_KUBECONFIG", "K8S_AUTH_HOST", "K8S_AUTH_API_KEY", "K8S_AUTH_CONTEXT"):
        env.pop(name, None)
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "play.yml"),
               "-e", json.dumps({"kubeconfig": lab["kubeconfig"], "out": str(out)})]
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["checked"]["changed"] and result["checked"]["diff"]["after"]["Deployment/web/scale"] == {"spec": {"replicas": 2}}
    assert result["scaled"]["changed"] and len(result["scaled"]["endpoints"]) == 2 and result["scaled"]["deployment"]["ready"] == 2
    assert result["bad"]["failed"] and "kind 'ConfigMap' is not managed" in result["bad"]["msg"]
