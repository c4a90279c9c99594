"""The lab's node fleet: VM and container nodes as small HTTP servers, one per loopback address, in one process.

Every node answers:

* any path -> 200 with its identity: headers ``X-Node-Name``/``X-Node-Kind``/``X-Node-Service``, JSON body
  ``{"node", "kind", "service", "path", "host", "method"}`` (or ``error_status`` when a fault says so);
* ``/healthz`` -> 200 ``{"status": "ok"}``, or 503 while the node is marked unhealthy;
* ``/metrics`` -> its own Prometheus text: ``lab_http_requests_total{code}``,
  ``lab_http_request_duration_seconds`` (histogram), ``lab_node_up``, ``lab_node_healthy``;
* ``GET|POST /_control`` -> read or change its faults (JSON, same fields as below).

Faults (all optional, validated; bad input -> 400 naming the field, nothing changed):
``error_rate`` 0..1 (that share of application requests answer ``error_status``, default 500; spread
deterministically: exactly round(rate * N) of N requests fail), ``latency_ms`` 0..60000 added to every
application and /healthz request, ``down`` (stop listening: new connections are refused, open ones are
reset), ``unhealthy`` (/healthz answers 503; pods turn not-ready), ``terminating`` (a container node's pod is being
deleted: it keeps serving, its pod gets a ``deletionTimestamp``, its EndpointSlice endpoint turns ``ready: false``,
``serving: <ready>``, ``terminating: true``, and the nodePorts send it traffic only when no other pod is ready).

The fleet's control listener (a separate address:port) works while a node is down:
``GET /nodes``, ``GET|POST|PATCH /nodes/{name}``, ``POST /nodes/{name}/reset``, ``GET /nodes/{name}/metrics``,
``POST /reset`` (all nodes), ``GET /healthz``.

Application request counts exclude /healthz, /metrics and /_control.
"""

import asyncio
import json
import time

from aiohttp import web

FAULT_DEFAULTS = {"error_rate": 0.0, "latency_ms": 0, "down": False, "unhealthy": False, "error_status": 500, "terminating": False}
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_JSON = "application/json"


class FleetError(RuntimeError):
    """The fleet cannot start (e.g. an address:port is taken)."""


class FaultError(ValueError):
    """A fault request is invalid; the message names the field."""


def validate_faults(body):
    """Validate a fault change request; return the normalised changes (nothing is applied here)."""
    if not isinstance(body, dict):
        raise FaultError("body: must be a JSON object with any of %s" % ", ".join(sorted(FAULT_DEFAULTS)))
    out = {}
    for key, value in body.items():
        if key not in FAULT_DEFAULTS:
            raise FaultError("%s: unknown fault; known: %s" % (key, ", ".join(sorted(FAULT_DEFAULTS))))
        if key in ("down", "unhealthy", "terminating"):
            if not isinstance(value, bool):
                raise FaultError("%s: must be true or false, got %r" % (key, value))
        elif key == "error_rate":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise FaultError("error_rate: must be a number between 0 and 1, got %r" % (value,))
            value = float(value)
        elif key == "latency_ms":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 60000:
                raise FaultError("latency_ms: must be a number of milliseconds between 0 and 60000, got %r" % (value,))
        elif key == "error_status":
            if isinstance(value, bool) or not isinstance(value, int) or not 400 <= value <= 599:
                raise FaultError("error_status: must be an HTTP status between 400 and 599, got %r" % (value,))
        out[key] = value
    return out


class Metrics:
    """Per-node counters, rendered as Prometheus text."""

    def __init__(self):
        self.by_code = {}
        self.bucket_counts = [0] * len(BUCKETS)
        self.sum = 0.0
        self.count = 0

    def observe(self, code, seconds):
        """Count one application request."""
        self.by_code[code] = self.by_code.get(code, 0) + 1
        self.sum += seconds
        self.count += 1
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.bucket_counts[i] += 1
                break

    def render(self, up, healthy):
        """Prometheus text exposition format 0.0.4."""
        lines = ["# HELP lab_http_requests_total Application requests served by this node, by HTTP status code.",
                 "# TYPE lab_http_requests_total counter"]
        for code in sorted(self.by_code):
            lines.append('lab_http_requests_total{code="%d"} %d' % (code, self.by_code[code]))
        lines += ["# HELP lab_http_request_duration_seconds Application request latency (including injected latency).",
                  "# TYPE lab_http_request_duration_seconds histogram"]
        cumulative = 0
        for bound, cnt in zip(BUCKETS, self.bucket_counts):
            cumulative += cnt
            lines.append('lab_http_request_duration_seconds_bucket{le="%s"} %d' % (bound, cumulative))
        lines.append('lab_http_request_duration_seconds_bucket{le="+Inf"} %d' % self.count)
        lines.append("lab_http_request_duration_seconds_sum %.6f" % self.sum)
        lines.append("lab_http_request_duration_seconds_count %d" % self.count)
        lines += ["# HELP lab_node_up 1 while the node accepts connections.", "# TYPE lab_node_up gauge", "lab_node_up %d" % int(up),
                  "# HELP lab_node_healthy 1 while /healthz answers 200.", "# TYPE lab_node_healthy gauge",
                  "lab_node_healthy %d" % int(healthy)]
        return "\n".join(lines) + "\n"


