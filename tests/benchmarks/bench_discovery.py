# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark of mixedrun.kong.node_discovery: 10,000 inventory hosts and 5,000 pods.

Runs a real ansible-playbook three times against generated inventories and the lab's Kubernetes API stand-in
loaded with 5,000 pods (and, for the endpoints mode, a Service with 50 EndpointSlices of 100 endpoints):

* ``plain``: labels inline, from group_vars files with Jinja, per-host Jinja on every 50th host; some hosts drained;
* ``facts``: the same inventory with a filled fact cache (jsonfile, setup-module-shaped facts for every host);
* ``templated``: every host has its own templated ``ansible_host`` and labels (nothing to share between hosts).

Each run has four discovery tasks (VMs by pattern, pods, VMs + pods, VMs + endpoints). A callback measures each task
as the controller sees it (task start to result, so it includes Ansible's own handling of a result with thousands of
nodes); the action plugin's ``timings`` give the task's own time (``total``, module run included).

Checks, each one failing the run (exit 1): a task failed; its ``timings.total`` or its controller-side wall time is
``--limit`` seconds (3.0) or more; its node counts or its set of targets differ from what the generated inventory
and objects say they must be (computed here independently of the plugin).

    cd /work/main && PYTHONPATH=. .venv/bin/python tests/benchmarks/bench_discovery.py [--hosts 10000] [--pods 5000]
        [--lab-json .lab/lab.json] [--limit 3.0] [--scenarios plain,facts,templated] [--json]

Without --lab-json (or MIXEDRUN_LAB_JSON) a lab is started in a temporary directory and stopped at the end; the
objects loaded into the stand-in (namespace ``bench``) are removed either way.
"""

from __future__ import absolute_import, division, print_function

import argparse
import hashlib
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
SCENARIOS = ("plain", "facts", "templated")

CALLBACK = '''
from __future__ import annotations
import hashlib, json, os, time
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
        seconds = time.monotonic() - self.started[task._uuid]
        nodes = result._result.get("nodes") or []
        digest = {}
        for kind in ("vm", "container"):
            targets = sorted(n["target"] for n in nodes if n.get("kind") == kind)
            digest[kind] = hashlib.sha256("\\n".join(targets).encode()).hexdigest()
        self.tasks[task.get_name()] = {"seconds": round(seconds, 3), "failed": failed, "timings": result._result.get("timings"),
                                       "counts": result._result.get("counts"), "drained": len(result._result.get("drained") or []),
                                       "digest": digest, "msg": result._result.get("msg")}

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
    - name: baseline
      bench_nodes:
        count: "{{ baseline_count }}"
"""

# Not node_discovery: a no-op action that returns as many nodes of the same shape, to show how much of a task's
# controller-side time is Ansible's own handling of such a result (reported, not gated).
BASELINE_ACTION = '''
from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    def run(self, tmp=None, task_vars=None):
        count = int(self._task.args["count"])
        nodes = [{"name": "vm-%05d" % i, "kind": "vm", "address": "10.1.%d.%d" % (i // 250, 1 + i % 250), "port": 8080,
                  "target": "10.1.%d.%d:8080" % (i // 250, 1 + i % 250), "labels": {"app": "shop", "tier": "web", "version": "2.1", "zone": "z"},
                  "ready": True, "source": "inventory"} for i in range(count)]
        return {"changed": False, "nodes": nodes, "counts": {"total": count}}
'''


def _address(i):
    n = i + 1
    return "10.%d.%d.%d" % (n >> 16, (n >> 8) & 255, n & 255)


class Truth:
    """What the generated inventory means, worked out here (not by the plugin): per host its group, labels,
    address, port, drained and maintenance flags."""

    def __init__(self):
        self.hosts = []

    def add(self, name, labels, address, port, drained, maintenance):
        self.hosts.append({"name": name, "labels": labels, "address": address, "port": port, "drained": drained,
                           "maintenance": maintenance})

    def vms(self, select, skip_maintenance):
        chosen = [h for h in self.hosts if select(h["labels"]) and not (skip_maintenance and h["maintenance"])]
        kept = [h for h in chosen if not h["drained"]]
        return ["%s:%d" % (h["address"], h["port"]) for h in kept], len(chosen) - len(kept)


