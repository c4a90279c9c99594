"""The lab's ingress-controller stand-in: a small Kong Ingress Controller (KIC 3.x) for DB-less Kong.

It polls the real API server (every ``interval`` s, default 0.5: lists of HTTPRoutes (gateway.networking.k8s.io/v1),
Services and EndpointSlices in all namespaces), and when what it translates from changed it waits ``sync_delay`` s
(KIC's proxy sync period), translates, and POSTs the declarative configuration (``_format_version: "3.0"``) to
``/config`` of every DB-less Kong node when it differs from the last one pushed. After a push every attached HTTPRoute
gets a status parent entry for the Gateway (Accepted, ResolvedRefs; ``observedGeneration`` = the route's
generation). A failed push is logged and retried after ``sync_delay``. Each push is one JSON line in
``<state>/kic-push.log`` (time, config hash, services with their target weights); ``<state>/kic-state.json`` holds the
last push for ``python -m tests.lab status``.

The translation is written here from KIC's sources, on purpose without the collection's code
(``plugins/module_utils/_kic.py``), so the collection is tested against an independent implementation. Read in
Kong/kubernetes-ingress-controller v3:

* ``internal/dataplane/translator/subtranslator/httproute.go``:
  ``getKongServiceNameByBackendRefs`` -- one Kong service per distinct set of backendRefs of the HTTPRoutes of a
  namespace, named ``httproute.<route ns>.svc.<ns>.<name>[.<port>][.<weight>]`` per backendRef, sorted, joined with
  ``_`` (a weight change renames the service and its upstream); ``translateHTTPRouteRulesMetaToKongstateService`` --
  host = the name, protocol http, timeouts 60000 ms, retries 5, the backendRefs of the group's first rule;
  ``translateToKongRouteName`` -- routes ``httproute.<ns>.<name>.<rule>.<match>``; ``generateKongstateHTTPRoute`` /
  ``generateKongRoutesFromHTTPRouteMatches`` -- protocols http+https, preserve_host true, strip_path false, hosts =
  the route's hostnames, a rule without matches gets a route without paths; ``generateKongRoutePathFromHTTPRouteMatch``
  -- Exact ``~<v>$``, PathPrefix ``~<v>$`` and ``<v>/`` (``<v>`` when it ends in ``/``), RegularExpression ``~<v>``.
  A rule whose backends all failed gets the request-termination plugin (500).
* ``internal/dataplane/translator/translate_upstreams.go``: ``getUpstreams`` -- the upstream is named after the
  service's host; per backend the Service port whose number is the backendRef's port (``findPort``), the Kong
  service's port = that Service port; targets from ``getEndpoints`` (EndpointSlices of the Service, slice ports named as
  the Service port (and of its protocol), endpoints with ``conditions.ready: false`` skipped, unset = ready,
  ``addresses[0]`` only, each address:port once) and ``targetsForEndpoints`` (IPv6 in brackets); a backend WITH a
  weight splits it: ``weight // len(targets)`` with a minimum of 1, a weight of 0 gives 0; a backend without one
  leaves its targets at Kong's default (100). ``updateTargetMap`` / ``targetWeightOrDefault``: the same target from
  two backends is one target with the weights summed (unset counting 100). On the real API server the Gateway API
  v1 CRD defaults an absent backendRef weight to 1, so the stand-in always sees one there.

Not implemented (the lab's tests do not use them): filters (header modifiers, redirects, rewrites), header/method/
query matches (ignored), ReferenceGrants (a backendRef into another namespace is dropped, as KIC drops it without a
grant), Gateway listener hostnames and allowedRoutes, Gateway/GatewayClass status, expression router, Kong entity tags.
The lab's global prometheus plugin (kong.prometheus_plugin) is kept in every pushed configuration: a DB-less
``/config`` replaces everything on the node.
"""

import hashlib
import ipaddress
import json
import os
import signal
import sys
import time

import requests