class Node:
    """One VM or container node: its listener, faults and metrics."""

    def __init__(self, spec, on_change=None):
        self.spec = spec
        self.faults = dict(FAULT_DEFAULTS)
        self.metrics = Metrics()
        self._error_acc = 0.0
        self._server = None        # asyncio.Server while listening
        self._web = web.Server(self.handle)
        self._on_change = on_change
        self._ident_headers = {"X-Node-Name": spec.name, "X-Node-Kind": spec.kind, "X-Node-Service": spec.service}

    @property
    def name(self):
        """The node's name."""
        return self.spec.name

    @property
    def listening(self):
        """True while the listener is open."""
        return self._server is not None

    @property
    def ready(self):
        """What a kubelet readiness probe would say: up and healthy."""
        return self.listening and not self.faults["down"] and not self.faults["unhealthy"]

    def state(self):
        """The node's state as JSON-able dict."""
        return {"name": self.spec.name, "kind": self.spec.kind, "service": self.spec.service, "address": self.spec.address,
                "port": self.spec.port, "faults": dict(self.faults), "listening": self.listening, "ready": self.ready,
                "requests": self.metrics.count}

    async def start(self):
        """Open the listener; FleetError when its address:port is taken."""
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(self._web, self.spec.address, self.spec.port, reuse_address=True, backlog=512)
        except OSError as exc:
            raise FleetError("node %s: cannot listen on %s:%d: %s (is another lab running? try `python -m tests.lab status`, "
                             "or set node_port / address_base in the lab config)"
                             % (self.spec.name, self.spec.address, self.spec.port, exc.strerror or exc)) from None

    async def stop(self):
        """Close the listener and reset every open connection (a crashed process)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for conn in self._web.connections:
            transport = conn.transport
            if transport is not None:
                transport.abort()
        if server is not None:
            await server.wait_closed()

    async def set_faults(self, changes):
        """Apply already-validated fault changes; open/close the listener for ``down``."""
        self.faults.update(changes)
        if "error_rate" in changes:
            self._error_acc = 0.0
        if self.faults["down"] and self.listening:
            await self.stop()
        elif not self.faults["down"] and not self.listening:
            await self.start()
        if self._on_change:
            self._on_change(self)
        return self.state()

    async def reset(self):
        """Clear every fault (and bring the node back up)."""
        return await self.set_faults(dict(FAULT_DEFAULTS))

    def _json(self, status, body, identity=True):
        headers = self._ident_headers if identity else None
        return web.Response(status=status, body=json.dumps(body).encode(), content_type=_JSON, headers=headers)

    async def handle(self, request):
        """Serve one request on the node's own listener."""
        if self.faults["down"]:
            # A request on a connection accepted before the node went down: reset it like a dead process.
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError("node is down")
        path = request.path
        if path == "/metrics":
            return web.Response(text=self.metrics.render(self.listening, not self.faults["unhealthy"]),
                                content_type="text/plain", charset="utf-8", headers={"X-Node-Name": self.spec.name})
        if path == "/_control":
            return await self.handle_control(request)
        latency = self.faults["latency_ms"]
        if path == "/healthz":
            if latency:
                await asyncio.sleep(latency / 1000.0)
            if self.faults["unhealthy"]:
                return self._json(503, {"status": "unhealthy", "node": self.spec.name})
            return self._json(200, {"status": "ok", "node": self.spec.name})
        started = time.monotonic()
        if latency:
            await asyncio.sleep(latency / 1000.0)
        status = 200
        rate = self.faults["error_rate"]
        if rate:
            self._error_acc += rate
            if self._error_acc >= 1.0 - 1e-9:
                self._error_acc -= 1.0
                status = self.faults["error_status"]
        body = {"node": self.spec.name, "kind": self.spec.kind, "service": self.spec.service, "path": path,
                "host": request.host, "method": request.method}
        if status != 200:
            body["error"] = "injected fault (error_rate)"
        self.metrics.observe(status, time.monotonic() - started)
        return self._json(status, body)

    async def handle_control(self, request):
        """GET: state; POST/PATCH: change faults."""
        if request.method == "GET":
            return self._json(200, self.state(), identity=False)
        if request.method not in ("POST", "PATCH", "PUT"):
            return self._json(405, {"message": "Method not allowed; use GET or POST"}, identity=False)
        try:
            changes = validate_faults(await request.json())
        except (ValueError, FaultError) as exc:
            msg = str(exc) if isinstance(exc, FaultError) else "body: not valid JSON"
            return self._json(400, {"message": msg}, identity=False)
        return self._json(200, await self.set_faults(changes), identity=False)


