"""The lab's real Kubernetes engine: a v1.26.0 control plane (etcd, kube-apiserver, kube-controller-manager) from the
kit in ``../shared/realk8s`` (``k8s-cluster.sh``), seeded with the lab's objects, and a kubelet player.

The kit has no kubelet, scheduler or kube-proxy. The lab plays them:

* ``RealK8s.start()`` runs ``k8s-cluster.sh up`` with ``REALK8S_STATE=<lab state>/k8s`` (the kit's JSON, kubeconfig,
  pki, pids and logs live there, plus ``engine.json`` naming the kit so ``status`` and ``down`` work from the state dir
  alone; ``down`` is the kit's own, which checks each recorded pid before signalling it);
* ``RealK8s.seed(cfg)`` creates what the API stand-in shows: the namespaces, one Node per ``k8s.nodes`` entry
  (InternalIP = its loopback address, Ready), and per service with containers a Deployment with the service's labels
  (so real ReplicaSets create the pods) and a Service (``selector`` = the labels, port ``http`` -> targetPort
  ``http``, NodePort ``services[].node_port``); it waits for the ReplicaSet's pods and returns their names, which
  become the fleet's container node names (lab.json ``nodes[]``);
* ``KubeletPlayer`` runs in the fleet process (``python -m tests.lab serve``): a poll loop (every 0.5 s, and at once
  when a fleet node's fault changes) over each service's pods. A new pod is bound to a lab Node and gets the container
  address whose fleet node carries its name, or, for a pod created later (scaling, a replacement), the next free
  container address of its service, where the player starts a fleet node (named after the pod). It writes
  ``pods/status``: phase Running, hostIP, podIP, the ``Ready`` condition from the fleet node (up and healthy), so
  kube-controller-manager writes the real EndpointSlices. A pod deleted by its controller is confirmed (grace 0) and
  its fleet node stopped. The ``terminating`` fault deletes the pod gracefully (it stays Terminating, serving while
  healthy, and its ReplicaSet creates a replacement); clearing the fault completes the deletion.

What a pod's template tells the player (its first container; the convention for versions under test):

* ``readinessProbe.initialDelaySeconds``: the pod turns Ready that many seconds after the player started it (default 0);
* env ``MIXEDRUN_LAB_READY=false``: a failing version: the node runs, but the pod never turns Ready (``Ready`` and
  ``ContainersReady`` False, reason ``ContainersNotReady``, message ``containers with unready status: [<name>]``, the
  container status ``ready: false``, and one Warning event ``Unhealthy``, as a kubelet records a failing readiness
  probe), so its EndpointSlice endpoint stays not ready;
* env ``MIXEDRUN_LAB_ERROR_RATE=<0..1>``: that share of the node's application requests answer 500 (the fleet's
  ``error_rate`` fault, set when the player starts the node); ``/healthz`` stays 200, so the pod is Ready;
* a deleted pod (``deletionTimestamp``; by its ReplicaSet, a namespace deletion, ``kubectl delete``) keeps serving,
  its Ready condition unchanged, for its grace period (``metadata.deletionGracePeriodSeconds``, else
  ``spec.terminationGracePeriodSeconds``) capped at ``GRACE_CAP`` (2 s), while kube-controller-manager lists it as
  terminating (``ready: false, serving: <ready>, terminating: true``); then the player stops its node and confirms the
  deletion (grace 0). A pod deleted with grace 0 is gone at once.

Pod IPs: the API server refuses loopback addresses in EndpointSlices (``ValidateNonSpecialIP``, Kubernetes 1.26
``pkg/apis/discovery/validation``), so a pod's IP is its container address moved into ``k8s.pod_cidr`` (a /8, default
10.0.0.0/8: 127.0.20.1 -> 10.0.20.1). Nothing binds or routes those addresses: the fleet node listens on the loopback
address (lab.json ``nodes[].address``; ``nodes[].pod_ip`` is what Kubernetes lists). With ``network: netns`` (the lab
run through ``tests/tools/in_netns.sh``, where 10.0.0.0/8 is local) container addresses may be 10.x: such an address is
its pod IP as is, so the EndpointSlices list addresses that really answer. The ``services[].cluster_ip``
addresses are kept when the Service CIDR (the /16 around them, 127.x.0.0/16) is accepted by the API server.
"""

