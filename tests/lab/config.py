"""Lab configuration: tests/lab/default.yml, optionally merged with a user file, validated into plain objects.

Errors name the field and the fix (``LabConfigError``); nothing is started on a bad config.
"""

import copy
import hashlib
import ipaddress
import os
import random
import re
import socket
from dataclasses import dataclass, field

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_CONFIG = os.path.join(HERE, "default.yml")
DEFAULT_STATE_DIR = os.path.join(REPO_ROOT, ".lab")
STATE_DIR_ENV = "MIXEDRUN_LAB_DIR"

# Characters Kubernetes uses for generated name suffixes (no vowels, no look-alikes).
_K8S_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DURATION = re.compile(r"^[0-9]+(ms|s|m|h)$")
AUTO = "auto"                   # node_port / services[].node_port: a free port is picked at `up`
KONG_TLS = {False: "off", True: "on", "off": "off", "on": "on", "mutual": "mutual"}
KONG_ENGINES = ("auto", "real", "simulator")
KONG_MODES = ("traditional", "hybrid", "dbless")
KONG_ENGINE_ENV = "MIXEDRUN_LAB_KONG_ENGINE"    # overrides kong.engine: auto (the default) for every lab started
REALKONG_KIT_ENV = "MIXEDRUN_REALKONG_KIT"      # the real Kong kit's directory (default: ../shared/realkong)
K8S_ENGINES = ("auto", "real", "standin")
K8S_ENGINE_ENV = "MIXEDRUN_LAB_K8S_ENGINE"      # overrides k8s.engine
REALK8S_KIT_ENV = "MIXEDRUN_REALK8S_KIT"        # the real Kubernetes kit's directory (default: ../shared/realk8s)
NETWORKS = ("loopback", "netns")
NETNS_NET = ipaddress.IPv4Network("10.0.0.0/8")   # network: netns -- local in the namespace tests/tools/in_netns.sh makes
NETNS_TOOL = "tests/tools/in_netns.sh"
KIC_CONTROLLER_NAME = "konghq.com/kic-gateway-controller"


def realk8s_kit():
    """The real Kubernetes kit's directory (``$MIXEDRUN_REALK8S_KIT``, else ``<repo>/../shared/realk8s``) when it holds
    ``k8s-cluster.sh``, else None."""
    path = os.environ.get(REALK8S_KIT_ENV) or os.path.join(os.path.dirname(REPO_ROOT), "shared", "realk8s")
    return os.path.abspath(path) if os.path.isfile(os.path.join(path, "k8s-cluster.sh")) else None


def resolve_k8s_engine(engine):
    """``auto`` -> ``real`` where the kit is present, else ``standin``; ``real`` without a kit is an error."""
    if engine == "auto":
        return "real" if realk8s_kit() else "standin"
    if engine == "real" and not realk8s_kit():
        raise LabConfigError("k8s.engine: real needs the real Kubernetes kit (k8s-cluster.sh), found neither in $%s nor in %s; set %s "
                             "to the kit's directory or use k8s.engine: standin"
                             % (REALK8S_KIT_ENV, os.path.join(os.path.dirname(REPO_ROOT), "shared", "realk8s"), REALK8S_KIT_ENV))
    return engine


def realkong_kit():
    """The real Kong kit's directory (``$MIXEDRUN_REALKONG_KIT``, else ``<repo>/../shared/realkong``) when it holds
    ``kong-cluster.sh``, else None."""
    path = os.environ.get(REALKONG_KIT_ENV) or os.path.join(os.path.dirname(REPO_ROOT), "shared", "realkong")
    return os.path.abspath(path) if os.path.isfile(os.path.join(path, "kong-cluster.sh")) else None


def resolve_engine(engine):
    """``auto`` -> ``real`` where the kit is present, else ``simulator``; ``real`` without a kit is an error."""
    if engine == "auto":
        return "real" if realkong_kit() else "simulator"
    if engine == "real" and not realkong_kit():
        raise LabConfigError("kong.engine: real needs the real Kong kit (kong-cluster.sh), found neither in $%s nor in "
                             "%s; set %s to the kit's directory or use kong.engine: simulator"
                             % (REALKONG_KIT_ENV, os.path.join(os.path.dirname(REPO_ROOT), "shared", "realkong"), REALKONG_KIT_ENV))
    return engine


