"""pytest fixtures for the lab (``pytest -p tests.lab.pytest_plugin``, or ``pytest_plugins = ["tests.lab.pytest_plugin"]``).

* ``lab`` (session): the lab.json dict. With ``MIXEDRUN_LAB_JSON=/path/lab.json`` the running lab described
  there is reused (and left running); otherwise a lab is started in a temporary state dir with
  ``python -m tests.lab up`` and stopped with ``down`` at the end of the session. When the default node
  addresses are taken (a developer's own lab), free ports are chosen for the nodes and nodePorts.
* ``lab_control`` (function): ``lab_control(node_name, **faults)`` changes a node's faults through the
  fleet's control listener and returns the node's state; every node touched is reset after the test.
* ``lab_fleet`` (session): only the node fleet and the Kubernetes API stand-in, in a thread of the test
  process on free ports (fast; for the fleet and Kubernetes tests). Attributes: ``config``, ``fleet``,
  ``api``, ``control_url``, ``k8s_url``, ``kubeconfig``, ``kubeconfig_forbidden``, ``token``, ``nodes``.
"""

import asyncio
import json
import os
import secrets
import subprocess
import sys
import threading

import pytest
import requests
import yaml

from tests.lab import config as labconfig

LAB_JSON_ENV = "MIXEDRUN_LAB_JSON"
# Cases that need real Kong: skipped, with this reason in the run's summary, where the kit is absent.
needs_realkong = pytest.mark.skipif(not labconfig.realkong_kit(), reason="no real Kong kit (../shared/realkong or $%s): "
                                    "this real-Kong case cannot run here" % labconfig.REALKONG_KIT_ENV)


def control(lab_info, node, **faults):
    """Set faults on a node of a running lab (``lab_info``: the lab.json dict); returns the node's state."""
    url = "%s/nodes/%s" % (lab_info["control_url"], node)
    resp = requests.post(url, json=faults, timeout=10)
    if resp.status_code != 200:
        raise AssertionError("lab control %s %s -> %s %s" % (node, faults, resp.status_code, resp.text))
    return resp.json()


def reset(lab_info, node=None):
    """Clear the faults of one node (or all)."""
    url = "%s/nodes/%s/reset" % (lab_info["control_url"], node) if node else lab_info["control_url"] + "/reset"
    requests.post(url, timeout=10).raise_for_status()


def free_port_overrides(cfg=None, force=False):
    """Config overrides that move node_port and the services' node_port to ports free on every address they use.

    Without ``force`` the defaults are kept when they are free. Returns {} when nothing needs to change.
    """
    cfg = cfg or labconfig.load()
    return labconfig.free_port_overrides(cfg, movable=labconfig.default_port_fields({}), force=force)