import asyncio
import base64
import ipaddress
import json
import os
import ssl
import subprocess
import time

import requests

from tests.lab.lab import _read_json, _tail, _write  # pylint: disable=cyclic-import

ENGINE_FILE = "engine.json"
UP_LOG = "k8s-cluster.log"
PODS_FILE = "pods.json"
MANAGED_BY = "mixedrun-lab"
IMAGE = "registry.lab.test/mixedrun/node:1.0"
TERMINATING_GRACE = 3600           # the `terminating` fault: a graceful delete that lasts until the fault is cleared
GRACE_CAP = 2.0                    # seconds a deleted pod keeps serving at most (its grace period, capped)
READY_ENV = "MIXEDRUN_LAB_READY"
ERROR_RATE_ENV = "MIXEDRUN_LAB_ERROR_RATE"


class RealK8sError(RuntimeError):
    """The kit could not start, seed, report or stop a cluster; the message carries the kit's own words."""


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def pod_ip(address, pod_cidr):
    """The pod IP Kubernetes lists for a container's loopback address: the address moved into ``pod_cidr`` (a /8).
    An address outside 127.0.0.0/8 (``network: netns``: 10.x, bound for real) is the pod IP itself."""
    if not ipaddress.IPv4Address(address).is_loopback:
        return str(address)
    net = ipaddress.IPv4Network(pod_cidr)
    return str(net.network_address + (int(ipaddress.IPv4Address(address)) & 0x00FFFFFF))


def loopback_of(ip):
    """The loopback address behind a pod IP (the inverse of ``pod_ip``)."""
    return str(ipaddress.IPv4Address("127.0.0.0") + (int(ipaddress.IPv4Address(ip)) & 0x00FFFFFF))


def service_cidr(cfg):
    """A Service CIDR holding every ``services[].cluster_ip`` (their /16) whose first address (the ``kubernetes``
    Service's) is none of them; None when they do not share one /16."""
    ips = [s.cluster_ip for s in cfg.services if s.containers]
    nets = {ipaddress.IPv4Network("%s/16" % ip, strict=False) for ip in ips}
    if len(nets) != 1:
        return None
    net = nets.pop()
    return str(net) if str(net.network_address + 1) not in ips else None


# ---------------------------------------------------------------------------------------------------------------
# objects

def deployment(svc, node_port):
    """The service's Deployment: its labels, one container with port ``http``, ``containers.count`` replicas."""
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": svc.name, "namespace": svc.namespace, "labels": dict(svc.labels, **{"app.kubernetes.io/managed-by": MANAGED_BY})},
            "spec": {"replicas": len(svc.containers), "selector": {"matchLabels": dict(svc.labels)},
                     "template": {"metadata": {"labels": dict(svc.labels)},
                                  "spec": {"terminationGracePeriodSeconds": 30,
                                           "containers": [{"name": "app", "image": IMAGE,
                                                           "ports": [{"name": "http", "containerPort": node_port, "protocol": "TCP"}],
                                                           "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1,
                                                                              "timeoutSeconds": 1, "failureThreshold": 1}}]}}}}


def service(svc, keep_cluster_ip):
    """The service's Service: selector = its labels, port ``http`` -> targetPort ``http`` (NodePort when set)."""
    port = {"name": "http", "protocol": "TCP", "port": svc.port, "targetPort": "http"}
    if svc.node_port:
        port["nodePort"] = svc.node_port
    spec = {"type": "NodePort" if svc.node_port else "ClusterIP", "selector": dict(svc.labels), "ports": [port]}
    if keep_cluster_ip:
        spec["clusterIP"] = svc.cluster_ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": svc.name, "namespace": svc.namespace, "labels": dict(svc.labels)},
            "spec": spec}