class LabConfigError(ValueError):
    """A lab configuration value is invalid; the message names the field and the fix."""


@dataclass
class NodeSpec:
    """One VM or container node of the fleet."""
    name: str
    kind: str                 # "vm" | "container"
    address: str
    port: int
    service: str
    labels: dict
    namespace: str = ""       # containers only
    k8s_node: str = ""        # containers only: the Kubernetes Node the pod runs on
    host_ip: str = ""         # containers only: that Node's InternalIP

    def as_dict(self, control_base):
        """The node as it appears in lab.json."""
        return {"name": self.name, "kind": self.kind, "address": self.address, "port": self.port,
                "service": self.service, "labels": dict(self.labels),
                "namespace": self.namespace or None, "k8s_node": self.k8s_node or None,
                "url": "http://%s:%d" % (self.address, self.port),
                "control_url": "%s/nodes/%s" % (control_base, self.name)}


@dataclass
class ServiceSpec:
    """A mixed service: VM nodes plus container nodes (pods) behind one domain."""
    name: str
    domain: str
    namespace: str
    labels: dict
    cluster_ip: str
    port: int
    node_port: int
    vms: list = field(default_factory=list)
    containers: list = field(default_factory=list)

    @property
    def selector(self):
        """The Service's label selector as a Kubernetes selector string."""
        return ",".join("%s=%s" % (k, v) for k, v in sorted(self.labels.items()))

    def as_dict(self):
        """The service as it appears in lab.json."""
        return {"name": self.name, "domain": self.domain, "namespace": self.namespace, "selector": self.selector,
                "labels": dict(self.labels), "cluster_ip": self.cluster_ip, "port": self.port,
                "node_port": self.node_port, "target_port": "http",
                "vms": [n.name for n in self.vms], "containers": [n.name for n in self.containers]}


@dataclass
class K8sNodeSpec:
    """A Kubernetes Node object of the lab (a 'worker')."""
    name: str
    address: str


@dataclass
class LabConfig:
    """The whole validated lab configuration."""
    raw: dict
    node_port: int
    services: list
    k8s_nodes: list
    kong: dict
    haproxy: dict
    prometheus: dict
    control: dict
    k8s: dict
    auto_ports: list = field(default_factory=list)   # port fields still to be picked (node_port: auto)
    network: str = "loopback"                         # loopback | netns (node addresses may be 10.x: tests/tools/in_netns.sh)
    kic: dict = None                                  # the ingress-controller stand-in's settings (tests/lab/kic.py); None: off

    @property
    def nodes(self):
        """Every fleet node, VMs first, in config order."""
        out = []
        for svc in self.services:
            out.extend(svc.vms)
            out.extend(svc.containers)
        return out

    def fingerprint(self):
        """A stable hash of the configuration (to tell whether a running lab uses the same one)."""
        # the resolved Kong engine too: `auto` means another engine once the kit appears or MIXEDRUN_LAB_KONG_ENGINE is set
        data = {"raw": self.raw, "kong_engine": self.kong["engine"], "kong_mode": self.kong["mode"], "k8s_engine": self.k8s["engine"]}
        return hashlib.sha256(yaml.safe_dump(data, sort_keys=True).encode()).hexdigest()[:16]


def default_state_dir():
    """<repo>/.lab unless MIXEDRUN_LAB_DIR says otherwise."""
    return os.path.abspath(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)