GATEWAY_GROUP = "gateway.networking.k8s.io"
DEFAULT_CONTROLLER_NAME = "konghq.com/kic-gateway-controller"
SETTINGS_FILE = "kic.json"          # written by `up` for the stand-in process
STATE_FILE = "kic-state.json"       # the stand-in's last push (read by `status`)
PUSH_LOG = "kic-push.log"
KONG_DEFAULT_WEIGHT = 100
DEFAULT_TIMEOUT = 60000             # subtranslator DefaultServiceTimeout
DEFAULT_RETRIES = 5                 # subtranslator DefaultRetries
ROUTES_PATH = "/apis/gateway.networking.k8s.io/v1/httproutes"
SERVICES_PATH = "/api/v1/services"
SLICES_PATH = "/apis/discovery.k8s.io/v1/endpointslices"


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ---------------------------------------------------------------------------------------------------------------
# translation (pure)

def format_target(address, port):
    """``address:port``, an IPv6 address in brackets (targetsForEndpoints)."""
    try:
        if ipaddress.ip_address(address).version == 6:
            return "[%s]:%s" % (address, port)
    except ValueError:
        pass
    return "%s:%s" % (address, port)


def attached(route, gateway):
    """True when one of the route's parentRefs is the Gateway ``{"name", "namespace"}`` (namespace defaulting to the
    route's, group/kind defaulting to gateway.networking.k8s.io/Gateway)."""
    ns = route["metadata"]["namespace"]
    for ref in (route.get("spec") or {}).get("parentRefs") or []:
        if (ref.get("group") or GATEWAY_GROUP) != GATEWAY_GROUP or (ref.get("kind") or "Gateway") != "Gateway":
            continue
        if ref.get("name") == gateway["name"] and (ref.get("namespace") or ns) == gateway["namespace"]:
            return True
    return False


def service_name(route_namespace, backend_refs):
    """getKongServiceNameByBackendRefs: ``httproute.<ns>.svc.`` + the sorted ``ns.name[.port][.weight]`` joined by ``_``."""
    names = []
    for ref in backend_refs or []:
        full = "%s.%s" % (ref.get("namespace") or route_namespace, ref.get("name"))
        if ref.get("port") is not None:
            full += ".%d" % ref["port"]
        if ref.get("weight") is not None:
            full += ".%d" % ref["weight"]
        names.append(full)
    return "httproute.%s.svc.%s" % (route_namespace, "_".join(sorted(names)))


def match_paths(match):
    """generateKongRoutePathFromHTTPRouteMatch (a match without path: the CRD's default, PathPrefix /)."""
    path = match.get("path") or {"type": "PathPrefix", "value": "/"}
    kind, value = path.get("type") or "PathPrefix", path.get("value") or "/"
    if kind == "Exact":
        return ["~%s$" % value]
    if kind == "RegularExpression":
        return ["~%s" % value]
    return ["~%s$" % value, value if value.endswith("/") else value + "/"]


def slice_targets(slices, port_name, protocol="TCP"):
    """getEndpoints + targetsForEndpoints over one Service's EndpointSlices: ``address:port`` in first-seen order."""
    seen, out = set(), []
    for eps in slices or []:
        for port in eps.get("ports") or []:
            number = port.get("port")
            if number is None or number < 0 or (port.get("protocol") or "TCP") != protocol or (port.get("name") or "") != (port_name or ""):
                continue
            for endpoint in eps.get("endpoints") or []:
                if (endpoint.get("conditions") or {}).get("ready") is False:
                    continue
                addresses = endpoint.get("addresses") or []
                if not addresses:
                    continue
                target = format_target(addresses[0], number)
                if target not in seen:
                    seen.add(target)
                    out.append(target)
    return out


def _service_port(service, number):
    for port in (service.get("spec") or {}).get("ports") or []:
        if port.get("port") == number:
            return port
    return None


