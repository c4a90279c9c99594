# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The container side of a mixed service: a Deployment (and its Service, HorizontalPodAutoscaler) applied, scaled
and waited for (module ``k8s_workload``).

* Pure parts, unit-tested with API dicts: ``validate(params)``, ``check_manifests(...)``, ``matching_hpa(...)``,
  ``plan_scale(...)``, ``rollout_state(...)``, ``ready_endpoints(...)``, ``failure_reason(...)``, ``label_selector(...)``.
* ``WorkloadApi``: ``K8sApi`` (``_k8s_binding``), which also sends JSON merge patches.
* ``ensure_workload(api, spec, check_mode, clock, sleep)``: read, check, apply, scale, wait; returns the result dict.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re
import time

from ansible_collections.mixedrun.kong.plugins.module_utils._k8s_binding import (
    FIELD_MANAGER,
    K8sApi,
    K8sBindingError,
    _project,
    covers,
)

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
KINDS = {
    "Deployment": ("apps/v1", "/apis/apps/v1/namespaces/%s/deployments"),
    "Service": ("v1", "/api/v1/namespaces/%s/services"),
    "HorizontalPodAutoscaler": ("autoscaling/v2", "/apis/autoscaling/v2/namespaces/%s/horizontalpodautoscalers"),
}
POLL_SECONDS = 1.0
MAX_PODS_REPORTED = 8
HINTS = {
    "ImagePullBackOff": "the image cannot be pulled: check the image name and tag, the registry and the imagePullSecrets",
    "ErrImagePull": "the image cannot be pulled: check the image name and tag, the registry and the imagePullSecrets",
    "InvalidImageName": "the image name is invalid: fix the pod template's image",
    "CrashLoopBackOff": "the container keeps exiting: read its logs (kubectl logs --previous) and fix the version or its configuration",
    "CreateContainerConfigError": "the container cannot be created: a ConfigMap or Secret it refers to is missing or lacks a key",
    "ProgressDeadlineExceeded": "the rollout made no progress within spec.progressDeadlineSeconds",
    "Unschedulable": "the pods cannot be scheduled: not enough resources, or node selectors/taints exclude every node",
    "FailedScheduling": "the pods cannot be scheduled: not enough resources, or node selectors/taints exclude every node",
    "FailedCreate": "the ReplicaSet cannot create pods (a ResourceQuota, LimitRange or admission webhook refuses them; see its events)",
    "Unhealthy": "a probe fails: check the readiness/liveness probe and the version's health endpoint",
}


class WorkloadInputError(ValueError):
    """Bad input, found before any write."""


class WorkloadError(Exception):
    """The workload did not reach the wanted state; ``details`` goes into the failure result."""

    def __init__(self, message, details=None):
        super(WorkloadError, self).__init__(message)
        self.details = details or {}


# ---------------------------------------------------------------------------------------------------------
# Input


def validate(params):
    """Check the options (not the connection); return the normalised spec or raise WorkloadInputError naming the option."""
    namespace = params.get("namespace") or ""
    if not _DNS_LABEL.match(namespace) or len(namespace) > 63:
        raise WorkloadInputError("namespace must be a DNS label (lowercase letters, digits, '-'), got %r" % namespace)
    name = params.get("deployment") or ""
    if not _DNS_SUBDOMAIN.match(name) or len(name) > 253:
        raise WorkloadInputError("deployment must be the Deployment's name (a DNS subdomain), got %r" % name)
    replicas = params.get("replicas")
    if replicas is not None and (isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0):
        raise WorkloadInputError("replicas must be a number of pods >= 0, got %r" % (replicas,))
    service = params.get("service")
    if service is not None and (not _DNS_LABEL.match(service) or len(service) > 63):
        raise WorkloadInputError("service must be the name of a Service in the namespace (a DNS label), got %r" % service)
    port_name = params.get("port_name")
    if port_name is not None and service is None:
        raise WorkloadInputError("port_name needs service (the Service whose port it names)")
    timeout = params.get("wait_timeout")
    if timeout is None:
        timeout = 300
    if timeout < 0:
        raise WorkloadInputError("wait_timeout must be seconds >= 0, got %r" % (timeout,))
    manifests = check_manifests(params.get("manifests") or [], namespace)
    return {"namespace": namespace, "deployment": name, "replicas": replicas, "service": service, "port_name": port_name,
            "wait": params.get("wait") is not False, "wait_timeout": float(timeout), "manifests": manifests,
            "force_conflicts": bool(params.get("force_conflicts")), "lower_hpa_min": bool(params.get("lower_hpa_min"))}