def node(knode, version="v1.26.0"):
    """A Node ('worker') with its loopback InternalIP."""
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": knode.name, "labels": {"kubernetes.io/hostname": knode.name, "kubernetes.io/os": "linux",
                                                        "kubernetes.io/arch": "amd64", "node-role.kubernetes.io/worker": ""}},
            "status": node_status(knode, version)}


def node_status(knode, version="v1.26.0"):
    """A Ready node's status (the node lifecycle controller is off: nobody turns it NotReady)."""
    now = _now()
    return {"addresses": [{"type": "InternalIP", "address": knode.address}, {"type": "Hostname", "address": knode.name}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status (mixedrun lab)",
                            "lastHeartbeatTime": now, "lastTransitionTime": now}],
            "nodeInfo": {"architecture": "amd64", "bootID": "", "containerRuntimeVersion": "containerd://1.7.0", "kernelVersion": "6.1.0",
                         "kubeProxyVersion": version, "kubeletVersion": version, "machineID": "", "operatingSystem": "linux",
                         "osImage": "mixedrun lab", "systemUUID": ""}}


def pod_status(pod, host_ip, ip, ready, started_at):
    """What the kubelet writes for a running pod: phase, IPs, conditions and the container's status."""
    status = "True" if ready else "False"
    container = ((pod.get("spec") or {}).get("containers") or [{}])[0]
    conditions = [{"type": "Initialized", "status": "True", "lastTransitionTime": started_at},
                  {"type": "PodScheduled", "status": "True", "lastTransitionTime": started_at}]
    for ctype in ("Ready", "ContainersReady"):
        cond = {"type": ctype, "status": status, "lastTransitionTime": _now()}
        if not ready:
            cond["reason"] = "ContainersNotReady"
            cond["message"] = "containers with unready status: [%s]" % container.get("name", "app")
        conditions.append(cond)
    return {"phase": "Running", "hostIP": host_ip, "podIP": ip, "podIPs": [{"ip": ip}], "startTime": started_at, "conditions": conditions,
            "containerStatuses": [{"name": container.get("name", "app"), "image": container.get("image", IMAGE),
                                   "imageID": IMAGE.rsplit(":", 1)[0] + "@sha256:" + "0" * 64, "containerID": "containerd://" + "1" * 64,
                                   "ready": ready, "started": True, "restartCount": 0, "state": {"running": {"startedAt": started_at}}}]}


def container_env(pod, name):
    """The value of env ``name`` of the pod's first container (None when unset)."""
    container = ((pod.get("spec") or {}).get("containers") or [{}])[0]
    for item in container.get("env") or []:
        if item.get("name") == name:
            return item.get("value")
    return None


def readiness_delay(pod):
    """The first container's readinessProbe.initialDelaySeconds (0 without one)."""
    container = ((pod.get("spec") or {}).get("containers") or [{}])[0]
    return float(((container.get("readinessProbe") or {}).get("initialDelaySeconds")) or 0)


def deletion_grace(pod):
    """Seconds a deleted pod keeps serving in the lab: its deletion grace period, capped at GRACE_CAP."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    grace = meta.get("deletionGracePeriodSeconds")
    if grace is None:
        grace = spec.get("terminationGracePeriodSeconds") or 0
    return min(float(grace), GRACE_CAP)


def unhealthy_event(pod, node_name):
    """The Warning event a kubelet records for a failing readiness probe (a MIXEDRUN_LAB_READY=false pod)."""
    meta = pod["metadata"]
    container = ((pod.get("spec") or {}).get("containers") or [{}])[0]
    now = _now()
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "%s.%x" % (meta["name"], int(time.time() * 1e6)), "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "namespace": meta["namespace"], "uid": meta.get("uid"),
                               "fieldPath": "spec.containers{%s}" % container.get("name", "app")},
            "reason": "Unhealthy", "type": "Warning", "count": 1, "firstTimestamp": now, "lastTimestamp": now,
            "message": "Readiness probe failed: HTTP probe failed with statuscode: 503 (%s=false)" % READY_ENV,
            "source": {"component": "kubelet", "host": node_name}, "reportingComponent": "kubelet", "reportingInstance": node_name}


def pod_ready(pod):
    """The pod's Ready condition (None when it has none)."""
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return None