def backend_targets(ref, route_namespace, services, slices):
    """One backendRef -> (Service port number or None, [(target, weight or None)], problem or None).

    ``services``: {(namespace, name): Service}; ``slices``: {(namespace, service name): [EndpointSlice]}."""
    if (ref.get("group") or "") != "" or (ref.get("kind") or "Service") != "Service":
        return None, [], "backendRef %s: only core Services are supported" % ref.get("name")
    ns = ref.get("namespace") or route_namespace
    if ns != route_namespace:
        return None, [], "backendRef %s/%s: another namespace needs a ReferenceGrant (not implemented)" % (ns, ref.get("name"))
    service = services.get((ns, ref.get("name")))
    if service is None:
        return None, [], "backendRef %s/%s: no such Service" % (ns, ref.get("name"))
    port = _service_port(service, ref.get("port"))
    if port is None:
        return None, [], "backendRef %s/%s: the Service has no port %s" % (ns, ref.get("name"), ref.get("port"))
    protocols = ["TCP"] + sorted({p.get("protocol") for p in service["spec"].get("ports") or [] if p.get("protocol") not in (None, "TCP")})
    targets = []
    for protocol in protocols:
        targets.extend(slice_targets(slices.get((ns, ref["name"])) or [], port.get("name"), protocol))
    weight = ref.get("weight")
    per_target = None
    if weight is not None and targets:
        per_target = 0 if weight == 0 else max(weight // len(targets), 1)
    return port["port"], [(t, per_target) for t in targets], None


def translate(routes, services, slices, gateway, plugins=()):
    """The declarative configuration for the HTTPRoutes attached to ``gateway``.

    Returns ``(config, summary, problems)``: ``summary`` = {kong service: {target: weight}} (an unset weight shown as
    Kong's 100), ``problems`` = {(namespace, route name): [messages]} for the routes' ResolvedRefs condition."""
    groups = {}
    problems = {}
    chosen = sorted((r for r in routes if attached(r, gateway)), key=lambda r: (r["metadata"]["namespace"], r["metadata"]["name"]))
    for route in chosen:
        ns = route["metadata"]["namespace"]
        problems.setdefault((ns, route["metadata"]["name"]), [])
        for number, rule in enumerate((route.get("spec") or {}).get("rules") or []):
            groups.setdefault(service_name(ns, rule.get("backendRefs")), []).append((route, number, rule))
    kong_services, upstreams, summary = [], [], {}
    for name in sorted(groups):
        members = groups[name]
        first_route, _first_number, first_rule = members[0]
        ns = first_route["metadata"]["namespace"]
        targets, order, port, resolved = {}, [], 80, 0
        for ref in first_rule.get("backendRefs") or []:
            number, found, problem = backend_targets(ref, ns, services, slices)
            if problem:
                for route, _number, _rule in members:
                    problems.setdefault((route["metadata"]["namespace"], route["metadata"]["name"]), []).append(problem)
                continue
            resolved += 1
            port = number
            for target, weight in found:
                if target in targets:
                    targets[target] = (KONG_DEFAULT_WEIGHT if targets[target] is None else targets[target]) + \
                        (KONG_DEFAULT_WEIGHT if weight is None else weight)
                else:
                    targets[target] = weight
                    order.append(target)
        kong_routes = []
        for route, number, rule in members:
            meta = route["metadata"]
            kroute = {"name": "httproute.%s.%s.%d.0" % (meta["namespace"], meta["name"], number), "protocols": ["http", "https"],
                      "preserve_host": True, "strip_path": False}
            hosts = list((route.get("spec") or {}).get("hostnames") or [])
            if hosts:
                kroute["hosts"] = hosts
            paths = []
            for match in rule.get("matches") or []:
                paths.extend(p for p in match_paths(match) if p not in paths)
            if paths:
                kroute["paths"] = paths
            kong_routes.append(kroute)
        kong_routes.sort(key=lambda r: r["name"])
        service = {"name": name, "host": name, "port": port, "protocol": "http", "connect_timeout": DEFAULT_TIMEOUT,
                   "read_timeout": DEFAULT_TIMEOUT, "write_timeout": DEFAULT_TIMEOUT, "retries": DEFAULT_RETRIES, "routes": kong_routes}
        if not resolved and first_rule.get("backendRefs"):
            service["plugins"] = [{"name": "request-termination", "config": {"status_code": 500, "message": "no existing backendRef provided"}}]
        kong_services.append(service)
        upstream_targets = []
        for target in order:
            entry = {"target": target}
            if targets[target] is not None:
                entry["weight"] = targets[target]
            upstream_targets.append(entry)
        upstreams.append({"name": name, "algorithm": "round-robin", "targets": upstream_targets})
        summary[name] = {t: (KONG_DEFAULT_WEIGHT if targets[t] is None else targets[t]) for t in order}
    config = {"_format_version": "3.0", "services": kong_services, "upstreams": upstreams}
    if plugins:
        config["plugins"] = [dict(p) for p in plugins]
    return config, summary, problems


def config_hash(config):
    """A short stable hash of a declarative configuration."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def route_parent_status(route, gateway, controller_name, problems):
    """The status.parents entry the stand-in writes for an attached route."""
    generation = route["metadata"].get("generation") or 1
    now = _now()
    resolved = not problems
    return {"parentRef": {"group": GATEWAY_GROUP, "kind": "Gateway", "name": gateway["name"], "namespace": gateway["namespace"]},
            "controllerName": controller_name,
            "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "", "observedGeneration": generation,
                            "lastTransitionTime": now},
                           {"type": "ResolvedRefs", "status": "True" if resolved else "False",
                            "reason": "ResolvedRefs" if resolved else ("RefNotPermitted" if any("ReferenceGrant" in p for p in problems)
                                                                       else "BackendNotFound"),
                            "message": "; ".join(problems)[:1000], "observedGeneration": generation, "lastTransitionTime": now}]}


def _same_parent(old, new):
    """True when ``old`` (a status.parents entry) already says what ``new`` says (ignoring transition times)."""
    def key(entry):
        return (json.dumps(entry.get("parentRef"), sort_keys=True), entry.get("controllerName"),
                sorted((c.get("type"), c.get("status"), c.get("reason"), c.get("message"), c.get("observedGeneration"))
                       for c in entry.get("conditions") or []))
    return key(old) == key(new)


# ---------------------------------------------------------------------------------------------------------------
# the controller process

def _relevant(routes, services, slices):
    """What the translation reads (not status, not resourceVersions): a change here starts the sync delay."""
    data = {"routes": sorted([[r["metadata"]["namespace"], r["metadata"]["name"], r["metadata"].get("generation"), r.get("spec")]
                              for r in routes], key=lambda x: (x[0], x[1])),
            "services": sorted([[s["metadata"]["namespace"], s["metadata"]["name"], (s.get("spec") or {}).get("ports")] for s in services],
                               key=lambda x: (x[0], x[1])),
            "slices": sorted([[e["metadata"]["namespace"], e["metadata"]["name"], e.get("ports"),
                               [[p.get("addresses"), (p.get("conditions") or {}).get("ready")] for p in e.get("endpoints") or []]]
                              for e in slices], key=lambda x: (x[0], x[1]))}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


class Controller:  # pylint: disable=too-many-instance-attributes
    """The poll / debounce / push / status loop."""

    def __init__(self, settings, token, interval=0.5):
        self.settings = settings
        self.server = settings["server"]
        self.ca_path = settings.get("ca_path") or True
        self.admin_urls = list(settings["admin_urls"])
        self.gateway = settings["gateway"]
        self.controller_name = settings.get("controller_name") or DEFAULT_CONTROLLER_NAME
        self.sync_delay = float(settings.get("sync_delay", 2))
        self.plugins = settings.get("plugins") or []
        self.log_path = settings["log"]
        self.state_path = settings["state"]
        self.interval = interval
        self.session = requests.Session()
        self.session.headers["Authorization"] = "Bearer " + token
        self.last_pushed = None
        self.state = {"pid": os.getpid(), "ready": False, "pushes": 0, "failures": 0, "last_push": None, "last_hash": None,
                      "last_error": None, "controller_name": self.controller_name, "gateway": self.gateway}
        self.stopping = False

    # -- API server ----------------------------------------------------------------------------------------------
    def _get(self, path):
        resp = self.session.get(self.server + path, timeout=30, verify=self.ca_path)
        if resp.status_code == 404 and path == ROUTES_PATH:
            return []                                   # the CRDs are not (yet) served
        resp.raise_for_status()
        return resp.json().get("items") or []

    def snapshot(self):
        """(routes, services, slices) as lists of API objects."""
        return self._get(ROUTES_PATH), self._get(SERVICES_PATH), self._get(SLICES_PATH)

    @staticmethod
    def index(services, slices):
        """({(ns, name): Service}, {(ns, service name): [EndpointSlice]})."""
        by_name = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in services}
        by_service = {}
        for eps in slices:
            owner = (eps["metadata"].get("labels") or {}).get("kubernetes.io/service-name")
            if owner:
                by_service.setdefault((eps["metadata"]["namespace"], owner), []).append(eps)
        return by_name, by_service

    # -- Kong ------------------------------------------------------------------------------------------------------
    def push(self, config):
        """POST /config to every node; returns the list of errors (empty: all took it)."""
        errors = []
        for url in self.admin_urls:
            try:
                resp = requests.post(url + "/config", json=config, timeout=30)
                if resp.status_code >= 400:
                    errors.append("%s/config -> %d %s" % (url, resp.status_code, resp.text[:500]))
            except requests.RequestException as exc:
                errors.append("%s/config: %s" % (url, exc))
        return errors

    def write_status(self, routes, problems):
        """Our parent entry in every attached route's status (only where it differs)."""
        for route in routes:
            if not attached(route, self.gateway):
                continue
            meta = route["metadata"]
            entry = route_parent_status(route, self.gateway, self.controller_name, problems.get((meta["namespace"], meta["name"])) or [])
            parents = list((route.get("status") or {}).get("parents") or [])
            ours = [p for p in parents if p.get("controllerName") == self.controller_name
                    and (p.get("parentRef") or {}).get("name") == self.gateway["name"]]
            if ours and _same_parent(ours[0], entry):
                continue
            others = [p for p in parents if p not in ours]
            path = "/apis/gateway.networking.k8s.io/v1/namespaces/%s/httproutes/%s/status" % (meta["namespace"], meta["name"])
            body = {"status": {"parents": others + [entry]}}
            resp = self.session.patch(self.server + path, data=json.dumps(body), headers={"Content-Type": "application/merge-patch+json"},
                                      timeout=30, verify=self.ca_path)
            if resp.status_code not in (200, 201, 404):              # 404: deleted meanwhile
                self._log({"time": _now(), "event": "status", "route": "%s/%s" % (meta["namespace"], meta["name"]),
                           "error": "%d %s" % (resp.status_code, resp.text[:300])})

    # -- records ---------------------------------------------------------------------------------------------------
    def _log(self, record):
        with open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")

    def _save_state(self):
        tmp = self.state_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self.state, fh, indent=2)
        os.replace(tmp, self.state_path)

    # -- the loop --------------------------------------------------------------------------------------------------
    def sync(self):
        """Translate the current objects; push when the configuration changed (or the last push failed); write the
        routes' status after a successful push. Returns True when Kong holds the current configuration."""
        routes, services, slices = self.snapshot()
        by_name, by_service = self.index(services, slices)
        config, summary, problems = translate(routes, by_name, by_service, self.gateway, self.plugins)
        digest = config_hash(config)
        if digest != self.last_pushed:
            errors = self.push(config)
            record = {"time": _now(), "event": "push", "hash": digest, "nodes": len(self.admin_urls), "services": summary}
            if errors:
                record["errors"] = errors
                self.state.update(failures=self.state["failures"] + 1, last_error="%s %s" % (_now(), "; ".join(errors)[:1000]))
                self._log(record)
                self._save_state()
                return False
            self.last_pushed = digest
            self.state.update(pushes=self.state["pushes"] + 1, last_push=record["time"], last_hash=digest, last_error=None,
                              services=summary)
            self._log(record)
        self.write_status(routes, problems)
        if not self.state["ready"]:
            self.state["ready"] = True
        self._save_state()
        return True

    def run(self):
        """Poll every ``interval`` s; a change (or a failed push) syncs ``sync_delay`` s later; until SIGTERM."""
        seen = None
        due = time.monotonic()                            # the first pass pushes at once
        while not self.stopping:
            try:
                routes, services, slices = self.snapshot()
                current = _relevant(routes, services, slices)
                if current != seen:
                    seen = current
                    if due is None:
                        due = time.monotonic() + self.sync_delay
                if due is not None and time.monotonic() >= due:
                    due = None
                    if not self.sync():
                        due = time.monotonic() + max(self.sync_delay, 1.0)
            except (requests.RequestException, ValueError, KeyError, OSError) as exc:
                self.state["last_error"] = "%s %s" % (_now(), exc)
                self._log({"time": _now(), "event": "error", "error": str(exc)[:1000]})
                self._save_state()
                due = time.monotonic() + max(self.sync_delay, 1.0)
            time.sleep(self.interval)


