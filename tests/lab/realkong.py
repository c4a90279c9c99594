"""The lab's real Kong engine: Kong 3.9.3 clusters from the kit in ``../shared/realkong`` (``kong-cluster.sh``).

The kit builds Kong from the sources it ships (once, into ``~/.cache/realkong-3.9.3``; later ``up`` calls find the
build current in under a second) and starts clusters on 127.0.0.1: ``traditional`` (N nodes on one PostgreSQL),
``hybrid`` (a control plane on PostgreSQL + N DB-less data planes) or ``dbless`` (N independent DB-less nodes).

``RealKongCluster`` has the attributes the lab reads from the simulator's ``KongCluster`` (``admin_urls``,
``proxy_urls``, ``status_urls``, ``node_names``, ``node_ids``, TLS paths) plus ``mode``, ``nodes`` (one dict per Kong
node with its role) and ``control_plane_admin_url``. Its state lives in ``<lab state>/kong``: the kit's own state
(``cluster.json``, configs, PostgreSQL data, pids) and ``engine.json``, which names the kit so that ``status`` and
``down`` work from the state dir alone. ``down`` is the kit's: it stops only the processes it recorded, after checking
each pid is still that node's nginx master or that data directory's postmaster.
"""

import json
import os
import subprocess
import time

import requests

from tests.lab.lab import _read_json, _running, _tail, _write  # pylint: disable=cyclic-import

ENGINE_FILE = "engine.json"
UP_LOG = "kong-cluster.log"
# Kong's prometheus plugin, global, with every metric option on (all default to false in Kong 3.9): the lab's
# Prometheus scrapes each proxying node's Status API /metrics, and the collection's gates read what it needs there.
PROMETHEUS_PLUGIN = {"name": "prometheus", "tags": ["mixedrun-lab"],
                     "config": {"status_code_metrics": True, "latency_metrics": True, "bandwidth_metrics": True,
                                "upstream_health_metrics": True, "per_consumer": False}}


class RealKongError(RuntimeError):
    """The kit could not start, report or stop a cluster; the message carries the kit's own words."""


def _write_json(path, data):
    _write(path, json.dumps(data, indent=2))