# ---------------------------------------------------------------------------------------------------------------
# the cluster: the kit's up / status / down, and the seed

class RealK8s:
    """One control plane started through the kit, its state in ``state_dir`` (``<lab state>/k8s``)."""

    def __init__(self, state_dir, kit, up_timeout=900):
        self.state_dir = os.path.abspath(state_dir)
        self.kit = kit
        self.up_timeout = up_timeout
        self.cluster = {}
        self.session = None

    @staticmethod
    def _env(state_dir):
        env = dict(os.environ)
        env["REALK8S_STATE"] = state_dir
        env.pop("KUBECONFIG", None)
        return env

    # -- the kit -------------------------------------------------------------------------------------------------
    def start(self, service_cidr_=None, node_port_range=None):
        """``k8s-cluster.sh up`` (building the kit first when needed); returns the kit's JSON."""
        os.makedirs(self.state_dir, exist_ok=True)
        _write(os.path.join(self.state_dir, ENGINE_FILE), json.dumps({"engine": "real", "kit": self.kit}))
        argv = [os.path.join(self.kit, "k8s-cluster.sh"), "up"]
        if service_cidr_:
            argv += ["--service-cidr", service_cidr_]
        if node_port_range:
            argv += ["--node-port-range", node_port_range]
        log = os.path.join(self.state_dir, UP_LOG)
        with open(log, "ab") as err:
            try:
                proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, env=self._env(self.state_dir),
                                      cwd=self.state_dir, timeout=self.up_timeout, check=False)
            except subprocess.TimeoutExpired:
                raise RealK8sError("k8s-cluster.sh up did not finish within %d s; see %s" % (self.up_timeout, log)) from None
        if proc.returncode != 0:
            raise RealK8sError("k8s-cluster.sh up failed (exit %d):\n%s" % (proc.returncode, _tail(log)))
        try:
            self.cluster = json.loads(proc.stdout)
        except ValueError:
            raise RealK8sError("k8s-cluster.sh up printed no JSON; see %s" % log) from None
        return self.cluster

    @property
    def server(self):
        """The API server's URL."""
        return self.cluster["server"]

    @property
    def ca_path(self):
        """The cluster CA certificate (the kit's pki)."""
        return os.path.join(self.state_dir, "pki", "ca.crt")

    @property
    def token(self):
        """The admin token (system:masters)."""
        with open(self.cluster["token_file"], encoding="utf-8") as fh:
            return fh.read().strip()

    def ca_data(self):
        """The CA certificate, base64 (a kubeconfig's certificate-authority-data)."""
        with open(self.ca_path, "rb") as fh:
            return base64.b64encode(fh.read()).decode()

    @staticmethod
    def engine_record(state_dir):
        """engine.json of a real cluster in ``state_dir`` (None: not a real-k8s state dir)."""
        rec = _read_json(os.path.join(state_dir, ENGINE_FILE))
        return rec if rec and rec.get("engine") == "real" else None

    @classmethod
    def status_from_state_dir(cls, state_dir):
        """``k8s-cluster.sh status`` as per-component dicts (name, pid, running, healthy); [] when none was recorded."""
        rec = cls.engine_record(state_dir)
        if not rec:
            return []
        try:
            proc = subprocess.run([os.path.join(rec["kit"], "k8s-cluster.sh"), "status"], stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, env=cls._env(state_dir), cwd=state_dir, timeout=30, check=False)
            doc = json.loads(proc.stdout)
        except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
            return [{"name": "k8s", "pid": 0, "running": False, "healthy": False, "error": str(exc)}]
        out = []
        for name, comp in sorted((doc.get("components") or {}).items()):
            out.append({"name": "k8s-" + name, "pid": comp.get("pid") or 0, "running": bool(comp.get("running")),
                        "healthy": bool(comp.get("running")) and bool(doc.get("ready"))})
        return out

    @classmethod
    def stop_from_state_dir(cls, state_dir, timeout=120):
        """``k8s-cluster.sh down``; returns the pids that were running. Raises RealK8sError when the kit fails."""
        rec = cls.engine_record(state_dir)
        if not rec:
            return []
        pids = [c["pid"] for c in cls.status_from_state_dir(state_dir) if c.get("running") and c.get("pid")]
        proc = subprocess.run([os.path.join(rec["kit"], "k8s-cluster.sh"), "down"], stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, env=cls._env(state_dir), cwd=state_dir, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise RealK8sError("k8s-cluster.sh down failed (exit %d): %s" % (proc.returncode, proc.stderr.strip()[-1500:]))
        os.unlink(os.path.join(state_dir, ENGINE_FILE))
        return pids

    # -- API calls (requests; the seed runs in `up`) ---------------------------------------------------------------
    def call(self, method, path, body=None, ok=(200, 201), params=None, content_type=None):
        """One API request; returns the JSON body, None for 404 when 404 is in ``ok``; RealK8sError otherwise."""
        if self.session is None:
            self.session = requests.Session()
            self.session.headers["Authorization"] = "Bearer " + self.token
        headers = {"Content-Type": content_type} if content_type else None
        data = json.dumps(body) if body is not None else None
        resp = self.session.request(method, self.server + path, data=data, params=params, headers=headers or {"Content-Type": "application/json"},
                                    timeout=30, verify=self.ca_path)          # per request: $REQUESTS_CA_BUNDLE overrides a session's
        if resp.status_code not in ok:
            raise RealK8sError("%s %s -> %d %s" % (method, path, resp.status_code, resp.text[:400]))
        return resp.json() if resp.status_code != 404 and resp.content else None

    def _wait(self, what, check, timeout):
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise RealK8sError("%s: not after %d s (logs: %s)" % (what, timeout, os.path.join(self.state_dir, "logs")))
            time.sleep(0.2)

    def seed(self, cfg, keep_cluster_ip, timeout=90):
        """Namespaces, Nodes, Deployments and Services; returns {service name: [pod names, oldest first]} once every
        Deployment's ReplicaSet has created its pods."""
        namespaces = sorted({s.namespace for s in cfg.services if s.containers} | {"mixedrun-lab"})
        for ns in namespaces:
            self.call("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, ok=(201, 409))
        for knode in cfg.k8s_nodes:
            self.call("POST", "/api/v1/nodes", node(knode), ok=(201, 409))
            # the status of a created Node is the kubelet's to write: write it (again) through the subresource
            self.call("PATCH", "/api/v1/nodes/%s/status" % knode.name, {"status": node_status(knode)},
                      content_type="application/merge-patch+json")
        for ns in namespaces:        # a pod created before its namespace's ServiceAccount exists is refused
            self._wait("ServiceAccount %s/default" % ns,
                       lambda ns=ns: self.call("GET", "/api/v1/namespaces/%s/serviceaccounts/default" % ns, ok=(200, 404)), timeout)
        for svc in cfg.services:
            if not svc.containers:
                continue
            self.call("POST", "/api/v1/namespaces/%s/services" % svc.namespace, service(svc, keep_cluster_ip), ok=(201,))
            self.call("POST", "/apis/apps/v1/namespaces/%s/deployments" % svc.namespace, deployment(svc, cfg.node_port), ok=(201,))
        names = {}
        for svc in cfg.services:
            if not svc.containers:
                continue

            def pods(svc=svc):
                items = self.call("GET", "/api/v1/namespaces/%s/pods" % svc.namespace, params={"labelSelector": svc.selector})["items"]
                items = [p for p in items if not p["metadata"].get("deletionTimestamp")]
                return items if len(items) >= len(svc.containers) else None
            items = self._wait("the pods of Deployment %s/%s" % (svc.namespace, svc.name), pods, timeout)
            items.sort(key=lambda p: (p["metadata"]["creationTimestamp"], p["metadata"]["name"]))
            names[svc.name] = [p["metadata"]["name"] for p in items[:len(svc.containers)]]
        return names

    def wait_endpoints(self, cfg, timeout=60):
        """Wait until kube-controller-manager's EndpointSlices list every pod of every service as ready."""
        for svc in cfg.services:
            if not svc.containers:
                continue

            def ready(svc=svc):
                items = self.call("GET", "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices" % svc.namespace,
                                  params={"labelSelector": "kubernetes.io/service-name=%s" % svc.name})["items"]
                return sum(1 for s in items for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready")) >= len(svc.containers)
            self._wait("the EndpointSlices of Service %s/%s" % (svc.namespace, svc.name), ready, timeout)

    def forbidden_token(self):
        """A token that authenticates (ServiceAccount mixedrun-lab/forbidden, no RBAC binding) and may read nothing."""
        self.call("POST", "/api/v1/namespaces/mixedrun-lab/serviceaccounts",
                  {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "forbidden"}}, ok=(201, 409))
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 7 * 86400}}
        return self.call("POST", "/api/v1/namespaces/mixedrun-lab/serviceaccounts/forbidden/token", body, ok=(201,))["status"]["token"]


