"""One simulator node: Admin API, proxy, status listener, config polling, health checks; one asyncio loop."""

import asyncio
import json
import logging
import os
import re
import signal
import socket
import time
import uuid

import aiohttp
from aiohttp import web

from . import schema, tls
from .admin import VERSION, AdminApi, json_response
from .balancer import Address, AddressHealth, Balancer, Target, ip_kind, split_hostport
from .faults import FaultConfigError, Faults
from .metrics import Metrics
from .store import Store

LOG = logging.getLogger("kong_sim.node")

DB_UPDATE_FREQUENCY = 5.0    # Kong's db_update_frequency: how often a node polls for other nodes' changes
BALANCER_BUILD_DELAY = 1.0   # Kong builds a new upstream's balancer from a queue worked off every second
CHECK_TICK = 0.05            # active health check scheduler resolution
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers", "transfer-encoding",
              "upgrade", "content-length", "host"}
IDEMPOTENT = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"}
NO_ROUTE = {"message": "no Route matched with those values"}
NO_PEER = {"message": "failure to get a peer from the ring-balancer"}
BAD_GATEWAY = {"message": "An invalid response was received from the upstream server"}
GATEWAY_TIMEOUT = {"message": "The upstream server is timing out"}


class Options:  # pylint: disable=too-few-public-methods,too-many-instance-attributes
    """Command line options of a node."""

    def __init__(self, state_db, node_name, admin_listen, proxy_listen, status_listen=None, rbac_token=None,
                 rbac_header="Kong-Admin-Token", dbless=False, workspaces=(), log_file=None, admin_ssl_cert=None,
                 admin_ssl_key=None, admin_client_ca=None, db_update_frequency=DB_UPDATE_FREQUENCY,
                 balancer_build_delay=BALANCER_BUILD_DELAY, prometheus_metrics=None):
        self.state_db = state_db
        self.node_name = node_name
        self.admin_listen = admin_listen
        self.proxy_listen = proxy_listen
        self.status_listen = status_listen
        self.rbac_token = rbac_token
        self.rbac_header = rbac_header
        self.dbless = dbless
        self.workspaces = list(workspaces)
        self.log_file = log_file
        # TLS on the Admin listener (Kong's `admin_listen ... ssl`); a client CA makes it mutual TLS
        self.admin_ssl_cert = admin_ssl_cert
        self.admin_ssl_key = admin_ssl_key
        self.admin_client_ca = admin_client_ca
        # seconds between polls for the other nodes' changes (Kong's db_update_frequency; this node's own writes apply at once)
        self.db_update_frequency = db_update_frequency
        # seconds from seeing a new upstream to answering for its balancer (/health with `health`, manual health)
        self.balancer_build_delay = balancer_build_delay
        # "all": act as if a global prometheus plugin had every metric option on (the lab's default);
        # None: only what prometheus plugin entities (POST /plugins) turn on, like Kong
        self.prometheus_metrics = prometheus_metrics

    @property
    def admin_tls(self):
        """"off", "on" (server certificate) or "mutual" (client certificates required)."""
        if not self.admin_ssl_cert:
            return "off"
        return "mutual" if self.admin_client_ca else "on"


# -------------------------------------------------------------------------------------------------------------
# router


class CompiledRoute:  # pylint: disable=too-few-public-methods
    """A route prepared for matching."""

    def __init__(self, route, service, ws):
        self.route = route
        self.service = service
        self.ws = ws
        hosts = [h.lower() for h in route.get("hosts") or []]
        self.exact_hosts = {h for h in hosts if "*" not in h}
        self.wild_hosts = [h for h in hosts if "*" in h]
        self.has_hosts = bool(hosts)
        self.methods = set(route.get("methods") or [])
        self.headers = {k.lower(): {str(v).lower() for v in (vals if isinstance(vals, list) else [vals])}
                        for k, vals in (route.get("headers") or {}).items()}
        self.prefixes = []
        self.regexes = []
        for path in route.get("paths") or []:
            if path.startswith("~"):
                self.regexes.append(re.compile(path[1:]))
            else:
                self.prefixes.append(path)
        self.prefixes.sort(key=len, reverse=True)
        longest = max([len(p) for p in self.prefixes] or [0])
        self.sort_key = (0 if self.exact_hosts else (1 if self.wild_hosts else 2),
                         0 if self.regexes else 1, -route.get("regex_priority", 0), -longest,
                         0 if self.headers else 1, 0 if self.methods else 1, route.get("created_at", 0))

    def _host_ok(self, host):
        if not self.has_hosts:
            return True
        if host in self.exact_hosts:
            return True
        for wild in self.wild_hosts:
            if wild.startswith("*.") and host.endswith(wild[1:]):
                return True
            if wild.endswith(".*") and host.startswith(wild[:-1]):
                return True
        return False

    def match(self, method, host, path, headers):
        """Return the matched path part ('' when the route has no paths) or None."""
        if self.methods and method not in self.methods:
            return None
        if not self._host_ok(host):
            return None
        for name, values in self.headers.items():
            if headers.get(name, "").lower() not in values:
                return None
        if not self.prefixes and not self.regexes:
            return ""
        for regex in self.regexes:
            found = regex.match(path)
            if found:
                return found.group(0)
        for prefix in self.prefixes:
            if path.startswith(prefix):
                return prefix
        return None


