# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark of mixedrun.kong.node_discovery: 10,000 inventory hosts and 5,000 pods.

Runs a real ansible-playbook against a generated inventory (labels inline, from group_vars files with Jinja, and
per-host Jinja; some hosts drained) and the lab's Kubernetes API stand-in loaded with 5,000 pods (and, for the
endpoints mode, a Service with 50 EndpointSlices of 100 endpoints). A callback measures each task's own time
(task start to result, as the controller sees it, so it includes Ansible's own handling of a result with thousands of
nodes); the action plugin's ``timings`` give the task's own time (``total``) split into the VM part and the
Kubernetes part (module run included). Fails (exit 1) when a discovery task's own time is 3 s or more.

    cd /work/main && PYTHONPATH=. .venv/bin/python tests/benchmarks/bench_discovery.py [--hosts 10000] [--pods 5000]
        [--lab-json .lab/lab.json] [--limit 3.0] [--json]

Without --lab-json (or MIXEDRUN_LAB_JSON) a lab is started in a temporary directory and stopped at the end; the
objects loaded into the stand-in (namespace ``bench``) are removed either way.
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import requests
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

NS = "bench"
GROUPS = 10

CALLBACK = '''
from __future__ import annotations
import json, os, time
from ansible.plugins.callback import CallbackBase

class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_timer"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.started = {}
        self.tasks = {}

    def v2_playbook_on_task_start(self, task, is_conditional):
        self.started[task._uuid] = time.monotonic()

    def _done(self, result, failed):
        task = result._task
        self.tasks[task.get_name()] = {"seconds": round(time.monotonic() - self.started[task._uuid], 3), "failed": failed,
                                       "timings": result._result.get("timings"), "counts": result._result.get("counts"),
                                       "msg": result._result.get("msg")}

    def v2_runner_on_ok(self, result):
        self._done(result, False)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._done(result, True)

    def v2_playbook_on_stats(self, stats):
        with open(os.environ["BENCH_TIMER_OUT"], "w") as handle:
            json.dump(self.tasks, handle)
'''

PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: vm
      mixedrun.kong.node_discovery:
        selector: app=shop,tier in (web,api),!canary
        vm:
          hosts_pattern: "shop:!maintenance"
    - name: k8s-pods
      mixedrun.kong.node_discovery:
        kubernetes:
          namespaces: [bench]
          address_mode: pods
          selector: app=shop
          port: http
          page_size: 500
        kubeconfig: "{{ kubeconfig }}"
    - name: both-pods
      mixedrun.kong.node_discovery:
        selector: app=shop
        vm:
          groups: [shop]
        kubernetes:
          namespaces: [bench]
          address_mode: pods
          port: http
        kubeconfig: "{{ kubeconfig }}"
    - name: both-endpoints
      mixedrun.kong.node_discovery:
        selector: app=shop
        vm:
          groups: [shop]
        kubernetes:
          namespaces: [bench]
          service: [shop]
        kubeconfig: "{{ kubeconfig }}"
