"""The simulator's proxy: routing, weighted round-robin, retries, health checks and metrics."""

import collections
import socket
import struct
import threading
import time

import pytest
import requests

PROPAGATION = 3.0   # seconds a node may take to pick up a config change (polls every 0.5 s)


def _setup(kong_admin, uname, targets, healthchecks=None, retries=5, route=None):
    upstream = {"name": uname + ".up"}
    if healthchecks:
        upstream["healthchecks"] = healthchecks
    assert kong_admin.post("/upstreams", json=upstream).status_code == 201
    for target, weight in targets:
        assert kong_admin.post("/upstreams/%s.up/targets" % uname, json={"target": target, "weight": weight}).status_code == 201
    svc = kong_admin.post("/services", json={"name": uname, "host": uname + ".up", "retries": retries, "connect_timeout": 500}).json()
    route = route or {"hosts": [uname + ".lab.test"]}
    resp = kong_admin.post("/routes", json=dict(route, name=uname, service={"id": svc["id"]}))
    assert resp.status_code == 201, resp.text
    return uname + ".lab.test"


def _wait_routed(proxy_url, host, path="/", expect=200):
    deadline = time.monotonic() + PROPAGATION
    while True:
        resp = requests.get(proxy_url + path, headers={"Host": host}, timeout=5)
        if resp.status_code == expect or time.monotonic() > deadline:
            return resp
        time.sleep(0.1)