class Config:  # pylint: disable=too-few-public-methods
    """An immutable snapshot of the proxy configuration built from the database."""

    def __init__(self, version, entities):
        self.version = version
        services = {}
        self.upstreams = {}
        self.upstream_by_id = {}
        self.targets = {}
        routes = []
        self.plugins = []
        for kind, ws, entity in entities:
            if kind == "services":
                services[entity["id"]] = entity
            elif kind == "upstreams":
                self.upstreams[(ws, entity["name"])] = entity
                self.upstream_by_id[entity["id"]] = entity
            elif kind == "targets":
                self.targets.setdefault(entity["upstream"]["id"], []).append(entity)
            elif kind == "routes":
                routes.append((ws, entity))
            elif kind == "plugins":
                self.plugins.append(entity)
        self.services = services
        compiled = []
        for ws, route in routes:
            service = services.get((route.get("service") or {}).get("id"))
            if service is not None and not service.get("enabled", True):
                continue
            if not set(route.get("protocols") or []) & {"http", "https"}:
                continue
            compiled.append(CompiledRoute(route, service, ws))
        compiled.sort(key=lambda r: r.sort_key)
        self.routes = compiled

    def match(self, method, host, path, headers):
        for route in self.routes:
            matched = route.match(method, host, path, headers)
            if matched is not None:
                return route, matched
        return None, None


def join_path(service_path, path, matched, strip):
    """The upstream path: the service path followed by the request path (minus the matched prefix with strip_path)."""
    rest = path[len(matched):] if strip and matched else path
    base = service_path or "/"
    if not rest:
        return base
    if base.endswith("/") and rest.startswith("/"):
        return base + rest[1:]
    if not base.endswith("/") and not rest.startswith("/"):
        return base + "/" + rest
    return base + rest


# -------------------------------------------------------------------------------------------------------------
# node


