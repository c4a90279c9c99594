"""Start and stop a cluster of Kong simulator nodes sharing one state database.

Contract (used by ``python -m tests.lab up``)::

    c = KongCluster(state_dir, nodes=2, host="127.0.0.1", rbac_token=None, dbless=False, tls="off",
                    db_update_frequency=None, balancer_build_delay=1.0, prometheus_metrics="all")
    c.start(detach=True)
    c.admin_urls, c.proxy_urls, c.status_urls, c.node_ids, c.pids
    c.ca_path, c.client_cert, c.client_key          # with tls="on" / "mutual"
    c.stop()
    KongCluster.stop_from_state_dir(state_dir)

Every node is a separate process (``python -m tests.lab.kong_sim``) in its own session.  The shared state is
``<state_dir>/kong.db``; the launcher writes ``<state_dir>/kong-<n>.json`` (pid, urls; the node id once the node
answers) the moment it has started a node, so ``stop_from_state_dir`` finds every node even when a start failed
half-way or the starting process was killed.

``tls``: "off" (plain HTTP Admin API), "on" (HTTPS with a throwaway CA in ``<state_dir>/tls``: ``ca_path``) or
"mutual" (HTTPS that also requires a client certificate: ``client_cert`` / ``client_key``). The proxy and the
Status API stay plain HTTP.

``db_update_frequency``: seconds between a node's polls for the other nodes' changes, like Kong's setting (a node
applies its own writes at once); None takes ``KONG_SIM_DB_UPDATE_FREQUENCY`` from the environment, else Kong's 5 s.
``balancer_build_delay``: seconds before a node answers for a new upstream's balancer (Kong: about 1 s).
``prometheus_metrics``: "all" (the lab's default) makes every node behave as if a global prometheus plugin had all
its metric options on; None behaves like Kong: /metrics shows what prometheus plugin entities (``/plugins``) enable.
"""

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import time

import requests

from .tls import MODES as TLS_MODES
from .tls import client_kwargs, make_pki