class FleetHandle:
    """The fleet + Kubernetes API stand-in running on an event loop in a background thread."""

    def __init__(self, cfg, state_dir):
        self.config = cfg
        self.state_dir = state_dir
        self.token = secrets.token_urlsafe(24)
        self.forbidden_token = secrets.token_urlsafe(24)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="lab-fleet", daemon=True)
        self.fleet = self.api = self._runner = None
        self.control_url = self.k8s_url = None
        self.kubeconfig = os.path.join(state_dir, "kubeconfig")
        self.kubeconfig_forbidden = os.path.join(state_dir, "kubeconfig-forbidden")

    @property
    def nodes(self):
        """NodeSpec list."""
        return self.config.nodes

    def run(self, coro, timeout=30):
        """Run a coroutine on the fleet's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, func, *args):
        """Call a plain function on the fleet's loop (thread-safe access to the fleet/api state)."""
        async def _wrap():
            return func(*args)
        return self.run(_wrap())

    async def _start(self):
        from aiohttp import web  # pylint: disable=import-outside-toplevel
        from tests.lab.k8s_api import K8sApi  # pylint: disable=import-outside-toplevel
        from tests.lab.nodes import Fleet  # pylint: disable=import-outside-toplevel
        self.fleet = Fleet(self.config)
        self.api = K8sApi(self.config, {"token": self.token, "forbidden_token": self.forbidden_token}, self.fleet)
        await self.fleet.start()
        self._runner = web.AppRunner(self.api.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # pylint: disable=protected-access
        self.api.server_address = "127.0.0.1:%d" % port
        self.control_url = self.fleet.control_url
        self.k8s_url = "http://127.0.0.1:%d" % port

    async def _stop(self):
        if self._runner is not None:
            await self._runner.cleanup()
        if self.fleet is not None:
            await self.fleet.stop()

    def start(self):
        """Start serving; write the kubeconfigs."""
        from tests.lab.k8s_api import kubeconfig  # pylint: disable=import-outside-toplevel
        self.thread.start()
        self.run(self._start())
        for path, token in ((self.kubeconfig, self.token), (self.kubeconfig_forbidden, self.forbidden_token)):
            with open(path, "w", encoding="utf-8") as fh:
                yaml.safe_dump(kubeconfig(self.k8s_url, token), fh)
            os.chmod(path, 0o600)
        return self

    def stop(self):
        """Stop serving and end the thread."""
        try:
            self.run(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@pytest.fixture(scope="session")
def lab_fleet(tmp_path_factory):
    """Node fleet + Kubernetes API stand-in in this process (free ports, the default config otherwise)."""
    base = labconfig.load()
    cfg = labconfig.load(overrides=free_port_overrides(base))
    cfg.control["port"] = 0
    handle = FleetHandle(cfg, str(tmp_path_factory.mktemp("lab-fleet"))).start()
    yield handle
    handle.stop()


def _run_lab(args, state_dir, timeout=120):
    env = dict(os.environ)
    env[labconfig.STATE_DIR_ENV] = state_dir
    env["PYTHONPATH"] = labconfig.REPO_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return subprocess.run([sys.executable, "-m", "tests.lab"] + args, cwd=labconfig.REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def start_lab(state_dir, extra_config=None, kong_nodes=None, kong_engine=None, kong_mode=None):
    """Start a lab in ``state_dir`` (free ports when the defaults are taken); returns the lab.json dict.

    ``kong_engine``/``kong_mode``: as ``--kong-engine``/``--kong-mode`` (default: the config's, i.e. real Kong where the
    kit is present)."""
    os.makedirs(state_dir, exist_ok=True)
    overrides = labconfig.deep_merge(free_port_overrides(), extra_config or {})
    args = ["up"]
    if overrides:
        path = os.path.join(state_dir, "test-config.yml")
        with open(path, "w", encoding="utf-8") as fh:
            yaml.safe_dump(overrides, fh)
        args += ["--config", path]
    for flag, value in (("--kong-nodes", kong_nodes), ("--kong-engine", kong_engine), ("--kong-mode", kong_mode)):
        if value:
            args += [flag, str(value)]
    proc = _run_lab(args, state_dir, timeout=1800)     # real Kong: the first `up` on a machine builds the kit
    if proc.returncode != 0:
        _run_lab(["down"], state_dir)
        raise RuntimeError("python -m tests.lab up failed (%d): %s" % (proc.returncode, proc.stderr.strip()[-3000:]))
    return json.loads(proc.stdout)


def stop_lab(state_dir):
    """``python -m tests.lab down``; returns its JSON report (raises when something was left running)."""
    proc = _run_lab(["down"], state_dir)
    if proc.returncode != 0:
        raise RuntimeError("python -m tests.lab down failed (%d): %s" % (proc.returncode, proc.stderr.strip()[-3000:]))
    return json.loads(proc.stdout)


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """The lab.json dict of a running lab (reused via MIXEDRUN_LAB_JSON, else started for the session)."""
    path = os.environ.get(LAB_JSON_ENV)
    if path:
        with open(path, encoding="utf-8") as fh:
            yield json.load(fh)
        return
    state_dir = str(tmp_path_factory.mktemp("lab"))
    info = start_lab(state_dir)
    try:
        yield info
    finally:
        stop_lab(state_dir)


@pytest.fixture
def lab_control(lab):  # pylint: disable=redefined-outer-name
    """``lab_control(node, **faults)`` -> node state; the nodes touched are reset after the test."""
    touched = set()

    def _control(node, **faults):
        touched.add(node)
        return control(lab, node, **faults)

    yield _control
    for node in touched:
        reset(lab, node)
