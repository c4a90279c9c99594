"""A Kubernetes API server stand-in that speaks the real wire format (read-only), for the lab.

Served (GET only): ``/version``, ``/healthz``, ``/livez``, ``/readyz`` (no auth, like the public-info role);
discovery ``/api``, ``/api/v1``, ``/apis``, ``/apis/discovery.k8s.io``, ``/apis/discovery.k8s.io/v1``
(any authenticated user); core/v1 ``namespaces``, ``nodes``, ``pods``, ``services`` and
discovery.k8s.io/v1 ``endpointslices``: list (namespaced and all-namespaces) and get, with ``labelSelector``
(``=``, ``==``, ``!=``, ``in``, ``notin``, ``key``, ``!key``, ``>``, ``<``; apimachinery's grammar and semantics),
``fieldSelector`` (``metadata.name``, ``metadata.namespace``; pods also ``spec.nodeName``, ``status.phase``,
``status.podIP``), ``limit``/``continue`` (opaque token; ``metadata.remainingItemCount`` only for lists without
selectors, as a real apiserver) and
``resourceVersion`` on every object and list. Errors are ``Status`` bodies (401, 403, 404, 400, 405, 410).

Auth: ``Authorization: Bearer <token>``. The admin token may read everything; the "forbidden" token is
authenticated (discovery works) but every resource request answers 403.

Lab admin (admin token): ``POST /_lab/objects`` loads extra objects (``{"items": [...]}``, a ``*List``, or one
object; existing ones with the same kind/namespace/name are replaced), ``DELETE /_lab/objects`` removes the
objects loaded that way (``?namespace=`` and/or ``?labelSelector=`` to limit; the selector reaches cluster-scoped objects
such as Nodes), ``GET /_lab/state`` counts objects per kind, ``POST /_lab/compact``
expires every continue token issued so far (the next page of those lists answers 410 Expired, as after an etcd
compaction).

The lab's own objects follow the fleet: container nodes are pods (Ready while the node is up and healthy,
updated the moment a fault changes; the ``terminating`` fault gives the pod a ``deletionTimestamp`` and its endpoint
``ready: false, serving: <Ready>, terminating: true``), each service has a NodePort Service and an EndpointSlice, and the
``k8s.nodes`` workers are Node objects with loopback InternalIPs.
"""

import base64
import binascii
import copy
import datetime
import hmac
import json
import re
import uuid

from aiohttp import web

from tests.lab.config import pod_template_hash

GROUP_DISCOVERY = "discovery.k8s.io"
# plural -> (group, version, kind, namespaced, short names)
RESOURCES = {
    "namespaces": ("", "v1", "Namespace", False, ["ns"]),
    "nodes": ("", "v1", "Node", False, ["no"]),
    "pods": ("", "v1", "Pod", True, ["po"]),
    "services": ("", "v1", "Service", True, ["svc"]),
    "endpointslices": (GROUP_DISCOVERY, "v1", "EndpointSlice", True, []),
}
KIND_TO_PLURAL = {v[2]: k for k, v in RESOURCES.items()}
FIELD_SELECTORS = {
    "pods": {"metadata.name", "metadata.namespace", "spec.nodeName", "status.phase", "status.podIP"},
}
FORBIDDEN_USER = "system:serviceaccount:mixedrun-lab:forbidden"
_QUALIFIED = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SPECIAL = "!=,()<>"


# --------------------------------------------------------------------------------------------------------------
# Label selectors (k8s.io/apimachinery/pkg/labels/selector.go)

class SelectorError(ValueError):
    """A label or field selector does not parse."""


def _lex(text):
    """Tokens as (type, literal); types: ID, IN, NOTIN, NOT, EQ, DEQ, NEQ, GT, LT, COMMA, OPEN, CLOSE, EOS."""
    tokens, i, n = [], 0, len(text)
    singles = {"=": "EQ", ",": "COMMA", "(": "OPEN", ")": "CLOSE", "<": "LT", ">": "GT", "!": "NOT"}
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in _SPECIAL:
            two = text[i:i + 2]
            if two == "!=":
                tokens.append(("NEQ", two))
                i += 2
            elif two == "==":
                tokens.append(("DEQ", two))
                i += 2
            else:
                tokens.append((singles[ch], ch))
                i += 1
            continue
        j = i
        while j < n and not text[j].isspace() and text[j] not in _SPECIAL:
            j += 1
        word = text[i:j]
        tokens.append(({"in": "IN", "notin": "NOTIN"}.get(word, "ID"), word))
        i = j
    tokens.append(("EOS", ""))
    return tokens


