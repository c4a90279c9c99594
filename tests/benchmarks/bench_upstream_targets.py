"""Benchmark: kong_upstream_targets on an upstream of 1000 targets.

Run: ``.venv/bin/python -m tests.benchmarks.bench_upstream_targets [--targets 1000] [--loop-sample 100]
[--admin-url URL]``. Without ``--admin-url`` a one-node Kong simulator is started in a temporary directory
and stopped afterwards. Everything is measured in one run and printed side by side:

1. a no-op run of the module (in-process): HTTP requests counted at the transport, and writes;
2. changing all weights:
   a. the module in-process (``main()`` with real AnsibleModule I/O, default concurrency 8),
   b. the module as one ``ansible-playbook`` task (includes Ansible's start-up),
   c. the floor: a bare ``requests.Session`` script making the same HTTP calls (GET upstream, one list,
      one PATCH per target, 8 in flight),
   d. an Ansible ``loop`` of ``kong_target`` over the targets, one task run per target. With
      ``--loop-sample N`` smaller than ``--targets`` only the first N targets are looped and the time is
      extrapolated linearly (stated in the output); ``--loop-sample 0`` loops over all of them.
"""

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, ".tmp", "collections")
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

from ansible.module_utils.testing import patch_module_args  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.mixedrun.kong.plugins.modules import kong_upstream_targets  # noqa: E402

from tests.lab.kong_sim.launcher import KongCluster  # noqa: E402


class Counter:
    """Counts HTTP requests at the transport (requests' HTTPAdapter.send)."""

    def __init__(self):
        self.methods = []
        self._orig = requests.adapters.HTTPAdapter.send

    def __enter__(self):
        counter = self

        def send(adapter, request, *args, **kwargs):
            counter.methods.append(request.method)
            return counter._orig(adapter, request, *args, **kwargs)

        requests.adapters.HTTPAdapter.send = send
        return self

    def __exit__(self, *exc):
        requests.adapters.HTTPAdapter.send = self._orig

    @property
    def writes(self):
        return [m for m in self.methods if m != "GET"]


def run_module_inprocess(args):
    out = io.StringIO()
    with patch_module_args(args), contextlib.redirect_stdout(out):
        try:
            kong_upstream_targets.main()
        except SystemExit:
            pass
    result = json.loads(out.getvalue())
    if result.get("failed"):
        raise RuntimeError(result["msg"])
    return result