class Node:  # pylint: disable=too-many-instance-attributes
    """Everything one Kong node runs."""

    def __init__(self, options):
        self.options = options
        self.store = Store(options.state_db)
        self.node_id = self.store.node_id(options.node_name)
        self.pid = os.getpid()
        self.faults = Faults()
        self.metrics = Metrics(self.prometheus_options)
        self.config = Config(0, [])
        self.balancers = {}
        self.health = {}                       # (upstream_id, target, ip, port) -> AddressHealth
        self.event_seq = self.store.last_event()
        self.connections = 0
        self.proxy_requests = 0
        self.admin = AdminApi(self)
        self._refresh_lock = asyncio.Lock()
        self._stop = None
        self.session = None
        self.check_session = None
        self._ensure_workspaces()

    def prometheus_options(self):
        """None without a prometheus plugin; else the set of its metric options that are on (any enabled instance)."""
        if self.options.prometheus_metrics == "all":
            return {"status_code_metrics", "latency_metrics", "upstream_health_metrics", "bandwidth_metrics"}
        plugins = [p for p in self.config.plugins if p.get("name") == "prometheus" and p.get("enabled", True)]
        if not plugins:
            return None
        return {option for p in plugins for option, on in (p.get("config") or {}).items() if on is True}

    def _ensure_workspaces(self):
        for name in ["default"] + self.options.workspaces:
            if not self.store.get_by_uniq("workspaces", "*", name):
                try:
                    self.admin.create("workspaces", "*", {"name": name})
                except Exception:  # pylint: disable=broad-exception-caught  # another node created it first
                    LOG.debug("workspace %s created concurrently", name)

    # -- configuration -----------------------------------------------------------------------------------------

    async def refresh_if_changed(self):
        version = self.store.version()
        if version == self.config.version:
            return False
        async with self._refresh_lock:
            version = self.store.version()
            if version == self.config.version:
                return False
            config = Config(version, self.store.all_entities())
            self.balancers = await self._build_balancers(config)
            self.config = config
            self._apply_events()
            return True

    async def _resolve(self, host, cache):
        if host in cache:
            return cache[host]
        kind = ip_kind(host)
        if kind:
            cache[host] = (kind, [host])
            return cache[host]
        loop = asyncio.get_running_loop()
        result = (None, [])
        for family, dns in ((socket.AF_INET, "A"), (socket.AF_INET6, "AAAA")):
            try:
                infos = await asyncio.wait_for(loop.getaddrinfo(host, None, family=family, type=socket.SOCK_STREAM), 2)
            except (OSError, asyncio.TimeoutError):
                continue
            ips = sorted({info[4][0] for info in infos})
            if ips:
                result = (dns, ips)
                break
        cache[host] = result
        return result

    async def _build_balancers(self, config):
        now = time.monotonic()
        balancers = {}
        cache = {}
        live = set()
        for upstream_id, upstream in config.upstream_by_id.items():
            targets = []
            for entity in sorted(config.targets.get(upstream_id, []), key=lambda t: (t["created_at"], t["id"])):
                host, port = split_hostport(entity["target"])
                dns, ips = await self._resolve(host, cache)
                target = Target(entity, host, port, dns, [])
                for ip in ips:
                    key = (upstream_id, entity["target"], ip, port)
                    health = self.health.get(key)
                    if health is None:
                        health = self.health[key] = AddressHealth()
                    live.add(key)
                    target.addresses.append(Address(ip, port, entity["weight"], target, health))
                targets.append(target)
            balancer = Balancer(upstream, targets)
            previous = self.balancers.get(upstream_id)
            balancer.seen_at = previous.seen_at if previous is not None else now
            balancers[upstream_id] = balancer
        for key in list(self.health):
            if key not in live:
                del self.health[key]
        return balancers

    def balancer_for(self, upstream_id):
        """The balancer this node answers for: None until ``balancer_build_delay`` after it first saw the upstream."""
        balancer = self.balancers.get(upstream_id)
        if balancer is None or time.monotonic() - balancer.seen_at < self.options.balancer_build_delay:
            return None
        return balancer

    def built_balancers(self):
        """The balancers ``balancer_for`` answers for."""
        return [b for b in self.balancers.values() if self.balancer_for(b.upstream["id"]) is not None]

    def _apply_events(self):
        for seq, channel, body in self.store.events_after(self.event_seq):
            self.event_seq = seq
            if channel == "balancer:post_health":
                self._set_health(body["upstream_id"], body["target"], body.get("ip"), body["healthy"])

    def _set_health(self, upstream_id, target, ip, healthy):
        changed = False
        for key, health in self.health.items():
            if key[0] == upstream_id and key[1] == target and (ip is None or key[2] == ip):
                changed = health.set(healthy) or changed
        return changed

    async def post_health(self, upstream, target, address, healthy):
        """``PUT .../healthy|unhealthy``: set it here now, and broadcast to the cluster (Kong's cluster events)."""
        ip = None
        if address is not None:
            parsed = schema.normalize_ip(address)
            ip = parsed["host"]
        # a cluster event, not a configuration change: no version bump, so no node rebuilds its router/balancers
        with self.store.transaction(bump=False):
            self.store.post_event("balancer:post_health", {"upstream_id": upstream["id"], "target": target["target"], "ip": ip,
                                                           "healthy": healthy, "node": self.node_id})
        await self.refresh_if_changed()
        self._apply_events()

    async def poll_loop(self):
        while True:
            try:
                if not await self.refresh_if_changed():
                    self._apply_events()        # cluster events (manual health) arrive without a config change
            except Exception:  # pylint: disable=broad-exception-caught  # keep polling whatever happens
                LOG.exception("config refresh failed")
            await asyncio.sleep(self.options.db_update_frequency)

    # -- active health checks -------------------------------------------------------------------------------

    async def check_loop(self):
        running = {}
        while True:
            now = time.monotonic()
            for balancer in list(self.balancers.values()):
                active = balancer.active
                healthy_iv = (active.get("healthy") or {}).get("interval") or 0
                unhealthy_iv = (active.get("unhealthy") or {}).get("interval") or 0
                if not healthy_iv and not unhealthy_iv:
                    continue
                for addr in balancer.addresses:
                    if addr.weight == 0:
                        continue
                    interval = healthy_iv if addr.health.healthy else unhealthy_iv
                    if not interval or now - addr.health.last_check < interval:
                        continue
                    key = (balancer.upstream["id"], addr.target.entity["target"], addr.ip, addr.port)
                    if key in running and not running[key].done():
                        continue
                    addr.health.last_check = now
                    running[key] = asyncio.ensure_future(self._probe(balancer, addr))
            for key in [k for k, task in running.items() if task.done()]:
                del running[key]
            await asyncio.sleep(CHECK_TICK)

    async def _probe(self, balancer, addr):
        active = balancer.active
        timeout = active.get("timeout") or 1
        kind = active.get("type", "http")
        healthy_cfg = active.get("healthy") or {}
        unhealthy_cfg = active.get("unhealthy") or {}
        try:
            if kind == "tcp":
                _unused, writer = await asyncio.wait_for(asyncio.open_connection(addr.ip, addr.port), timeout)
                writer.close()
                addr.health.success(healthy_cfg.get("successes"))
                return
            scheme = "https" if kind in ("https", "grpcs") else "http"
            host = balancer.upstream.get("host_header") or addr.target.host
            url = "%s://%s%s" % (scheme, addr.hostport, active.get("http_path") or "/")
            headers = {"Host": host if addr.port in (80, 443) else "%s:%d" % (host, addr.port), "User-Agent": "kong/" + VERSION}
            for name, values in (active.get("headers") or {}).items():
                headers[name] = values[0] if isinstance(values, list) else values
            async with self.check_session.get(url, headers=headers, ssl=False if not active.get("https_verify_certificate") else None,
                                              timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False) as resp:
                status = resp.status
            if status in (healthy_cfg.get("http_statuses") or ()):
                addr.health.success(healthy_cfg.get("successes"))
            elif status in (unhealthy_cfg.get("http_statuses") or ()):
                addr.health.failure("http_failures", unhealthy_cfg.get("http_failures"))
        except asyncio.TimeoutError:
            addr.health.failure("timeouts", unhealthy_cfg.get("timeouts"))
        except (aiohttp.ClientError, OSError):
            addr.health.failure("tcp_failures", unhealthy_cfg.get("tcp_failures"))

    # -- proxy ----------------------------------------------------------------------------------------------

    async def proxy(self, request):  # pylint: disable=too-many-locals,too-many-branches,too-many-statements
        started = time.monotonic()
        self.proxy_requests += 1
        host_header = request.headers.get("Host", "")
        host = host_header.rsplit(":", 1)[0] if not host_header.startswith("[") else host_header.split("]")[0] + "]"
        host = host.lower()
        path = request.rel_url.raw_path
        route, matched = self.config.match(request.method, host, path, request.headers)
        if route is None:
            self.metrics.record("", "", 404, "exit", "default", _ms(started))
            return self._kong_response(404, NO_ROUTE, started)
        entity = route.route
        service = route.service
        route_label = entity.get("name") or entity["id"]
        if service is None:
            self.metrics.record("", route_label, 503, "exit", route.ws, _ms(started))
            return self._kong_response(503, {"message": "no Service found with those values"}, started)
        service_label = service.get("name") or service["host"]
        upstream = self.config.upstreams.get((route.ws, service["host"]))
        balancer = self.balancers.get(upstream["id"]) if upstream else None
        body = await request.read()
        upstream_path = join_path(service.get("path"), path, matched, entity.get("strip_path", True))
        query = request.rel_url.raw_query_string
        if query:
            upstream_path += "?" + query
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        peer = request.transport.get_extra_info("peername") if request.transport else None
        client_ip = peer[0] if peer else ""
        forwarded = request.headers.get("X-Forwarded-For")
        headers += [("X-Forwarded-For", "%s, %s" % (forwarded, client_ip) if forwarded else client_ip), ("X-Real-IP", client_ip),
                    ("X-Forwarded-Proto", request.scheme), ("X-Forwarded-Host", host),
                    ("X-Forwarded-Port", str(self.options.proxy_listen[1])), ("X-Forwarded-Path", path)]
        timeout = aiohttp.ClientTimeout(sock_connect=service.get("connect_timeout", 60000) / 1000.0,
                                        sock_read=service.get("read_timeout", 60000) / 1000.0)
        scheme = "https" if service.get("protocol") in ("https", "grpcs", "wss") else "http"
        tries = 1 + (service.get("retries", 5) if service.get("retries") is not None else 0)
        tried = []
        failure = None
        attempt = 0
        while attempt < tries:
            attempt += 1
            if balancer is not None or upstream is not None:
                addr = balancer.pick(tried) if balancer is not None else None
                if addr is None:
                    if failure is None:
                        self.metrics.record(service_label, route_label, 503, "exit", route.ws, _ms(started))
                        return self._kong_response(503, NO_PEER, started)
                    break
                hostport = addr.hostport
                if entity.get("preserve_host"):
                    upstream_host = host_header
                else:
                    default_host = addr.target.host if addr.port in (80, 443) else "%s:%d" % (addr.target.host, addr.port)
                    upstream_host = upstream.get("host_header") or default_host
            else:
                addr = None
                hostport = "%s:%d" % (service["host"], service["port"])
                upstream_host = host_header if entity.get("preserve_host") else (
                    service["host"] if service["port"] in (80, 443) else hostport)
            sent = time.monotonic()
            try:
                async with self.session.request(request.method, "%s://%s%s" % (scheme, hostport, upstream_path),
                                                headers=headers + [("Host", upstream_host)], data=body or None,
                                                timeout=timeout, allow_redirects=False, ssl=False) as resp:
                    first_byte = time.monotonic()
                    payload = await resp.read()
                    status = resp.status
                    resp_headers = [(k, v) for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP]
            except aiohttp.ClientConnectorError:
                failure = "connect"
                if addr is not None:
                    balancer.report_failure(addr, "tcp_failures")
                    tried.append(addr)
                continue
            except asyncio.TimeoutError as exc:
                failure = "timeout"
                if _connect_timeout(exc):
                    # nothing was sent: Kong (nginx) tries the next peer whatever the method, up to `retries`
                    if addr is not None:
                        balancer.report_failure(addr, "timeouts")
                        tried.append(addr)
                    continue
                if addr is not None:
                    balancer.report_failure(addr, "timeouts")
                    tried.append(addr)
                if request.method in IDEMPOTENT:
                    continue
                break
            except (aiohttp.ClientError, OSError):
                failure = "error"
                if addr is not None:
                    balancer.report_failure(addr, "tcp_failures")
                    tried.append(addr)
                if request.method in IDEMPOTENT:
                    continue
                break
            if addr is not None:
                balancer.report_status(addr, status)
            upstream_ms = int((first_byte - sent) * 1000)
            proxy_ms = int((sent - started) * 1000)
            response = web.Response(status=status, body=payload)
            for name, value in resp_headers:
                response.headers.add(name, value)
            response.headers["X-Kong-Upstream-Latency"] = str(upstream_ms)
            response.headers["X-Kong-Proxy-Latency"] = str(proxy_ms)
            response.headers["Via"] = "1.1 kong/" + VERSION
            response.headers["X-Kong-Request-Id"] = uuid.uuid4().hex
            self.metrics.record(service_label, route_label, status, "service", route.ws, _ms(started), upstream_ms)
            return response
        status, body_out = (504, GATEWAY_TIMEOUT) if failure == "timeout" else (502, BAD_GATEWAY)
        self.metrics.record(service_label, route_label, status, "error", route.ws, _ms(started))
        return self._kong_response(status, body_out, started)

    @staticmethod
    def _kong_response(status, body, started):
        response = json_response(status, body)
        response.headers["Server"] = "kong/" + VERSION
        response.headers["X-Kong-Response-Latency"] = str(_ms(started))
        response.headers["X-Kong-Request-Id"] = uuid.uuid4().hex
        return response

    # -- lab API (outside Kong's namespace) ----------------------------------------------------------------------

    async def lab_api(self, request):
        path = request.rel_url.path
        if path == "/_lab/faults":
            if request.method == "GET":
                return json_response(200, self.faults.state())
            if request.method == "DELETE":
                self.faults.clear()
                return json_response(200, self.faults.state())
            if request.method in ("POST", "PUT"):
                try:
                    body = json.loads(await request.read() or b"{}")
                except ValueError:
                    return json_response(400, {"message": "Cannot parse JSON body"})
                try:
                    self.faults.set(body)
                except FaultConfigError as exc:
                    return json_response(400, {"message": str(exc)})
                return json_response(200, self.faults.state())
            return json_response(405, {"message": "Method not allowed"})
        if path == "/_lab/info" and request.method == "GET":
            return json_response(200, {"node_id": self.node_id, "node_name": self.options.node_name, "pid": self.pid,
                                       "config_version": self.config.version, "proxy_requests": self.proxy_requests,
                                       "upstreams": len(self.balancers), "routes": len(self.config.routes)})
        return json_response(404, {"message": "Not found"})

    async def status_app_handler(self, request):
        if request.rel_url.path == "/metrics" and request.method == "GET":
            return web.Response(text=self.metrics.render(self), content_type="text/plain", charset="utf-8")
        if request.rel_url.path == "/status" and request.method == "GET":
            return json_response(200, self.admin.status_info())
        if request.rel_url.path == "/status/ready" and request.method == "GET":
            if self.options.dbless and not any(kind != "workspaces" for kind, _ws, _e in self.store.all_entities()):
                return json_response(503, {"message": "no configuration available (empty configuration present)"})
            return json_response(200, {"message": "ready"})
        return json_response(404, {"message": "Not found"})

    # -- run --------------------------------------------------------------------------------------------------

    async def run(self):
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, limit_per_host=256, keepalive_timeout=60,
                                                                            ttl_dns_cache=1),
                                             auto_decompress=False, skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"))
        if hasattr(self.session, "_retry_connection"):
            # aiohttp would silently resend an idempotent request once after a dropped connection; Kong counts every
            # try against the service's `retries` itself, so one simulator try must be one upstream try
            self.session._retry_connection = False  # pylint: disable=protected-access
        self.check_session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True))
        await self.refresh_if_changed()
        proxy_app = web.Application(client_max_size=64 * 1024 * 1024)
        proxy_app.router.add_route("*", "/{tail:.*}", self.proxy)
        runners = []
        admin_ssl = None
        if self.options.admin_ssl_cert:
            admin_ssl = tls.server_context(self.options.admin_ssl_cert, self.options.admin_ssl_key, self.options.admin_client_ca)
        listens = [(self.admin.make_app(), self.options.admin_listen, admin_ssl), (proxy_app, self.options.proxy_listen, None)]
        if self.options.status_listen:
            status_app = web.Application()
            status_app.router.add_route("*", "/{tail:.*}", self.status_app_handler)
            listens.append((status_app, self.options.status_listen, None))
        for app, (host, port), ssl_context in listens:
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True, ssl_context=ssl_context)
            await site.start()
            runners.append(runner)
        tasks = [asyncio.ensure_future(self.poll_loop()), asyncio.ensure_future(self.check_loop())]
        LOG.info("node %s (%s) up: admin %s:%d (tls %s) proxy %s:%d", self.options.node_name, self.node_id,
                 self.options.admin_listen[0], self.options.admin_listen[1], self.options.admin_tls,
                 self.options.proxy_listen[0], self.options.proxy_listen[1])
        await self._stop.wait()
        LOG.info("node %s stopping", self.options.node_name)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for runner in runners:
            await runner.cleanup()
        await self.session.close()
        await self.check_session.close()
        self.store.close()


def _connect_timeout(exc):
    """True for a timeout while connecting (aiohttp's sock_connect), as opposed to one while reading the answer."""
    cls = getattr(aiohttp, "ConnectionTimeoutError", None)   # aiohttp >= 3.10
    if cls is not None:
        return isinstance(exc, cls)
    return isinstance(exc, aiohttp.ServerTimeoutError) and str(exc).startswith("Connection timeout")


def _ms(started):
    return int((time.monotonic() - started) * 1000)