STATE_DB = "kong.db"
PIDFILE_PATTERN = "kong-%d.json"
TLS_DIR = "tls"
DEFAULT_DB_UPDATE_FREQUENCY = 5.0
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def free_port(host):
    """Return a TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_simulator(pid, state_db=None, settle=1.0):
    """True when ``pid`` still runs the simulator (of ``state_db`` when given): guards against a recycled pid.

    A process that is still inside execve() shows an empty command line for a moment (the kernel lets the parent
    go on before it has set up the new one): an empty one is read again for up to ``settle`` seconds.
    """
    deadline = time.monotonic() + settle
    while True:
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            return False
        if any(argv):
            return b"tests.lab.kong_sim" in argv and (state_db is None or os.fsencode(state_db) in argv)
        if not _alive(pid) or time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def _tls_mode(value):
    if value in (None, False):
        return "off"
    if value is True:
        return "on"
    if value not in TLS_MODES:
        raise ValueError("tls must be one of %s (or true/false), got %r" % (", ".join(TLS_MODES), value))
    return value


def _remove_private_keys(state_dir):
    """Private keys of a stopped cluster are useless: do not leave them lying around."""
    tls_dir = os.path.join(state_dir, TLS_DIR)
    if os.path.isdir(tls_dir):
        for entry in os.listdir(tls_dir):
            if entry.endswith(".key"):
                try:
                    os.unlink(os.path.join(tls_dir, entry))
                except FileNotFoundError:
                    pass


def _terminate(pids, timeout=10.0):
    """SIGTERM each process group, wait, then SIGKILL what is left."""
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + timeout
    remaining = [pid for pid in pids if _alive(pid)]
    while remaining and time.monotonic() < deadline:
        for pid in remaining:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        remaining = [pid for pid in remaining if _alive(pid)]
        if remaining:
            time.sleep(0.05)
    for pid in remaining:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


class KongClusterError(RuntimeError):
    """A node did not start."""


class KongCluster:
    """A set of simulator processes sharing ``<state_dir>/kong.db``."""

    def __init__(self, state_dir, nodes=2, host="127.0.0.1", rbac_token=None, dbless=False,
                 rbac_header="Kong-Admin-Token", workspaces=None, python=None, start_timeout=20.0, tls="off",
                 db_update_frequency=None, balancer_build_delay=1.0, prometheus_metrics="all"):
        if nodes < 1:
            raise ValueError("nodes must be >= 1")
        self.state_dir = os.path.abspath(state_dir)
        self.nodes = nodes
        self.host = host
        self.rbac_token = rbac_token
        self.rbac_header = rbac_header
        self.dbless = dbless
        self.workspaces = list(workspaces or [])
        self.python = python or sys.executable
        self.start_timeout = start_timeout
        self.tls = _tls_mode(tls)
        if db_update_frequency is None:
            db_update_frequency = float(os.environ.get("KONG_SIM_DB_UPDATE_FREQUENCY") or DEFAULT_DB_UPDATE_FREQUENCY)
        if db_update_frequency <= 0 or balancer_build_delay < 0:
            raise ValueError("db_update_frequency must be > 0 and balancer_build_delay >= 0")
        if prometheus_metrics not in ("all", None):
            raise ValueError("prometheus_metrics must be 'all' or None, got %r" % (prometheus_metrics,))
        self.db_update_frequency = float(db_update_frequency)
        self.balancer_build_delay = float(balancer_build_delay)
        self.prometheus_metrics = prometheus_metrics
        self.ca_path = self.client_cert = self.client_key = None
        self._server_cert = self._server_key = None
        self.admin_urls = []
        self.proxy_urls = []
        self.status_urls = []
        self.node_ids = []
        self.node_names = []
        self.pids = []
        self.log_files = []
        self._procs = []
        self._atexit = False

    @property
    def state_db(self):
        return os.path.join(self.state_dir, STATE_DB)

    def _headers(self):
        return {self.rbac_header: self.rbac_token} if self.rbac_token else {}

    def _tls_info(self):
        return {"ca_path": self.ca_path, "client_cert": self.client_cert, "client_key": self.client_key}

    def _get(self, url, timeout):
        return requests.get(url, headers=self._headers(), timeout=timeout, **client_kwargs(self._tls_info()))

    @property
    def admin_scheme(self):
        return "http" if self.tls == "off" else "https"

    def _command(self, index, admin_port, proxy_port, status_port):
        name = "kong-%d" % index
        cmd = [self.python, "-m", "tests.lab.kong_sim", "--state-db", self.state_db, "--node-name", name,
               "--admin-listen", "%s:%d" % (self.host, admin_port), "--proxy-listen", "%s:%d" % (self.host, proxy_port),
               "--status-listen", "%s:%d" % (self.host, status_port),
               "--log-file", os.path.join(self.state_dir, "%s.log" % name)]
        if self.rbac_token:
            cmd += ["--rbac-header", self.rbac_header]
        if self.tls != "off":
            cmd += ["--admin-ssl-cert", self._server_cert, "--admin-ssl-key", self._server_key]
            if self.tls == "mutual":
                cmd += ["--admin-client-ca", self.ca_path]
        cmd += ["--db-update-frequency", repr(self.db_update_frequency), "--balancer-build-delay", repr(self.balancer_build_delay),
                "--prometheus-metrics", "all" if self.prometheus_metrics == "all" else "plugin"]
        if self.dbless:
            cmd.append("--dbless")
        for workspace in self.workspaces:
            cmd += ["--workspace", workspace]
        return name, cmd

    def start(self, detach=True):
        """Start every node; return when ``GET /`` answers on all of them."""
        os.makedirs(self.state_dir, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = REPO_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        if self.rbac_token:
            # passed through the environment so it never shows up in `ps` output
            env["KONG_SIM_RBAC_TOKEN"] = self.rbac_token
        if self.tls != "off":
            pki = make_pki(os.path.join(self.state_dir, TLS_DIR), [self.host])
            self.ca_path, self._server_cert, self._server_key = pki["ca"], pki["cert"], pki["key"]
            if self.tls == "mutual":
                self.client_cert, self.client_key = pki["client_cert"], pki["client_key"]
        if not detach and not self._atexit:
            atexit.register(self.stop)
            self._atexit = True
        self.node_ids = [None] * self.nodes
        pending = []
        for index in range(1, self.nodes + 1):
            admin_port, proxy_port, status_port = free_port(self.host), free_port(self.host), free_port(self.host)
            name, cmd = self._command(index, admin_port, proxy_port, status_port)
            log_path = os.path.join(self.state_dir, "%s.out" % name)
            with open(log_path, "ab") as out:
                proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT, start_new_session=True)
            self._procs.append(proc)
            self.pids.append(proc.pid)
            self.node_names.append(name)
            self.log_files.append(log_path)
            self.admin_urls.append("%s://%s:%d" % (self.admin_scheme, self.host, admin_port))
            self.proxy_urls.append("http://%s:%d" % (self.host, proxy_port))
            self.status_urls.append("http://%s:%d" % (self.host, status_port))
            # recorded before anything can fail: `down` (stop_from_state_dir) must find every node started
            self._write_pidfile(index - 1)
            pending.append(index - 1)
            # the first node creates the database schema; let it finish before the others race for it
            if index == 1:
                self._wait_ready([0])
        self._wait_ready(pending[1:])
        for i, url in enumerate(self.admin_urls):
            self.node_ids[i] = self._get(url + "/", 5).json()["node_id"]
            self._write_pidfile(i)
        return self

    def _wait_ready(self, indexes):
        deadline = time.monotonic() + self.start_timeout
        for i in indexes:
            while True:
                proc = self._procs[i]
                if proc.poll() is not None:
                    self.stop()
                    raise KongClusterError("Kong simulator node %s exited with %s; see %s"
                                           % (self.node_names[i], proc.returncode, self.log_files[i]))
                try:
                    if self._get(self.admin_urls[i] + "/", 1).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise KongClusterError("Kong simulator node %s did not answer within %.0f s; see %s"
                                           % (self.node_names[i], self.start_timeout, self.log_files[i]))
                time.sleep(0.05)

    def _write_pidfile(self, i):
        info = {"pid": self.pids[i], "name": self.node_names[i], "node_id": self.node_ids[i] if i < len(self.node_ids) else None,
                "admin_url": self.admin_urls[i], "proxy_url": self.proxy_urls[i], "status_url": self.status_urls[i],
                "tls": self.tls}
        info.update({k: v for k, v in self._tls_info().items() if v})
        path = os.path.join(self.state_dir, PIDFILE_PATTERN % (i + 1))
        with open(path + ".tmp", "w", encoding="utf-8") as handle:
            json.dump(info, handle)
        os.replace(path + ".tmp", path)

    def stop(self):
        """Stop every node (SIGTERM, then SIGKILL after 10 s) and remove the pidfiles."""
        _terminate(list(self.pids))
        for proc in self._procs:
            try:
                proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        self._procs = []
        self.pids = []
        for i in range(self.nodes):
            try:
                os.unlink(os.path.join(self.state_dir, PIDFILE_PATTERN % (i + 1)))
            except FileNotFoundError:
                pass
        _remove_private_keys(self.state_dir)

    def restart_node(self, index):
        """Stop node ``index`` (0-based) and start it again on the same ports; returns its new pid."""
        proc = self._procs[index]
        _terminate([proc.pid])
        proc.wait(timeout=5)
        admin_port = int(self.admin_urls[index].rsplit(":", 1)[1])
        proxy_port = int(self.proxy_urls[index].rsplit(":", 1)[1])
        status_port = int(self.status_urls[index].rsplit(":", 1)[1])
        _unused, cmd = self._command(index + 1, admin_port, proxy_port, status_port)
        env = dict(os.environ)
        env["PYTHONPATH"] = REPO_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        if self.rbac_token:
            env["KONG_SIM_RBAC_TOKEN"] = self.rbac_token
        with open(self.log_files[index], "ab") as out:
            new = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        self._procs[index] = new
        self.pids[index] = new.pid
        self._write_pidfile(index)
        self._wait_ready([index])
        self._write_pidfile(index)
        return new.pid

    @staticmethod
    def read_state_dir(state_dir):
        """The pidfile contents of the nodes recorded in ``state_dir``."""
        infos = []
        if not os.path.isdir(state_dir):
            return infos
        for entry in sorted(os.listdir(state_dir)):
            if entry.startswith("kong-") and entry.endswith(".json"):
                try:
                    with open(os.path.join(state_dir, entry), encoding="utf-8") as handle:
                        info = json.load(handle)
                except (OSError, ValueError):
                    continue
                info["pidfile"] = os.path.join(state_dir, entry)
                infos.append(info)
        return infos

    @classmethod
    def stop_from_state_dir(cls, state_dir):
        """Stop the nodes recorded in ``state_dir`` (for ``down`` from another process); returns their pids."""
        infos = cls.read_state_dir(state_dir)
        state_db = os.path.join(os.path.abspath(state_dir), STATE_DB)
        pids = [int(info["pid"]) for info in infos if info.get("pid") and _is_simulator(int(info["pid"]), state_db)]
        _terminate(pids)
        for info in infos:
            try:
                os.unlink(info["pidfile"])
            except FileNotFoundError:
                pass
        _remove_private_keys(state_dir)
        return pids
