"""Lab orchestration: ``up`` / ``down`` / ``status``, and ``serve`` (the fleet + Kubernetes API process).

Processes (each in its own session; pidfiles in ``<state_dir>/pids/<component>.json``):

* ``fleet``: ``python -m tests.lab serve`` -- every VM/container node, the nodePorts, the control listener and
  the Kubernetes API stand-in, on one event loop;
* ``kong-N``: the Kong simulator nodes (``tests.lab.kong_sim.launcher.KongCluster``, state in ``<state_dir>/kong``);
* ``haproxy``: the front load balancer; ``prometheus``: metrics;
* ``kic`` (``kic.enabled``): the ingress-controller stand-in (``python -m tests.lab kic``, tests/lab/kic.py).

``network: netns``: the lab runs inside the network namespace of ``tests/tools/in_netns.sh`` (10.0.0.0/8 local), so
node addresses may be 10.x; ``up`` refuses to start elsewhere.

``up`` when a healthy lab with the same configuration already runs in the state dir prints its lab.json and
exits 0; a partly running (degraded) lab is stopped and started again; a healthy lab with a different
configuration is an error unless ``--restart`` is given.
"""

import asyncio
import base64
import contextlib
import datetime
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time

import requests
import yaml

from tests.lab import config as labconfig
from tests.lab import haproxy as lab_haproxy
from tests.lab import prometheus as lab_prometheus

LAB_JSON = "lab.json"
PIDS_DIR = "pids"
FLEET_READY = "fleet.json"
TOKENS_FILE = "k8s-tokens.json"
KONG_DIR = "kong"
K8S_DIR = "k8s"                 # the real Kubernetes engine's state (tests/lab/realk8s.py)
PROM_DATA = "prometheus-data"
SECRET_FILES = (TOKENS_FILE, "kubeconfig", "kubeconfig-forbidden", "k8s.key")


class LabError(RuntimeError):
    """The lab cannot do what was asked; the message says why and what to do."""


# ---------------------------------------------------------------------------------------------------------------
# helpers

def _free_port(host):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _port_free(host, port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _write_private(path, text):
    """Write a file only the owner can read (tokens, kubeconfigs)."""
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(path + ".tmp", path)


def _write(path, text):
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(path + ".tmp", path)


def _tail(path, lines=25):
    """The last ``lines`` lines of a log file, for error messages ("(no log)" when it cannot be read)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return "".join(fh.readlines()[-lines:]).rstrip()
    except OSError:
        return "(no log)"


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as fh:
            return fh.read().decode(errors="replace").split("\0")
    except OSError:
        return None


def _proc_state(pid):
    try:
        with open("/proc/%d/stat" % pid, encoding="utf-8") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _running(pid):
    """Alive and not a zombie."""
    state = _proc_state(pid)
    return state is not None and state not in ("Z", "X")


def group_members(pgid):
    """Live (non-zombie) pids whose process group is ``pgid``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, encoding="utf-8") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            out.append(int(entry))
    return out