def install_gateway(call, crds_path, settings, timeout=60):
    """At ``up``: the Gateway API CRDs (``crds_path``, the kit's standard v1.2.1 set; waits until Established), the
    Gateway's namespace, the GatewayClass (this controller's name) and the Gateway (listener http, port 80), with the
    Accepted / Programmed status KIC writes. ``call(method, path, body=None, ok=..., content_type=None)`` is
    ``RealK8s.call``."""
    import yaml  # pylint: disable=import-outside-toplevel
    with open(crds_path, encoding="utf-8") as fh:
        crds = [d for d in yaml.safe_load_all(fh) if isinstance(d, dict) and d.get("kind") == "CustomResourceDefinition"]
    for crd in crds:
        call("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd, ok=(201, 409))
    deadline = time.monotonic() + timeout
    for crd in crds:
        path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/" + crd["metadata"]["name"]
        while True:
            got = call("GET", path)
            if any(c.get("type") == "Established" and c.get("status") == "True" for c in (got.get("status") or {}).get("conditions") or []):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("CRD %s not Established after %d s" % (crd["metadata"]["name"], timeout))
            time.sleep(0.2)
    gateway, gclass, controller = settings["gateway"], settings["gateway_class"], settings["controller_name"]
    call("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": gateway["namespace"]}}, ok=(201, 409))
    base = "/apis/gateway.networking.k8s.io/v1"
    now = _now()

    def condition(ctype, reason, generation):
        return {"type": ctype, "status": "True", "reason": reason, "message": "", "observedGeneration": generation, "lastTransitionTime": now}
    while True:             # a CRD just Established may still answer 404 for a moment
        created = call("POST", base + "/gatewayclasses", {"apiVersion": GATEWAY_GROUP + "/v1", "kind": "GatewayClass", "metadata": {"name": gclass},
                                                          "spec": {"controllerName": controller}}, ok=(201, 404, 409))
        if created is not None or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    got = call("GET", base + "/gatewayclasses/" + gclass)
    call("PATCH", base + "/gatewayclasses/%s/status" % gclass, {"status": {"conditions": [condition("Accepted", "Accepted", got["metadata"]["generation"])]}},
         content_type="application/merge-patch+json")
    body = {"apiVersion": GATEWAY_GROUP + "/v1", "kind": "Gateway", "metadata": {"name": gateway["name"], "namespace": gateway["namespace"]},
            "spec": {"gatewayClassName": gclass,
                     "listeners": [{"name": "http", "protocol": "HTTP", "port": 80, "allowedRoutes": {"namespaces": {"from": "All"}}}]}}
    call("POST", base + "/namespaces/%s/gateways" % gateway["namespace"], body, ok=(201, 409))
    path = base + "/namespaces/%s/gateways/%s" % (gateway["namespace"], gateway["name"])
    generation = call("GET", path)["metadata"]["generation"]
    call("PATCH", path + "/status", {"status": {"conditions": [condition("Accepted", "Accepted", generation),
                                                               condition("Programmed", "Programmed", generation)]}},
         content_type="application/merge-patch+json")


def settings_path(state_dir):
    """Where ``up`` writes the stand-in's settings."""
    return os.path.join(state_dir, SETTINGS_FILE)


def main(state_dir):
    """``python -m tests.lab kic --state-dir DIR``: run the stand-in with ``DIR/kic.json`` until SIGTERM."""
    with open(settings_path(state_dir), encoding="utf-8") as fh:
        settings = json.load(fh)
    with open(settings["token_file"], encoding="utf-8") as fh:
        token = fh.read().strip()
    controller = Controller(settings, token, interval=float(settings.get("interval", 0.5)))

    def stop(_signum, _frame):
        controller.stopping = True
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("kic stand-in: watching %s, pushing to %s" % (settings["server"], ", ".join(settings["admin_urls"])), flush=True)
    controller.run()
    return 0


def read_state(state_dir):
    """The stand-in's last push record (None when it never wrote one)."""
    try:
        with open(os.path.join(state_dir, STATE_FILE), encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