def _validate_key(key):
    prefix, _sep, name = key.rpartition("/")
    if not name or len(name) > 63 or not _QUALIFIED.match(name) or (_sep and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix))):
        raise SelectorError("key: Invalid value: %r: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
                            "end with an alphanumeric character (max 63 characters), with an optional DNS subdomain prefix and '/'" % key)


def _validate_value(value):
    if len(value) > 63 or (value and not _QUALIFIED.match(value)):
        raise SelectorError("values[0]: Invalid value: %r: a valid label must be an empty string or consist of alphanumeric characters, "
                            "'-', '_' or '.', and must start and end with an alphanumeric character (max 63 characters)" % value)


class _Parser:
    def __init__(self, text):
        self.tokens = _lex(text)
        self.pos = 0

    def lookahead(self, values=True):
        """Next token; in a values context the keywords in/notin are identifiers."""
        typ, lit = self.tokens[self.pos]
        if values and typ in ("IN", "NOTIN"):
            typ = "ID"
        return typ, lit

    def consume(self, values=True):
        """Take the next token."""
        tok = self.lookahead(values)
        self.pos = min(self.pos + 1, len(self.tokens) - 1)
        return tok

    def parse(self):
        """All requirements of the selector."""
        reqs = []
        while True:
            typ, lit = self.lookahead()
            if typ in ("ID", "NOT"):
                reqs.append(self.requirement())
                typ, lit = self.consume()
                if typ == "EOS":
                    return reqs
                if typ == "COMMA":
                    typ2, lit2 = self.lookahead()
                    if typ2 not in ("ID", "NOT"):
                        raise SelectorError("found '%s', expected: identifier after ','" % lit2)
                    continue
                raise SelectorError("found '%s', expected: ',' or 'end of string'" % lit)
            if typ == "EOS":
                return reqs
            raise SelectorError("found '%s', expected: !, identifier, or 'end of string'" % lit)

    def requirement(self):
        """One requirement: (key, op, values)."""
        op = None
        typ, lit = self.consume()
        if typ == "NOT":
            op = "!"
            typ, lit = self.consume()
        if typ != "ID":
            raise SelectorError("found '%s', expected: identifier" % lit)
        key = lit
        _validate_key(key)
        nxt, _lit = self.lookahead()
        if nxt in ("EOS", "COMMA") and op is None:
            op = "exists"
        if op in ("!", "exists"):
            return key, op, set()
        typ, lit = self.consume(values=False)
        ops = {"IN": "in", "NOTIN": "notin", "EQ": "=", "DEQ": "==", "NEQ": "!=", "GT": ">", "LT": "<"}
        if typ not in ops:
            raise SelectorError("found '%s', expected: %s" % (lit, ", ".join(["in", "notin", "=", "==", "!=", "gt", "lt"])))
        op = ops[typ]
        values = self.values() if op in ("in", "notin") else self.exact_value()
        if op in ("in", "notin") and not values:
            raise SelectorError("for 'in', 'notin' operators, values set can't be empty")
        if op in (">", "<"):
            val = next(iter(values))
            if not re.match(r"^-?[0-9]+$", val):
                raise SelectorError("for 'Gt', 'Lt' operators, the value must be an integer: %r" % val)
        for val in values:
            _validate_value(val)
        return key, op, values

    def exact_value(self):
        """The single value after =, ==, !=, >, < (may be empty)."""
        typ, _lit = self.lookahead()
        if typ in ("EOS", "COMMA"):
            return {""}
        typ, lit = self.consume()
        if typ == "ID":
            return {lit}
        raise SelectorError("found '%s', expected: identifier" % lit)

    def values(self):
        """A parenthesised value list."""
        typ, lit = self.consume()
        if typ != "OPEN":
            raise SelectorError("found '%s' expected: '('" % lit)
        typ, lit = self.lookahead()
        if typ == "CLOSE":      # "()" is the set of the empty value, as in apimachinery's parseValues
            self.consume()
            return {""}
        if typ not in ("ID", "COMMA"):
            raise SelectorError("found '%s', expected: ',', ')' or identifier" % lit)
        out = set()
        while True:
            typ, lit = self.consume()
            if typ == "ID":
                out.add(lit)
                typ2, lit2 = self.lookahead()
                if typ2 == "COMMA":
                    continue
                if typ2 == "CLOSE":
                    self.consume()
                    return out
                raise SelectorError("found '%s', expected: ',' or ')'" % lit2)
            if typ == "COMMA":
                if not out:
                    out.add("")
                typ2, _lit2 = self.lookahead()
                if typ2 == "CLOSE":
                    out.add("")
                    self.consume()
                    return out
                if typ2 == "COMMA":
                    self.consume()
                    out.add("")
                continue
            raise SelectorError("found '%s', expected: ',', or identifier" % lit)