"""


def write_inventory(directory, hosts):
    """10 groups under ``shop``; a third of the hosts have inline labels, the others get them from group_vars with
    Jinja; every 50th host has per-host Jinja in its labels; every 100th is drained."""
    children = {}
    os.makedirs(os.path.join(directory, "group_vars"))
    for g in range(GROUPS):
        children["shop_%d" % g] = {"hosts": {}}
        with open(os.path.join(directory, "group_vars", "shop_%d.yml" % g), "w") as handle:
            yaml.safe_dump({"mixed_labels": {"app": "shop", "tier": "web" if g % 2 else "api", "version": "{{ shop_version }}",
                                             "zone": "zone-%d" % (g % 3)}}, handle)
    for i in range(hosts):
        name = "vm-%05d" % i
        n = i + 1
        host = {"ansible_host": "10.%d.%d.%d" % (n >> 16, (n >> 8) & 255, n & 255)}
        if i % 3 == 0:
            host["mixed_labels"] = {"app": "shop", "tier": "web", "version": "2.1"}
        if i % 50 == 7:
            host["mixed_labels"] = {"app": "shop", "tier": "api", "host": "{{ inventory_hostname }}"}
        if i % 100 == 42:
            host["mixed_drain"] = True
        children["shop_%d" % (i % GROUPS)]["hosts"][name] = host
    inventory = {"all": {"hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}},
                         "children": {"shop": {"vars": {"mixed_port": 8080, "shop_version": "2.1"}, "children": children},
                                      "maintenance": {"hosts": dict(("vm-%05d" % i, None) for i in range(0, hosts, 500))}}}}
    path = os.path.join(directory, "hosts.yml")
    with open(path, "w") as handle:
        yaml.safe_dump(inventory, handle)
    return path


def k8s_objects(pods):
    objects = [{"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": NS}},
               {"kind": "Service", "apiVersion": "v1", "metadata": {"name": "shop", "namespace": NS, "labels": {"app": "shop"}},
                "spec": {"type": "ClusterIP", "clusterIP": "127.0.99.1", "selector": {"app": "shop"}, "ipFamilies": ["IPv4"],
                         "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}]
    addresses = ["127.%d.%d.%d" % (100 + i // 62500, (i // 250) % 250, 1 + i % 250) for i in range(pods)]
    for i, address in enumerate(addresses):
        objects.append({"kind": "Pod", "apiVersion": "v1",
                        "metadata": {"name": "shop-%05d" % i, "namespace": NS, "labels": {"app": "shop", "pod-template-hash": "abc12"}},
                        "spec": {"nodeName": "lab-worker-%d" % (1 + i % 3),
                                 "containers": [{"name": "app", "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]},
                        "status": {"phase": "Running", "podIP": address, "podIPs": [{"ip": address}],
                                   "conditions": [{"type": "Ready", "status": "True" if i % 97 else "False"}]}})
    for s in range(0, pods, 100):
        objects.append({"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1", "addressType": "IPv4",
                        "metadata": {"name": "shop-%03d" % (s // 100), "namespace": NS, "labels": {"kubernetes.io/service-name": "shop"}},
                        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                        "endpoints": [{"addresses": [addresses[i]], "conditions": {"ready": bool(i % 97), "serving": bool(i % 97),
                                                                                   "terminating": False},
                                       "targetRef": {"kind": "Pod", "namespace": NS, "name": "shop-%05d" % i}}
                                      for i in range(s, min(s + 100, pods))]})
    return objects


class StandIn:
    """The lab's Kubernetes API stand-in: load and remove the benchmark's objects."""

    def __init__(self, lab):
        with open(lab["kubeconfig"]) as handle:
            config = yaml.safe_load(handle)
        self.url = config["clusters"][0]["cluster"]["server"]
        self.headers = {"Authorization": "Bearer " + config["users"][0]["user"]["token"]}
        self.verify = True
        ca = config["clusters"][0]["cluster"].get("certificate-authority-data")
        if ca:
            import base64
            handle = tempfile.NamedTemporaryFile("wb", suffix=".crt", delete=False)
            handle.write(base64.b64decode(ca))
            handle.close()
            self.verify = handle.name

    def load(self, objects):
        resp = requests.post(self.url + "/_lab/objects", json={"items": objects}, headers=self.headers, verify=self.verify, timeout=120)
        resp.raise_for_status()

    def clear(self):
        requests.delete(self.url + "/_lab/objects", params={"namespace": NS}, headers=self.headers, verify=self.verify, timeout=60)
        if self.verify is not True:
            os.unlink(self.verify)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10000)
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--lab-json", default=os.environ.get("MIXEDRUN_LAB_JSON"))
    parser.add_argument("--limit", type=float, default=3.0, help="seconds a discovery task may take (default 3.0)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    from tests.lab.pytest_plugin import start_lab, stop_lab  # pylint: disable=import-outside-toplevel

    work = tempfile.mkdtemp(prefix="bench-discovery-")
    lab_dir = None
    try:
        if args.lab_json:
            with open(args.lab_json) as handle:
                lab = json.load(handle)
        else:
            lab_dir = os.path.join(work, "lab")
            lab = start_lab(lab_dir)
        stand_in = StandIn(lab)
        stand_in.load(k8s_objects(args.pods))
        try:
            inventory = write_inventory(os.path.join(work, "inventory"), args.hosts)
            os.makedirs(os.path.join(work, "callback_plugins"))
            with open(os.path.join(work, "callback_plugins", "bench_timer.py"), "w") as handle:
                handle.write(CALLBACK)
            with open(os.path.join(work, "bench.yml"), "w") as handle:
                handle.write(PLAYBOOK)
            out = os.path.join(work, "timings.json")
            env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".tmp", "collections"), ANSIBLE_CALLBACKS_ENABLED="bench_timer",
                       BENCH_TIMER_OUT=out, ANSIBLE_CALLBACK_PLUGINS=os.path.join(work, "callback_plugins"), ANSIBLE_HOST_KEY_CHECKING="false",
                       ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"))
            started = time.monotonic()
            proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory, os.path.join(work, "bench.yml"),
                                   "-e", json.dumps({"kubeconfig": lab["kubeconfig"]})], cwd=REPO, env=env, capture_output=True, text=True,
                                  timeout=900, check=False)
            wall = time.monotonic() - started
            if proc.returncode != 0 or not os.path.exists(out):
                sys.stderr.write(proc.stdout[-5000:] + proc.stderr[-3000:])
                return 2
            with open(out) as handle:
                tasks = json.load(handle)
        finally:
            stand_in.clear()
    finally:
        if lab_dir:
            stop_lab(lab_dir)
        shutil.rmtree(work, ignore_errors=True)

    figures = {"hosts": args.hosts, "pods": args.pods, "playbook_wall_seconds": round(wall, 1), "tasks": tasks}
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print("node_discovery benchmark: %d inventory hosts, %d pods (ansible-playbook wall time %.1f s, inventory parsing included)"
              % (args.hosts, args.pods, wall))
        print("%-16s %8s %8s %8s %12s   %s" % ("task", "vm s", "k8s s", "total s", "task wall s", "counts"))
        for name, task in tasks.items():
            timings = task.get("timings") or {}
            row = (name, timings.get("vm", 0), timings.get("container", 0), timings.get("total", 0), task["seconds"],
                   task.get("counts") or task.get("msg"))
            print("%-16s %8.3f %8.3f %8.3f %12.3f   %s" % row)
        print("total s: the task's own time (action plugin, module run included); task wall s: task start to result in the\n"
              "controller, which adds Ansible's handling of the returned node list (worker -> controller, callbacks)")
    slow = [name for name, task in tasks.items() if task["failed"] or (task.get("timings") or {}).get("total", 0) >= args.limit]
    if slow:
        print("FAILED: %s took %.1f s or more of its own time (or failed)" % (", ".join(slow), args.limit))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