# ---------------------------------------------------------------------------------------------------------------
# the kubelet player (in the fleet process)

class KubeletPlayer:  # pylint: disable=too-many-instance-attributes
    """Scheduler + kubelet for the lab's pods on the real control plane; see the module docstring."""

    def __init__(self, cfg, fleet, cluster, state_path, interval=0.5):
        self.cfg = cfg
        self.fleet = fleet
        self.server = cluster["server"]
        self.ca_path = cluster["ca_path"]
        self.token = cluster["token"]
        self.pod_cidr = cfg.k8s["pod_cidr"]
        self.state_path = state_path
        self.interval = interval
        self.knodes = {k.name: k for k in cfg.k8s_nodes}
        self.services = [s for s in cfg.services if s.containers]
        self.assigned = {}            # (namespace, pod) -> {"address", "node", "started_at"}
        self.graceful = set()         # pods the `terminating` fault deleted gracefully
        self.deleting = {}            # (namespace, pod) -> monotonic time its deletionTimestamp was first seen
        self.errors = []
        self._wake = asyncio.Event()
        self._session = None
        self._task = None
        self._reported = None
        fleet.add_listener(self._changed)

    # -- life cycle ---------------------------------------------------------------------------------------------
    async def start(self):
        """Open the session and start the loop (one pass first: the pods of `up` turn Running before `serve` reports ready)."""
        await self.open()
        try:
            await self.sync()
        except Exception as exc:  # pylint: disable=broad-except
            self._error("first pass: %s" % exc)
        self._task = asyncio.ensure_future(self._loop())

    async def open(self):
        """The HTTP session (bearer token; the cluster CA when ``ca_path`` is set)."""
        import aiohttp  # pylint: disable=import-outside-toplevel
        connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=self.ca_path)) if self.ca_path else aiohttp.TCPConnector()
        self._session = aiohttp.ClientSession(headers={"Authorization": "Bearer " + self.token}, connector=connector,
                                              timeout=aiohttp.ClientTimeout(total=30))

    async def stop(self):
        """Stop the loop and close the session."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # pylint: disable=broad-except
                pass
        if self._session is not None:
            await self._session.close()

    def _changed(self, _node):
        self._wake.set()

    def _error(self, message):
        self.errors = (self.errors + ["%s %s" % (_now(), message)])[-20:]
        print("kubelet player: %s" % message, flush=True)

    async def _loop(self):
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.sync()
            except Exception as exc:  # pylint: disable=broad-except
                self._error(str(exc))

    async def _call(self, method, path, body=None, params=None, content_type="application/json", ok=(200, 201)):
        async with self._session.request(method, self.server + path, params=params, data=json.dumps(body) if body is not None else None,
                                         headers={"Content-Type": content_type}) as resp:
            text = await resp.text()
            if resp.status not in ok:
                raise RealK8sError("%s %s -> %d %s" % (method, path, resp.status, text[:300]))
            return json.loads(text) if text else None

    # -- one pass -----------------------------------------------------------------------------------------------
    async def sync(self):
        """Bring every pod of every service in line with the fleet."""
        report = []
        for svc in self.services:
            items = (await self._call("GET", "/api/v1/namespaces/%s/pods" % svc.namespace, params={"labelSelector": svc.selector}))["items"]
            present = set()
            for pod in sorted(items, key=lambda p: (p["metadata"]["creationTimestamp"], p["metadata"]["name"])):
                key = (svc.namespace, pod["metadata"]["name"])
                present.add(key)
                entry = await self._pod(svc, pod)
                if entry:
                    report.append(entry)
            for key in [k for k, entry in self.assigned.items() if entry["service"] == svc.name and k not in present]:
                await self._release(key)           # deleted (by us or by someone else): its fleet node goes too
        if (report, self.errors) != self._reported:
            self._reported = (report, list(self.errors))
            _write(self.state_path, json.dumps({"updated": _now(), "pods": report, "errors": self.errors}, indent=2))

    async def _pod(self, svc, pod):
        meta, spec = pod["metadata"], pod.get("spec") or {}
        name, ns = meta["name"], meta["namespace"]
        key = (ns, name)
        fleet_node = self.fleet.nodes.get(name)
        if meta.get("deletionTimestamp"):
            # the `terminating` fault holds a graceful delete open; any other delete the kubelet confirms after the
            # pod's grace period (capped at GRACE_CAP), serving until then
            if not (key in self.graceful and fleet_node is not None and fleet_node.faults.get("terminating")):
                since = self.deleting.setdefault(key, time.monotonic())
                grace = 0 if key in self.graceful else deletion_grace(pod)        # the fault cleared: at once
                if key not in self.assigned or time.monotonic() - since >= grace:
                    await self._call("DELETE", "/api/v1/namespaces/%s/pods/%s" % (ns, name), params={"gracePeriodSeconds": "0"}, ok=(200, 404))
                    await self._release(key)
                    return None
        elif fleet_node is not None and fleet_node.faults.get("terminating") and key not in self.graceful:
            await self._call("DELETE", "/api/v1/namespaces/%s/pods/%s" % (ns, name), params={"gracePeriodSeconds": str(TERMINATING_GRACE)},
                             ok=(200, 404))
            self.graceful.add(key)
        if key not in self.assigned:
            fleet_node = await self._assign(svc, pod, fleet_node)
            if fleet_node is None:
                return None
        entry = self.assigned[key]
        if not spec.get("nodeName"):
            body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": entry["node"]}}
            await self._call("POST", "/api/v1/namespaces/%s/pods/%s/binding" % (ns, name), body, ok=(201, 409))
        ready = bool(fleet_node is not None and fleet_node.ready)
        failing = (container_env(pod, READY_ENV) or "").lower() == "false"
        if failing or time.monotonic() - entry["started_mono"] < readiness_delay(pod):
            ready = False
        if failing and not entry.get("event_sent"):
            entry["event_sent"] = True
            await self._call("POST", "/api/v1/namespaces/%s/events" % ns, unhealthy_event(pod, entry["node"]), ok=(201, 409))
        status = pod.get("status") or {}
        ip = pod_ip(entry["address"], self.pod_cidr)
        if status.get("phase") != "Running" or status.get("podIP") != ip or pod_ready(pod) is not ready:
            host_ip = self.knodes[entry["node"]].address
            await self._call("PATCH", "/api/v1/namespaces/%s/pods/%s/status" % (ns, name),
                             {"status": pod_status(pod, host_ip, ip, ready, entry["started_at"])}, content_type="application/merge-patch+json")
        return {"namespace": ns, "name": name, "service": svc.name, "address": entry["address"], "port": self.cfg.node_port, "pod_ip": ip,
                "node": entry["node"], "ready": ready, "terminating": bool(meta.get("deletionTimestamp"))}

    def _used_addresses(self):
        used = {n.spec.address for n in self.fleet.nodes.values()}
        used.update(e["address"] for e in self.assigned.values())
        used.update(k.address for k in self.cfg.k8s_nodes)
        return used

    async def _assign(self, svc, pod, fleet_node):
        """Choose the pod's address and Node; start a fleet node for it when it has none. Returns the fleet node."""
        from tests.lab.config import NodeSpec  # pylint: disable=import-outside-toplevel
        from tests.lab.nodes import Node  # pylint: disable=import-outside-toplevel
        meta = pod["metadata"]
        name, ns = meta["name"], meta["namespace"]
        bound = (pod.get("spec") or {}).get("nodeName")
        known_ip = (pod.get("status") or {}).get("podIP")
        if fleet_node is not None:
            address = fleet_node.spec.address
            knode = bound or fleet_node.spec.k8s_node or self._least_loaded()
        else:
            if known_ip:                                   # a pod of an earlier run of this process
                direct = not ipaddress.IPv4Address(svc.containers[0].address).is_loopback      # network: netns, 10.x
                address = known_ip if direct else loopback_of(known_ip)
            else:
                address = self._next_free(svc)
                if address is None:
                    self._error("no free container address for pod %s/%s of service %s" % (ns, name, svc.name))
                    return None
            knode = bound or self._least_loaded()
            template = svc.containers[0]
            spec = NodeSpec(name=name, kind="container", address=address, port=self.cfg.node_port, service=svc.name,
                            labels=dict(template.labels), namespace=ns, k8s_node=knode, host_ip=self.knodes[knode].address)
            fleet_node = Node(spec, on_change=self._fleet_changed)
            try:
                await fleet_node.start()
            except Exception as exc:  # pylint: disable=broad-except
                self._error("pod %s/%s: %s" % (ns, name, exc))
                return None
            self.fleet.nodes[name] = fleet_node
            members = {id(p.nodes): p.nodes for p in self.fleet.node_ports if p.port == svc.node_port}     # one list per service
            for nodes in members.values():
                nodes.append(fleet_node)
        rate = container_env(pod, ERROR_RATE_ENV)
        if rate:
            try:
                await fleet_node.set_faults({"error_rate": min(max(float(rate), 0.0), 1.0)})
            except ValueError:
                self._error("pod %s/%s: %s=%r is no number between 0 and 1" % (ns, name, ERROR_RATE_ENV, rate))
        self.assigned[(ns, name)] = {"address": address, "node": knode, "service": svc.name, "started_mono": time.monotonic(),
                                     "started_at": (pod.get("status") or {}).get("startTime") or _now()}
        return fleet_node

    def _fleet_changed(self, node_):
        self.fleet._changed(node_)  # pylint: disable=protected-access

    def _least_loaded(self):
        load = {name: 0 for name in self.knodes}
        for entry in self.assigned.values():
            load[entry["node"]] = load.get(entry["node"], 0) + 1
        return min(load, key=lambda n: (load[n], n))

    def _next_free(self, svc):
        used = self._used_addresses()
        base = ipaddress.IPv4Address(svc.containers[0].address)
        for i in range(0, 250):
            address = base + i
            if address.is_loopback != base.is_loopback or (not base.is_loopback and address not in ipaddress.IPv4Network("10.0.0.0/8")):
                return None
            if str(address) not in used:
                return str(address)
        return None

    async def _release(self, key):
        """A pod is gone: forget it and stop its fleet node."""
        entry = self.assigned.pop(key, None)
        self.graceful.discard(key)
        self.deleting.pop(key, None)
        node_ = self.fleet.nodes.pop(key[1], None)
        if node_ is None:
            return
        for proxy in self.fleet.node_ports:
            if node_ in proxy.nodes:
                proxy.nodes.remove(node_)
        await node_.stop()
        del entry