class RealKongCluster:
    """One real Kong cluster started through the kit, its state in ``state_dir``."""

    ca_path = client_cert = client_key = None          # the kit's Admin API is plain HTTP

    def __init__(self, state_dir, kit, mode="traditional", nodes=1, db_update_frequency=None, prometheus_plugin=True,
                 up_timeout=1800):
        self.state_dir = os.path.abspath(state_dir)
        self.kit = kit
        self.mode = mode
        self.node_count = nodes
        self.db_update_frequency = db_update_frequency
        self.prometheus_plugin = prometheus_plugin
        self.up_timeout = up_timeout
        self.cluster = {}

    # -- what the lab reads --------------------------------------------------------------------------------
    @property
    def nodes(self):
        """The kit's node records (name, role, database, admin_url, proxy_url, status_url, prefix, pid, node_id)."""
        return list(self.cluster.get("nodes") or [])

    @property
    def admin_urls(self):
        """Admin API URLs: every traditional / DB-less node; the control plane alone in hybrid mode."""
        return list(self.cluster.get("admin_urls") or [])

    @property
    def proxy_urls(self):
        """Every proxying node (hybrid: the data planes)."""
        return list(self.cluster.get("proxy_urls") or [])

    @property
    def status_urls(self):
        """The Status API of every node, in node order."""
        return [n["status_url"] for n in self.nodes]

    @property
    def metrics_targets(self):
        """(name, Status API URL) of the nodes Prometheus scrapes: the proxying ones (a control plane proxies nothing)."""
        return [(n["name"], n["status_url"]) for n in self.nodes if n.get("proxy_url")]

    @property
    def node_names(self):
        """Node names in the kit's order (kong-1..., or cp, dp-1...)."""
        return [n["name"] for n in self.nodes]

    @property
    def node_ids(self):
        """Kong's node id of each node (None where none could be read)."""
        return [n.get("node_id") for n in self.nodes]

    @property
    def version(self):
        """Kong's version as the first Admin API reports it."""
        return self.cluster.get("version")

    @property
    def control_plane_admin_url(self):
        """Hybrid mode: the control plane's Admin API; else None."""
        return self.cluster.get("control_plane_admin_url")

    # -- running the kit -----------------------------------------------------------------------------------
    @staticmethod
    def _env(state_dir, extra=None):
        env = dict(os.environ)
        env["REALKONG_STATE"] = state_dir
        for key in [k for k in env if k.startswith("KONG_")]:
            del env[key]                    # a developer's KONG_ADMIN_URL etc. must not reach the nodes' kong.conf
        env.update(extra or {})
        return env

    def start(self, detach=True):  # pylint: disable=unused-argument
        """``kong-cluster.sh up`` (building Kong first when the cached build is missing or stale); then the lab's
        global prometheus plugin and the node ids. Raises RealKongError with the kit's log tail on failure."""
        os.makedirs(self.state_dir, exist_ok=True)
        _write_json(os.path.join(self.state_dir, ENGINE_FILE), {"engine": "real", "kit": self.kit, "mode": self.mode})
        extra = {}
        if self.db_update_frequency is not None:
            extra["REALKONG_DB_UPDATE_FREQUENCY"] = "%g" % self.db_update_frequency
        log = os.path.join(self.state_dir, UP_LOG)
        argv = [os.path.join(self.kit, "kong-cluster.sh"), "up", "--mode", self.mode, "--nodes", str(self.node_count)]
        with open(log, "ab") as err:
            try:
                proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, env=self._env(self.state_dir, extra),
                                      cwd=self.state_dir, timeout=self.up_timeout, check=False)
            except subprocess.TimeoutExpired:
                raise RealKongError("kong-cluster.sh up did not finish within %d s; see %s" % (self.up_timeout, log)) from None
        if proc.returncode != 0:
            raise RealKongError("kong-cluster.sh up --mode %s --nodes %d failed (exit %d):\n%s"
                                % (self.mode, self.node_count, proc.returncode, _tail(log)))
        try:
            self.cluster = json.loads(proc.stdout)
        except ValueError:
            raise RealKongError("kong-cluster.sh up printed no JSON; see %s" % log) from None
        self._read_node_ids()
        if self.prometheus_plugin:
            self._enable_prometheus()
        _write_json(os.path.join(self.state_dir, "lab-cluster.json"), self.cluster)
        return self

    def _read_node_ids(self):
        """Kong's node ids: ``GET /`` where a node has an Admin API; a data plane keeps its id in ``<prefix>/kong.id``
        (the id the control plane lists it under in ``/clustering/data-planes``)."""
        for node in self.nodes:
            node["node_id"] = None
            try:
                if node.get("admin_url"):
                    node["node_id"] = requests.get(node["admin_url"] + "/", timeout=10).json().get("node_id")
                else:
                    with open(os.path.join(node["prefix"], "kong.id"), encoding="utf-8") as fh:
                        node["node_id"] = fh.read().strip() or None
            except (OSError, requests.RequestException, ValueError):
                pass

    def _enable_prometheus(self):
        """The global prometheus plugin: one POST on a database-backed cluster (traditional; hybrid through the
        control plane), a declarative ``POST /config`` on each DB-less node."""
        if self.mode == "dbless":
            body = {"_format_version": "3.0", "plugins": [PROMETHEUS_PLUGIN]}
            for url in self.admin_urls:
                self._call("POST", url + "/config", body)
            return
        self._call("POST", self.admin_urls[0] + "/plugins", PROMETHEUS_PLUGIN)

    @staticmethod
    def _call(method, url, body):
        try:
            resp = requests.request(method, url, json=body, timeout=30)
        except requests.RequestException as exc:
            raise RealKongError("%s %s: %s" % (method, url, exc)) from None
        if resp.status_code >= 400:
            raise RealKongError("%s %s -> %d %s" % (method, url, resp.status_code, resp.text[:300]))

    # -- from the state dir alone (status / down) ------------------------------------------------------------
    @staticmethod
    def engine_record(state_dir):
        """engine.json of a real cluster in ``state_dir`` (None: not a real-Kong state dir)."""
        rec = _read_json(os.path.join(state_dir, ENGINE_FILE))
        return rec if rec and rec.get("engine") == "real" else None

    @classmethod
    def status_from_state_dir(cls, state_dir):
        """``kong-cluster.sh status`` as a list of per-component dicts (name, role, pid, running, url); [] when no
        cluster was recorded."""
        rec = cls.engine_record(state_dir)
        if not rec or not os.path.isdir(state_dir):
            return []
        proc = subprocess.run([os.path.join(rec["kit"], "kong-cluster.sh"), "status"], stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, env=cls._env(state_dir), cwd=state_dir, timeout=60, check=False)
        if proc.returncode == 3:
            return []
        try:
            doc = json.loads(proc.stdout)
        except ValueError:
            return [{"name": "kong", "pid": 0, "running": False, "url": None, "error": proc.stderr.strip()[-500:]}]
        out = []
        for node in doc.get("nodes") or []:
            out.append({"name": node["name"], "role": node.get("role"), "pid": node.get("pid") or 0, "running": bool(node.get("running")),
                        "url": node.get("admin_url") or node.get("status_url"), "status_url": node.get("status_url")})
        if doc.get("postgres"):
            out.append({"name": "kong-postgres", "role": "database", "pid": cls._recorded_pid(state_dir, "postgres"),
                        "running": bool(doc["postgres"].get("running")), "url": None})
        return out

    @staticmethod
    def _recorded_pid(state_dir, kind):
        """The pid the kit recorded for ``kind`` in ``<state>/pids`` (lines: kind, name, pid, marker; tab-separated)."""
        try:
            with open(os.path.join(state_dir, "pids"), encoding="utf-8") as fh:
                for line in fh:
                    fields = line.rstrip("\n").split("\t")
                    if fields[0] == kind and len(fields) > 2 and fields[2].isdigit():
                        return int(fields[2])
        except OSError:
            pass
        return 0

    @classmethod
    def stop_from_state_dir(cls, state_dir, timeout=120):
        """``kong-cluster.sh down``; returns the pids that were running before. Raises RealKongError when the kit
        reports a failure."""
        rec = cls.engine_record(state_dir)
        if not rec:
            return []
        pids = [c["pid"] for c in cls.status_from_state_dir(state_dir) if c.get("running") and c.get("pid")]
        proc = subprocess.run([os.path.join(rec["kit"], "kong-cluster.sh"), "down"], stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, env=cls._env(state_dir), cwd=state_dir, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise RealKongError("kong-cluster.sh down failed (exit %d): %s" % (proc.returncode, proc.stderr.strip()[-1500:]))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_running(pid) for pid in pids):
            time.sleep(0.1)
        os.unlink(os.path.join(state_dir, ENGINE_FILE))
        return pids