def write_inventory(directory, hosts, templated=False):
    """10 groups under ``shop`` and a ``maintenance`` group of every 500th host; every 100th host is drained.

    Not templated: a third of the hosts have inline labels, the others get them from group_vars with Jinja; every
    50th host has per-host Jinja in its labels. Templated: every host's ``ansible_host`` and labels are Jinja over its
    own variables, so no two hosts share a rendered template."""
    truth = Truth()
    children = {}
    os.makedirs(os.path.join(directory, "group_vars"))
    for g in range(GROUPS):
        children["shop_%d" % g] = {"hosts": {}}
        if not templated:
            with open(os.path.join(directory, "group_vars", "shop_%d.yml" % g), "w") as handle:
                yaml.safe_dump({"mixed_labels": {"app": "shop", "tier": "web" if g % 2 else "api", "version": "{{ shop_version }}",
                                                 "zone": "zone-%d" % (g % 3)}}, handle)
    for i in range(hosts):
        name = "vm-%05d" % i
        g = i % GROUPS
        if templated:
            host = {"host_index": i,
                    "ansible_host": "10.{{ (host_index + 1) // 65536 }}.{{ (host_index + 1) // 256 % 256 }}.{{ (host_index + 1) % 256 }}",
                    "mixed_labels": {"app": "shop", "tier": "{{ 'web' if host_index % 2 else 'api' }}", "host": "{{ inventory_hostname }}",
                                     "rack": "r{{ host_index // 40 }}"}}
            labels = {"app": "shop", "tier": "web" if i % 2 else "api", "host": name, "rack": "r%d" % (i // 40)}
        else:
            host = {"ansible_host": _address(i)}
            labels = {"app": "shop", "tier": "web" if g % 2 else "api", "version": "2.1", "zone": "zone-%d" % (g % 3)}
            if i % 3 == 0:
                host["mixed_labels"] = labels = {"app": "shop", "tier": "web", "version": "2.1"}
            if i % 50 == 7:
                host["mixed_labels"] = {"app": "shop", "tier": "api", "host": "{{ inventory_hostname }}"}
                labels = {"app": "shop", "tier": "api", "host": name}
        if i % 100 == 42:
            host["mixed_drain"] = True
        children["shop_%d" % g]["hosts"][name] = host
        truth.add(name, labels, _address(i), 8080, i % 100 == 42, i % 500 == 0)
    inventory = {"all": {"hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}},
                         "children": {"shop": {"vars": {"mixed_port": 8080, "shop_version": "2.1"}, "children": children},
                                      "maintenance": {"hosts": dict(("vm-%05d" % i, None) for i in range(0, hosts, 500))}}}}
    path = os.path.join(directory, "hosts.yml")
    with open(path, "w") as handle:
        yaml.safe_dump(inventory, handle)
    return path, truth


def write_fact_cache(directory, hosts):
    """A jsonfile fact cache with setup-module-shaped facts for every host (a few KB each); returns its size in bytes."""
    os.makedirs(directory)
    size = 0
    for i in range(hosts):
        name = "vm-%05d" % i
        address = _address(i)
        facts = {
            "_ansible_facts_gathered": True, "module_setup": True, "gather_subset": ["all"],
            "ansible_hostname": name, "ansible_nodename": name, "ansible_fqdn": name + ".shop.example", "ansible_domain": "shop.example",
            "ansible_distribution": "Debian", "ansible_distribution_version": "12.5", "ansible_distribution_major_version": "12",
            "ansible_os_family": "Debian", "ansible_system": "Linux", "ansible_kernel": "6.1.0-18-amd64", "ansible_architecture": "x86_64",
            "ansible_processor_vcpus": 4, "ansible_processor_cores": 2, "ansible_memtotal_mb": 7940, "ansible_memfree_mb": 5120,
            "ansible_default_ipv4": {"address": address, "interface": "eth0", "gateway": "10.0.0.1", "netmask": "255.0.0.0",
                                     "network": "10.0.0.0", "prefix": "8", "type": "ether", "macaddress": "02:42:0a:%02x:%02x:%02x"
                                     % ((i >> 16) & 255, (i >> 8) & 255, i & 255), "mtu": 1500},
            "ansible_all_ipv4_addresses": [address], "ansible_all_ipv6_addresses": ["fe80::42:aff:fe%02x:%02x" % (i >> 8 & 255, i & 255)],
            "ansible_interfaces": ["lo", "eth0"],
            "ansible_eth0": {"device": "eth0", "active": True, "type": "ether", "mtu": 1500, "speed": 10000,
                             "ipv4": {"address": address, "netmask": "255.0.0.0", "network": "10.0.0.0", "prefix": "8"},
                             "features": dict(("feature_%02d" % f, "off [fixed]" if f % 3 else "on") for f in range(40))},
            "ansible_lo": {"device": "lo", "active": True, "type": "loopback", "ipv4": {"address": "127.0.0.1", "netmask": "255.0.0.0"}},
            "ansible_mounts": [{"mount": m, "device": "/dev/vda%d" % n, "fstype": "ext4", "size_total": 21474836480, "size_available": 9663676416,
                                "options": "rw,relatime"} for n, m in enumerate(("/", "/var", "/srv"), 1)],
            "ansible_env": {"HOME": "/root", "LANG": "C.UTF-8", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                            "SHELL": "/bin/bash", "USER": "root"},
            "ansible_local": {"shop": {"role": "web", "zone": "zone-%d" % (i % 3)}},
            "ansible_ssh_host_key_ed25519_public": "AAAAC3NzaC1lZDI1NTE5AAAAI%040d" % i,
            "ansible_python": {"executable": "/usr/bin/python3", "version": {"major": 3, "minor": 11, "micro": 2}},
            "discovered_interpreter_python": "/usr/bin/python3",
        }
        text = json.dumps(facts)
        size += len(text)
        with open(os.path.join(directory, name), "w") as handle:
            handle.write(text)
    return size


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
    ready_containers = ["%s:8080" % a for i, a in enumerate(addresses) if i % 97]
    return objects, ready_containers


def _digest(targets):
    return hashlib.sha256("\n".join(sorted(targets)).encode()).hexdigest()


def expected_results(truth, ready_containers):
    """What each task must find: counts, drained and target digests."""
    def task(vm_targets, drained, containers):
        return {"counts": {"vm": len(vm_targets), "container": len(containers), "total": len(vm_targets) + len(containers),
                           "ready": len(vm_targets) + len(containers)},
                "drained": drained, "digest": {"vm": _digest(vm_targets), "container": _digest(containers)}}
    by_pattern, drained_pattern = truth.vms(lambda l: l.get("app") == "shop" and l.get("tier") in ("web", "api") and "canary" not in l, True)
    in_shop, drained_shop = truth.vms(lambda l: l.get("app") == "shop", False)
    return {"vm": task(by_pattern, drained_pattern, []), "k8s-pods": task([], 0, ready_containers),
            "both-pods": task(in_shop, drained_shop, ready_containers), "both-endpoints": task(in_shop, drained_shop, ready_containers)}


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


def run_playbook(work, scenario, inventory, lab, baseline_count, cache_dir=None):
    """One ansible-playbook run; returns ({task: figures}, wall seconds) or raises RuntimeError."""
    out = os.path.join(work, "timings-%s.json" % scenario)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".tmp", "collections"), ANSIBLE_CALLBACKS_ENABLED="bench_timer",
               BENCH_TIMER_OUT=out, ANSIBLE_CALLBACK_PLUGINS=os.path.join(work, "callback_plugins"), ANSIBLE_HOST_KEY_CHECKING="false",
               ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_ACTION_PLUGINS=os.path.join(work, "action_plugins"),
               ANSIBLE_LIBRARY=os.path.join(work, "library"))
    if cache_dir:
        env.update(ANSIBLE_CACHE_PLUGIN="ansible.builtin.jsonfile", ANSIBLE_CACHE_PLUGIN_CONNECTION=cache_dir, ANSIBLE_CACHE_PLUGIN_TIMEOUT="0")
    started = time.monotonic()
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory, os.path.join(work, "bench.yml"),
                           "-e", json.dumps({"kubeconfig": lab["kubeconfig"], "baseline_count": baseline_count})], cwd=REPO, env=env,
                          capture_output=True, text=True,
                          timeout=900, check=False)
    wall = time.monotonic() - started
    if not os.path.exists(out):
        raise RuntimeError("%s: ansible-playbook exited %d without results:\n%s%s" % (scenario, proc.returncode, proc.stdout[-5000:], proc.stderr[-3000:]))
    with open(out) as handle:
        return json.load(handle), wall