def check_manifests(manifests, namespace):
    """Each manifest a Deployment (apps/v1), Service (v1) or HorizontalPodAutoscaler (autoscaling/v2) in ``namespace``;
    returns copies with metadata.namespace set."""
    out, seen = [], set()
    for index, manifest in enumerate(manifests):
        where = "manifests[%d]" % index
        if not isinstance(manifest, dict):
            raise WorkloadInputError("%s must be a Kubernetes object (a dict with apiVersion, kind, metadata, spec), got %r" % (where, type(manifest).__name__))
        kind = manifest.get("kind")
        if kind not in KINDS:
            raise WorkloadInputError("%s: kind %r is not managed by this module; it applies only Deployment, Service and HorizontalPodAutoscaler "
                                     "(apply other objects with kubernetes.core.k8s)" % (where, kind))
        version = KINDS[kind][0]
        if manifest.get("apiVersion") != version:
            raise WorkloadInputError("%s: a %s must have apiVersion %s, got %r" % (where, kind, version, manifest.get("apiVersion")))
        meta = manifest.get("metadata")
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not _DNS_SUBDOMAIN.match(meta.get("name") or ""):
            raise WorkloadInputError("%s: metadata.name must be the %s's name" % (where, kind))
        if meta.get("namespace") not in (None, namespace):
            raise WorkloadInputError("%s: %s %s is in namespace %r, not the module's namespace %r" % (where, kind, meta["name"], meta["namespace"], namespace))
        for key in ("resourceVersion", "uid", "managedFields", "creationTimestamp"):
            if key in meta:
                raise WorkloadInputError("%s: metadata.%s is set by the API server; remove it from the manifest" % (where, key))
        if "status" in manifest:
            raise WorkloadInputError("%s: status is written by the controllers; remove it from the manifest" % where)
        if (kind, meta["name"]) in seen:
            raise WorkloadInputError("%s: %s %s is given twice" % (where, kind, meta["name"]))
        seen.add((kind, meta["name"]))
        copy = json.loads(json.dumps(manifest))
        copy["metadata"]["namespace"] = namespace
        out.append(copy)
    return out


def api_path(kind, namespace, name=None):
    prefix = KINDS[kind][1] % namespace
    return prefix + ("/" + name if name else "")


# ---------------------------------------------------------------------------------------------------------
# HPA and scale (pure)


def targets_deployment(hpa, deployment):
    """Whether an HPA's spec.scaleTargetRef is the Deployment ``deployment`` (apps/v1, or no group given)."""
    ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
    api_version = ref.get("apiVersion") or "apps/v1"
    return ref.get("kind") == "Deployment" and ref.get("name") == deployment and api_version.split("/")[0] in ("apps", "apps/v1", "v1")


def matching_hpa(hpas, deployment):
    """The HPAs (list of dicts) whose scaleTargetRef is this Deployment, sorted by name."""
    return sorted((h for h in hpas if targets_deployment(h, deployment)), key=lambda h: h["metadata"]["name"])


