# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_k8s_workload: input checks, HPA match and scale plan, rollout state, endpoints, failure text, and ensure_workload
against a fake API with a toy Deployment controller."""

from __future__ import annotations

import copy

import pytest

from ansible_collections.mixedrun.kong.plugins.module_utils import _k8s_workload as kw
from ansible_collections.mixedrun.kong.plugins.module_utils._k8s_binding import K8sBindingError

NS = "shop"
DEP_PATH = "/apis/apps/v1/namespaces/shop/deployments/web"
HPA_BASE = "/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers"


def deployment(name="web", replicas=2, generation=1, image="shop:1", status=None):
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": NS, "generation": generation, "resourceVersion": "1"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": image}]}}},
            "status": status if status is not None else {"observedGeneration": generation, "replicas": replicas, "updatedReplicas": replicas,
                                                         "readyReplicas": replicas, "availableReplicas": replicas}}


def manifest(replicas=None, image="shop:1"):
    obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": image}]}}}}
    if replicas is not None:
        obj["spec"]["replicas"] = replicas
    return obj


def hpa(name="web", minimum=1, maximum=5, target="web", kind="Deployment"):
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": name, "namespace": NS, "resourceVersion": "1"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": target}, "minReplicas": minimum, "maxReplicas": maximum}}


def pod(name, ready=True, **status):
    st = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    st.update(status)
    return {"metadata": {"name": name, "namespace": NS, "labels": {"app": "web"}}, "status": st}


def eps(*pods_ready, port="http"):
    return {"metadata": {"name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
            "ports": [{"name": port, "port": 8080}],
            "endpoints": [{"addresses": ["10.0.0.%d" % i], "conditions": {"ready": r}, "targetRef": {"kind": "Pod", "name": n}}
                          for i, (n, r) in enumerate(pods_ready, 1)]}


def merge(base, patch):
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


class FakeApi:
    """Objects by path; apply = deep merge (generation +1 when a Deployment's spec changes); merge patches on /scale
    and HPAs; a toy controller that rolls a Deployment out (all at once) unless ``stuck``."""

    def __init__(self):
        self.objects = {}
        self.calls = []
        self.requests = []
        self.stuck = False
        self.conflict = None
        self.slices = []

    def put(self, path, obj):
        self.objects[path] = copy.deepcopy(obj)

    def pods(self):
        dep = self.objects.get(DEP_PATH)
        if not dep:
            return []
        n = dep["spec"].get("replicas", 1)
        return [pod("web-%d" % i, ready=not self.stuck) for i in range(n)]

    def _controller(self):
        dep = self.objects.get(DEP_PATH)
        if dep is None:
            return
        n = dep["spec"].get("replicas", 1)
        ready = 0 if self.stuck else n
        dep["status"] = {"observedGeneration": dep["metadata"]["generation"], "replicas": n, "updatedReplicas": n,
                         "readyReplicas": ready, "availableReplicas": ready}
        if self.stuck:
            dep["status"]["conditions"] = [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}]

    def request(self, method, path, query=None, body=None, content_type=None):
        self.requests.append((method, path, dict(query or {}), content_type))
        if method != "GET":
            self.calls.append("%s %s" % (method, path))
        if method == "GET":
            self._controller()
            if path == "/api/v1/namespaces/shop/pods":
                return {"items": self.pods()}
            if path.endswith("/endpointslices"):
                return {"items": copy.deepcopy(self.slices)}
            if path in self.objects:
                return copy.deepcopy(self.objects[path])
            if path == HPA_BASE:
                return {"items": [copy.deepcopy(o) for p, o in sorted(self.objects.items()) if p.startswith(HPA_BASE + "/")]}
            return None
        assert method == "PATCH" and query["fieldManager"] == "mixedrun.kong"
        if path.endswith("/scale"):
            assert content_type == "application/merge-patch+json"
            self.objects[path[:-6]]["spec"]["replicas"] = body["spec"]["replicas"]
            return {"spec": body["spec"]}
        if content_type == "application/merge-patch+json":
            return merge(self.objects[path], body)
        assert content_type == "application/apply-patch+yaml"
        if self.conflict and query.get("force") != "true":
            raise K8sBindingError("PATCH %s: HTTP 409: Apply failed with 1 conflict: conflict with \"%s\": .spec.template" % (path, self.conflict),
                                  status=409, managers=[self.conflict])
        old = self.objects.get(path)
        # as server-side apply by the only owner: the manifest's fields replace the object's (a field left out goes),
        # the scale stays (written through the subresource)
        new = copy.deepcopy(body)
        new["metadata"].update(dict((k, v) for k, v in ((old or {}).get("metadata") or {"generation": 0, "resourceVersion": "0"}).items()
                                    if k in ("generation", "resourceVersion")))
        if new.get("kind") == "Deployment":
            new["spec"].setdefault("replicas", (old or {}).get("spec", {}).get("replicas", 1))
            new["status"] = copy.deepcopy((old or {}).get("status") or {})
        if old is None or old.get("spec") != new.get("spec"):
            new["metadata"]["generation"] = new["metadata"].get("generation", 0) + 1
            new["metadata"]["resourceVersion"] = str(int(new["metadata"]["resourceVersion"]) + 1)
        if query.get("dryRun") != "All":
            self.objects[path] = new
        return copy.deepcopy(new)


def spec(**overrides):
    params = {"namespace": NS, "deployment": "web", "manifests": [], "replicas": None, "service": None, "port_name": None,
              "wait": True, "wait_timeout": 5, "force_conflicts": False, "lower_hpa_min": False}
    params.update(overrides)
    return kw.validate(params)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def ensure(api, check_mode=False, **overrides):
    clock = Clock()
    return kw.ensure_workload(api, spec(**overrides), check_mode, clock=clock, sleep=clock.sleep)


# ---------------------------------------------------------------------------------------------------------
# pure parts

@pytest.mark.parametrize("change,text", [
    ({"namespace": "Shop"}, "namespace must be a DNS label"),
    ({"deployment": ""}, "deployment must be"),
    ({"replicas": -1}, "replicas must be"),
    ({"port_name": "http"}, "port_name needs service"),
    ({"wait_timeout": -1}, "wait_timeout must be"),
    ({"manifests": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}]}, "kind 'ConfigMap' is not managed"),
    ({"manifests": [{"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "x"}}]}, "apiVersion autoscaling/v2"),
    ({"manifests": [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x", "namespace": "other"}}]}, "not the module's namespace"),
    ({"manifests": [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x", "resourceVersion": "3"}}]}, "metadata.resourceVersion"),
    ({"manifests": [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}}] * 2}, "given twice"),
    ({"manifests": ["text"]}, "manifests[0] must be a Kubernetes object"),
])
def test_validate_names_the_option(change, text):
    with pytest.raises(kw.WorkloadInputError) as info:
        spec(**change)
    assert text in str(info.value)


def test_manifests_get_the_namespace():
    out = spec(manifests=[{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {}}])["manifests"]
    assert out[0]["metadata"]["namespace"] == NS


def test_matching_hpa():
    items = [hpa("b"), hpa("a"), hpa("other", target="api"), hpa("sts", kind="StatefulSet")]
    assert [h["metadata"]["name"] for h in kw.matching_hpa(items, "web")] == ["a", "b"]
    no_version = hpa("c")
    del no_version["spec"]["scaleTargetRef"]["apiVersion"]
    assert kw.matching_hpa([no_version], "web")


def test_plan_scale():
    assert kw.plan_scale(3, 1, None) == {"scale": 3, "hpa": None}
    assert kw.plan_scale(1, 3, None) == {"scale": 1, "hpa": None}
    assert kw.plan_scale(None, 3, None) == {"scale": None, "hpa": None}
    assert kw.plan_scale(3, 1, hpa(minimum=1, maximum=5)) == {"scale": 3, "hpa": {"name": "web", "min_before": 1, "min_after": 3, "max": 5}}
    assert kw.plan_scale(3, 4, hpa(minimum=1, maximum=5))["scale"] == 4           # never below what the HPA runs now
    assert kw.plan_scale(2, 4, hpa(minimum=3, maximum=5))["hpa"]["min_after"] == 3  # not lowered
    assert kw.plan_scale(2, 4, hpa(minimum=3, maximum=5), lower_hpa_min=True)["hpa"]["min_after"] == 2
    assert kw.plan_scale(None, 4, hpa(minimum=3))["hpa"]["min_after"] == 3
    with pytest.raises(kw.WorkloadInputError) as info:
        kw.plan_scale(3, 1, hpa(minimum=1, maximum=2))
    assert "HorizontalPodAutoscaler web" in str(info.value) and "maxReplicas 2" in str(info.value) and "nothing was changed" in str(info.value)


def test_label_selector():
    exprs = [{"key": "t", "operator": "In", "values": ["x", "y"]}, {"key": "u", "operator": "NotIn", "values": ["z"]},
             {"key": "e", "operator": "Exists"}, {"key": "d", "operator": "DoesNotExist"}]
    sel = {"matchLabels": {"b": "2", "a": "1"}, "matchExpressions": exprs}
    assert kw.label_selector(sel) == "a=1,b=2,t in (x,y),u notin (z),e,!d"


def test_rollout_state():
    assert kw.rollout_state(deployment())["complete"]
    stale = deployment(generation=2)
    stale["status"]["observedGeneration"] = 1
    assert "observe generation 2" in kw.rollout_state(stale)["waiting_for"]
    old = deployment(replicas=2, status={"observedGeneration": 1, "replicas": 3, "updatedReplicas": 2, "readyReplicas": 3, "availableReplicas": 3})
    assert kw.rollout_state(old)["waiting_for"] == "1 old replicas to terminate"
    unready = deployment(replicas=2, status={"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 1, "availableReplicas": 1})
    assert not kw.rollout_state(unready)["complete"] and "1 ready" in kw.rollout_state(unready)["waiting_for"]
    updating = deployment(replicas=3, status={"observedGeneration": 1, "replicas": 3, "updatedReplicas": 1})
    assert kw.rollout_state(updating)["waiting_for"] == "1 of 3 updated replicas"
    dead = deployment(status={"observedGeneration": 1, "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]})
    assert kw.rollout_state(dead)["failed"]


def test_ready_endpoints():
    slices = [eps(("web-0", True), ("web-1", False), ("other", True)), eps(("web-2", None), port="metrics")]
    slices[1]["endpoints"][0]["conditions"] = {}
    assert [e["pod"] for e in kw.ready_endpoints(slices, {"web-0", "web-1", "web-2"})] == ["web-0", "web-2"]
    assert kw.ready_endpoints(slices, {"web-0", "web-1", "web-2"}, "http") == [{"pod": "web-0", "address": "10.0.0.1", "port": 8080}]


def test_failure_reason_names_pods_and_what_to_do():
    dep = deployment(replicas=3, generation=2, status={
        "observedGeneration": 2, "replicas": 4, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2,
        "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                        "message": "ReplicaSet \"web-2\" has timed out progressing."}]})
    pods = [pod("web-ok"),
            pod("web-pull", ready=False, containerStatuses=[{"name": "app", "ready": False, "state": {"waiting": {
                "reason": "ImagePullBackOff", "message": "Back-off pulling image \"shop:9\""}}}]),
            pod("web-crash", ready=False, containerStatuses=[{
                "name": "app", "ready": False, "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"reason": "Error", "exitCode": 1}}}]),
            pod("web-probe", ready=False, containerStatuses=[{"name": "app", "ready": False, "state": {"running": {}}}])]
    pods[3]["status"]["conditions"][0].update(reason="ContainersNotReady", message="containers with unready status: [app]")
    text, not_ready = kw.failure_reason(dep, pods, [{"pod": "web-ok"}], "web", 15)
    assert not_ready == ["web-crash", "web-probe", "web-pull"]
    assert "3 wanted, 4 current, 2 updated, 2 ready" in text and "ProgressDeadlineExceeded" in text
    assert "pod web-pull not ready" in text and "ImagePullBackOff" in text and "pulling image" in text
    assert "CrashLoopBackOff, 4 restarts (last: Error, exit code 1)" in text
    assert "web-probe not ready" in text and "Ready False ContainersNotReady (containers with unready status: [app])" in text
    assert "Service web lists 1 ready endpoints" in text
    assert "imagePullSecrets" in text and "kubectl logs --previous" in text and "kubectl rollout undo deployment/web -n shop" in text
    assert "web-ok" not in text


def test_failure_reason_probe_hint():
    text, _names = kw.failure_reason(deployment(), [pod("web-0", ready=False)])
    assert "readiness probe" in text


# ---------------------------------------------------------------------------------------------------------
# ensure_workload

def test_missing_deployment_without_manifest():
    with pytest.raises(kw.WorkloadInputError) as info:
        ensure(FakeApi(), replicas=2)
    assert "Deployment shop/web does not exist" in str(info.value)


def test_apply_create_then_idempotent_and_scale():
    api = FakeApi()
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}}
    api.slices = [eps(("web-0", True), ("web-1", True))]
    result = ensure(api, manifests=[manifest(), svc], replicas=2, service="web", port_name="http")
    assert result["changed"] and [o["action"] for o in result["objects"]] == ["created", "created"]
    assert api.calls == ["PATCH " + DEP_PATH, "PATCH /api/v1/namespaces/shop/services/web", "PATCH " + DEP_PATH + "/scale"]
    assert result["deployment"]["replicas"] == 2 and result["deployment"]["images"] == ["shop:1"]
    assert [e["pod"] for e in result["endpoints"]] == ["web-0", "web-1"] and result["hpa"] is None
    api.calls.clear()
    again = ensure(api, manifests=[manifest(), svc], replicas=2, service="web")
    assert not again["changed"] and api.calls == [] and {o["action"] for o in again["objects"]} == {"unchanged"}


def test_field_left_out_of_the_manifest_is_an_update():
    api = FakeApi()
    with_env = manifest()
    with_env["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "MODE", "value": "bad"}]
    ensure(api, manifests=[with_env])
    api.calls.clear()
    result = ensure(api, manifests=[manifest()])
    assert result["objects"] == [{"kind": "Deployment", "name": "web", "action": "updated"}] and api.calls == ["PATCH " + DEP_PATH]
    assert "env" not in api.objects[DEP_PATH]["spec"]["template"]["spec"]["containers"][0]
    dry = [r for r in api.requests if r[2].get("dryRun") == "All"]
    assert len(dry) == 1
    api.calls.clear()
    assert not ensure(api, manifests=[manifest()])["changed"] and api.calls == []


def test_manifest_replicas_follow_the_plan():
    api = FakeApi()
    ensure(api, manifests=[manifest(replicas=1)], replicas=3)
    assert api.objects[DEP_PATH]["spec"]["replicas"] == 3
    assert api.calls == ["PATCH " + DEP_PATH]          # no separate scale write


def test_scale_down_without_hpa_and_check_mode():
    api = FakeApi()
    api.put(DEP_PATH, deployment(replicas=3))
    checked = ensure(api, check_mode=True, replicas=1)
    assert checked["changed"] and checked["calls"] == ["PATCH %s/scale (check mode: not sent)" % DEP_PATH]
    assert checked["diff"]["after"]["Deployment/web/scale"] == {"spec": {"replicas": 1}}
    assert api.objects[DEP_PATH]["spec"]["replicas"] == 3
    api.calls.clear()
    done = ensure(api, replicas=1)
    assert done["changed"] and api.objects[DEP_PATH]["spec"]["replicas"] == 1 and done["deployment"]["ready"] == 1


def test_hpa_min_raised_and_scale():
    api = FakeApi()
    api.put(DEP_PATH, deployment(replicas=1))
    api.put(HPA_BASE + "/web", hpa(minimum=1, maximum=5))
    api.put(HPA_BASE + "/api", hpa("api", target="api", minimum=1, maximum=2))
    result = ensure(api, replicas=3)
    assert result["hpa"] == {"name": "web", "min_before": 1, "min_after": 3, "max": 5}
    assert api.objects[HPA_BASE + "/web"]["spec"]["minReplicas"] == 3 and api.objects[DEP_PATH]["spec"]["replicas"] == 3
    assert ("PATCH", HPA_BASE + "/web", {"fieldManager": "mixedrun.kong"}, "application/merge-patch+json") in api.requests


def test_hpa_max_too_low_changes_nothing():
    api = FakeApi()
    api.put(DEP_PATH, deployment(replicas=1))
    api.put(HPA_BASE + "/web", hpa(minimum=1, maximum=2))
    with pytest.raises(kw.WorkloadInputError) as info:
        ensure(api, manifests=[manifest(image="shop:2")], replicas=3)
    assert "maxReplicas 2" in str(info.value) and api.calls == []


def test_hpa_in_manifests_gets_the_minimum():
    api = FakeApi()
    api.put(DEP_PATH, deployment(replicas=1))
    manifest_hpa = hpa(minimum=1, maximum=5)
    del manifest_hpa["metadata"]["resourceVersion"]
    result = ensure(api, manifests=[manifest_hpa], replicas=4)
    assert api.objects[HPA_BASE + "/web"]["spec"]["minReplicas"] == 4 and result["hpa"]["min_after"] == 4
    assert api.calls == ["PATCH " + HPA_BASE + "/web", "PATCH " + DEP_PATH + "/scale"]


def test_two_hpas_refused():
    api = FakeApi()
    api.put(DEP_PATH, deployment())
    api.put(HPA_BASE + "/a", hpa("a"))
    api.put(HPA_BASE + "/b", hpa("b"))
    with pytest.raises(kw.WorkloadInputError, match="several HorizontalPodAutoscalers"):
        ensure(api, replicas=2)


def test_conflict_names_the_manager():
    api = FakeApi()
    api.put(DEP_PATH, deployment())
    api.conflict = "kubectl-set"
    with pytest.raises(K8sBindingError) as info:
        ensure(api, manifests=[manifest(image="shop:2")])
    assert info.value.status == 409 and info.value.managers == ["kubectl-set"] and "force_conflicts" in str(info.value)
    result = ensure(api, manifests=[manifest(image="shop:2")], force_conflicts=True)
    assert result["objects"] == [{"kind": "Deployment", "name": "web", "action": "updated"}]
    assert result["diff"]["before"]["Deployment/web"]["spec"]["template"]["spec"]["containers"][0]["image"] == "shop:1"


def test_wait_times_out_with_the_reason():
    api = FakeApi()
    api.put(DEP_PATH, deployment(replicas=2))
    api.put("/api/v1/namespaces/shop/services/web", {"metadata": {"name": "web"}})
    api.stuck = True
    with pytest.raises(kw.WorkloadError) as info:
        ensure(api, manifests=[manifest(image="shop:bad")], service="web", wait_timeout=3)
    message = str(info.value)
    assert "was not rolled out within 3 s" in message and "pod web-0 not ready" in message and "readiness probe" in message
    assert info.value.details["not_ready_pods"] == ["web-0", "web-1"] and info.value.details["changed"]
    assert info.value.details["waited_seconds"] >= 3


def test_wait_for_endpoints_and_missing_service():
    api = FakeApi()
    api.put(DEP_PATH, deployment(replicas=2))
    api.put("/api/v1/namespaces/shop/services/web", {"metadata": {"name": "web"}})
    api.slices = [eps(("web-0", True), ("web-1", False))]
    with pytest.raises(kw.WorkloadError) as info:
        ensure(api, service="web", wait_timeout=2)
    assert "the Service web's ready endpoints" in str(info.value) and "lists 1 ready endpoints" in str(info.value)
    with pytest.raises(kw.WorkloadError, match="Service shop/nope does not exist"):
        ensure(api, service="nope")


def test_progress_deadline_fails_at_once():
    api = FakeApi()
    dep = deployment(status={"observedGeneration": 1, "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]})
    api.put(DEP_PATH, dep)
    api._controller = lambda: None  # pylint: disable=protected-access
    with pytest.raises(kw.WorkloadError) as info:
        ensure(api, wait_timeout=100)
    assert "failed (ProgressDeadlineExceeded)" in str(info.value) and info.value.details["waited_seconds"] == 0


def test_warning_events_and_their_hints():
    def event(kind, name, reason, message, when, etype="Warning", count=1):
        return {"type": etype, "involvedObject": {"kind": kind, "name": name}, "reason": reason, "message": message,
                "lastTimestamp": when, "count": count}
    events = [event("Pod", "web-0", "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503", "2026-01-01T00:00:05Z", count=7),
              event("Pod", "web-0", "Pulled", "ok", "2026-01-01T00:00:01Z", etype="Normal"),
              event("Pod", "other-0", "Unhealthy", "not ours", "2026-01-01T00:00:01Z"),
              event("ReplicaSet", "web-5d8f9", "FailedCreate", "pods \"web-5d8f9-x\" is forbidden: exceeded quota: q", "2026-01-01T00:00:02Z"),
              event("ReplicaSet", "webber-5d8f9", "FailedCreate", "not ours", "2026-01-01T00:00:02Z")]
    found = kw.warning_events(events, deployment(), {"web-0"})
    assert found == {"Pod/web-0": ["Unhealthy: Readiness probe failed: HTTP probe failed with statuscode: 503 (x7)"],
                     "ReplicaSet/web-5d8f9": ["FailedCreate: pods \"web-5d8f9-x\" is forbidden: exceeded quota: q"]}
    text, _names = kw.failure_reason(deployment(), [pod("web-0", ready=False)], events=found)
    assert "events of ReplicaSet/web-5d8f9: FailedCreate" in text and "ResourceQuota" in text
    assert "pod web-0 not ready: phase Running; Ready False; events: Unhealthy: Readiness probe failed" in text and "a probe fails" in text


def test_check_mode_dry_runs_the_manifests():
    api = FakeApi()
    api.put(DEP_PATH, deployment())
    api.conflict = "kubectl-edit"
    with pytest.raises(K8sBindingError, match="kubectl-edit"):
        ensure(api, check_mode=True, manifests=[manifest(image="shop:2")])
    api.conflict = None
    result = ensure(api, check_mode=True, manifests=[manifest(image="shop:2")])
    assert result["objects"] == [{"kind": "Deployment", "name": "web", "action": "updated"}]
    assert result["calls"] == ["PATCH %s (check mode: not sent)" % DEP_PATH]
    assert api.objects[DEP_PATH]["spec"]["template"]["spec"]["containers"][0]["image"] == "shop:1"