def check(scenario, tasks, expected, limit):
    """Problems with one run's tasks (empty when every target is met)."""
    problems = []
    for name, want in expected.items():
        task = tasks.get(name)
        if task is None:
            problems.append("%s/%s: no result" % (scenario, name))
            continue
        if task["failed"]:
            problems.append("%s/%s failed: %s" % (scenario, name, task.get("msg")))
            continue
        total = (task.get("timings") or {}).get("total")
        if total is None or total >= limit:
            problems.append("%s/%s: the task's own time %s s is not under %.1f s" % (scenario, name, total, limit))
        if task["seconds"] >= limit:
            problems.append("%s/%s: the controller-side task time %.3f s is not under %.1f s" % (scenario, name, task["seconds"], limit))
        if task.get("counts") != want["counts"]:
            problems.append("%s/%s: counts %s, expected %s" % (scenario, name, task.get("counts"), want["counts"]))
        if task.get("drained") != want["drained"]:
            problems.append("%s/%s: %s drained, expected %s" % (scenario, name, task.get("drained"), want["drained"]))
        for kind in ("vm", "container"):
            if (task.get("digest") or {}).get(kind) != want["digest"][kind]:
                problems.append("%s/%s: the %s targets differ from the expected ones" % (scenario, name, kind))
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10000)
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--lab-json", default=os.environ.get("MIXEDRUN_LAB_JSON"))
    parser.add_argument("--limit", type=float, default=3.0, help="seconds a discovery task may take, its own and as the controller sees it (3.0)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset of %s" % ", ".join(SCENARIOS))
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown or not scenarios:
        parser.error("--scenarios: unknown %s; choose from %s" % (", ".join(unknown) or "(none given)", ", ".join(SCENARIOS)))

    from tests.lab.pytest_plugin import start_lab, stop_lab  # pylint: disable=import-outside-toplevel

    work = tempfile.mkdtemp(prefix="bench-discovery-")
    lab_dir = None
    runs, problems, fact_bytes = {}, [], 0
    started = time.monotonic()
    try:
        if args.lab_json:
            with open(args.lab_json) as handle:
                lab = json.load(handle)
        else:
            lab_dir = os.path.join(work, "lab")
            lab = start_lab(lab_dir)
        stand_in = StandIn(lab)
        objects, ready_containers = k8s_objects(args.pods)
        stand_in.load(objects)
        try:
            os.makedirs(os.path.join(work, "callback_plugins"))
            with open(os.path.join(work, "callback_plugins", "bench_timer.py"), "w") as handle:
                handle.write(CALLBACK)
            with open(os.path.join(work, "bench.yml"), "w") as handle:
                handle.write(PLAYBOOK)
            for directory, name, text in (("action_plugins", "bench_nodes.py", BASELINE_ACTION), ("library", "bench_nodes.py", "")):
                os.makedirs(os.path.join(work, directory))
                with open(os.path.join(work, directory, name), "w") as handle:
                    handle.write(text)
            plain, plain_truth = write_inventory(os.path.join(work, "inventory-plain"), args.hosts)
            for scenario in scenarios:
                cache_dir = None
                inventory, truth = plain, plain_truth
                if scenario == "facts":
                    cache_dir = os.path.join(work, "facts")
                    fact_bytes = write_fact_cache(cache_dir, args.hosts)
                elif scenario == "templated":
                    inventory, truth = write_inventory(os.path.join(work, "inventory-templated"), args.hosts, templated=True)
                expected = expected_results(truth, ready_containers)
                tasks, wall = run_playbook(work, scenario, inventory, lab, expected["both-pods"]["counts"]["total"], cache_dir)
                runs[scenario] = {"playbook_wall_seconds": round(wall, 1), "tasks": tasks}
                problems += check(scenario, tasks, expected, args.limit)
        finally:
            stand_in.clear()
    except RuntimeError as exc:
        problems.append(str(exc))
    finally:
        if lab_dir:
            stop_lab(lab_dir)
        shutil.rmtree(work, ignore_errors=True)

    figures = {"hosts": args.hosts, "pods": args.pods, "limit_seconds": args.limit, "fact_cache_bytes": fact_bytes,
               "bench_wall_seconds": round(time.monotonic() - started, 1), "runs": runs, "problems": problems}
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print("node_discovery benchmark: %d inventory hosts, %d pods; limit %.1f s per task, both its own time and as the controller "
              "sees it (whole benchmark %.0f s)" % (args.hosts, args.pods, args.limit, figures["bench_wall_seconds"]))
        print("%-10s %-15s %7s %7s %8s %11s   %s" % ("scenario", "task", "vm s", "k8s s", "total s", "task wall s", "counts"))
        for scenario, run in runs.items():
            for name, task in run["tasks"].items():
                timings = task.get("timings") or {}
                print("%-10s %-15s %7.3f %7.3f %8.3f %11.3f   %s" % (scenario, name, timings.get("vm", 0), timings.get("container", 0),
                                                                     timings.get("total", 0), task["seconds"], task.get("counts") or task.get("msg")))
        print("scenarios: plain (inline, group_vars and some per-host Jinja), facts (the same with a jsonfile fact cache, %.1f MB of "
              "setup-shaped facts), templated (own Jinja ansible_host and labels on every host); each playbook wall time (inventory "
              "parsing included): %s" % (fact_bytes / 1e6, ", ".join("%s %.1f s" % (s, r["playbook_wall_seconds"]) for s, r in runs.items())))
        print("total s: the task's own time (action plugin, module run included); task wall s: task start to result in the\n"
              "controller, which adds Ansible's handling of the returned node list (worker -> controller, callbacks); baseline:\n"
              "a no-op action returning as many nodes as both-pods, i.e. Ansible's own share of the task wall time (not gated)")
        try:
            print("machine: %d CPUs, load average %.2f %.2f %.2f at the end" % ((os.cpu_count() or 0,) + os.getloadavg()))
        except OSError:
            pass
    if problems:
        print("FAILED:\n  " + "\n  ".join(problems))
        return 1
    print("OK: every task found exactly the expected nodes and stayed under %.1f s" % args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