def plan_scale(replicas, current, hpa, lower_hpa_min=False):
    """What step 2 does. ``current``: the Deployment's spec.replicas now (None: no Deployment yet); ``hpa``: the matching
    HPA (dict) or None. Returns {"scale": wanted spec.replicas or None (leave), "hpa": {name, min_before, min_after, max}
    or None}; raises WorkloadInputError when the HPA's maxReplicas is below ``replicas``."""
    plan = {"scale": None, "hpa": None}
    if hpa is not None:
        spec = hpa.get("spec") or {}
        min_before = spec.get("minReplicas", 1)
        maximum = spec.get("maxReplicas")
        min_after = min_before
        if replicas is not None:
            if maximum is not None and maximum < replicas:
                raise WorkloadInputError(
                    "HorizontalPodAutoscaler %s limits Deployment to maxReplicas %d, below replicas %d: raise its spec.maxReplicas to at "
                    "least %d (in its manifest, or kubectl patch hpa %s), or ask for at most %d replicas; nothing was changed"
                    % (hpa["metadata"]["name"], maximum, replicas, replicas, hpa["metadata"]["name"], maximum))
            if min_before < replicas or (lower_hpa_min and replicas < min_before):
                min_after = max(replicas, 1)
        plan["hpa"] = {"name": hpa["metadata"]["name"], "min_before": min_before, "min_after": min_after, "max": maximum}
        if replicas is not None:
            plan["scale"] = max(current if current is not None else 0, replicas)
    elif replicas is not None:
        plan["scale"] = replicas
    return plan


# ---------------------------------------------------------------------------------------------------------
# Rollout and endpoints (pure)


def label_selector(selector):
    """A LabelSelector (matchLabels, matchExpressions) as the API's labelSelector query string."""
    parts = ["%s=%s" % (k, v) for k, v in sorted(((selector or {}).get("matchLabels") or {}).items())]
    for expr in (selector or {}).get("matchExpressions") or []:
        op, key, values = expr.get("operator"), expr.get("key"), expr.get("values") or []
        if op == "In":
            parts.append("%s in (%s)" % (key, ",".join(values)))
        elif op == "NotIn":
            parts.append("%s notin (%s)" % (key, ",".join(values)))
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append("!" + key)
    return ",".join(parts)


def _condition(conditions, ctype):
    for cond in conditions or []:
        if cond.get("type") == ctype:
            return cond
    return None