def targets_for(count):
    return ["127.0.%d.%d:18080" % (100 + i // 250, 1 + i % 250) for i in range(count)]


def setup_upstream(admin_url, name, targets):
    session = requests.Session()
    session.put("%s/upstreams/%s" % (admin_url, name), json={}, timeout=10).raise_for_status()
    path = "%s/upstreams/%s/targets" % (admin_url, name)

    def post(target):
        session.post(path, json={"target": target, "weight": 10, "tags": ["mixedrun-managed", "mixedrun-kind:vm"]},
                     timeout=30).raise_for_status()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(post, targets))
    return session


def bare_floor(admin_url, name, weight, concurrency=8):
    """The same HTTP calls as the module, with nothing else: GET upstream, list, PATCH each by id."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=16)
    session.mount("http://", adapter)
    started = time.perf_counter()
    upstream = session.get("%s/upstreams/%s" % (admin_url, name), timeout=10).json()
    base = "%s/upstreams/%s/targets" % (admin_url, upstream["id"])
    items, url, params = [], base + "/all", {"size": 1000}
    while url:
        page = session.get(url, params=params, timeout=30).json()
        items.extend(page["data"])
        url, params = (admin_url + page["next"], None) if page.get("next") else (None, None)

    def patch(item):
        session.patch("%s/%s" % (base, item["id"]), json={"weight": weight}, timeout=30).raise_for_status()

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(patch, [i for i in items if i["weight"] != weight]))
    return time.perf_counter() - started


def ansible_env():
    env = dict(os.environ)
    env.update(ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_PYTHON_INTERPRETER=sys.executable,
               ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_CALLBACK_RESULT_FORMAT="json",
               ANSIBLE_DISPLAY_OK_HOSTS="false", ANSIBLE_DISPLAY_SKIPPED_HOSTS="false",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    return env


def run_playbook(workdir, name, tasks, extra_vars):
    playbook = os.path.join(workdir, name + ".yml")
    varsfile = os.path.join(workdir, name + "-vars.json")
    with open(playbook, "w") as handle:
        json.dump([{"hosts": "localhost", "gather_facts": False, "connection": "local", "tasks": tasks}], handle)
    with open(varsfile, "w") as handle:
        json.dump(extra_vars, handle)
    ansible_playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    started = time.perf_counter()
    proc = subprocess.run([ansible_playbook, "-i", "localhost,", playbook, "-e", "@" + varsfile],
                          env=ansible_env(), capture_output=True, text=True, timeout=3600, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError("%s failed:\n%s\n%s" % (name, proc.stdout[-3000:], proc.stderr[-3000:]))
    return elapsed


def current_weights(admin_url, name):
    page = requests.get("%s/upstreams/%s/targets/all" % (admin_url, name), params={"size": 1000}, timeout=30).json()
    weights = [t["weight"] for t in page["data"]]
    while page.get("next"):
        page = requests.get(admin_url + page["next"], timeout=30).json()
        weights.extend(t["weight"] for t in page["data"])
    return weights


def bench(admin_url, count, loop_sample):
    name = "bench-%s.upstream" % uuid.uuid4().hex[:8]
    targets = targets_for(count)
    print("setting up %s with %d targets on %s ..." % (name, count, admin_url), flush=True)
    setup_upstream(admin_url, name, targets)
    base_args = {"admin_url": admin_url, "upstream": name, "_ansible_check_mode": False, "_ansible_diff": False}
    rows = []

    def desired(weight):
        return [{"target": t, "weight": weight} for t in targets]

    # 1. no-op
    with Counter() as counter:
        started = time.perf_counter()
        result = run_module_inprocess(dict(base_args, targets=desired(10)))
        noop_s = time.perf_counter() - started
    assert not result["changed"], result["counts"]
    noop = {"requests": len(counter.methods), "writes": len(counter.writes), "seconds": noop_s}

    # 2a. module in-process
    with Counter() as counter:
        started = time.perf_counter()
        result = run_module_inprocess(dict(base_args, targets=desired(20)))
        module_s = time.perf_counter() - started
    assert result["counts"]["updated"] == count, result["counts"]
    assert set(current_weights(admin_url, name)) == {20}
    rows.append(("module in-process (concurrency 8)", module_s, len(counter.methods)))

    # 2c. the floor
    floor_s = bare_floor(admin_url, name, 30)
    assert set(current_weights(admin_url, name)) == {30}
    rows.append(("bare requests.Session (8 threads)", floor_s, count + 2))

    workdir = tempfile.mkdtemp(prefix="bench-ut-")
    # 2b. module through ansible-playbook
    task = {"name": "set all weights", "mixedrun.kong.kong_upstream_targets": {
        "admin_url": admin_url, "upstream": name, "targets": "{{ bench_targets }}"}}
    playbook_s = run_playbook(workdir, "module", [task], {"bench_targets": desired(40)})
    assert set(current_weights(admin_url, name)) == {40}
    rows.append(("module via ansible-playbook (1 task)", playbook_s, count + 2))

    # 2d. a loop of kong_target
    looped = targets if not loop_sample or loop_sample >= count else targets[:loop_sample]
    loop_task = {"name": "one target at a time", "mixedrun.kong.kong_target": {
        "admin_url": admin_url, "upstream": name, "target": "{{ item }}", "weight": 50},
        "loop": "{{ bench_targets }}"}
    loop_s = run_playbook(workdir, "loop", [loop_task], {"bench_targets": looped})
    weights = current_weights(admin_url, name)
    assert weights.count(50) == len(looped), "loop did not apply every weight"
    loop_full = loop_s * count / len(looped)
    label = "ansible loop of kong_target" if len(looped) == count else \
        "ansible loop of kong_target (%d looped, x%.0f)" % (len(looped), count / len(looped))
    rows.append((label, loop_full, 3 * count))
    requests.delete("%s/upstreams/%s" % (admin_url, name), timeout=60)

    print()
    print("no-op run on %d targets (module in-process): %d HTTP requests, %d writes, %.2f s"
          % (count, noop["requests"], noop["writes"], noop["seconds"]))
    print()
    print("change all %d weights:" % count)
    print("  %-48s %10s %10s %12s" % ("how", "seconds", "requests", "vs floor"))
    for label, seconds, reqs in rows:
        print("  %-48s %10.2f %10d %11.2fx" % (label, seconds, reqs, seconds / floor_s))
    print()
    print("module in-process vs floor:        %.2fx (target <= 1.5x)" % (module_s / floor_s))
    print("loop vs module in-process:         %.0fx slower (target >= 50x)" % (loop_full / module_s))
    print("loop vs module via ansible-playbook: %.0fx slower" % (loop_full / playbook_s))
    if len(looped) != count:
        print("(the loop ran over %d targets in %.1f s; its %d-target time is extrapolated linearly)"
              % (len(looped), loop_s, count))
    return {"noop": noop, "rows": rows, "floor": floor_s}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--loop-sample", type=int, default=100,
                        help="targets looped over by kong_target (0 = all; default 100, extrapolated)")
    parser.add_argument("--admin-url", help="use this Kong Admin API instead of starting a simulator")
    args = parser.parse_args(argv)
    if args.admin_url:
        bench(args.admin_url.rstrip("/"), args.targets, args.loop_sample)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-ut-kong-") as state_dir:
        cluster = KongCluster(state_dir, nodes=1, host="127.0.0.1")
        cluster.start(detach=True)
        try:
            bench(cluster.admin_urls[0], args.targets, args.loop_sample)
        finally:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