def parse_label_selector(text):
    """Parse a label selector string into requirements; SelectorError when it does not parse."""
    return _Parser(text or "").parse()


def match_labels(reqs, labels):
    """True when ``labels`` (a dict) satisfies every requirement."""
    labels = labels or {}
    for key, op, values in reqs:
        has = key in labels
        val = labels.get(key)
        if op == "exists":
            ok = has
        elif op == "!":
            ok = not has
        elif op in ("=", "==", "in"):
            ok = has and val in values
        elif op in ("!=", "notin"):
            ok = not has or val not in values
        else:
            try:
                ok = has and ((int(val) > int(next(iter(values)))) if op == ">" else (int(val) < int(next(iter(values)))))
            except ValueError:
                ok = False
        if not ok:
            return False
    return True


def parse_field_selector(text, plural):
    """Parse ``a=b,c!=d`` (with \\ escapes) into [(field, op, value)]; SelectorError on bad input or unknown fields."""
    out = []
    if not text:
        return out
    terms, cur, i = [], "", 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur += text[i:i + 2]
            i += 2
            continue
        if ch == ",":
            terms.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    terms.append(cur)
    allowed = FIELD_SELECTORS.get(plural, {"metadata.name", "metadata.namespace"})
    for term in terms:
        match = re.match(r"^([^=!]+)(==|=|!=)(.*)$", term)
        if not match:
            raise SelectorError("invalid selector: '%s'; can't understand '%s'" % (text, term))
        fld, op, value = match.group(1).strip(), match.group(2), match.group(3).strip()
        if fld not in allowed:
            raise SelectorError("field label not supported: %s" % fld)
        out.append((fld, "!=" if op == "!=" else "=", re.sub(r"\\(.)", r"\1", value)))
    return out


def _field_value(obj, path):
    cur = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return "" if cur is None else str(cur)


def match_fields(reqs, obj):
    """True when ``obj`` satisfies every field requirement."""
    for fld, op, value in reqs:
        if (_field_value(obj, fld) == value) != (op == "="):
            return False
    return True


# --------------------------------------------------------------------------------------------------------------
# Objects

def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _uid(kind, namespace, name):
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "mixedrun-lab/%s/%s/%s" % (kind, namespace, name)))


def status_body(code, reason, message, details=None):
    """A metav1.Status failure body."""
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return body


class ObjectStore:
    """Objects by plural and (namespace, name), with a global resourceVersion counter."""

    def __init__(self):
        self.rv = 1000
        self.objects = {plural: {} for plural in RESOURCES}
        self._sorted = {}
        self.seeded = set()     # (plural, namespace, name) loaded through /_lab/objects or extra_objects

    def bump(self):
        """Next resourceVersion."""
        self.rv += 1
        return str(self.rv)

    def put(self, obj, seeded=False):
        """Insert or replace an object (fills uid, resourceVersion, creationTimestamp); returns its key."""
        kind = obj.get("kind")
        plural = KIND_TO_PLURAL.get(kind)
        if plural is None:
            raise ValueError("kind: %r is not served by the lab (one of %s)" % (kind, ", ".join(sorted(KIND_TO_PLURAL))))
        group, version, _kind, namespaced, _short = RESOURCES[plural]
        api_version = "%s/%s" % (group, version) if group else version
        if obj.get("apiVersion", api_version) != api_version:
            raise ValueError("apiVersion: %s must be %r, got %r" % (kind, api_version, obj.get("apiVersion")))
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        if not isinstance(name, str) or not name or len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
            raise ValueError("metadata.name: %s name %r must be a lowercase DNS subdomain" % (kind, name))
        namespace = meta.get("namespace") or ("default" if namespaced else "")
        if namespaced and not _DNS_SUBDOMAIN.match(namespace):
            raise ValueError("metadata.namespace: %r is not a valid namespace name" % namespace)
        if not namespaced:
            meta.pop("namespace", None)
        else:
            meta["namespace"] = namespace
        obj["apiVersion"] = api_version
        meta.setdefault("uid", _uid(kind, namespace, name))
        meta.setdefault("creationTimestamp", _now())
        meta["resourceVersion"] = self.bump()
        key = (namespace, name)
        if key not in self.objects[plural]:
            self._sorted.pop(plural, None)
        self.objects[plural][key] = obj
        if seeded:
            self.seeded.add((plural, namespace, name))
        return key

    def touch(self, plural, key):
        """Give an object a new resourceVersion after an in-place change."""
        self.objects[plural][key]["metadata"]["resourceVersion"] = self.bump()

    def delete(self, plural, key):
        """Remove an object."""
        if self.objects[plural].pop(key, None) is not None:
            self._sorted.pop(plural, None)
            self.bump()

    def sorted_keys(self, plural):
        """Keys in etcd order (namespace/name)."""
        keys = self._sorted.get(plural)
        if keys is None:
            keys = self._sorted[plural] = sorted(self.objects[plural])
        return keys