def rollout_state(deployment):
    """{"complete": bool, "failed": bool, "waiting_for": str} for a Deployment dict, as kubectl rollout status judges it,
    stricter: no old pods left (status.replicas == spec.replicas) and every pod ready and available."""
    meta, spec, status = deployment.get("metadata") or {}, deployment.get("spec") or {}, deployment.get("status") or {}
    wanted = spec.get("replicas", 1)
    counts = dict((key, status.get(key) or 0) for key in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas"))
    observed = status.get("observedGeneration") or 0
    progressing = _condition(status.get("conditions"), "Progressing")
    state = {"complete": False, "failed": False, "waiting_for": ""}
    if observed < (meta.get("generation") or 0):
        state["waiting_for"] = "the Deployment controller to observe generation %s (observed %s)" % (meta.get("generation"), observed)
        return state
    if progressing and progressing.get("status") == "False" and progressing.get("reason") == "ProgressDeadlineExceeded":
        state["failed"] = True
        state["waiting_for"] = "nothing: the rollout exceeded its progress deadline"
        return state
    if counts["updatedReplicas"] < wanted:
        state["waiting_for"] = "%d of %d updated replicas" % (counts["updatedReplicas"], wanted)
    elif counts["replicas"] > counts["updatedReplicas"]:
        state["waiting_for"] = "%d old replicas to terminate" % (counts["replicas"] - counts["updatedReplicas"])
    elif counts["replicas"] != wanted:
        state["waiting_for"] = "%d replicas, %d wanted" % (counts["replicas"], wanted)
    elif counts["readyReplicas"] < wanted or counts["availableReplicas"] < wanted:
        state["waiting_for"] = "%d ready and %d available of %d replicas" % (counts["readyReplicas"], counts["availableReplicas"], wanted)
    else:
        state["complete"] = True
    return state


def ready_endpoints(slices, pod_names, port_name=None):
    """The ready endpoints of a Service's EndpointSlices whose targetRef is one of ``pod_names``: a sorted list of
    {"pod", "address", "port"}, each pod once (ready: conditions.ready not false; the port named ``port_name`` when given)."""
    found = {}
    for item in slices:
        ports = item.get("ports") or []
        if port_name is not None:
            ports = [p for p in ports if (p.get("name") or "") == port_name]
            if not ports:
                continue
        port = ports[0].get("port") if ports else None
        for endpoint in item.get("endpoints") or []:
            ref = endpoint.get("targetRef") or {}
            if ref.get("kind") != "Pod" or ref.get("name") not in pod_names:
                continue
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            addresses = endpoint.get("addresses") or []
            found.setdefault(ref["name"], {"pod": ref["name"], "address": addresses[0] if addresses else None, "port": port})
    return [found[name] for name in sorted(found)]


def pod_ready(pod):
    cond = _condition((pod.get("status") or {}).get("conditions"), "Ready")
    return bool(cond and cond.get("status") == "True")


def _pod_problems(pod):
    """One line on why a pod is not ready, and the hint keys found."""
    status = pod.get("status") or {}
    bits, keys = ["phase %s" % (status.get("phase") or "unknown")], []
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        bits.append("terminating")
    for ctype in ("PodScheduled", "Ready"):
        cond = _condition(status.get("conditions"), ctype)
        if cond and cond.get("status") != "True":
            reason = " " + cond["reason"] if cond.get("reason") else ""
            message = " (%s)" % cond["message"] if cond.get("message") else ""
            bits.append("%s %s%s%s" % (ctype, cond.get("status"), reason, message))
            if cond.get("reason"):
                keys.append(cond["reason"])
    for cstatus in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        state = cstatus.get("state") or {}
        text = "container %s" % cstatus.get("name")
        if "waiting" in state:
            waiting = state["waiting"] or {}
            text += " waiting %s" % (waiting.get("reason") or "")
            if waiting.get("message"):
                text += " (%s)" % waiting["message"][:300]
            keys.append(waiting.get("reason"))
        elif "terminated" in state:
            terminated = state["terminated"] or {}
            text += " terminated %s exit code %s" % (terminated.get("reason") or "", terminated.get("exitCode"))
        elif cstatus.get("ready") is False:
            text += " running, not ready (readiness probe failing)"
        else:
            continue
        if cstatus.get("restartCount"):
            last = (cstatus.get("lastState") or {}).get("terminated") or {}
            text += ", %d restarts%s" % (cstatus["restartCount"], " (last: %s, exit code %s)" % (last.get("reason"), last.get("exitCode")) if last else "")
        bits.append(text)
    return "; ".join(bits), [k for k in keys if k]


def warning_events(events, deployment, pod_names, per_object=3):
    """The Warning events (list of Event dicts) about this Deployment, its ReplicaSets (``<name>-<hash>``) and the pods
    ``pod_names``: {"<Kind>/<name>": ["<reason>: <message> (xN)", ...]}, the latest ``per_object`` of each, oldest first."""
    name = (deployment.get("metadata") or {}).get("name")
    found = {}
    for event in events:
        obj = event.get("involvedObject") or {}
        kind, obj_name = obj.get("kind"), obj.get("name") or ""
        if event.get("type") != "Warning":
            continue
        if not ((kind == "Deployment" and obj_name == name) or (kind == "ReplicaSet" and obj_name.rsplit("-", 1)[0] == name)
                or (kind == "Pod" and obj_name in pod_names)):
            continue
        when = event.get("lastTimestamp") or event.get("eventTime") or (event.get("metadata") or {}).get("creationTimestamp") or ""
        count = event.get("count") or ((event.get("series") or {}).get("count")) or 1
        text = "%s: %s%s" % (event.get("reason"), (event.get("message") or "").strip()[:300], " (x%d)" % count if count > 1 else "")
        found.setdefault("%s/%s" % (kind, obj_name), []).append((when, text))
    return dict((key, [text for _when, text in sorted(items)[-per_object:]]) for key, items in found.items())


# pylint: disable-next=too-many-arguments,too-many-positional-arguments
def failure_reason(deployment, pods, endpoints=None, service=None, elapsed=None, events=None):
    """The text of a wait that ended without the rollout complete: the Deployment's counts and conditions, each pod not
    ready (at most MAX_PODS_REPORTED) with its conditions and container states, the Warning events (``warning_events``),
    the Service's ready endpoints, and what to do."""
    events = events or {}
    meta, spec, status = deployment.get("metadata") or {}, deployment.get("spec") or {}, deployment.get("status") or {}
    wanted = spec.get("replicas", 1)
    lines = ["Deployment %s/%s: %d wanted, %d current, %d updated, %d ready, %d available (generation %s, observed %s)%s" % (
        meta.get("namespace"), meta.get("name"), wanted, status.get("replicas") or 0, status.get("updatedReplicas") or 0,
        status.get("readyReplicas") or 0, status.get("availableReplicas") or 0, meta.get("generation"), status.get("observedGeneration"),
        "" if elapsed is None else " after %.0f s" % elapsed)]
    keys = []
    for cond in status.get("conditions") or []:
        lines.append("condition %s %s%s%s" % (cond.get("type"), cond.get("status"), " " + cond["reason"] if cond.get("reason") else "",
                                              ": " + cond["message"] if cond.get("message") else ""))
        if cond.get("status") == "False" and cond.get("reason"):
            keys.append(cond["reason"])
    for key in sorted(k for k in events if not k.startswith("Pod/")):
        lines.append("events of %s: %s" % (key, "; ".join(events[key])))
        keys.extend(text.split(":", 1)[0] for text in events[key])
    not_ready = sorted((p for p in pods if not pod_ready(p)), key=lambda p: p["metadata"]["name"])
    for pod in not_ready[:MAX_PODS_REPORTED]:
        text, found = _pod_problems(pod)
        keys.extend(found)
        pod_events = events.get("Pod/%s" % pod["metadata"]["name"])
        if pod_events:
            text += "; events: " + "; ".join(pod_events)
            keys.extend(t.split(":", 1)[0] for t in pod_events)
        lines.append("pod %s not ready: %s" % (pod["metadata"]["name"], text))
    if len(not_ready) > MAX_PODS_REPORTED:
        lines.append("and %d more pods not ready" % (len(not_ready) - MAX_PODS_REPORTED))
    if service is not None:
        lines.append("Service %s lists %d ready endpoints of this Deployment's pods, %d wanted" % (service, len(endpoints or []), wanted))
    hints = []
    for key in keys:
        hint = HINTS.get(key)
        if hint and hint not in hints:
            hints.append(hint)
    if not hints and not_ready:
        hints.append("the pods run but are not ready: check the readiness probe and the version's health endpoint")
    hints.append("fix the pod template and run again, or roll back (kubectl rollout undo deployment/%s -n %s), or raise wait_timeout "
                 "if the pods are only slow" % (meta.get("name"), meta.get("namespace")))
    lines.append("what to do: " + "; ".join(hints))
    return "\n".join(lines), [p["metadata"]["name"] for p in not_ready]


def summary(deployment):
    """The ``deployment`` return value."""
    if not deployment:
        return None
    meta, spec, status = deployment.get("metadata") or {}, deployment.get("spec") or {}, deployment.get("status") or {}
    containers = (((spec.get("template") or {}).get("spec") or {}).get("containers")) or []
    return {"name": meta.get("name"), "generation": meta.get("generation"), "observed_generation": status.get("observedGeneration"),
            "replicas": spec.get("replicas"), "ready": status.get("readyReplicas") or 0, "updated": status.get("updatedReplicas") or 0,
            "available": status.get("availableReplicas") or 0, "images": [c.get("image") for c in containers]}


# ---------------------------------------------------------------------------------------------------------
# API


# K8sApi sends a body with a JSON content type (the merge patches here) as a dict, which the client encodes once.
WorkloadApi = K8sApi


# ---------------------------------------------------------------------------------------------------------
# Ensure


def _conflict(kind, namespace, name, exc):
    return K8sBindingError("%s %s/%s: another field manager owns fields this module writes (%s): %s; the module does not overwrite "
                           "them silently: stop that writer or change the manifest, or set force_conflicts=true to take the fields over"
                           % (kind, namespace, name, ", ".join(exc.managers) or "unknown manager", exc), status=409, managers=exc.managers)


# pylint: disable-next=too-many-locals,too-many-branches,too-many-statements
def ensure_workload(api, spec, check_mode=False, clock=time.monotonic, sleep=time.sleep):
    """Apply, scale and wait; returns the result dict; raises WorkloadInputError, WorkloadError, K8sBindingError."""
    ns, name = spec["namespace"], spec["deployment"]
    result = {"changed": False, "objects": [], "calls": api.calls, "diff": {"before": {}, "after": {}}, "hpa": None,
              "endpoints": [], "waited_seconds": 0.0, "deployment": None}
    manifests = spec["manifests"]
    live = {}
    for obj in manifests:
        live[(obj["kind"], obj["metadata"]["name"])] = api.request("GET", api_path(obj["kind"], ns, obj["metadata"]["name"]))
    dep_key = ("Deployment", name)
    deployment = live[dep_key] if dep_key in live else api.request("GET", api_path("Deployment", ns, name))
    dep_manifest = next((m for m in manifests if (m["kind"], m["metadata"]["name"]) == dep_key), None)
    if deployment is None and dep_manifest is None:
        raise WorkloadInputError("Deployment %s/%s does not exist: give its manifest in manifests, or fix deployment/namespace" % (ns, name))

    # step 2 planned before anything is written (a too low maxReplicas changes nothing)
    hpa_manifests = [m for m in manifests if m["kind"] == "HorizontalPodAutoscaler"]
    listed = (api.request("GET", api_path("HorizontalPodAutoscaler", ns)) or {}).get("items") or []
    by_name = dict((h["metadata"]["name"], h) for h in listed)
    for manifest in hpa_manifests:
        by_name[manifest["metadata"]["name"]] = manifest        # the manifest is what the HPA will be
    hpas = matching_hpa(list(by_name.values()), name)
    if len(hpas) > 1:
        raise WorkloadInputError("several HorizontalPodAutoscalers target Deployment %s/%s (%s): the HPA controller then fights itself; keep "
                                 "one" % (ns, name, ", ".join(h["metadata"]["name"] for h in hpas)))
    hpa = hpas[0] if hpas else None
    current = (deployment or {}).get("spec", {}).get("replicas") if deployment else None
    plan = plan_scale(spec["replicas"], current, hpa, spec["lower_hpa_min"])
    result["hpa"] = plan["hpa"]
    hpa_in_manifests = hpa is not None and any(m is hpa for m in hpa_manifests)
    # fold the plan into the manifests that carry the fields: one owner (mixedrun.kong's apply) for each field
    if hpa_in_manifests and plan["hpa"]["min_after"] != plan["hpa"]["min_before"]:
        hpa["spec"]["minReplicas"] = plan["hpa"]["min_after"]
    if dep_manifest is not None and plan["scale"] is not None and "replicas" in (dep_manifest.get("spec") or {}):
        dep_manifest["spec"]["replicas"] = plan["scale"]

    # 1. manifests
    query = {"fieldManager": FIELD_MANAGER}
    if spec["force_conflicts"]:
        query["force"] = "true"
    for obj in manifests:
        kind, obj_name = obj["kind"], obj["metadata"]["name"]
        before = live[(kind, obj_name)]
        key = "%s/%s" % (kind, obj_name)
        obj_path = api_path(kind, ns, obj_name)
        # a field the manifest no longer sets is removed by server-side apply: when every written field matches, a
        # dry-run apply tells; in check mode the dry run also validates the manifest and finds conflicts
        if (check_mode or (before is not None and covers(obj, before))) and same_object(_dry_run(api, obj_path, query, obj), before):
            result["objects"].append({"kind": kind, "name": obj_name, "action": "unchanged"})
            continue
        action = "created" if before is None else "updated"
        if check_mode:
            api.calls.append("PATCH %s (check mode: not sent)" % obj_path)
            after = obj
        else:
            try:
                after = api.request("PATCH", obj_path, query=query, body=obj, content_type="application/apply-patch+yaml")
            except K8sBindingError as exc:
                if exc.status == 409:
                    raise _conflict(kind, ns, obj_name, exc)
                raise
            if before is not None and (after or {}).get("metadata", {}).get("resourceVersion") == before["metadata"].get("resourceVersion"):
                action = "unchanged"        # the API server's defaults made it a no-op (quantities, ports written differently)
            if kind == "Deployment" and obj_name == name:
                deployment = after
        result["objects"].append({"kind": kind, "name": obj_name, "action": action})
        if action != "unchanged":
            result["changed"] = True
            result["diff"]["before"][key] = _project(obj, before) if before is not None else None
            result["diff"]["after"][key] = obj

    # 2. HPA minimum and scale
    if plan["hpa"] is not None and not hpa_in_manifests and plan["hpa"]["min_after"] != plan["hpa"]["min_before"]:
        hpa_path = api_path("HorizontalPodAutoscaler", ns, plan["hpa"]["name"])
        key = "HorizontalPodAutoscaler/%s" % plan["hpa"]["name"]
        result["changed"] = True
        result["diff"]["before"][key] = {"spec": {"minReplicas": plan["hpa"]["min_before"]}}
        result["diff"]["after"][key] = {"spec": {"minReplicas": plan["hpa"]["min_after"]}}
        if check_mode:
            api.calls.append("PATCH %s (check mode: not sent)" % hpa_path)
        else:
            api.request("PATCH", hpa_path, query={"fieldManager": FIELD_MANAGER}, body={"spec": {"minReplicas": plan["hpa"]["min_after"]}},
                        content_type="application/merge-patch+json")
    if plan["scale"] is not None:
        now = (deployment or {}).get("spec", {}).get("replicas") if deployment else None
        if deployment is not None and now != plan["scale"]:
            scale_path = api_path("Deployment", ns, name) + "/scale"
            key = "Deployment/%s/scale" % name
            result["changed"] = True
            result["diff"]["before"][key] = {"spec": {"replicas": now}}
            result["diff"]["after"][key] = {"spec": {"replicas": plan["scale"]}}
            if check_mode:
                api.calls.append("PATCH %s (check mode: not sent)" % scale_path)
            else:
                api.request("PATCH", scale_path, query={"fieldManager": FIELD_MANAGER}, body={"spec": {"replicas": plan["scale"]}},
                            content_type="application/merge-patch+json")
        elif deployment is None and check_mode:
            key = "Deployment/%s/scale" % name
            result["diff"]["before"][key] = None
            result["diff"]["after"][key] = {"spec": {"replicas": plan["scale"]}}

    # 3. wait
    if check_mode or not spec["wait"]:
        result["deployment"] = summary(deployment) if deployment is not None else summary(dep_manifest)
        if not check_mode and deployment is not None and spec["service"]:
            result["endpoints"] = _endpoints(api, spec, deployment)[0]
        return result
    started = clock()
    deadline = started + spec["wait_timeout"]
    while True:
        deployment = api.request("GET", api_path("Deployment", ns, name))
        if deployment is None:
            raise WorkloadError("Deployment %s/%s disappeared while waiting for its rollout" % (ns, name))
        state = rollout_state(deployment)
        endpoints, pods, service_missing = [], None, False
        done = state["complete"]
        if done and spec["service"]:
            endpoints, pods, service_missing = _endpoints(api, spec, deployment)
            done = not service_missing and len(endpoints) >= (deployment.get("spec") or {}).get("replicas", 1)
        result["waited_seconds"] = round(clock() - started, 1)
        if done:
            break
        if state["failed"] or clock() >= deadline or service_missing:
            if pods is None:
                pods = _pods(api, ns, deployment)
                if spec["service"]:
                    endpoints, pods, service_missing = _endpoints(api, spec, deployment, pods)
            text, not_ready = failure_reason(deployment, pods, endpoints, spec["service"], clock() - started,
                                             _events(api, ns, deployment, pods))
            if service_missing:
                head = "Service %s/%s does not exist: give its manifest in manifests, or fix service" % (ns, spec["service"])
            elif state["failed"]:
                head = "the rollout of Deployment %s/%s failed (ProgressDeadlineExceeded)" % (ns, name)
            else:
                head = "Deployment %s/%s was not rolled out within %s s (waiting for %s)" % (
                    ns, name, "%g" % spec["wait_timeout"],
                    state["waiting_for"] if not state["complete"] else "the Service %s's ready endpoints" % spec["service"])
            result["deployment"] = summary(deployment)
            result["endpoints"] = endpoints
            raise WorkloadError("%s\n%s" % (head, text), details={
                "changed": result["changed"], "deployment": result["deployment"], "hpa": result["hpa"], "endpoints": endpoints,
                "objects": result["objects"], "calls": list(api.calls), "waited_seconds": result["waited_seconds"], "not_ready_pods": not_ready})
        sleep(min(POLL_SECONDS, max(0.05, deadline - clock())))
    result["deployment"] = summary(deployment)
    result["endpoints"] = endpoints
    return result


def _owned(obj):
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == FIELD_MANAGER and entry.get("operation") == "Apply" and not entry.get("subresource"):
            return entry.get("fieldsV1")
    return None


def same_object(dry, live):
    """Whether a dry-run apply's result leaves ``live`` (None: absent) as it is: spec, labels, annotations and the fields
    this manager owns."""
    if live is None:
        return False

    def view(obj):
        meta = obj.get("metadata") or {}
        return (obj.get("spec"), meta.get("labels") or {}, meta.get("annotations") or {}, _owned(obj))
    return view(dry or {}) == view(live)


def _dry_run(api, obj_path, query, obj):
    """The object as applying ``obj`` would leave it: a dry-run apply (``dryRun=All``, nothing persisted, not listed in
    ``calls``); a conflict raises as the apply would."""
    try:
        dry = api.request("PATCH", obj_path, query=dict(query, dryRun="All"), body=obj, content_type="application/apply-patch+yaml")
    except K8sBindingError as exc:
        if exc.status == 409:
            raise _conflict(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"], exc)
        raise
    finally:
        if api.calls and api.calls[-1] == "PATCH %s" % obj_path:
            api.calls.pop()
    return dry


def _events(api, ns, deployment, pods):
    """The Warning events of the Deployment, its ReplicaSets and its pods not ready (one list call; {} when events cannot be read)."""
    names = set(p["metadata"]["name"] for p in pods if not pod_ready(p))
    try:
        listed = api.request("GET", "/api/v1/namespaces/%s/events" % ns, query={"fieldSelector": "type=Warning"}) or {}
    except K8sBindingError:
        return {}
    return warning_events(listed.get("items") or [], deployment, names)


def _pods(api, ns, deployment):
    selector = label_selector((deployment.get("spec") or {}).get("selector"))
    return (api.request("GET", "/api/v1/namespaces/%s/pods" % ns, query={"labelSelector": selector}) or {}).get("items") or []


def _endpoints(api, spec, deployment, pods=None):
    """(ready endpoints of the Deployment's pods in the Service, the pods, whether the Service is missing)."""
    ns = spec["namespace"]
    if api.request("GET", api_path("Service", ns, spec["service"])) is None:
        return [], pods if pods is not None else _pods(api, ns, deployment), True
    if pods is None:
        pods = _pods(api, ns, deployment)
    names = set(p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp"))
    slices = (api.request("GET", "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices" % ns,
                          query={"labelSelector": "kubernetes.io/service-name=%s" % spec["service"]}) or {}).get("items") or []
    return ready_endpoints(slices, names, spec["port_name"]), pods, False