def restart_node(lab_state_dir, name, timeout=90):
    """Stop one node of the lab's real Kong cluster and start it again with its own configuration (same ports, same
    prefix, so the same node id): ``kong quit`` (graceful: open requests finish) then ``kong start``, both through the
    kit's build. The kit's records (``pids``, ``cluster.json``) and lab.json get the new nginx master pid, so
    ``status`` and ``down`` keep working. Returns {"name", "pid", "seconds"}; RealKongError when the node does not
    come back (its /status, and for a data plane /status/ready, answering 200) within ``timeout`` seconds."""
    kong_dir = os.path.join(lab_state_dir, "kong")
    cluster = _read_json(os.path.join(kong_dir, "cluster.json"))
    rec = RealKongCluster.engine_record(kong_dir)
    if not cluster or not rec:
        raise RealKongError("no real Kong cluster recorded in %s" % kong_dir)
    node = next((n for n in cluster.get("nodes") or [] if n["name"] == name), None)
    if node is None:
        raise RealKongError("no Kong node %r in %s (nodes: %s)" % (name, kong_dir, ", ".join(n["name"] for n in cluster["nodes"])))
    kit = os.path.join(rec["kit"], "kong-cluster.sh")
    env = RealKongCluster._env(kong_dir)  # pylint: disable=protected-access
    cwd = os.path.join(cluster.get("kong_build") or "", "kong-cwd")
    started = time.monotonic()
    subprocess.run([kit, "kong", "quit", "-p", node["prefix"], "--timeout", "20"], stdin=subprocess.DEVNULL, capture_output=True,
                   text=True, env=env, cwd=cwd, timeout=60, check=False)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _running(node["pid"]):
        time.sleep(0.1)
    proc = subprocess.run([kit, "kong", "start", "-c", node["conf"]], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RealKongError("kong start %s failed (exit %d): %s" % (name, proc.returncode, (proc.stderr or proc.stdout).strip()[-1500:]))
    with open(os.path.join(node["prefix"], "pids", "nginx.pid"), encoding="utf-8") as fh:
        pid = int(fh.read().strip())
    # the kit's records: pids (kind, name, pid, marker; tab-separated) and cluster.json; the lab's lab.json
    pids_path = os.path.join(kong_dir, "pids")
    with open(pids_path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    lines = ["\t".join(["kong", name, str(pid)] + line.split("\t")[3:]) if line.split("\t")[:2] == ["kong", name] else line
             for line in lines]
    _write(pids_path, "\n".join(lines) + "\n")
    node["pid"] = pid
    _write_json(os.path.join(kong_dir, "cluster.json"), cluster)
    lab_json = os.path.join(lab_state_dir, "lab.json")
    info = _read_json(lab_json)
    if info:
        for entry in info.get("kong_nodes") or []:
            if entry.get("name") == name:
                entry["pid"] = pid
        _write(lab_json, json.dumps(info, indent=2) + "\n")
    paths = ["/status"] + (["/status/ready"] if node.get("role") == "data_plane" else [])
    deadline = time.monotonic() + timeout
    while True:
        try:
            if all(requests.get(node["status_url"] + p, timeout=2).status_code == 200 for p in paths):
                break
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise RealKongError("Kong node %s did not answer 200 on %s within %s s after its restart" % (name, paths, timeout))
        time.sleep(0.2)
    return {"name": name, "pid": pid, "seconds": round(time.monotonic() - started, 2)}