def _container_status(node_ready, down, started_at, restarts):
    status = {"name": "app", "image": "registry.lab.test/mixedrun/node:1.0", "imageID": "registry.lab.test/mixedrun/node@sha256:" + "0" * 64,
              "containerID": "containerd://" + "1" * 64, "ready": node_ready, "restartCount": restarts, "started": not down}
    if down:
        status["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting failed container app"}}
        status["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": started_at, "finishedAt": _now()}}
    else:
        status["state"] = {"running": {"startedAt": started_at}}
    return status


def build_pod(spec, svc, node_port, started_at):
    """A Deployment-style pod for a container node."""
    rs_name = "%s-%s" % (svc.name, pod_template_hash(svc.name))
    labels = dict(spec.labels)
    labels["pod-template-hash"] = pod_template_hash(svc.name)
    return {
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": labels, "generateName": rs_name + "-",
                     "creationTimestamp": started_at,
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs_name,
                                          "uid": _uid("ReplicaSet", spec.namespace, rs_name), "controller": True, "blockOwnerDeletion": True}]},
        "spec": {"containers": [{"name": "app", "image": "registry.lab.test/mixedrun/node:1.0",
                                 "ports": [{"name": "http", "containerPort": node_port, "protocol": "TCP"}],
                                 "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"}, "periodSeconds": 1,
                                                    "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 1}}],
                 "nodeName": spec.k8s_node, "restartPolicy": "Always", "schedulerName": "default-scheduler",
                 "serviceAccountName": "default", "terminationGracePeriodSeconds": 30},
        "status": {"phase": "Running", "hostIP": spec.host_ip, "hostIPs": [{"ip": spec.host_ip}], "podIP": spec.address,
                   "podIPs": [{"ip": spec.address}], "qosClass": "BestEffort", "startTime": started_at,
                   "conditions": [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": started_at}
                                  for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")],
                   "containerStatuses": [_container_status(True, False, started_at, 0)]},
    }


def build_service(svc):
    """A NodePort Service selecting the service's pods."""
    port = {"name": "http", "protocol": "TCP", "port": svc.port, "targetPort": "http"}
    if svc.node_port:
        port["nodePort"] = svc.node_port
    return {"kind": "Service", "apiVersion": "v1",
            "metadata": {"name": svc.name, "namespace": svc.namespace, "labels": dict(svc.labels)},
            "spec": {"type": "NodePort" if svc.node_port else "ClusterIP", "selector": dict(svc.labels), "ports": [port],
                     "clusterIP": svc.cluster_ip, "clusterIPs": [svc.cluster_ip], "ipFamilies": ["IPv4"],
                     "ipFamilyPolicy": "SingleStack", "sessionAffinity": "None", "externalTrafficPolicy": "Cluster",
                     "internalTrafficPolicy": "Cluster"},
            "status": {"loadBalancer": {}}}


def endpoint_for(spec, ready):
    """One EndpointSlice endpoint for a container node."""
    return {"addresses": [spec.address], "conditions": {"ready": ready, "serving": ready, "terminating": False},
            "nodeName": spec.k8s_node,
            "targetRef": {"kind": "Pod", "namespace": spec.namespace, "name": spec.name, "uid": _uid("Pod", spec.namespace, spec.name)}}


def build_endpointslice(svc, node_port, readiness):
    """The service's EndpointSlice (all its pods; the lab stays under the 100-endpoint slice limit)."""
    name = "%s-%s" % (svc.name, pod_template_hash("slice:" + svc.name)[:5])
    return {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
            "metadata": {"name": name, "namespace": svc.namespace, "generateName": svc.name + "-",
                         "labels": {"kubernetes.io/service-name": svc.name,
                                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": svc.name, "uid": _uid("Service", svc.namespace, svc.name),
                                              "controller": True, "blockOwnerDeletion": True}]},
            "addressType": "IPv4",
            "endpoints": [endpoint_for(c, readiness.get(c.name, True)) for c in svc.containers],
            "ports": [{"name": "http", "port": node_port, "protocol": "TCP"}]}


