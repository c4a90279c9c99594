"""What the end-to-end suites of the lab's network namespace share (test_kic_e2e.py, test_capacity_e2e.py): the reason
to skip outside it, the lab started from a config file, playbooks run against the lab inventory, raw Kubernetes reads,
continuous traffic through HAProxy and the last rollout report."""

import glob
import json
import os
import subprocess
import sys
import threading
import time

import pytest
import requests
import yaml

from tests.lab import config as labconfig
from tests.lab.pytest_plugin import start_lab, stop_lab

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLAYBOOK_TIMEOUT = 600


def skip_reason():
    """Why the suite cannot run here, None when it can."""
    if os.environ.get("MIXEDRUN_NETNS") != "1":
        return "not inside the lab's network namespace: run it through tests/tools/in_netns.sh (make netns-e2e)"
    if not labconfig.realkong_kit():
        return "the real Kong kit is absent ($%s or ../shared/realkong)" % labconfig.REALKONG_KIT_ENV
    if not labconfig.realk8s_kit():
        return "the real Kubernetes kit is absent ($%s or ../shared/realk8s)" % labconfig.REALK8S_KIT_ENV
    return None


def lab_from(config_path, state_dir, name):
    """A generator for a module fixture: the lab of ``config_path`` (skipped, saying why, outside the namespace)."""
    reason = skip_reason()
    if reason:
        print("%s: skipped: %s" % (name, reason), file=sys.stderr)
        pytest.skip(reason)
    with open(config_path, encoding="utf-8") as fh:
        extra = yaml.safe_load(fh)
    started = time.monotonic()
    info = start_lab(state_dir, extra_config=extra)
    took = time.monotonic() - started
    print("%s: lab up in %.1f s (Kong %s %s, Kubernetes %s)" % (name, took, info.get("kong_version"), info.get("kong_mode"), info.get("k8s_version")),
          file=sys.stderr)
    try:
        yield info
    finally:
        stop_lab(state_dir)


def write_vars(path, data):
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    return path


def _env(lab):
    env = dict(os.environ)
    env["MIXEDRUN_LAB_JSON"] = os.path.join(lab["state_dir"], "lab.json")
    env["ANSIBLE_CONFIG"] = os.path.join(REPO, "ansible.cfg")
    env["ANSIBLE_NOCOLOR"] = "1"
    env.pop("KONG_ADMIN_URL", None)
    return env


def command(name, varfile, variables):
    return [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", os.path.join(REPO, "inventories", "lab"),
            os.path.join(REPO, "playbooks", name), "-e", "@" + varfile, "-e", json.dumps(variables)]


def start_playbook(lab, name, varfile, variables):
    return subprocess.Popen(command(name, varfile, variables), cwd=REPO, env=_env(lab), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, stdin=subprocess.DEVNULL)


def playbook(lab, name, varfile, variables=None, expect_rc=0):
    """(rc, single-spaced output); fails the test when ``expect_rc`` is given and differs."""
    proc = subprocess.run(command(name, varfile, variables or {}), cwd=REPO, env=_env(lab), capture_output=True, text=True,
                          timeout=PLAYBOOK_TIMEOUT, check=False, stdin=subprocess.DEVNULL)
    text = " ".join((proc.stdout + proc.stderr).split())
    if expect_rc is not None:
        assert proc.returncode == expect_rc, "%s -> rc %d:\n%s\n%s" % (name, proc.returncode, proc.stdout[-6000:], proc.stderr[-2000:])
    return proc.returncode, text


def k8s(lab, method, path, body=None, content_type=None):
    """A raw request to the lab's API server with the collection's own client."""
    # pylint: disable=import-outside-toplevel
    from kubernetes import config as kconfig
    from ansible_collections.mixedrun.kong.plugins.module_utils._k8s_binding import K8sApi
    client = kconfig.new_client_from_config(config_file=lab["kubeconfig"])
    try:
        return K8sApi(client).request(method, path, body=body, content_type=content_type)
    finally:
        client.close()


def scale(lab, namespace, name, replicas):
    k8s(lab, "PATCH", "/apis/apps/v1/namespaces/%s/deployments/%s/scale" % (namespace, name), {"spec": {"replicas": replicas}},
        content_type="application/merge-patch+json")


def last_report(report_dir):
    paths = sorted(glob.glob(os.path.join(report_dir, "rollout-*.json")), key=os.path.getmtime)
    assert paths, "no rollout report in %s" % report_dir
    with open(paths[-1], encoding="utf-8") as fh:
        return json.load(fh)


class Traffic:
    """Continuous requests through HAProxy (2 workers, bounded in time); every failure is kept with its body, and at the
    first one the routes Kong's Admin API holds (``admin``), to tell a routing gap from a failing node."""

    def __init__(self, lab, host, admin=None, max_seconds=PLAYBOOK_TIMEOUT):
        self.url, self.host, self.admin = lab["lb_url"] + "/", host, admin
        self.deadline = time.time() + max_seconds
        self.stop = threading.Event()
        self.sent, self.failures, self.lock = 0, [], threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _worker in range(2)]

    def run(self):
        session = requests.Session()
        while not self.stop.is_set() and time.time() < self.deadline:
            try:
                resp = session.get(self.url, headers={"Host": self.host}, timeout=5)
                error = None if resp.status_code == 200 else "HTTP %d %s" % (resp.status_code, resp.text[:100])
            except requests.RequestException as exc:
                error = type(exc).__name__
            with self.lock:
                self.sent += 1
                if error:
                    self.failures.append((time.time(), error))
                    if self.admin and len(self.failures) == 1:
                        self.failures.append((time.time(), "routes then: %s" % self._routes()))
            time.sleep(0.01)

    def _routes(self):
        try:
            return [(r["name"], r["hosts"], r.get("updated_at")) for r in requests.get(self.admin + "/routes", timeout=5).json()["data"]]
        except (requests.RequestException, ValueError, KeyError) as exc:
            return str(exc)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(10)

    def assert_none_failed(self, context=""):
        assert self.failures == [], "%d of %d requests failed%s: %s" % (len(self.failures), self.sent, context, self.failures[:5])