def _wait_health(kong_admin, uname, target, state, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        data = kong_admin.get("/upstreams/%s.up/health" % uname).json()["data"]
        current = {t["target"]: t["health"] for t in data}.get(target)
        if current == state or time.monotonic() > deadline:
            return current
        time.sleep(0.1)


def test_weighted_round_robin(kong, kong_admin, kong_backend, uname):
    a, b, c = kong_backend("a"), kong_backend("b"), kong_backend("c")
    host = _setup(kong_admin, uname, [(a.target, 300), (b.target, 100), (c.target, 0)])
    first = _wait_routed(kong.proxy_urls[0], host)
    assert first.status_code == 200
    assert "1.1 kong/3.9.1" == first.headers["Via"]
    assert int(first.headers["X-Kong-Upstream-Latency"]) >= 0 and int(first.headers["X-Kong-Proxy-Latency"]) >= 0
    session = requests.Session()
    counts = collections.Counter()
    for _unused in range(400):
        counts[session.get(kong.proxy_urls[0] + "/x", headers={"Host": host}, timeout=5).json()["backend"]] += 1
    assert abs(counts["a"] - 300) <= 12 and abs(counts["b"] - 100) <= 12, counts
    assert counts["c"] == 0, "weight 0 receives no traffic"


def test_routing_rules(kong, kong_admin, kong_backend, uname):
    a = kong_backend("a")
    host = _setup(kong_admin, uname, [(a.target, 100)], route={"hosts": ["*.%s.test" % uname], "paths": ["/api"]})
    host = "shop.%s.test" % uname
    resp = _wait_routed(kong.proxy_urls[0], host, "/api/items?q=1")
    assert resp.status_code == 200
    assert resp.json()["path"] == "/items?q=1", "strip_path removes the matched prefix"
    sent = a.requests[-1]["headers"]
    assert sent["Host"] == a.target and sent["X-Forwarded-Host"] == host
    kong_admin.patch("/routes/" + uname, json={"strip_path": False, "preserve_host": True})
    deadline = time.monotonic() + PROPAGATION
    while requests.get(kong.proxy_urls[0] + "/api/z", headers={"Host": host}, timeout=5).json()["path"] != "/api/z":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert a.requests[-1]["headers"]["Host"] == host
    miss = requests.get(kong.proxy_urls[0] + "/other", headers={"Host": host}, timeout=5)
    assert miss.status_code == 404 and miss.json() == {"message": "no Route matched with those values"}
    post = requests.post(kong.proxy_urls[0] + "/api/p", headers={"Host": host}, data=b"payload", timeout=5)
    assert post.status_code == 200 and a.requests[-1]["body"] == "payload" and a.requests[-1]["method"] == "POST"


def test_no_targets_is_503(kong, kong_admin, uname):
    host = _setup(kong_admin, uname, [])
    resp = _wait_routed(kong.proxy_urls[0], host, expect=503)
    assert resp.status_code == 503
    assert resp.json() == {"message": "failure to get a peer from the ring-balancer"}


def test_retries_on_dead_target(kong, kong_admin, kong_backend, uname):
    live = kong_backend("live")
    dead = kong_backend("dead")
    dead.stop()
    host = _setup(kong_admin, uname, [(live.target, 100), (dead.target, 100)], retries=2)
    _wait_routed(kong.proxy_urls[0], host)
    for _unused in range(20):
        resp = requests.get(kong.proxy_urls[0], headers={"Host": host}, timeout=5)
        assert resp.status_code == 200 and resp.json()["backend"] == "live"
    kong_admin.patch("/services/" + uname, json={"retries": 0})
    deadline = time.monotonic() + PROPAGATION
    statuses = collections.Counter()
    while time.monotonic() < deadline and statuses[502] == 0:
        statuses[requests.get(kong.proxy_urls[0], headers={"Host": host}, timeout=5).status_code] += 1
    assert statuses[502] > 0, "without retries a connect failure surfaces as 502"


def test_passive_health(kong, kong_admin, kong_backend, uname):
    good, bad = kong_backend("good"), kong_backend("bad")
    bad.status = 500
    checks = {"passive": {"unhealthy": {"http_failures": 3}, "healthy": {"successes": 1}}}
    host = _setup(kong_admin, uname, [(good.target, 100), (bad.target, 100)], healthchecks=checks)
    _wait_routed(kong.proxy_urls[0], host)
    assert _wait_health(kong_admin, uname, bad.target, "HEALTHY") == "HEALTHY"
    for _unused in range(12):
        requests.get(kong.proxy_urls[0], headers={"Host": host}, timeout=5)
    assert _wait_health(kong_admin, uname, bad.target, "UNHEALTHY", timeout=0.5) == "UNHEALTHY"
    assert _wait_health(kong_admin, uname, good.target, "HEALTHY", timeout=0.5) == "HEALTHY"
    before = bad.hits
    for _unused in range(10):
        assert requests.get(kong.proxy_urls[0], headers={"Host": host}, timeout=5).json()["backend"] == "good"
    assert bad.hits == before, "an unhealthy target gets no traffic"
    # passive health is per node: the other node, once its balancer holds the target (it follows the upstream at its
    # next cluster-event poll; before, Kong lists the target without health), still sees it HEALTHY
    deadline = time.monotonic() + PROPAGATION
    while True:
        other = requests.get(kong.admin_urls[1] + "/upstreams/%s.up/health" % uname, timeout=5).json()
        seen = {t["target"]: t.get("health") for t in other["data"]}.get(bad.target)
        if seen is not None or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert seen == "HEALTHY", "health is per node"
    balancer = kong_admin.get("/upstreams/%s.up/health?balancer_health=1" % uname).json()["data"]
    assert balancer["balancer_health"] == "HEALTHY" and balancer["details"]["weight"] == {"total": 200, "available": 100, "unavailable": 100}
    assert kong_admin.put("/upstreams/%s.up/targets/%s/healthy" % (uname, bad.target)).status_code == 204
    assert _wait_health(kong_admin, uname, bad.target, "HEALTHY", timeout=0.5) == "HEALTHY"


def test_active_health(kong_admin, kong_backend, uname):
    a, b = kong_backend("a"), kong_backend("b")
    checks = {"active": {"http_path": "/health", "timeout": 1,
                         "healthy": {"interval": 0.1, "successes": 2}, "unhealthy": {"interval": 0.1, "http_failures": 2}}}
    _setup(kong_admin, uname, [(a.target, 100), (b.target, 100)], healthchecks=checks)
    assert _wait_health(kong_admin, uname, b.target, "HEALTHY") == "HEALTHY"
    b.health_status = 500
    assert _wait_health(kong_admin, uname, b.target, "UNHEALTHY") == "UNHEALTHY"
    assert _wait_health(kong_admin, uname, a.target, "HEALTHY", timeout=0) == "HEALTHY"
    b.health_status = 200
    assert _wait_health(kong_admin, uname, b.target, "HEALTHY") == "HEALTHY"
    b.stop()
    assert _wait_health(kong_admin, uname, b.target, "UNHEALTHY", timeout=1.0) == "HEALTHY", "tcp_failures threshold 0 never trips"
    assert b.health_hits > 0


def test_health_states(kong, kong_admin, kong_backend, uname):
    a = kong_backend("a")
    checks = {"active": {"http_path": "/health", "healthy": {"interval": 0.2}, "unhealthy": {"interval": 0.2, "http_failures": 1}}}
    _setup(kong_admin, uname, [(a.target, 0), ("nonexistent-host.invalid:80", 100)], healthchecks=checks)
    assert _wait_health(kong_admin, uname, "nonexistent-host.invalid:80", "DNS_ERROR") == "DNS_ERROR"
    assert _wait_health(kong_admin, uname, a.target, "HEALTHCHECKS_OFF") == "HEALTHCHECKS_OFF"
    a.health_status = 500
    time.sleep(0.6)
    assert a.health_hits == 0, "weight-0 targets are never health-checked"
    plain = uname + "-plain"
    kong_admin.post("/upstreams", json={"name": plain})
    kong_admin.post("/upstreams/%s/targets" % plain, json={"target": a.target})
    data = kong_admin.get("/upstreams/%s/health" % plain).json()
    assert data["data"][0]["health"] == "HEALTHCHECKS_OFF" and data["node_id"] == kong.node_ids[0]
    assert data["data"][0]["data"]["addresses"][0]["ip"] == a.host


def test_metrics(kong, kong_admin, kong_backend, uname):
    a = kong_backend("a")
    host = _setup(kong_admin, uname, [(a.target, 100)])
    _wait_routed(kong.proxy_urls[0], host)
    for _unused in range(3):
        requests.get(kong.proxy_urls[0], headers={"Host": host}, timeout=5)
    text = kong_admin.get("/metrics").text
    lines = text.splitlines()
    assert "# TYPE kong_http_requests_total counter" in lines
    prefix = 'kong_http_requests_total{service="%s",route="%s",code="200",source="service",workspace="default",consumer=""}' % (uname, uname)
    count = [ln for ln in lines if ln.startswith(prefix)]
    assert len(count) == 1 and int(count[0].rsplit(" ", 1)[1]) >= 4
    bucket = 'kong_request_latency_ms_bucket{service="%s",route="%s",workspace="default",le="+Inf"}' % (uname, uname)
    assert any(ln.startswith(bucket) for ln in lines)
    assert any(ln.startswith('kong_upstream_latency_ms_bucket{service="%s",route="%s",workspace="default",le="00001.0"}' % (uname, uname))
               for ln in lines)
    assert any(ln.startswith('kong_upstream_latency_ms_count{service="%s"' % uname) for ln in lines)
    health = [ln for ln in lines if ln.startswith('kong_upstream_target_health{upstream="%s.up"' % uname)]
    assert len(health) == 4
    assert 'kong_upstream_target_health{upstream="%s.up",target="%s",address="%s",state="healthchecks_off",subsystem="http"} 1' % (
        uname, a.target, a.target) in health
    assert sum(int(ln.rsplit(" ", 1)[1]) for ln in health) == 1
    status_metrics = requests.get(kong.status_urls[0] + "/metrics", timeout=5).text
    assert "kong_http_requests_total" in status_metrics


# ---------------------------------------------------------------------------------------------------------------
# failures Kong retries, and the retry bound


class Blackhole:
    """A listener whose accept queue is full: the kernel drops further SYNs, so connecting times out."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.target = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.fillers = []
        for _unused in range(2):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.settimeout(0.2)
            try:
                filler.connect(self.sock.getsockname())
            except OSError:
                pass
            self.fillers.append(filler)

    def close(self):
        for sock in self.fillers + [self.sock]:
            sock.close()


class Slammer:
    """Accepts every connection, reads the request and resets the connection (the upstream fails after Kong sent the
    request); counts them."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.target = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.accepted = 0
        self.running = True
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while self.running:
            try:
                conn, _unused = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            # read the request first: a reset before the proxy has written it would mean "nothing sent", which Kong
            # retries whatever the method (on a loaded machine the accept loop can run that early)
            conn.settimeout(2)
            try:
                conn.recv(65536)
            except OSError:
                pass
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    def close(self):
        self.running = False
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def dead_upstreams():
    """Factory: ``dead_upstreams("blackhole")`` / ``dead_upstreams("slammer")``; all closed afterwards."""
    made = []

    def make(kind):
        made.append(Blackhole() if kind == "blackhole" else Slammer())
        return made[-1]
    yield make
    for item in made:
        item.close()


def test_connect_timeout_is_retried_for_every_method(kong, kong_admin, kong_backend, dead_upstreams, uname):
    live, hole = kong_backend("live"), dead_upstreams("blackhole")
    checks = {"passive": {"unhealthy": {"timeouts": 2}}}
    host = _setup(kong_admin, uname, [(hole.target, 100), (live.target, 100)], healthchecks=checks, retries=2)
    kong_admin.patch("/services/" + uname, json={"connect_timeout": 200})
    _wait_routed(kong.proxy_urls[0], host)
    time.sleep(PROPAGATION / 2)   # the new connect_timeout has reached the node
    kong_admin.put("/upstreams/%s.up/targets/%s/healthy" % (uname, hole.target))
    for _unused in range(6):
        resp = requests.post(kong.proxy_urls[0] + "/order", headers={"Host": host}, data=b"x", timeout=5)
        assert resp.status_code == 200 and resp.json()["backend"] == "live", "a connect timeout sent nothing: Kong tries the next peer"
    assert live.requests[-1]["method"] == "POST"
    assert _wait_health(kong_admin, uname, hole.target, "UNHEALTHY", timeout=0.5) == "UNHEALTHY", \
        "connect timeouts count as passive `timeouts`"
    assert _wait_health(kong_admin, uname, live.target, "HEALTHY", timeout=0) == "HEALTHY"


def test_connect_timeouts_on_every_target_end_in_504_after_retries(kong, kong_admin, dead_upstreams, uname):
    holes = [dead_upstreams("blackhole") for _unused in range(2)]
    host = _setup(kong_admin, uname, [(h.target, 100) for h in holes], retries=2)
    kong_admin.patch("/services/" + uname, json={"connect_timeout": 200})
    deadline = time.monotonic() + PROPAGATION
    while True:
        started = time.monotonic()
        resp = requests.post(kong.proxy_urls[0] + "/", headers={"Host": host}, data=b"x", timeout=10)
        elapsed = time.monotonic() - started
        if (resp.status_code == 504 and elapsed < 1.5) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert resp.status_code == 504 and resp.json() == {"message": "The upstream server is timing out"}
    assert elapsed >= 0.55, "1 try + 2 retries of 200 ms each, not one try (%.2f s)" % elapsed


def test_retry_bound_is_retries_plus_one_tries(kong, kong_admin, dead_upstreams, uname):
    slammers = [dead_upstreams("slammer") for _unused in range(3)]
    host = _setup(kong_admin, uname, [(s.target, 100) for s in slammers], retries=4)
    deadline = time.monotonic() + PROPAGATION
    while requests.get(kong.proxy_urls[0], headers={"Host": host}, timeout=5).status_code == 404:
        assert time.monotonic() < deadline
        time.sleep(0.1)

    def settled():
        # the slammers count a connection when their accept loop runs: on a loaded machine that may come after the
        # answer, so read the count once it has stopped moving (else a late GET try is counted against the POST)
        last = sum(s.accepted for s in slammers)
        while True:
            time.sleep(0.2)
            now = sum(s.accepted for s in slammers)
            if now == last:
                return now
            last = now

    def tries(method):
        before = settled()
        resp = requests.request(method, kong.proxy_urls[0] + "/", headers={"Host": host}, timeout=10)
        assert resp.status_code == 502 and resp.json() == {"message": "An invalid response was received from the upstream server"}
        return settled() - before
    assert tries("GET") == 5, "retries=4: exactly 5 tries against targets that all fail"
    assert all(s.accepted >= 1 for s in slammers), "the retries go to the other targets"
    assert tries("POST") == 1, "a POST that reached the upstream is not sent again"
    kong_admin.patch("/services/" + uname, json={"retries": 0})
    deadline = time.monotonic() + PROPAGATION
    while tries("GET") != 1:
        assert time.monotonic() < deadline, "retries=0: one try"


def test_503_when_every_target_is_unhealthy_or_weight_0(kong, kong_admin, kong_backend, uname):
    a, b = kong_backend("a"), kong_backend("b")
    checks = {"passive": {"unhealthy": {"tcp_failures": 1}}}
    host = _setup(kong_admin, uname, [(a.target, 100), (b.target, 100)], healthchecks=checks)
    _wait_routed(kong.proxy_urls[0], host)
    for backend in (a, b):
        assert kong_admin.put("/upstreams/%s.up/targets/%s/unhealthy" % (uname, backend.target)).status_code == 204
    hits = a.hits + b.hits
    for _unused in range(3):
        resp = requests.get(kong.proxy_urls[0], headers={"Host": host}, timeout=5)
        assert resp.status_code == 503 and resp.json() == {"message": "failure to get a peer from the ring-balancer"}
    assert a.hits + b.hits == hits, "no unhealthy target is tried"
    for backend in (a, b):
        kong_admin.put("/upstreams/%s.up/targets/%s/healthy" % (uname, backend.target))
        kong_admin.patch("/upstreams/%s.up/targets/%s" % (uname, backend.target), json={"weight": 0})
    resp = _wait_routed(kong.proxy_urls[0], host, expect=503)
    assert resp.status_code == 503 and resp.json() == {"message": "failure to get a peer from the ring-balancer"}
    kong_admin.patch("/upstreams/%s.up/targets/%s" % (uname, b.target), json={"weight": 1})
    assert _wait_routed(kong.proxy_urls[0], host).json()["backend"] == "b"


# ---------------------------------------------------------------------------------------------------------------
# /health and kong_upstream_target_health


def test_passive_tcp_failures_or_timeouts_alone_turn_health_checking_on(kong_admin, uname):
    for name, checks in ((uname + "-off", None), (uname + "-tcp", {"passive": {"unhealthy": {"tcp_failures": 1}}}),
                         (uname + "-to", {"passive": {"unhealthy": {"timeouts": 1}}}),
                         (uname + "-http", {"passive": {"unhealthy": {"http_failures": 1}}})):
        body = {"name": name}
        if checks:
            body["healthchecks"] = checks
        assert kong_admin.post("/upstreams", json=body).status_code == 201
        kong_admin.post("/upstreams/%s/targets" % name, json={"target": "127.0.0.1:5999"})
        item = kong_admin.get("/upstreams/%s/health" % name).json()["data"][0]
        assert item["health"] == ("HEALTHCHECKS_OFF" if checks is None else "HEALTHY"), name
        balancer = kong_admin.get("/upstreams/%s/health?balancer_health=1" % name).json()["data"]
        assert balancer["health"] == ("HEALTHCHECKS_OFF" if checks is None else "HEALTHY"), name


def test_health_item_fields(kong, kong_admin, kong_backend, uname):
    a = kong_backend("a")
    kong_admin.post("/upstreams", json={"name": uname, "healthchecks": {"passive": {"unhealthy": {"tcp_failures": 1}}}})
    kong_admin.post("/upstreams/%s/targets" % uname, json={"target": a.target, "weight": 30})
    kong_admin.post("/upstreams/%s/targets" % uname, json={"target": "127.0.0.1:5998", "weight": 0})
    body = kong_admin.get("/upstreams/%s/health" % uname).json()
    assert body["next"] is None and body["node_id"] == kong.node_ids[0]
    items = {t["target"]: t for t in body["data"]}
    item = items[a.target]
    assert {"id", "target", "weight", "tags", "upstream", "created_at", "updated_at", "health", "data"} <= set(item)
    assert item["health"] == "HEALTHY"
    assert item["data"]["host"] == a.host and item["data"]["port"] == a.port and item["data"]["dns"] == "A"
    assert item["data"]["nodeWeight"] == 30
    assert item["data"]["weight"] == {"total": 30, "available": 30, "unavailable": 0}
    assert item["data"]["addresses"] == [{"ip": a.host, "port": a.port, "weight": 30, "health": "HEALTHY"}]
    assert items["127.0.0.1:5998"]["health"] == "HEALTHCHECKS_OFF", "weight 0 is never health-checked"
    assert kong_admin.put("/upstreams/%s/targets/%s/unhealthy" % (uname, a.target)).status_code == 204
    item = {t["target"]: t for t in kong_admin.get("/upstreams/%s/health" % uname).json()["data"]}[a.target]
    assert item["health"] == "UNHEALTHY" and item["data"]["weight"] == {"total": 30, "available": 0, "unavailable": 30}
    balancer = kong_admin.get("/upstreams/%s/health?balancer_health=1" % uname).json()
    assert balancer["next"] is None and balancer["node_id"] == kong.node_ids[0]
    assert set(balancer["data"]) == {"id", "health", "balancer_health", "details"}
    assert balancer["data"]["balancer_health"] == "UNHEALTHY"


def _target_health_metrics(kong_admin, upstream):
    out = {}
    for line in kong_admin.get("/metrics").text.splitlines():
        if line.startswith('kong_upstream_target_health{upstream="%s",' % upstream):
            labels = dict(part.split("=", 1) for part in line[line.index("{") + 1:line.index("}")].split(","))
            out[(labels["target"].strip('"'), labels["address"].strip('"'), labels["state"].strip('"'))] = int(line.rsplit(" ", 1)[1])
    return out


def test_target_health_metric_unhealthy_and_dns_error(kong_admin, kong_backend, uname):
    a = kong_backend("a")
    kong_admin.post("/upstreams", json={"name": uname, "healthchecks": {"passive": {"unhealthy": {"tcp_failures": 1}}}})
    kong_admin.post("/upstreams/%s/targets" % uname, json={"target": a.target})
    kong_admin.post("/upstreams/%s/targets" % uname, json={"target": "nonexistent-host.invalid:80"})
    kong_admin.put("/upstreams/%s/targets/%s/unhealthy" % (uname, a.target))
    metrics = _target_health_metrics(kong_admin, uname)
    states = ("healthchecks_off", "healthy", "unhealthy", "dns_error")
    assert {s: metrics[(a.target, a.target, s)] for s in states} == {"healthchecks_off": 0, "healthy": 0, "unhealthy": 1, "dns_error": 0}
    dns = {s: metrics[("nonexistent-host.invalid:80", "", s)] for s in states}
    assert dns == {"healthchecks_off": 0, "healthy": 0, "unhealthy": 0, "dns_error": 1}, "no address resolved: address label empty"
    assert len(metrics) == 8
