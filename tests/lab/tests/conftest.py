"""Fixtures for the lab's own tests. Kong simulator fixtures: ``kong``, ``kong_rbac``, ``kong_dbless``, ``kong_admin``, ``kong_backend``, ``uname``."""

import itertools
import json
import os
import socket
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

# `pytest tests/lab/tests` from the repository root: make the `tests.lab` package importable
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from tests.lab.kong_sim.launcher import KongCluster  # noqa: E402  pylint: disable=wrong-import-position

RBAC_TOKEN = "lab-test-token-" + uuid.uuid4().hex[:8]
# The lab's own tests expect a change to reach every node's proxy and balancer within about a second: a short
# db_update_frequency (Kong's default, and the simulator's, is 5 s) and balancers answered for at once.
FAST = {"db_update_frequency": 0.5, "balancer_build_delay": 0.0}
_ADDRESSES = itertools.count(1)


class Backend:
    """A tiny HTTP server on its own loopback address; answers ``status`` (or ``health_status`` on /health)."""

    def __init__(self, name, host):
        self.name = name
        self.status = 200
        self.health_status = 200
        self.hits = 0
        self.health_hits = 0
        self.requests = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.path.startswith("/health"):
                    backend.health_hits += 1
                    status = backend.health_status
                else:
                    backend.hits += 1
                    status = backend.status
                    backend.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                             "body": body.decode("utf-8", "replace")})
                payload = json.dumps({"backend": backend.name, "path": self.path}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

            def log_message(self, *args):  # pylint: disable=arguments-differ
                return

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.host, self.port = self.server.server_address[:2]
        self.target = "%s:%d" % (self.host, self.port)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def kong_backend():
    """Factory: ``kong_backend("a")`` starts a Backend on a fresh 127.0.77.x address; all are stopped afterwards."""
    started = []

    def make(name):
        index = next(_ADDRESSES)
        srv = Backend(name, "127.0.%d.%d" % (77 + index // 250, 1 + index % 250))
        started.append(srv)
        return srv
    yield make
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session")
def kong(tmp_path_factory):
    """A 2-node simulator cluster shared by the Kong tests (each test uses its own entity names)."""
    cluster = KongCluster(str(tmp_path_factory.mktemp("kong")), nodes=2, **FAST)
    cluster.start(detach=False)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def kong_rbac(tmp_path_factory):
    cluster = KongCluster(str(tmp_path_factory.mktemp("kong-rbac")), nodes=1, rbac_token=RBAC_TOKEN, rbac_header="X-Lab-Token", **FAST)
    cluster.start(detach=False)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def kong_dbless(tmp_path_factory):
    cluster = KongCluster(str(tmp_path_factory.mktemp("kong-dbless")), nodes=1, dbless=True, **FAST)
    cluster.start(detach=False)
    yield cluster
    cluster.stop()


@pytest.fixture
def kong_admin(kong):  # pylint: disable=redefined-outer-name
    """A keep-alive session plus the first node's Admin URL: ``admin.get("/upstreams")``."""
    return AdminClient(kong.admin_urls[0])


@pytest.fixture
def uname():
    """A unique entity name for this test."""
    return "t-" + uuid.uuid4().hex[:10]


class AdminClient:
    """requests.Session bound to one Admin URL."""

    def __init__(self, base, headers=None):
        self.base = base
        self.session = requests.Session()
        if headers:
            self.session.headers.update(headers)

    def request(self, method, path, **kwargs):
        kwargs.setdefault("timeout", 10)
        return self.session.request(method, self.base + path, **kwargs)

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self.request("POST", path, **kwargs)

    def put(self, path, **kwargs):
        return self.request("PUT", path, **kwargs)

    def patch(self, path, **kwargs):
        return self.request("PATCH", path, **kwargs)

    def delete(self, path, **kwargs):
        return self.request("DELETE", path, **kwargs)


def hold_port(address, port):
    """Listen on address:port, as another lab would; None when it is taken already (taken either way)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # as a lab's listener does: a connection of an earlier lab in TIME_WAIT does not make the port taken
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
        sock.listen(1)
    except OSError:
        sock.close()
        return None
    return sock