def _reap(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _http_ok(url, timeout=1.0, verify=True, cert=None):
    try:
        return requests.get(url, timeout=timeout, verify=verify, cert=cert).status_code < 500
    except requests.RequestException:
        return False


class Lab:
    """One lab, identified by its state dir."""

    def __init__(self, state_dir=None):
        self.state_dir = os.path.abspath(state_dir or labconfig.default_state_dir())
        self.pids_dir = os.path.join(self.state_dir, PIDS_DIR)

    def path(self, *parts):
        """A path inside the state dir."""
        return os.path.join(self.state_dir, *parts)

    # -- process records -----------------------------------------------------------------------------------
    def _spawn(self, component, argv, env=None, cwd=None):
        log = self.path("%s.log" % component)
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                    env=env, cwd=cwd, close_fds=True)
        os.makedirs(self.pids_dir, exist_ok=True)
        _write(os.path.join(self.pids_dir, component + ".json"),
               json.dumps({"component": component, "pid": proc.pid, "pgid": proc.pid, "argv0": argv[0], "marker": self.state_dir,
                           "log": log, "started": time.time()}))
        return proc

    def _records(self):
        out = {}
        if os.path.isdir(self.pids_dir):
            for entry in sorted(os.listdir(self.pids_dir)):
                if entry.endswith(".json"):
                    rec = _read_json(os.path.join(self.pids_dir, entry))
                    if rec and isinstance(rec.get("pid"), int):
                        out[rec["component"]] = rec
        return out

    def _ours(self, rec):
        """True when the recorded pid still runs the process we started (not a recycled pid)."""
        argv = _cmdline(rec["pid"])
        return bool(argv) and _running(rec["pid"]) and any(rec["marker"] in arg for arg in argv)

    @contextlib.contextmanager
    def locked(self):
        """Serialise up/down on one state dir (a second `up` waits for the first instead of racing it)."""
        os.makedirs(self.state_dir, exist_ok=True)
        with open(self.path("lab.lock"), "w", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- up ------------------------------------------------------------------------------------------------
    def up(self, config_path=None, kong_nodes=None, restart=False, kong_engine=None, kong_mode=None, k8s_engine=None):
        """Start the lab (or report the running one); returns the lab.json dict."""
        kong_over = {key: value for key, value in (("nodes", kong_nodes), ("engine", kong_engine), ("mode", kong_mode)) if value}
        if kong_mode and kong_mode != "dbless":
            kong_over["dbless"] = False
        overrides = {"kong": kong_over} if kong_over else {}
        if k8s_engine:
            overrides["k8s"] = {"engine": k8s_engine}
        overrides = overrides or None
        user_raw = labconfig.load_user(config_path, overrides)
        cfg = labconfig.load(config_path, overrides)
        if cfg.network == "netns":
            check_netns()
        # what was asked for, before ports are picked: the same request finds the running lab again
        fingerprint = cfg.fingerprint()
        current = self.status()
        if current["state"] == "up" and not restart:
            info = _read_json(self.path(LAB_JSON)) or {}
            if info.get("config_fingerprint") == fingerprint:
                info["already_running"] = True
                return info
            raise LabError("a lab with a different configuration is already running in %s; run `python -m tests.lab down` first "
                           "or pass --restart" % self.state_dir)
        if current["state"] != "down" or restart:
            self.down()
        missing = [hint for binary, hint in ((lab_haproxy.find_binary(), lab_haproxy.BINARY_HINT),
                                             (lab_prometheus.find_binary(), lab_prometheus.BINARY_HINT)) if binary is None]
        if missing:
            raise LabError("; ".join(missing))
        # node_port / services[].node_port: `auto` (or 0) -> a free port; a default that is taken (another lab) moves too
        cfg = labconfig.resolve_ports(cfg, user_raw)
        self._precheck_ports(cfg)
        os.makedirs(self.state_dir, exist_ok=True)
        for stale in (LAB_JSON, FLEET_READY):
            if os.path.exists(self.path(stale)):
                os.unlink(self.path(stale))
        # Kong starts EMPTY and Prometheus without old series: drop the previous run's databases.
        for stale_dir in (KONG_DIR, PROM_DATA, K8S_DIR):
            shutil.rmtree(self.path(stale_dir), ignore_errors=True)
        try:
            return self._start(cfg, fingerprint)
        except BaseException:
            self.down()
            raise

    @staticmethod
    def _precheck_ports(cfg):
        taken = []
        for node in cfg.nodes:
            if not _port_free(node.address, node.port):
                taken.append("%s:%d (node %s)" % (node.address, node.port, node.name))
        for svc in cfg.services:
            if svc.node_port and svc.containers:
                for knode in cfg.k8s_nodes:
                    if not _port_free(knode.address, svc.node_port):
                        taken.append("%s:%d (nodePort of service %s)" % (knode.address, svc.node_port, svc.name))
        for name in ("haproxy", "prometheus", "control"):
            sec = getattr(cfg, name)
            if sec["port"] and not _port_free(sec["host"], sec["port"]):
                taken.append("%s:%d (%s.port)" % (sec["host"], sec["port"], name))
        if taken:
            raise LabError("address already in use: %s. Is another lab running (`python -m tests.lab status`, "
                           "MIXEDRUN_LAB_DIR)? Otherwise change node_port / address_base / ports in the lab config "
                           "(or set them to auto: a free port is picked at start)."
                           % ", ".join(taken[:6]) + (" (and %d more)" % (len(taken) - 6) if len(taken) > 6 else ""))

    def _env(self):
        env = dict(os.environ)
        env["PYTHONPATH"] = labconfig.REPO_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return env

    def _start(self, cfg, fingerprint=None):
        started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        from tests.lab import realk8s  # pylint: disable=import-outside-toplevel
        k8s = None
        if cfg.k8s["engine"] == "real":
            # 0. the real control plane first: its ReplicaSets name the pods, and the fleet's container nodes take those names
            k8s, cfg = self._start_real_k8s(cfg)
        _write(self.path("config.yml"), "# The resolved configuration of the running lab (written by `up`).\n"
               + yaml.safe_dump(cfg.raw, sort_keys=False))
        if k8s is not None:
            tokens = {"token": k8s.token, "forbidden_token": k8s.forbidden_token()}
        else:
            tokens = {"token": cfg.k8s.get("token") or secrets.token_urlsafe(32),
                      "forbidden_token": cfg.k8s.get("forbidden_token") or secrets.token_urlsafe(32)}
        _write_private(self.path(TOKENS_FILE), json.dumps(tokens))
        if cfg.k8s["tls"]:
            self._make_cert(cfg.k8s["host"])

        # 1. fleet + Kubernetes API
        proc = self._spawn("fleet", [sys.executable, "-m", "tests.lab", "serve", "--state-dir", self.state_dir],
                           env=self._env(), cwd=labconfig.REPO_ROOT)
        fleet = self._wait_file(proc, "fleet", self.path(FLEET_READY), 30 if k8s is None else 90)
        if k8s is not None:
            try:
                k8s.wait_endpoints(cfg)          # the kubelet player made the pods Running and Ready: the slices follow
            except (realk8s.RealK8sError, requests.RequestException) as exc:
                raise LabError("%s; the kubelet player's log: %s" % (exc, self.path("fleet.log"))) from None

        # 2. Kong: the real one from the kit, or the simulator
        kong = self._start_kong(cfg)
        kong_names = list(kong.node_names)

        # 3. HAProxy
        hcfg = cfg.haproxy
        lb_port = hcfg["port"] or _free_port(hcfg["host"])
        stats_port = hcfg["stats_port"] or _free_port(hcfg["host"])
        binary = lab_haproxy.find_binary()
        hpath = self.path("haproxy.cfg")
        runtime_port = _free_port(hcfg["host"])
        _write(hpath, lab_haproxy.render_config(hcfg["host"], lb_port, stats_port, kong.proxy_urls, self.state_dir, runtime_port))
        try:
            lab_haproxy.check_config(binary, hpath)
        except RuntimeError as exc:
            raise LabError(str(exc)) from None
        proc = self._spawn("haproxy", lab_haproxy.command(binary, hpath))
        lb_url = "http://%s:%d" % (hcfg["host"], lb_port)
        stats_url = "http://%s:%d" % (hcfg["host"], stats_port)
        self._wait_http(proc, "haproxy", stats_url + "/stats", 15)

        # 4. Prometheus (scrapes Kong's Admin API /metrics; the plain-HTTP Status API when the Admin API needs an RBAC
        #    token or speaks TLS)
        pcfg = cfg.prometheus
        prom_port = pcfg["port"] or _free_port(pcfg["host"])
        prom_listen = "%s:%d" % (pcfg["host"], prom_port)
        if cfg.kong["engine"] == "real":
            kong_metrics_targets = kong.metrics_targets         # each proxying node's Status API (the plugin's /metrics)
        else:
            protected = cfg.kong["rbac_token"] or cfg.kong["tls"] != "off"
            kong_metrics_targets = list(zip(kong_names, kong.status_urls if protected and kong.status_urls else kong.admin_urls))
        ppath = self.path("prometheus.yml")
        _write(ppath, lab_prometheus.render_config(pcfg["scrape_interval"], kong_metrics_targets, cfg.nodes,
                                                   "%s:%d" % (hcfg["host"], stats_port), prom_listen))
        data_dir = self.path(PROM_DATA)
        os.makedirs(data_dir, exist_ok=True)
        proc = self._spawn("prometheus", lab_prometheus.command(lab_prometheus.find_binary(), ppath, data_dir, prom_listen, pcfg["retention"]))
        prom_url = "http://%s" % prom_listen
        self._wait_http(proc, "prometheus", prom_url + "/-/ready", 60, want=200)

        # 5. the ingress-controller stand-in (kic.enabled): Gateway API objects, then its process
        kic_info = self._start_kic(cfg, k8s, kong) if cfg.kic else None

        # 6. kubeconfigs and lab.json
        from tests.lab.k8s_api import kubeconfig  # pylint: disable=import-outside-toplevel
        ca_data = None
        if cfg.k8s["tls"] or k8s is not None:
            with open(self.path("k8s-ca.crt"), "rb") as fh:
                ca_data = base64.b64encode(fh.read()).decode()
        kubeconfig_path = self.path("kubeconfig")
        forbidden_path = self.path("kubeconfig-forbidden")
        _write_private(kubeconfig_path, yaml.safe_dump(kubeconfig(fleet["k8s_url"], tokens["token"], ca_data), sort_keys=False))
        _write_private(forbidden_path, yaml.safe_dump(kubeconfig(fleet["k8s_url"], tokens["forbidden_token"], ca_data,
                                                                 user="mixedrun-lab-forbidden"), sort_keys=False))
        control = fleet["control_url"]
        info = {
            "admin_url": kong.admin_urls[0], "admin_urls": list(kong.admin_urls),
            "proxy_url": kong.proxy_urls[0], "proxy_urls": list(kong.proxy_urls),
            "status_urls": list(getattr(kong, "status_urls", []) or []),
            "kong_nodes": self._kong_nodes(cfg, kong),
            "kong_engine": cfg.kong["engine"], "kong_mode": cfg.kong["mode"], "kong_version": getattr(kong, "version", None),
            # hybrid: every write goes here; the data planes (kong_nodes[].role == data_plane) have no Admin API
            "kong_control_plane_url": kong.control_plane_admin_url if cfg.kong["engine"] == "real" else None,
            "kong_metrics_urls": [url for _name, url in kong_metrics_targets],
            # where each proxying node's balancer is read (/upstreams/{u}/health): a traditional node's Admin API, a
            # data plane's Status API (it has no Admin API)
            "kong_balancer_urls": [n["admin_url"] or n["status_url"] for n in self._kong_nodes(cfg, kong) if n["proxy_url"]],
            "kong_rbac": bool(cfg.kong["rbac_token"]), "kong_dbless": cfg.kong["dbless"],
            # TLS Admin API: the CA to verify it (ca_path) and, for mutual TLS, a client certificate and key (paths)
            "kong_tls": cfg.kong["tls"], "kong_ca_path": kong.ca_path,
            "kong_client_cert": kong.client_cert, "kong_client_key": kong.client_key,
            "lb_url": lb_url, "lb_stats_url": stats_url,
            # HAProxy's Runtime API (admin level) and its configuration file (backend kong_proxy; issue 15)
            "lb_runtime_api": lab_haproxy.socket_path(self.state_dir),
            "lb_runtime_api_tcp": "ipv4@%s:%d" % (hcfg["host"], runtime_port),
            "lb_config": hpath, "lb_backend": lab_haproxy.BACKEND,
            "prometheus_url": prom_url,
            "kubeconfig": kubeconfig_path, "kubeconfig_forbidden": forbidden_path, "k8s_url": fleet["k8s_url"], "k8s_context": "mixedrun-lab",
            "k8s_engine": cfg.k8s["engine"], "k8s_version": k8s.cluster.get("version") if k8s is not None else "v%s.0" % cfg.k8s["version"],
            "control_url": control,
            "state_dir": self.state_dir,
            "nodes": [n.as_dict(control) for n in cfg.nodes],
            "k8s_nodes": [{"name": k.name, "address": k.address} for k in cfg.k8s_nodes],
            "services": [s.as_dict() for s in cfg.services],
            "config_fingerprint": fingerprint or cfg.fingerprint(),
            "started_at": started,
            "network": cfg.network,
            "kic": kic_info,
        }
        if k8s is not None:
            for node in info["nodes"]:
                if node["kind"] == "container":
                    node["pod_ip"] = realk8s.pod_ip(node["address"], cfg.k8s["pod_cidr"])      # what Kubernetes lists
            for svc in info["services"]:
                found = k8s.call("GET", "/api/v1/namespaces/%s/services/%s" % (svc["namespace"], svc["name"]), ok=(200, 404))
                if found:
                    svc["cluster_ip"] = found["spec"].get("clusterIP")
            info["k8s_pods_file"] = self.path(K8S_DIR, realk8s.PODS_FILE)
        _write(self.path(LAB_JSON), json.dumps(info, indent=2) + "\n")
        return info

    def _start_kic(self, cfg, k8s, kong):
        """The Gateway API CRDs, the Gateway's namespace, GatewayClass and Gateway; then the stand-in process, waited
        for until its first push went to every DB-less node. Returns lab.json's ``kic``."""
        from tests.lab import kic as lab_kic  # pylint: disable=import-outside-toplevel
        from tests.lab import realk8s  # pylint: disable=import-outside-toplevel
        from tests.lab.realkong import PROMETHEUS_PLUGIN  # pylint: disable=import-outside-toplevel
        crds = os.path.join(labconfig.realk8s_kit(), "crds", "gateway-api-v1.2.1-standard.yaml")
        if not os.path.isfile(crds):
            raise LabError("kic: the Gateway API CRDs are missing from the realk8s kit (%s)" % crds)
        settings = dict(cfg.kic, server=k8s.server, token_file=k8s.cluster["token_file"], ca_path=self.path("k8s-ca.crt"),
                        admin_urls=list(kong.admin_urls), plugins=[PROMETHEUS_PLUGIN] if cfg.kong["prometheus_plugin"] else [],
                        log=self.path(lab_kic.PUSH_LOG), state=self.path(lab_kic.STATE_FILE), interval=0.5)
        try:
            lab_kic.install_gateway(k8s.call, crds, settings)
        except (realk8s.RealK8sError, RuntimeError, OSError, requests.RequestException) as exc:
            raise LabError("kic: installing the Gateway API objects failed: %s" % exc) from None
        for stale in (lab_kic.STATE_FILE, lab_kic.PUSH_LOG):
            if os.path.exists(self.path(stale)):
                os.unlink(self.path(stale))
        _write(lab_kic.settings_path(self.state_dir), json.dumps(settings, indent=2))
        proc = self._spawn("kic", [sys.executable, "-m", "tests.lab", "kic", "--state-dir", self.state_dir], env=self._env(), cwd=labconfig.REPO_ROOT)
        deadline = time.monotonic() + 30
        while True:
            state = lab_kic.read_state(self.state_dir) or {}
            if state.get("ready"):
                break
            if proc.poll() is not None:
                raise LabError("kic exited with code %s while starting:\n%s" % (proc.returncode, _tail(self.path("kic.log"), 15)))
            if time.monotonic() > deadline:
                raise LabError("kic: no first push within 30 s (%s); see %s and %s"
                               % (state.get("last_error"), self.path("kic.log"), self.path(lab_kic.PUSH_LOG)))
            time.sleep(0.1)
        return {"gateway": dict(cfg.kic["gateway"]), "gateway_class": cfg.kic["gateway_class"], "sync_delay": cfg.kic["sync_delay"],
                "controller_name": cfg.kic["controller_name"], "log": self.path(lab_kic.PUSH_LOG), "state": self.path(lab_kic.STATE_FILE),
                "admin_urls": list(kong.admin_urls)}

    def _start_real_k8s(self, cfg):
        """Start the kit's control plane in <state>/k8s and seed it; returns (the cluster, cfg with the pods' names)."""
        from tests.lab import realk8s  # pylint: disable=import-outside-toplevel
        k8s = realk8s.RealK8s(self.path(K8S_DIR), labconfig.realk8s_kit())
        cidr = realk8s.service_cidr(cfg)
        try:
            k8s.start(cidr)
            names = k8s.seed(cfg, keep_cluster_ip=bool(cidr))
        except (realk8s.RealK8sError, OSError, requests.RequestException) as exc:
            raise LabError("the real Kubernetes control plane (kit %s) did not start: %s" % (k8s.kit, exc)) from None
        shutil.copyfile(k8s.ca_path, self.path("k8s-ca.crt"))
        services = []
        for raw_svc, svc in zip(cfg.raw["services"], cfg.services):
            raw_svc = dict(raw_svc)
            if svc.name in names:
                raw_svc["containers"] = dict(raw_svc["containers"], names=names[svc.name])
            services.append(raw_svc)
        return k8s, labconfig.validate(labconfig.deep_merge(cfg.raw, {"services": services}))

    def _start_kong(self, cfg):
        """Start the configured Kong engine in <state>/kong; returns the cluster object (admin_urls, proxy_urls, ...)."""
        kcfg = cfg.kong
        if kcfg["engine"] == "real":
            from tests.lab.realkong import RealKongCluster, RealKongError  # pylint: disable=import-outside-toplevel
            kong = RealKongCluster(self.path(KONG_DIR), labconfig.realkong_kit(), mode=kcfg["mode"], nodes=kcfg["nodes"],
                                   db_update_frequency=kcfg["db_update_frequency"], prometheus_plugin=kcfg["prometheus_plugin"])
            try:
                return kong.start()
            except RealKongError as exc:
                raise LabError("real Kong (%s mode, kit %s) did not start: %s" % (kcfg["mode"], kong.kit, exc)) from None
        try:
            from tests.lab.kong_sim.launcher import KongCluster  # pylint: disable=import-outside-toplevel
        except ImportError as exc:
            raise LabError("the Kong simulator (tests/lab/kong_sim) cannot be imported: %s" % exc) from None
        kong = KongCluster(self.path(KONG_DIR), nodes=kcfg["nodes"], host=kcfg["host"], rbac_token=kcfg["rbac_token"],
                           dbless=kcfg["dbless"], tls=kcfg["tls"], db_update_frequency=kcfg["db_update_frequency"],
                           prometheus_metrics="all" if kcfg["prometheus_plugin"] else None)
        try:
            kong.start(detach=True)
        except Exception as exc:
            raise LabError("the Kong simulator did not start: %s" % exc) from None
        if not getattr(kong, "node_names", None):
            kong.node_names = ["kong-%d" % (i + 1) for i in range(len(kong.admin_urls))]
        return kong

    @staticmethod
    def _kong_nodes(cfg, kong):
        """lab.json's kong_nodes: per node its name, role, node id and URLs (None where the node has no such API)."""
        if cfg.kong["engine"] == "real":
            return [{"name": n["name"], "role": n["role"], "database": n.get("database"), "node_id": n.get("node_id"),
                     "admin_url": n.get("admin_url"), "proxy_url": n.get("proxy_url"), "status_url": n.get("status_url"),
                     "pid": n.get("pid")} for n in kong.nodes]
        status = list(kong.status_urls or []) + [None] * len(kong.admin_urls)
        return [{"name": n, "role": "traditional", "database": "off" if cfg.kong["dbless"] else "postgres", "node_id": i,
                 "admin_url": a, "proxy_url": p, "status_url": s}
                for n, i, a, p, s in zip(kong.node_names, kong.node_ids, kong.admin_urls, kong.proxy_urls, status)]

    def _make_cert(self, host):
        cert, key = self.path("k8s-ca.crt"), self.path("k8s.key")
        proc = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "30",
                               "-subj", "/CN=mixedrun-lab-apiserver", "-addext", "subjectAltName=IP:%s,DNS:localhost" % host,
                               "-addext", "basicConstraints=critical,CA:TRUE"],
                              capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise LabError("k8s.tls: openssl could not make a certificate: %s" % proc.stderr.strip())
        os.chmod(key, 0o600)

    def _wait_file(self, proc, component, path, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = _read_json(path)
            if data:
                return data
            if proc.poll() is not None:
                raise LabError("%s exited with code %s while starting:\n%s" % (component, proc.returncode, _tail(self.path(component + ".log"), 15)))
            time.sleep(0.05)
        raise LabError("%s did not get ready within %d s; see %s" % (component, timeout, self.path(component + ".log")))

    def _wait_http(self, proc, component, url, timeout, want=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise LabError("%s exited with code %s while starting:\n%s" % (component, proc.returncode, _tail(self.path(component + ".log"), 15)))
            try:
                code = requests.get(url, timeout=1).status_code
                if (want is None and code < 500) or code == want:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise LabError("%s did not answer %s within %d s; see %s" % (component, url, timeout, self.path(component + ".log")))

    # -- down ----------------------------------------------------------------------------------------------
    def down(self, timeout=10.0):
        """Stop every component recorded in the state dir; verify no process of theirs is left."""
        stopped, leftovers = [], []
        records = self._records()
        # HAProxy first so no new traffic arrives, Kong next, then the fleet; Prometheus last.
        order = ["kic", "haproxy", "kong"] + sorted(set(records) - {"kic", "haproxy", "fleet", "prometheus"}) + ["fleet", "k8s", "prometheus"]
        for component in order:
            if component == "kong":
                stopped.extend(self._stop_kong())
                continue
            if component == "k8s":
                try:
                    stopped.extend(self._stop_k8s())
                except LabError as exc:
                    leftovers.append({"component": "k8s", "error": str(exc)})
                continue
            if component not in records:
                continue
            rec = records[component]
            pgid = rec.get("pgid", rec["pid"])
            if self._ours(rec) or group_members(pgid):
                self._kill_group(rec["pid"], pgid, timeout)
                stopped.append({"component": component, "pid": rec["pid"]})
            left = group_members(pgid)
            if left:
                leftovers.append({"component": component, "pids": left})
            else:
                os.unlink(os.path.join(self.pids_dir, component + ".json"))
        if not leftovers:
            # tokens and kubeconfigs of a stopped lab are useless: do not leave secrets lying around
            for stale in (LAB_JSON, FLEET_READY) + SECRET_FILES:
                if os.path.exists(self.path(stale)):
                    os.unlink(self.path(stale))
        result = {"state_dir": self.state_dir, "stopped": stopped, "leftovers": leftovers}
        if leftovers:
            raise LabError("processes left after down: %s" % json.dumps(leftovers))
        return result

    def _stop_k8s(self):
        """The real control plane through the kit's own down (nothing for the stand-in, which runs in the fleet)."""
        from tests.lab.realk8s import RealK8s, RealK8sError  # pylint: disable=import-outside-toplevel
        try:
            return [{"component": "k8s", "pid": pid} for pid in RealK8s.stop_from_state_dir(self.path(K8S_DIR))]
        except (RealK8sError, OSError, subprocess.SubprocessError) as exc:
            raise LabError(str(exc)) from None

    def _stop_kong(self):
        kong_dir = self.path(KONG_DIR)
        if not os.path.isdir(kong_dir):
            return []
        from tests.lab.realkong import RealKongCluster, RealKongError  # pylint: disable=import-outside-toplevel
        if RealKongCluster.engine_record(kong_dir):
            try:
                pids = RealKongCluster.stop_from_state_dir(kong_dir)
            except RealKongError as exc:
                raise LabError(str(exc)) from None
            return [{"component": "kong", "pid": pid} for pid in pids]
        try:
            from tests.lab.kong_sim.launcher import KongCluster  # pylint: disable=import-outside-toplevel
        except ImportError:
            return []
        return [{"component": "kong", "pid": pid} for pid in KongCluster.stop_from_state_dir(kong_dir)]

    @staticmethod
    def _kill_group(pid, pgid, timeout):
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                _reap(pid)
                if not group_members(pgid):
                    return
                time.sleep(0.05)

    @staticmethod
    def _node_summary(control_url):
        """{node name: "ready" | "down" | "unhealthy" | "terminating" | "faulty"} from the control listener."""
        try:
            nodes = requests.get(control_url + "/nodes", timeout=2).json()["nodes"]
        except (requests.RequestException, ValueError, KeyError):
            return None
        out = {}
        for node in nodes:
            faults = node["faults"]
            if not node["listening"]:
                out[node["name"]] = "down"
            elif faults["unhealthy"]:
                out[node["name"]] = "unhealthy"
            elif faults.get("terminating"):
                out[node["name"]] = "terminating"
            elif faults["error_rate"] or faults["latency_ms"]:
                out[node["name"]] = "faulty"
            else:
                out[node["name"]] = "ready"
        return out

    def _kong_status(self, comps):
        """Kong's components: a real cluster's nodes and PostgreSQL (kong-cluster.sh status, put in ``comps`` here,
        each marked with its engine), or the simulator's pidfiles (returned for the caller to check)."""
        from tests.lab.realkong import RealKongCluster  # pylint: disable=import-outside-toplevel
        kong_dir = self.path(KONG_DIR)
        if not RealKongCluster.engine_record(kong_dir):
            try:
                from tests.lab.kong_sim.launcher import KongCluster  # pylint: disable=import-outside-toplevel
            except ImportError:
                return []
            return KongCluster.read_state_dir(kong_dir)
        out = []
        for kinfo in RealKongCluster.status_from_state_dir(kong_dir):
            ready_url = kinfo.get("status_url") and kinfo["status_url"] + "/status"
            comps[kinfo["name"]] = {"pid": kinfo["pid"], "running": kinfo["running"], "url": kinfo.get("url"), "role": kinfo.get("role"),
                                    "engine": "real", "healthy": kinfo["running"] and (not ready_url or _http_ok(ready_url))}
            out.append(dict(kinfo, engine="real"))
        return out

    # -- status --------------------------------------------------------------------------------------------
    def status(self):
        """Each component up/down, and the lab's overall state: up | degraded | down."""
        info = _read_json(self.path(LAB_JSON)) or {}
        records = self._records()
        comps = {}
        fleet = _read_json(self.path(FLEET_READY)) or {}
        for component, rec in records.items():
            entry = {"pid": rec["pid"], "running": self._ours(rec)}
            if component == "fleet":
                entry["control_url"] = fleet.get("control_url")
                entry["k8s_url"] = fleet.get("k8s_url")
                ca_file = self.path("k8s-ca.crt")
                entry["healthy"] = bool(entry["running"] and fleet and _http_ok(fleet["control_url"] + "/healthz")
                                        and _http_ok(fleet["k8s_url"] + "/healthz", verify=ca_file if os.path.exists(ca_file) else True))
                if entry["healthy"]:
                    entry["nodes"] = self._node_summary(fleet["control_url"])
            elif component == "haproxy":
                entry["url"] = info.get("lb_url")
                entry["healthy"] = entry["running"] and bool(info.get("lb_stats_url")) and _http_ok(info["lb_stats_url"] + "/stats")
            elif component == "prometheus":
                entry["url"] = info.get("prometheus_url")
                entry["healthy"] = entry["running"] and bool(info.get("prometheus_url")) and _http_ok(info["prometheus_url"] + "/-/ready")
            elif component == "kic":
                from tests.lab.kic import read_state  # pylint: disable=import-outside-toplevel
                kstate = read_state(self.state_dir) or {}
                entry.update(last_push=kstate.get("last_push"), last_hash=kstate.get("last_hash"), pushes=kstate.get("pushes"),
                             failures=kstate.get("failures"), last_error=kstate.get("last_error"))
                entry["healthy"] = entry["running"] and bool(kstate.get("ready"))
            else:
                entry["healthy"] = entry["running"]
            comps[component] = entry
        kong_infos = self._kong_status(comps)
        from tests.lab.realk8s import RealK8s  # pylint: disable=import-outside-toplevel
        for kinfo in RealK8s.status_from_state_dir(self.path(K8S_DIR)):
            comps[kinfo["name"]] = {"pid": kinfo["pid"], "running": kinfo["running"], "healthy": kinfo["healthy"], "engine": "real"}
        for kinfo in kong_infos:
            if "engine" in kinfo:
                continue                    # a real Kong component, already reported
            pid = int(kinfo.get("pid") or 0)
            running = bool(pid) and _running(pid)
            comps[kinfo.get("name") or "kong"] = {"pid": pid, "running": running, "url": kinfo.get("admin_url"),
                                                  "healthy": running and _http_ok(kinfo.get("admin_url", "") + "/",
                                                                                  **kong_tls_kwargs(kinfo))}
        expected = {"fleet", "haproxy", "prometheus"}
        if not comps:
            state = "down"
        elif expected <= set(comps) and kong_infos and all(c["healthy"] for c in comps.values()) and info:
            state = "up"
        else:
            state = "degraded"
        return {"state": state, "state_dir": self.state_dir, "lab_json": self.path(LAB_JSON) if info else None, "components": comps}


def check_netns():
    """``network: netns``: 10.0.0.0/8 must be local here (tests/tools/in_netns.sh); else LabError."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("10.255.255.254", 0))
        except OSError as exc:
            tool = labconfig.NETNS_TOOL
            raise LabError("network: netns needs 10.0.0.0/8 local in this network namespace (binding 10.255.255.254: %s); run the lab "
                           "through %s, e.g. %s .venv/bin/python -m tests.lab up --config ..." % (exc.strerror, tool, tool)) from None


# -------------------------------------------------------------------------------------------------------------------
# serve: the fleet + Kubernetes API process

def serve(state_dir):
    """Run the node fleet and the Kubernetes API stand-in until SIGTERM/SIGINT."""
    lab = Lab(state_dir)
    cfg = labconfig.validate(yaml.safe_load(open(lab.path("config.yml"), encoding="utf-8")))  # pylint: disable=consider-using-with
    tokens = _read_json(lab.path(TOKENS_FILE))
    if not tokens:
        raise LabError("%s is missing; start the lab with `python -m tests.lab up`" % lab.path(TOKENS_FILE))
    asyncio.run(_serve(lab, cfg, tokens))


async def _serve(lab, cfg, tokens):
    # imported here: aiohttp is only needed by this process
    from aiohttp import web  # pylint: disable=import-outside-toplevel
    from tests.lab.k8s_api import K8sApi  # pylint: disable=import-outside-toplevel
    from tests.lab.nodes import Fleet  # pylint: disable=import-outside-toplevel

    fleet = Fleet(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if cfg.k8s["engine"] == "real":
        await _serve_real_k8s(lab, cfg, fleet, stop)
        return
    api = K8sApi(cfg, tokens, fleet)
    for item in cfg.k8s.get("extra_objects") or []:
        api.load_objects(load_extra_objects(item))
    await fleet.start()
    runner = web.AppRunner(api.app(), access_log=None)
    await runner.setup()
    ssl_ctx = None
    scheme = "http"
    if cfg.k8s["tls"]:
        import ssl  # pylint: disable=import-outside-toplevel
        ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_ctx.load_cert_chain(lab.path("k8s-ca.crt"), lab.path("k8s.key"))
        scheme = "https"
    site = web.TCPSite(runner, cfg.k8s["host"], cfg.k8s["port"], ssl_context=ssl_ctx, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await fleet.stop()
        raise LabError("k8s API %s:%d: %s (set k8s.port to 0 for a free port)" % (cfg.k8s["host"], cfg.k8s["port"], exc.strerror)) from None
    port = site._server.sockets[0].getsockname()[1]  # pylint: disable=protected-access
    api.server_address = "%s:%d" % (cfg.k8s["host"], port)
    _write(lab.path(FLEET_READY), json.dumps({"pid": os.getpid(), "control_url": fleet.control_url,
                                              "k8s_url": "%s://%s:%d" % (scheme, cfg.k8s["host"], port)}))
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await fleet.stop()


async def _serve_real_k8s(lab, cfg, fleet, stop):
    """The fleet and the kubelet player for the real control plane (tests/lab/realk8s.py)."""
    from tests.lab.realk8s import PODS_FILE, KubeletPlayer  # pylint: disable=import-outside-toplevel
    kit = _read_json(lab.path(K8S_DIR, "cluster.json"))
    if not kit:
        raise LabError("%s is missing: the real control plane is not running" % lab.path(K8S_DIR, "cluster.json"))
    with open(kit["token_file"], encoding="utf-8") as fh:
        cluster = {"server": kit["server"], "token": fh.read().strip(), "ca_path": lab.path(K8S_DIR, "pki", "ca.crt")}
    player = KubeletPlayer(cfg, fleet, cluster, lab.path(K8S_DIR, PODS_FILE))
    await fleet.start()
    try:
        await player.start()
        _write(lab.path(FLEET_READY), json.dumps({"pid": os.getpid(), "control_url": fleet.control_url, "k8s_url": kit["server"]}))
        await stop.wait()
    finally:
        await player.stop()
        await fleet.stop()


def load_extra_objects(item):
    """An extra_objects entry: an object, or a path to a YAML/JSON file with objects / a List / multiple documents."""
    if isinstance(item, dict):
        return [item]
    if not isinstance(item, str):
        raise LabError("k8s.extra_objects: entries must be objects or file paths, got %r" % (item,))
    path = item if os.path.isabs(item) else os.path.join(labconfig.REPO_ROOT, item)
    try:
        with open(path, encoding="utf-8") as fh:
            docs = [d for d in yaml.safe_load_all(fh) if d]
    except (OSError, yaml.YAMLError) as exc:
        raise LabError("k8s.extra_objects: cannot load %s: %s" % (path, exc)) from None
    out = []
    for doc in docs:
        if isinstance(doc, dict) and isinstance(doc.get("items"), list):
            kind = str(doc.get("kind", ""))
            for obj in doc["items"]:
                if kind.endswith("List") and kind != "List" and isinstance(obj, dict):
                    obj = dict(obj)
                    obj.setdefault("kind", kind[:-4])
                    obj.setdefault("apiVersion", doc.get("apiVersion"))
                out.append(obj)
        else:
            out.append(doc)
    return out


def kong_tls_kwargs(info):
    """``requests`` keyword arguments (verify, cert) for the Kong Admin API described by ``info``: lab.json
    (``kong_ca_path``, ``kong_client_cert``, ``kong_client_key``) or a Kong pidfile (``ca_path``, ...). {} for plain HTTP."""
    out = {}
    ca_path = info.get("kong_ca_path") or info.get("ca_path")
    cert = info.get("kong_client_cert") or info.get("client_cert")
    key = info.get("kong_client_key") or info.get("client_key")
    if ca_path:
        out["verify"] = ca_path
    if cert:
        out["cert"] = (cert, key) if key else cert
    return out


# -------------------------------------------------------------------------------------------------------------------
# test helper: a minimal Kong binding (the collection does this for real; tests and benchmarks need the chain)

def bind_minimal(info, service="shop", weights=None, admin_headers=None, timeout=10):
    """Create upstream/targets/service/route in Kong for a lab service straight through the Admin API.

    ``weights``: {node name: weight} (default 100 each). Uses PUT for the upsertable entities; targets are
    POSTed, or PATCHed when they already exist. A TLS Admin API is verified with the lab's CA (and sent the lab's
    client certificate under mutual TLS). Returns the list of target strings.
    """
    admin = info["admin_url"]
    headers = dict(admin_headers or {})
    tls_kwargs = kong_tls_kwargs(info)
    svc = [s for s in info["services"] if s["name"] == service][0]
    members = [n for n in info["nodes"] if n["service"] == service]

    def call(method, path, body=None):
        resp = requests.request(method, admin + path, json=body, headers=headers, timeout=timeout, **tls_kwargs)
        if resp.status_code >= 400:
            raise LabError("Kong %s %s -> %d %s" % (method, path, resp.status_code, resp.text[:300]))
        return resp.json() if resp.content else None

    call("PUT", "/upstreams/%s" % service, {"tags": ["mixedrun-lab"]})
    existing = {t["target"] for t in call("GET", "/upstreams/%s/targets" % service)["data"]}
    targets = []
    for node in members:
        target = "%s:%d" % (node["address"], node["port"])
        weight = (weights or {}).get(node["name"], 100)
        if target in existing:
            call("PATCH", "/upstreams/%s/targets/%s" % (service, target), {"weight": weight})
        else:
            call("POST", "/upstreams/%s/targets" % service, {"target": target, "weight": weight})
        targets.append(target)
    call("PUT", "/services/%s" % service, {"host": service, "port": members[0]["port"], "protocol": "http"})
    call("PUT", "/routes/%s" % service, {"hosts": [svc["domain"]], "service": {"name": service}})
    return targets


def wait_routed(info, domain, path="/", timeout=15.0):
    """Wait until every Kong proxy node (and the load balancer) routes ``domain`` to a node (200 with X-Node-Name).

    Kong nodes pick up configuration changes asynchronously (each rebuilds its router on its own); returns the
    seconds waited, raises LabError on timeout.
    """
    started = time.monotonic()
    pending = list(info["proxy_urls"]) + [info["lb_url"]]
    while pending:
        url = pending[0]
        try:
            resp = requests.get(url + path, headers={"Host": domain}, timeout=5)
            if resp.status_code == 200 and resp.headers.get("X-Node-Name"):
                pending.pop(0)
                continue
        except requests.RequestException:
            pass
        if time.monotonic() - started > timeout:
            raise LabError("%s does not route %s after %.0f s" % (url, domain, timeout))
        time.sleep(0.1)
    return time.monotonic() - started


def wait_scraped(info, timeout=15.0):
    """Wait until Prometheus has scraped every lab target at least once (its discovery publishes targets only
    about 5 s after start). Returns {job: number of targets}; raises LabError on timeout."""
    expected = len(info.get("kong_metrics_urls") or info["admin_urls"]) + len(info["nodes"]) + 2
    started = time.monotonic()
    while True:
        try:
            active = requests.get(info["prometheus_url"] + "/api/v1/targets", params={"state": "active"},
                                  timeout=5).json()["data"]["activeTargets"]
        except (requests.RequestException, ValueError, KeyError):
            active = []
        scraped = [t for t in active if t.get("health") in ("up", "down")]
        if len(scraped) >= expected:
            jobs = {}
            for target in scraped:
                jobs[target["labels"]["job"]] = jobs.get(target["labels"]["job"], 0) + 1
            return jobs
        if time.monotonic() - started > timeout:
            raise LabError("Prometheus scraped %d of %d targets after %.0f s" % (len(scraped), expected, timeout))
        time.sleep(0.25)