def build_node(knode, version, started_at):
    """A Kubernetes Node ('worker') with a loopback InternalIP."""
    return {"kind": "Node", "apiVersion": "v1",
            "metadata": {"name": knode.name, "labels": {"kubernetes.io/hostname": knode.name, "kubernetes.io/os": "linux",
                                                        "kubernetes.io/arch": "amd64", "node-role.kubernetes.io/worker": ""}},
            "spec": {"podCIDR": "127.0.20.0/24"},
            "status": {"addresses": [{"type": "InternalIP", "address": knode.address}, {"type": "Hostname", "address": knode.name}],
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                                       "lastHeartbeatTime": started_at, "lastTransitionTime": started_at}],
                       "nodeInfo": {"architecture": "amd64", "bootID": _uid("boot", "", knode.name), "containerRuntimeVersion": "containerd://1.7.0",
                                    "kernelVersion": "6.1.0", "kubeProxyVersion": "v%s.0" % version, "kubeletVersion": "v%s.0" % version,
                                    "machineID": _uid("machine", "", knode.name).replace("-", ""), "operatingSystem": "linux",
                                    "osImage": "mixedrun lab", "systemUUID": _uid("system", "", knode.name)}}}


def build_namespace(name, started_at):
    """A Namespace object."""
    meta = {"name": name, "labels": {"kubernetes.io/metadata.name": name}, "creationTimestamp": started_at}
    return {"kind": "Namespace", "apiVersion": "v1", "metadata": meta,
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


# --------------------------------------------------------------------------------------------------------------
# The server

class K8sApi:
    """The API stand-in: an object store that follows the fleet, and the aiohttp application serving it."""

    def __init__(self, config, tokens, fleet=None):
        self.config = config
        self._admin_token = tokens["token"]
        self._forbidden_token = tokens["forbidden_token"]
        self.fleet = fleet
        self.store = ObjectStore()
        self.started_at = _now()
        self.server_address = None
        self.compacted_rv = 0       # continue tokens of lists at or before this resourceVersion answer 410 Expired
        self._restarts = {}
        self._build()
        if fleet is not None:
            fleet.add_listener(self.node_changed)

    # -- objects ------------------------------------------------------------------------------------------
    def _build(self):
        cfg = self.config
        for ns in sorted({"default", "kube-system", "kube-public", "kube-node-lease"} | {s.namespace for s in cfg.services}):
            self.store.put(build_namespace(ns, self.started_at))
        for knode in cfg.k8s_nodes:
            self.store.put(build_node(knode, cfg.k8s["version"], self.started_at))
        for svc in cfg.services:
            if not svc.containers:
                continue
            self.store.put(build_service(svc))
            for spec in svc.containers:
                self.store.put(build_pod(spec, svc, cfg.node_port, self.started_at))
            self.store.put(build_endpointslice(svc, cfg.node_port, {}))
            if self.fleet is not None:
                for spec in svc.containers:
                    self.node_changed(self.fleet.nodes[spec.name])

    def node_changed(self, node):
        """Fleet callback: update the pod and the EndpointSlice of a container node after a fault change."""
        spec = node.spec
        if spec.kind != "container":
            return
        ready = node.ready
        down = not node.listening
        terminating = bool(node.faults.get("terminating"))
        key = (spec.namespace, spec.name)
        pod = self.store.objects["pods"].get(key)
        if pod is not None:
            cond = {c["type"]: c for c in pod["status"]["conditions"]}
            old_status = copy.deepcopy(pod["status"])
            meta = pod["metadata"]
            meta_changed = terminating != ("deletionTimestamp" in meta)
            if terminating and "deletionTimestamp" not in meta:
                meta["deletionTimestamp"] = _now()          # a graceful delete in progress; the kubelet keeps probing
                meta["deletionGracePeriodSeconds"] = 30
            elif not terminating:
                meta.pop("deletionTimestamp", None)
                meta.pop("deletionGracePeriodSeconds", None)
            for ctype in ("Ready", "ContainersReady"):
                want = "True" if ready else "False"
                if cond[ctype]["status"] != want:
                    cond[ctype]["status"] = want
                    cond[ctype]["lastTransitionTime"] = _now()
                    if ready:
                        cond[ctype].pop("reason", None)
                    else:
                        cond[ctype]["reason"] = "ContainersNotReady"
            prev = pod["status"]["containerStatuses"][0]
            if down and prev.get("started"):
                self._restarts[spec.name] = self._restarts.get(spec.name, 0) + 1
            started_at = prev.get("state", {}).get("running", {}).get("startedAt") or _now()
            pod["status"]["containerStatuses"] = [_container_status(ready, down, started_at, self._restarts.get(spec.name, 0))]
            if pod["status"] != old_status or meta_changed:
                self.store.touch("pods", key)
        for skey, eps in list(self.store.objects["endpointslices"].items()):
            if eps["metadata"].get("labels", {}).get("kubernetes.io/service-name") != spec.service or skey[0] != spec.namespace:
                continue
            changed = False
            # the EndpointSlice controller: ready = serving and not terminating; serving = the pod's Ready condition
            wanted = {"ready": ready and not terminating, "serving": ready, "terminating": terminating}
            for endpoint in eps.get("endpoints") or []:
                if (endpoint.get("targetRef") or {}).get("name") == spec.name and endpoint["conditions"] != wanted:
                    endpoint["conditions"] = dict(wanted)
                    changed = True
            if changed:
                self.store.touch("endpointslices", skey)

    def load_objects(self, objects, seeded=True):
        """Validate then insert objects (all or nothing); returns how many."""
        prepared = []
        for i, obj in enumerate(objects):
            if not isinstance(obj, dict):
                raise ValueError("items[%d]: must be an object" % i)
            obj = copy.deepcopy(obj)
            kind = obj.get("kind")
            if kind not in KIND_TO_PLURAL:
                raise ValueError("items[%d].kind: %r is not served by the lab (one of %s)" % (i, kind, ", ".join(sorted(KIND_TO_PLURAL))))
            prepared.append(obj)
        # dry run on copies first so a bad object changes nothing
        probe = ObjectStore()
        for i, obj in enumerate(prepared):
            try:
                probe.put(copy.deepcopy(obj))
            except ValueError as exc:
                raise ValueError("items[%d].%s" % (i, exc)) from None
        for obj in prepared:
            self.store.put(obj, seeded=seeded)
        return len(prepared)

    # -- HTTP -----------------------------------------------------------------------------------------
    def app(self):
        """The aiohttp application."""
        application = web.Application(client_max_size=256 * 1024 * 1024)
        application.router.add_route("*", "/{tail:.*}", self.dispatch)
        return application

    @staticmethod
    def _status(code, reason, message, details=None):
        return web.json_response(status_body(code, reason, message, details), status=code)

    def _auth(self, request):
        """'admin', 'forbidden' or None."""
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return None
        token = header[7:].strip().encode()
        if hmac.compare_digest(token, self._admin_token.encode()):
            return "admin"
        if hmac.compare_digest(token, self._forbidden_token.encode()):
            return "forbidden"
        return None

    async def dispatch(self, request):
        """Route every request."""
        path = request.path.rstrip("/") or "/"
        if path == "/version":
            major, minor = self.config.k8s["version"].split(".")
            return web.json_response({"major": major, "minor": minor, "gitVersion": "v%s.0-mixedrun-lab" % self.config.k8s["version"],
                                      "gitCommit": "0" * 40, "gitTreeState": "clean", "buildDate": self.started_at,
                                      "goVersion": "go1.22.0", "compiler": "gc", "platform": "linux/amd64"})
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        who = self._auth(request)
        if who is None:
            return self._status(401, "Unauthorized", "Unauthorized")
        if path.startswith("/_lab/"):
            if who != "admin":
                return self._status(403, "Forbidden", 'User "%s" cannot use the lab admin API' % FORBIDDEN_USER)
            return await self.lab_admin(request, path)
        if request.method != "GET":
            return self._status(405, "MethodNotAllowed", "the lab API stand-in is read-only: %s is not supported" % request.method)
        discovery = self.discovery(path)
        if discovery is not None:
            return web.json_response(discovery)
        return self.resource(request, path, who)

    def discovery(self, path):
        """Discovery documents, or None for a non-discovery path."""
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.server_address or ""}]}
        if path == "/apis":
            gv = {"groupVersion": "%s/v1" % GROUP_DISCOVERY, "version": "v1"}
            return {"kind": "APIGroupList", "apiVersion": "v1",
                    "groups": [{"name": GROUP_DISCOVERY, "versions": [gv], "preferredVersion": gv}]}
        if path == "/apis/%s" % GROUP_DISCOVERY:
            gv = {"groupVersion": "%s/v1" % GROUP_DISCOVERY, "version": "v1"}
            return {"kind": "APIGroup", "apiVersion": "v1", "name": GROUP_DISCOVERY, "versions": [gv], "preferredVersion": gv}
        for prefix, group in (("/api/v1", ""), ("/apis/%s/v1" % GROUP_DISCOVERY, GROUP_DISCOVERY)):
            if path == prefix:
                resources = [{"name": plural, "singularName": info[2].lower(), "namespaced": info[3], "kind": info[2],
                              "verbs": ["get", "list"], "shortNames": info[4]}
                             for plural, info in RESOURCES.items() if info[0] == group]
                return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": ("%s/v1" % group) if group else "v1",
                        "resources": resources}
        return None

    def resource(self, request, path, who):
        """List or get a served resource."""
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) >= 3 and parts[1] == "v1":
            group, rest = "", parts[2:]
        elif parts[0] == "apis" and len(parts) >= 4 and parts[1] == GROUP_DISCOVERY and parts[2] == "v1":
            group, rest = GROUP_DISCOVERY, parts[3:]
        else:
            return self._not_found_path()
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 2:
            return self._not_found_path()
        plural = rest[0]
        name = rest[1] if len(rest) == 2 else None
        info = RESOURCES.get(plural)
        if info is None or info[0] != group or (namespace is not None and not info[3]):
            return self._not_found_path()
        verb = "get" if name else "list"
        if who == "forbidden":
            scope = 'in the namespace "%s"' % namespace if namespace else "at the cluster scope"
            return self._status(403, "Forbidden", '%s%s is forbidden: User "%s" cannot %s resource "%s" in API group "%s" %s'
                                % (plural, (' "%s"' % name) if name else "", FORBIDDEN_USER, verb, plural, group, scope),
                                {"name": name, "group": group, "kind": plural} if name else {"group": group, "kind": plural})
        if name is not None:
            obj = self.store.objects[plural].get((namespace or "", name))
            if obj is None:
                return self._status(404, "NotFound", '%s%s "%s" not found' % (plural, "." + group if group else "", name),
                                    {"name": name, "group": group, "kind": plural})
            return web.json_response(obj)
        if request.query.get("watch") in ("1", "true"):
            return self._status(400, "BadRequest", "watch is not supported by the lab API stand-in; use list")
        return self.list(request, plural, namespace)

    def _not_found_path(self):
        return self._status(404, "NotFound", "the server could not find the requested resource",
                            {"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]})

    def list(self, request, plural, namespace):
        """A *List with selectors and pagination."""
        query = request.query
        group, version, kind, _namespaced, _short = RESOURCES[plural]
        try:
            label_reqs = parse_label_selector(query.get("labelSelector", ""))
        except SelectorError as exc:
            return self._status(400, "BadRequest", "unable to parse labelSelector %r: %s" % (query.get("labelSelector"), exc))
        try:
            field_reqs = parse_field_selector(query.get("fieldSelector", ""), plural)
        except SelectorError as exc:
            return self._status(400, "BadRequest", "unable to parse fieldSelector %r: %s" % (query.get("fieldSelector"), exc))
        limit = 0
        if query.get("limit"):
            try:
                limit = int(query["limit"])
            except ValueError:
                return self._status(400, "BadRequest", "limit: must be a non-negative integer, got %r" % query["limit"])
            limit = max(limit, 0)
        start = None
        if query.get("continue"):
            start = self._decode_continue(query["continue"])
            if isinstance(start, web.Response):
                return start
        objects = self.store.objects[plural]
        items, remaining, last_key = [], 0, None
        for key in self.store.sorted_keys(plural):
            if namespace is not None and key[0] != namespace:
                continue
            if start is not None and key <= start:
                continue
            obj = objects[key]
            if label_reqs and not match_labels(label_reqs, obj["metadata"].get("labels")):
                continue
            if field_reqs and not match_fields(field_reqs, obj):
                continue
            if limit and len(items) >= limit:
                remaining += 1
                continue
            items.append(obj)
            last_key = key
        meta = {"resourceVersion": str(self.store.rv)}
        if remaining:
            # the token holds the last key as (namespace, name), the order sorted_keys() lists them in
            token = {"v": "meta.k8s.io/v1", "rv": self.store.rv, "start": list(last_key)}
            meta["continue"] = base64.b64encode(json.dumps(token, separators=(",", ":")).encode()).decode()
            if not label_reqs and not field_reqs:
                # a real apiserver counts the rest only for an unfiltered list (it would have to filter them all)
                meta["remainingItemCount"] = remaining
        body = {"kind": kind + "List", "apiVersion": ("%s/%s" % (group, version)) if group else version, "metadata": meta,
                "items": [{k: v for k, v in obj.items() if k not in ("kind", "apiVersion")} for obj in items]}
        return web.Response(body=json.dumps(body, separators=(",", ":")).encode(), content_type="application/json")

    def _decode_continue(self, token):
        try:
            data = json.loads(base64.b64decode(token.encode(), validate=True).decode())
            start = data.get("start")
            if (data.get("v") != "meta.k8s.io/v1" or not isinstance(data.get("rv"), int) or not isinstance(start, list) or len(start) != 2
                    or not all(isinstance(part, str) for part in start)):
                raise ValueError("unknown version or fields")
        except (ValueError, binascii.Error, UnicodeDecodeError, AttributeError) as exc:
            return self._status(400, "BadRequest", "continue key is not valid: %s" % exc)
        if data["rv"] > self.store.rv or data["rv"] <= self.compacted_rv:
            return self._status(410, "Expired", "The provided continue parameter is too old to display a consistent list result. "
                                                "You can start a new list without the continue parameter.")
        return tuple(start)

    async def lab_admin(self, request, path):
        """/_lab/objects and /_lab/state."""
        if path == "/_lab/state" and request.method == "GET":
            return web.json_response({"resourceVersion": str(self.store.rv), "compactedResourceVersion": str(self.compacted_rv),
                                      "counts": {p: len(v) for p, v in self.store.objects.items()}, "seeded": len(self.store.seeded)})
        if path == "/_lab/compact":
            if request.method != "POST":
                return self._status(405, "MethodNotAllowed", "use POST on /_lab/compact")
            self.compacted_rv = self.store.rv       # like an etcd compaction: the continue tokens issued so far expire
            self.store.bump()
            return web.json_response({"compactedResourceVersion": str(self.compacted_rv), "resourceVersion": str(self.store.rv)})
        if path != "/_lab/objects":
            return self._not_found_path()
        if request.method == "POST":
            try:
                body = await request.json()
            except ValueError:
                return self._status(400, "BadRequest", "body: not valid JSON")
            if isinstance(body, dict) and isinstance(body.get("items"), list):
                items = body["items"]
                item_kind = body.get("kind", "")
                if item_kind.endswith("List") and item_kind[:-4] in KIND_TO_PLURAL:
                    items = [dict({"kind": item_kind[:-4], "apiVersion": body.get("apiVersion")}, **i) if isinstance(i, dict) else i for i in items]
            elif isinstance(body, dict) and "kind" in body:
                items = [body]
            else:
                return self._status(400, "BadRequest", "body: send {\"items\": [objects]}, a *List, or one object")
            try:
                count = self.load_objects(items)
            except ValueError as exc:
                return self._status(400, "BadRequest", str(exc))
            return web.json_response({"loaded": count, "resourceVersion": str(self.store.rv)})
        if request.method == "DELETE":
            namespace = request.query.get("namespace")
            try:
                label_reqs = parse_label_selector(request.query.get("labelSelector", ""))
            except SelectorError as exc:
                return self._status(400, "BadRequest", "unable to parse labelSelector: %s" % exc)
            removed = 0
            for plural, ns, name in sorted(self.store.seeded):
                if namespace and ns != namespace:
                    continue
                obj = self.store.objects[plural].get((ns, name))
                if label_reqs and (obj is None or not match_labels(label_reqs, obj["metadata"].get("labels"))):
                    continue
                self.store.delete(plural, (ns, name))
                self.store.seeded.discard((plural, ns, name))
                removed += 1
            return web.json_response({"removed": removed, "resourceVersion": str(self.store.rv)})
        return self._status(405, "MethodNotAllowed", "use POST or DELETE on /_lab/objects")


def kubeconfig(server, token, ca_data=None, user="mixedrun-lab-admin"):
    """A kubeconfig dict with one cluster, user and context 'mixedrun-lab'."""
    cluster = {"server": server}
    if ca_data:
        cluster["certificate-authority-data"] = ca_data
    return {"apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "mixedrun-lab", "cluster": cluster}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "mixedrun-lab", "context": {"cluster": "mixedrun-lab", "user": user, "namespace": "default"}}],
            "current-context": "mixedrun-lab"}