def deep_merge(base, over):
    """Merge ``over`` into a copy of ``base``: mappings key by key, anything else replaced."""
    out = copy.deepcopy(base)
    for key, value in (over or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _k8s_suffix(seed, length):
    digest = hashlib.sha256(seed.encode()).digest()
    return "".join(_K8S_ALPHABET[b % len(_K8S_ALPHABET)] for b in digest[:length])


def pod_template_hash(service):
    """The 'pod-template-hash' label value of a service's pods (stable across runs)."""
    return _k8s_suffix("template:" + service, 9)


def pod_name(service, index):
    """Deterministic Deployment-style pod name, e.g. shop-5b8fd7c9d-q2x7k."""
    return "%s-%s-%s" % (service, pod_template_hash(service), _k8s_suffix("pod:%s:%d" % (service, index), 5))


def _need(cond, fieldname, message):
    if not cond:
        raise LabConfigError("%s: %s" % (fieldname, message))


def _mapping(value, fieldname):
    _need(isinstance(value, dict), fieldname, "must be a mapping, got %s" % type(value).__name__)
    return value


def _int(value, fieldname, low, high):
    _need(isinstance(value, int) and not isinstance(value, bool) and low <= value <= high, fieldname,
          "must be an integer between %d and %d, got %r" % (low, high, value))
    return value


def _loopback(value, fieldname):
    try:
        addr = ipaddress.IPv4Address(str(value))
    except ValueError:
        raise LabConfigError("%s: %r is not an IPv4 address; use a loopback address such as 127.0.10.1" % (fieldname, value)) from None
    _need(addr.is_loopback, fieldname, "%s is not a loopback address; the lab only uses 127.0.0.0/8" % addr)
    return str(addr)


def _labels(value, fieldname):
    _mapping(value, fieldname)
    out = {}
    for key, val in value.items():
        key, val = str(key), "" if val is None else str(val)
        prefix, _sep, name = key.rpartition("/")
        _need(name and len(name) <= 63 and _LABEL_NAME.match(name) and (not prefix or _DNS_SUBDOMAIN.match(prefix)),
              "%s.%s" % (fieldname, key), "not a valid Kubernetes label key")
        _need(len(val) <= 63 and _LABEL_NAME.match(val), "%s.%s" % (fieldname, key),
              "value %r is not a valid label value (max 63 of [A-Za-z0-9-_.], alphanumeric at both ends)" % val)
        out[key] = val
    return out


def _node_address(value, fieldname, netns):
    """A node address: loopback, or with ``network: netns`` also 10.0.0.0/8 (local in tests/tools/in_netns.sh's namespace)."""
    if not netns:
        try:
            addr = ipaddress.IPv4Address(str(value))
        except ValueError:
            addr = None
        _need(addr is None or addr.is_loopback or addr not in NETNS_NET, fieldname,
              "%s is not a loopback address; 10.x node addresses need network: netns (and the lab run through %s)" % (value, NETNS_TOOL))
        return _loopback(value, fieldname)
    try:
        addr = ipaddress.IPv4Address(str(value))
    except ValueError:
        raise LabConfigError("%s: %r is not an IPv4 address; use a loopback address or one in 10.0.0.0/8" % (fieldname, value)) from None
    _need(addr.is_loopback or addr in NETNS_NET, fieldname, "%s is neither a loopback address nor in 10.0.0.0/8 (network: netns)" % addr)
    return str(addr)


def _address_range(base, count, fieldname, netns=False):
    start = ipaddress.IPv4Address(_node_address(base, fieldname, netns))
    addrs = [start + i for i in range(count)]
    if start.is_loopback:
        _need(all(a.is_loopback for a in addrs), fieldname, "the range leaves 127.0.0.0/8; lower address_base or count")
    else:
        _need(all(a in NETNS_NET for a in addrs), fieldname, "the range leaves 10.0.0.0/8; lower address_base or count")
    return [str(a) for a in addrs]


def _duration(value, fieldname):
    _need(isinstance(value, str) and _DURATION.match(value), fieldname, "must be a duration such as 1s, 500ms, 2h, got %r" % (value,))
    return value


def _listener(raw, name, extra_keys=()):
    sec = dict(_mapping(raw.get(name) or {}, name))
    known = {"host", "port"} | set(extra_keys)
    unknown = sorted(set(sec) - known)
    _need(not unknown, "%s.%s" % (name, unknown[0] if unknown else ""), "unknown key; known keys: %s" % ", ".join(sorted(known)))
    sec["host"] = _loopback(sec.get("host", "127.0.0.1"), name + ".host")
    sec["port"] = _int(sec.get("port", 0), name + ".port", 0, 65535)
    return sec


def validate(raw):
    """Turn a merged raw configuration dict into a LabConfig, or raise LabConfigError."""
    _mapping(raw, "config")
    known_top = {"node_port", "kong", "haproxy", "prometheus", "control", "k8s", "services", "network", "kic"}
    unknown = sorted(set(raw) - known_top)
    _need(not unknown, unknown[0] if unknown else "", "unknown top-level key; known keys: %s" % ", ".join(sorted(known_top)))
    network = raw.get("network", "loopback")
    _need(network in NETWORKS, "network", "must be loopback (every address in 127.0.0.0/8) or netns (node addresses may be in "
          "10.0.0.0/8; run the lab through %s), got %r" % (NETNS_TOOL, network))
    netns = network == "netns"
    auto_ports = []
    node_port = raw.get("node_port", 18080)
    if node_port in (AUTO, 0) and not isinstance(node_port, bool):
        auto_ports.append("node_port")
        node_port = 0
    else:
        _need(isinstance(node_port, int) and not isinstance(node_port, bool) and 1 <= node_port <= 65535, "node_port",
              "must be an integer between 1 and 65535, or auto (or 0) for a port picked at start, got %r" % (node_port,))

    kong = dict(_mapping(raw.get("kong") or {}, "kong"))
    kong["nodes"] = _int(kong.get("nodes", 1), "kong.nodes", 1, 16)
    kong["host"] = _loopback(kong.get("host", "127.0.0.1"), "kong.host")
    _need(kong.get("rbac_token") is None or isinstance(kong.get("rbac_token"), str), "kong.rbac_token", "must be a string or null")
    _need(isinstance(kong.get("dbless", False), bool), "kong.dbless", "must be true or false")
    kong["dbless"] = bool(kong.get("dbless", False))
    kong.setdefault("rbac_token", None)
    tls = kong.get("tls", False)
    _need(isinstance(tls, (bool, str)) and tls in KONG_TLS, "kong.tls",
          "must be false (plain HTTP Admin API), true (HTTPS with a throwaway CA) or mutual (HTTPS that also requires "
          "a client certificate), got %r" % (tls,))
    kong["tls"] = KONG_TLS[tls]
    engine = os.environ.get(KONG_ENGINE_ENV) or kong.get("engine", "auto")
    _need(engine in KONG_ENGINES, "kong.engine" if not os.environ.get(KONG_ENGINE_ENV) else "$" + KONG_ENGINE_ENV,
          "must be auto (real Kong where the kit is present, else the simulator), real or simulator, got %r" % (engine,))
    kong["engine"] = resolve_engine(engine)
    mode = kong.get("mode") or ("dbless" if kong["dbless"] else "traditional")
    _need(mode in KONG_MODES, "kong.mode", "must be traditional, hybrid or dbless, got %r" % (mode,))
    _need(not (kong["dbless"] and mode != "dbless"), "kong.dbless", "true contradicts kong.mode: %s; drop kong.dbless (kong.mode: dbless says it)" % mode)
    kong["mode"], kong["dbless"] = mode, mode == "dbless"
    freq = kong.get("db_update_frequency")
    _need(freq is None or (isinstance(freq, (int, float)) and not isinstance(freq, bool) and 0.1 <= freq <= 60), "kong.db_update_frequency",
          "must be null (Kong's default, 5 s) or a number of seconds between 0.1 and 60, got %r" % (freq,))
    kong["db_update_frequency"] = freq
    _need(isinstance(kong.get("prometheus_plugin", True), bool), "kong.prometheus_plugin", "must be true or false")
    kong["prometheus_plugin"] = kong.get("prometheus_plugin", True)
    if kong["engine"] == "real":
        _need(not kong["rbac_token"], "kong.rbac_token", "RBAC is Kong Enterprise; the real Kong kit is the open-source edition: "
              "use kong.engine: simulator for RBAC tests")
        _need(kong["tls"] == "off", "kong.tls", "the real Kong kit's Admin API is plain HTTP; use kong.engine: simulator for TLS tests")
    else:
        _need(mode != "hybrid", "kong.mode", "hybrid (control plane + data planes) needs real Kong: use kong.engine: real (the kit "
              "in ../shared/realkong or $%s)" % REALKONG_KIT_ENV)

    haproxy = _listener(raw, "haproxy", ("stats_port",))
    haproxy["stats_port"] = _int(haproxy.get("stats_port", 0), "haproxy.stats_port", 0, 65535)
    prom = _listener(raw, "prometheus", ("scrape_interval", "retention"))
    prom["scrape_interval"] = _duration(prom.get("scrape_interval", "1s"), "prometheus.scrape_interval")
    prom["retention"] = _duration(prom.get("retention", "2h"), "prometheus.retention")
    control = _listener(raw, "control")

    k8s = dict(_mapping(raw.get("k8s") or {}, "k8s"))
    k8s["host"] = _loopback(k8s.get("host", "127.0.0.1"), "k8s.host")
    k8s["port"] = _int(k8s.get("port", 0), "k8s.port", 0, 65535)
    _need(isinstance(k8s.get("tls", False), bool), "k8s.tls", "must be true or false")
    for key in ("token", "forbidden_token"):
        val = k8s.get(key)
        _need(val is None or (isinstance(val, str) and len(val) >= 8 and not any(c.isspace() for c in val)), "k8s." + key,
              "must be null (random) or a string of at least 8 characters without spaces")
    _need(k8s.get("token") is None or k8s.get("token") != k8s.get("forbidden_token"), "k8s.forbidden_token",
          "must differ from k8s.token")
    _need(isinstance(k8s.get("version", "1.30"), str) and re.match(r"^1\.[0-9]+$", str(k8s.get("version", "1.30"))),
          "k8s.version", "must be a string like \"1.30\"")
    knodes_raw = _mapping(k8s.get("nodes") or {}, "k8s.nodes")
    kcount = _int(knodes_raw.get("count", 3), "k8s.nodes.count", 1, 1000)
    kprefix = str(knodes_raw.get("name_prefix", "lab-worker-"))
    _need(_DNS_LABEL.match(kprefix + "1"), "k8s.nodes.name_prefix", "must make DNS-1123 names (lowercase, digits, '-')")
    kaddrs = _address_range(knodes_raw.get("address_base", "127.0.30.1"), kcount, "k8s.nodes.address_base", netns)
    k8s_nodes = [K8sNodeSpec("%s%d" % (kprefix, i + 1), kaddrs[i]) for i in range(kcount)]
    extra = k8s.get("extra_objects") or []
    _need(isinstance(extra, list), "k8s.extra_objects", "must be a list of objects or file paths")
    k8s["extra_objects"] = extra
    k8s_engine = os.environ.get(K8S_ENGINE_ENV) or k8s.get("engine", "auto")
    _need(k8s_engine in K8S_ENGINES, "k8s.engine" if not os.environ.get(K8S_ENGINE_ENV) else "$" + K8S_ENGINE_ENV,
          "must be auto (the real control plane where the kit is present, else the stand-in), real or standin, got %r" % (k8s_engine,))
    k8s["engine"] = resolve_k8s_engine(k8s_engine)
    pod_cidr = k8s.get("pod_cidr", "10.0.0.0/8")
    try:
        pod_net = ipaddress.IPv4Network(str(pod_cidr))
    except ValueError:
        pod_net = None
    _need(pod_net is not None and pod_net.prefixlen == 8 and pod_net.network_address.packed[0] not in (0, 127, 169)
          and not pod_net.is_multicast and not pod_net.is_reserved, "k8s.pod_cidr",
          "must be an IPv4 /8 outside 0/8, 127/8, 169/8 and 224/3 (the real engine's pod IPs: a container's loopback address "
          "moved into it, because Kubernetes refuses loopback addresses in EndpointSlices), got %r" % (pod_cidr,))
    k8s["pod_cidr"] = str(pod_net)
    if k8s["engine"] == "real":
        _need(not extra, "k8s.extra_objects", "is for the stand-in; with k8s.engine: real create objects through the API")
        _need(not k8s.get("tls") and not k8s.get("token") and not k8s.get("forbidden_token"), "k8s",
              "tls, token and forbidden_token are the stand-in's; the real control plane makes its own CA and tokens")

    services_raw = raw.get("services")
    _need(isinstance(services_raw, list) and services_raw, "services", "must be a non-empty list of services")
    services, seen_names, seen_addrs, seen_node_ports = [], set(), {}, set()
    pod_index = 0
    for i, sraw in enumerate(services_raw):
        where = "services[%d]" % i
        _mapping(sraw, where)
        name = sraw.get("name")
        _need(isinstance(name, str) and _DNS_LABEL.match(name) and len(name) <= 40, where + ".name",
              "must be a DNS-1123 label (lowercase letters, digits, '-'), at most 40 characters")
        _need(name not in {s.name for s in services}, where + ".name", "duplicate service name %r" % name)
        domain = sraw.get("domain", "%s.lab.test" % name)
        _need(isinstance(domain, str) and _DNS_SUBDOMAIN.match(domain), where + ".domain", "must be a lowercase DNS name")
        namespace = sraw.get("namespace", name)
        _need(isinstance(namespace, str) and _DNS_LABEL.match(namespace), where + ".namespace", "must be a DNS-1123 label")
        labels = _labels(sraw.get("labels") or {"app": name}, where + ".labels")
        _need(labels, where + ".labels", "must not be empty (it is the Service's selector)")
        svc_node_port = sraw.get("node_port", 30080 + i)
        if svc_node_port == AUTO:
            auto_ports.append(where + ".node_port")
            svc_node_port = 0
        else:
            _need(isinstance(svc_node_port, int) and not isinstance(svc_node_port, bool) and 0 <= svc_node_port <= 65535,
                  where + ".node_port", "must be an integer between 0 (no nodePort) and 65535, or auto for a free port picked "
                  "at start, got %r" % (svc_node_port,))
        svc = ServiceSpec(name=name, domain=domain, namespace=namespace, labels=labels,
                          cluster_ip=_loopback(sraw.get("cluster_ip", "127.0.40.%d" % (i + 1)), where + ".cluster_ip"),
                          port=_int(sraw.get("port", 80), where + ".port", 1, 65535), node_port=svc_node_port)
        _need(svc.node_port == 0 or svc.node_port not in seen_node_ports, where + ".node_port", "duplicate node_port %d" % svc.node_port)
        seen_node_ports.add(svc.node_port)
        for kind, key in (("vm", "vms"), ("container", "containers")):
            group = _mapping(sraw.get(key) or {}, "%s.%s" % (where, key))
            count = _int(group.get("count", 0), "%s.%s.count" % (where, key), 0, 250)
            if not count:
                continue
            addrs = _address_range(group.get("address_base"), count, "%s.%s.address_base" % (where, key), netns)
            glabels = _labels(group.get("labels") or labels, "%s.%s.labels" % (where, key))
            names = group.get("names")
            if names is not None:
                _need(isinstance(names, list) and len(names) == count and all(isinstance(n, str) and _DNS_LABEL.match(n) for n in names),
                      "%s.%s.names" % (where, key), "must be a list of %d DNS-1123 names (one per node)" % count)
            for j in range(count):
                if names:
                    nname = names[j]
                elif kind == "vm":
                    nname = "%s-vm-%d" % (name, j + 1)
                else:
                    nname = pod_name(name, j + 1)
                _need(nname not in seen_names, "%s.%s" % (where, key), "duplicate node name %r" % nname)
                seen_names.add(nname)
                _need(addrs[j] not in seen_addrs, "%s.%s.address_base" % (where, key),
                      "address %s is already used by node %s" % (addrs[j], seen_addrs.get(addrs[j])))
                seen_addrs[addrs[j]] = nname
                node = NodeSpec(name=nname, kind=kind, address=addrs[j], port=node_port, service=name, labels=dict(glabels))
                if kind == "container":
                    node.namespace = namespace
                    node.labels.update(labels)
                    knode = k8s_nodes[pod_index % len(k8s_nodes)]
                    pod_index += 1
                    node.k8s_node, node.host_ip = knode.name, knode.address
                    svc.containers.append(node)
                else:
                    svc.vms.append(node)
        _need(svc.vms or svc.containers, where, "has no nodes: set vms.count and/or containers.count")
        services.append(svc)
    for kn in k8s_nodes:
        _need(kn.address not in seen_addrs, "k8s.nodes.address_base", "address %s is also used by node %s" % (kn.address, seen_addrs.get(kn.address)))
    kic = _kic(raw, kong, k8s)
    return LabConfig(raw=raw, node_port=node_port, services=services, k8s_nodes=k8s_nodes, kong=kong, haproxy=haproxy,
                     prometheus=prom, control=control, k8s=k8s, auto_ports=auto_ports, network=network, kic=kic)


def _kic(raw, kong, k8s):
    """``kic``: the ingress-controller stand-in (tests/lab/kic.py); None when off."""
    sec = dict(_mapping(raw.get("kic") or {}, "kic"))
    known = {"enabled", "sync_delay", "gateway", "gateway_class", "controller_name"}
    unknown = sorted(set(sec) - known)
    _need(not unknown, "kic.%s" % (unknown[0] if unknown else ""), "unknown key; known keys: %s" % ", ".join(sorted(known)))
    _need(isinstance(sec.get("enabled", False), bool), "kic.enabled", "must be true or false")
    if not sec.get("enabled"):
        return None
    delay = sec.get("sync_delay", 2)
    _need(isinstance(delay, (int, float)) and not isinstance(delay, bool) and 0 <= delay <= 60, "kic.sync_delay",
          "must be a number of seconds between 0 and 60 (KIC's proxy sync period), got %r" % (delay,))
    gateway = dict(_mapping(sec.get("gateway") or {}, "kic.gateway"))
    unknown = sorted(set(gateway) - {"name", "namespace"})
    _need(not unknown, "kic.gateway.%s" % (unknown[0] if unknown else ""), "unknown key; known keys: name, namespace")
    gateway = {"name": gateway.get("name", "kong"), "namespace": gateway.get("namespace", "kong")}
    for key, value in gateway.items():
        _need(isinstance(value, str) and _DNS_LABEL.match(value), "kic.gateway." + key, "must be a DNS-1123 label, got %r" % (value,))
    gclass = sec.get("gateway_class", "kong")
    _need(isinstance(gclass, str) and _DNS_SUBDOMAIN.match(gclass), "kic.gateway_class", "must be a DNS-1123 name, got %r" % (gclass,))
    controller = sec.get("controller_name", KIC_CONTROLLER_NAME)
    _need(isinstance(controller, str) and re.match(r"^[a-z0-9.-]+/[A-Za-z0-9/._-]+$", controller), "kic.controller_name",
          "must be a domain-prefixed path such as %s, got %r" % (KIC_CONTROLLER_NAME, controller))
    _need(kong["mode"] == "dbless", "kic.enabled", "the ingress controller pushes declarative configuration to DB-less Kong: set "
          "kong.mode: dbless (got %s)" % kong["mode"])
    _need(k8s["engine"] == "real", "kic.enabled", "the ingress-controller stand-in watches the real API server: set k8s.engine: real "
          "(the kit in ../shared/realk8s or $%s)" % REALK8S_KIT_ENV)
    return {"sync_delay": delay, "gateway": gateway, "gateway_class": gclass, "controller_name": controller}


def load_user(path=None, overrides=None):
    """What the user asked for: the YAML file at ``path`` merged with ``overrides``, without the defaults."""
    raw = {}
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                user = yaml.safe_load(fh) or {}
        except OSError as exc:
            raise LabConfigError("--config: cannot read %s: %s" % (path, exc.strerror)) from None
        except yaml.YAMLError as exc:
            raise LabConfigError("--config: %s is not valid YAML: %s" % (path, exc)) from None
        if not isinstance(user, dict):
            raise LabConfigError("--config: %s must hold a YAML mapping at the top" % path)
        raw = deep_merge(raw, user)
    if overrides:
        raw = deep_merge(raw, overrides)
    return raw


def load_raw(path=None, overrides=None):
    """The default config merged with the YAML file at ``path`` (if any) and ``overrides`` (a dict, if any)."""
    with open(DEFAULT_CONFIG, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    return deep_merge(raw, load_user(path, overrides))


def load(path=None, overrides=None):
    """Load and validate the lab configuration."""
    return validate(load_raw(path, overrides))


# ---------------------------------------------------------------------------------------------------------------
# ports picked at start

def _port_free_everywhere(addresses, port):
    for addr in addresses:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((addr, port))
            except OSError:
                return False
    return True


def default_port_fields(user_raw):
    """The port fields the user did not set (``user_raw``: see ``load_user``): their defaults may move when taken."""
    fields = [] if "node_port" in user_raw else ["node_port"]
    if isinstance(user_raw.get("services"), list):
        services = user_raw["services"]
    else:
        with open(DEFAULT_CONFIG, encoding="utf-8") as fh:
            services = [{}] * len(yaml.safe_load(fh)["services"])
    for i, svc in enumerate(services):
        if not (isinstance(svc, dict) and "node_port" in svc):
            fields.append("services[%d].node_port" % i)
    return fields


def free_port_overrides(cfg, movable=(), force=False, rng=None):
    """Config overrides that give a free port to every field of ``cfg.auto_ports`` (auto / 0), and to the fields in
    ``movable`` whose current port is taken (``force``: to all of them). ``{}`` when nothing needs to change.

    ``node_port`` must be free on every node address, a service's ``node_port`` on every Kubernetes Node address.
    """
    rng = rng or random.Random()
    wanted = set(cfg.auto_ports)
    node_addrs = [n.address for n in cfg.nodes]
    knode_addrs = [k.address for k in cfg.k8s_nodes]
    overrides = {}

    def pick(addresses, low, high, avoid=()):
        for _attempt in range(500):
            port = rng.randint(low, high)
            if port not in avoid and _port_free_everywhere(addresses, port):
                return port
        raise LabConfigError("no free port in %d-%d on %s; stop other labs or set the ports in the lab config"
                             % (low, high, ", ".join(addresses[:4])))

    if "node_port" in wanted or ("node_port" in movable and (force or not _port_free_everywhere(node_addrs, cfg.node_port))):
        overrides["node_port"] = pick(node_addrs, 20000, 29999)
    services = copy.deepcopy(cfg.raw["services"])
    changed = False
    used = {s.node_port for s in cfg.services if s.node_port}
    for i, spec in enumerate(cfg.services):
        key = "services[%d].node_port" % i
        if key in wanted:
            move = True
        elif key in movable and spec.node_port and spec.containers:
            move = force or not _port_free_everywhere(knode_addrs, spec.node_port)
        else:
            move = False
        if move:
            port = pick(knode_addrs, 30000, 32767, used)
            used.add(port)
            services[i]["node_port"] = port
            changed = True
    if changed:
        overrides["services"] = services
    return overrides


def resolve_ports(cfg, user_raw=None):
    """``cfg`` with every auto port picked and the defaults that are taken moved to free ports (fields the user set
    explicitly never move: a taken one is reported by ``up``)."""
    overrides = free_port_overrides(cfg, default_port_fields(user_raw or {}))
    if not overrides:
        return cfg
    return validate(deep_merge(cfg.raw, overrides))