class NodePortProxy:
    """kube-proxy stand-in: a Service's nodePort on every Kubernetes Node address, spread over ready pods.

    The request is served in-process by a ready container node of the service (round-robin); with no ready
    endpoint the connection is reset, as kube-proxy rejects it.
    """

    def __init__(self, address, port, nodes):
        self.address, self.port, self.nodes = address, port, nodes
        self._rr = 0
        self._web = web.Server(self.handle)
        self._server = None

    async def start(self):
        """Open the listener."""
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(self._web, self.address, self.port, reuse_address=True, backlog=512)
        except OSError as exc:
            raise FleetError("nodePort %s:%d: cannot listen: %s (set services[].node_port to 0 to disable or pick another port)"
                             % (self.address, self.port, exc.strerror or exc)) from None

    async def stop(self):
        """Close the listener."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def handle(self, request):
        """Pass the request to the next ready pod (a terminating one only when no other is ready, as kube-proxy does)."""
        ready = [n for n in self.nodes if n.ready and not n.faults["terminating"]] or [n for n in self.nodes if n.ready]
        if not ready:
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError("no ready endpoints")
        self._rr = (self._rr + 1) % len(ready)
        return await ready[self._rr].handle(request)


class Fleet:
    """All nodes plus the control listener, on one event loop."""

    def __init__(self, config):
        self.config = config
        self.nodes = {}
        self._listeners = []
        for spec in config.nodes:
            self.nodes[spec.name] = Node(spec, on_change=self._changed)
        self.node_ports = []
        for svc in config.services:
            if svc.node_port and svc.containers:
                members = [self.nodes[n.name] for n in svc.containers]
                for knode in config.k8s_nodes:
                    self.node_ports.append(NodePortProxy(knode.address, svc.node_port, members))
        self._control_runner = None
        self.control_url = None

    def add_listener(self, callback):
        """``callback(node)`` after any fault change (used by the Kubernetes stand-in to update readiness)."""
        self._listeners.append(callback)

    def _changed(self, node):
        for callback in self._listeners:
            callback(node)

    async def start(self):
        """Open every node listener, the nodePorts and the control listener; on failure close what was opened."""
        try:
            for node in self.nodes.values():
                await node.start()
                self._changed(node)
            for proxy in self.node_ports:
                await proxy.start()
            app = web.Application()
            app.add_routes([web.get("/healthz", self._c_health), web.get("/nodes", self._c_list), web.post("/reset", self._c_reset_all),
                            web.get("/nodes/{name}", self._c_get), web.post("/nodes/{name}", self._c_set), web.patch("/nodes/{name}", self._c_set),
                            web.post("/nodes/{name}/reset", self._c_reset), web.get("/nodes/{name}/metrics", self._c_metrics)])
            self._control_runner = web.AppRunner(app, access_log=None)
            await self._control_runner.setup()
            host, port = self.config.control["host"], self.config.control["port"]
            site = web.TCPSite(self._control_runner, host, port, reuse_address=True)
            try:
                await site.start()
            except OSError as exc:
                raise FleetError("control listener %s:%d: %s (set control.port to 0 for a free port)" % (host, port, exc.strerror or exc)) from None
            bound = site._server.sockets[0].getsockname()[1]  # pylint: disable=protected-access
            self.control_url = "http://%s:%d" % (host, bound)
        except BaseException:
            await self.stop()
            raise

    async def stop(self):
        """Close everything."""
        for node in self.nodes.values():
            await node.stop()
        for proxy in self.node_ports:
            await proxy.stop()
        if self._control_runner is not None:
            await self._control_runner.cleanup()
            self._control_runner = None

    def _node(self, request):
        node = self.nodes.get(request.match_info["name"])
        if node is None:
            raise web.HTTPNotFound(text=json.dumps({"message": "no node named %r; GET /nodes lists them" % request.match_info["name"]}),
                                   content_type=_JSON)
        return node

    async def _c_health(self, _request):
        return web.json_response({"status": "ok", "nodes": len(self.nodes)})

    async def _c_list(self, _request):
        return web.json_response({"nodes": [n.state() for n in self.nodes.values()]})

    async def _c_get(self, request):
        return web.json_response(self._node(request).state())

    async def _c_set(self, request):
        node = self._node(request)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"message": "body: not valid JSON"}, status=400)
        try:
            changes = validate_faults(body)
        except FaultError as exc:
            return web.json_response({"message": str(exc)}, status=400)
        return web.json_response(await node.set_faults(changes))

    async def _c_reset(self, request):
        return web.json_response(await self._node(request).reset())

    async def _c_reset_all(self, _request):
        return web.json_response({"nodes": [await n.reset() for n in self.nodes.values()]})

    async def _c_metrics(self, request):
        node = self._node(request)
        return web.Response(text=node.metrics.render(node.listening, not node.faults["unhealthy"]), content_type="text/plain")
