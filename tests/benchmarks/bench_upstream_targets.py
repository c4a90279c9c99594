"""Benchmark: kong_upstream_targets on an upstream of 1000 targets, against its targets.

    .venv/bin/python -m tests.benchmarks.bench_upstream_targets [--targets 1000] [--repeat 3] [--loop-sample 0]
        [--concurrency 8] [--admin-url URL]

Without ``--admin-url`` a one-node Kong simulator is started in a temporary directory and stopped afterwards.
With it (the lab, or a real Kong), ``KONG_ADMIN_TOKEN`` / ``KONG_ADMIN_TOKEN_HEADER`` are sent when set and
``KONG_CA_PATH`` verifies HTTPS, by the modules (their environment fallbacks) and by the bare script alike.

Measured in one run, on one upstream, and printed side by side as a markdown table:

1. no-op: the module (in-process, ``main()`` with real AnsibleModule I/O) asked for the weights Kong already
   holds. Target: at most 3 HTTP requests and no write, counted at the transport (requests' ``HTTPAdapter.send``).
2. change all weights, ``--repeat`` times each, alternating (module, floor, module, floor, ...), medians reported:
   a. the module in-process (``concurrency`` 8, like the module's default);
   b. the floor: a bare ``requests.Session`` script making the same HTTP calls (GET upstream, the target list,
      one PATCH per target by id, 8 in flight). Target: module median <= 1.5 x floor median.
   Every HTTP request of both is counted at the transport, and the module's own ``api_calls`` must agree.
3. change all weights through ``ansible-playbook``:
   c. one ``kong_upstream_targets`` task;
   d. an Ansible ``loop`` of ``kong_target`` over all the targets (one module run per target).
   Target: the loop takes at least 50 x the time of the one task, both timed as whole ``ansible-playbook`` runs
   (each pays Ansible's start-up once; an empty playbook's run time is measured and shown for reference).
   Their HTTP requests are counted from the modules' ``api_calls`` (collected by a small callback plugin),
   which step 2 checks against the transport count.

After every change the weights are read back from Kong with an independent GET. ``--loop-sample N`` (N <
``--targets``) loops over N targets only, for a quick try: the loop's time is then extrapolated as
``start-up + (time - start-up) x targets / N``, said so in the output, and the run exits 2 (not a measurement).
Exit code 1 when any target is missed.
"""

import argparse
import contextlib
import io
import json
import os
import statistics
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

NOOP_MAX_REQUESTS = 3
MAX_FLOOR_RATIO = 1.5
MIN_LOOP_RATIO = 50.0

# Collects the api_calls every module run returned (loop items one by one) into $BENCH_CALLS_FILE.
CALLBACK = '''
from __future__ import annotations
import json
import os
from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_api_calls"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.calls = []
        self.runs = 0

    def _add(self, result):
        self.runs += 1
        self.calls.extend(result.get("api_calls") or [])

    def v2_runner_item_on_ok(self, result):
        self._add(result._result)

    def v2_runner_on_ok(self, result):
        if "results" not in result._result:
            self._add(result._result)

    def v2_playbook_on_stats(self, stats):
        with open(os.environ["BENCH_CALLS_FILE"], "w") as handle:
            json.dump({"runs": self.runs, "calls": self.calls}, handle)
'''


class Counter:
    """Counts HTTP requests at the transport (requests' HTTPAdapter.send), by method."""

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
    def requests(self):
        return len(self.methods)

    @property
    def writes(self):
        return len([m for m in self.methods if m not in ("GET", "HEAD")])


class Kong:
    """Connection settings shared by the modules (environment fallbacks) and the bare script."""

    def __init__(self, admin_url):
        self.admin_url = admin_url.rstrip("/")
        self.headers = {}
        token = os.environ.get("KONG_ADMIN_TOKEN")
        if token:
            self.headers[os.environ.get("KONG_ADMIN_TOKEN_HEADER") or "Kong-Admin-Token"] = token
        self.verify = os.environ.get("KONG_CA_PATH") or True

    def session(self, pool=16):
        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=pool)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers.update(self.headers)
        session.verify = self.verify
        return session


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


def setup_upstream(kong, name, targets, weight):
    session = kong.session()
    session.put("%s/upstreams/%s" % (kong.admin_url, name), json={}, timeout=10).raise_for_status()
    path = "%s/upstreams/%s/targets" % (kong.admin_url, name)

    def post(target):
        session.post(path, json={"target": target, "weight": weight, "tags": ["mixedrun-managed", "mixedrun-kind:vm"]},
                     timeout=30).raise_for_status()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(post, targets))


def bare_floor(kong, name, weight, concurrency):
    """The same HTTP calls as the module, with nothing else: GET upstream, list, PATCH each by id."""
    session = kong.session()
    upstream = session.get("%s/upstreams/%s" % (kong.admin_url, name), timeout=10).json()
    base = "%s/upstreams/%s/targets" % (kong.admin_url, upstream["id"])
    items, url, params = [], base + "/all", {"size": 1000}
    while url:
        page = session.get(url, params=params, timeout=30).json()
        items.extend(page["data"])
        url, params = (kong.admin_url + page["next"], None) if page.get("next") else (None, None)

    def patch(item):
        session.patch("%s/%s" % (base, item["id"]), json={"weight": weight}, timeout=30).raise_for_status()

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(patch, [i for i in items if i["weight"] != weight]))
    session.close()


def current_weights(kong, name):
    session = kong.session()
    url, params, weights = "%s/upstreams/%s/targets/all" % (kong.admin_url, name), {"size": 1000}, []
    while url:
        page = session.get(url, params=params, timeout=30).json()
        weights.extend(t["weight"] for t in page["data"])
        url, params = (kong.admin_url + page["next"], None) if page.get("next") else (None, None)
    return weights


def ansible_env(workdir, calls_file):
    env = dict(os.environ)
    env.update(ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_PYTHON_INTERPRETER=sys.executable,
               ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_DISPLAY_OK_HOSTS="false",
               ANSIBLE_DISPLAY_SKIPPED_HOSTS="false", ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false", ANSIBLE_CALLBACKS_ENABLED="bench_api_calls",
               ANSIBLE_CALLBACK_PLUGINS=os.path.join(workdir, "callback_plugins"), BENCH_CALLS_FILE=calls_file)
    return env


def run_playbook(workdir, name, tasks, extra_vars):
    """One whole ``ansible-playbook`` run; returns (seconds, module runs, api_calls of all module runs)."""
    playbook = os.path.join(workdir, name + ".yml")
    varsfile = os.path.join(workdir, name + "-vars.json")
    calls_file = os.path.join(workdir, name + "-calls.json")
    with open(playbook, "w") as handle:
        json.dump([{"hosts": "localhost", "gather_facts": False, "connection": "local", "tasks": tasks}], handle)
    with open(varsfile, "w") as handle:
        json.dump(extra_vars, handle)
    ansible_playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    started = time.perf_counter()
    proc = subprocess.run([ansible_playbook, "-i", "localhost,", playbook, "-e", "@" + varsfile],
                          env=ansible_env(workdir, calls_file), capture_output=True, text=True, timeout=7200,
                          check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError("%s failed:\n%s\n%s" % (name, proc.stdout[-3000:], proc.stderr[-3000:]))
    with open(calls_file) as handle:
        collected = json.load(handle)
    return elapsed, collected["runs"], collected["calls"]


def _runs_text(values):
    return "runs " + ", ".join("%.2f s" % v for v in values)


def _writes(calls):
    return len([c for c in calls if c["method"] not in ("GET", "HEAD")])


class Checks:
    def __init__(self):
        self.rows = []

    def check(self, what, ok, figure):
        self.rows.append((what, figure, "yes" if ok else "**NO**"))
        return ok

    @property
    def missed(self):
        return [r for r in self.rows if r[2] != "yes"]


def bench(kong, count, repeat, loop_sample, concurrency):
    name = "bench-%s.upstream" % uuid.uuid4().hex[:8]
    targets = targets_for(count)
    print("setting up %s with %d targets on %s ..." % (name, count, kong.admin_url), flush=True)
    setup_upstream(kong, name, targets, 10)
    base_args = {"admin_url": kong.admin_url, "upstream": name, "concurrency": concurrency,
                 "_ansible_check_mode": False, "_ansible_diff": False}
    checks = Checks()
    figures = []

    def desired(weight):
        return [{"target": t, "weight": weight} for t in targets]

    def weights_are(weight):
        got = current_weights(kong, name)
        if len(got) != count or set(got) != {weight}:
            raise RuntimeError("Kong does not hold weight %d on all %d targets: %d targets, weights %s"
                               % (weight, count, len(got), sorted(set(got))[:10]))

    try:
        # 1. no-op
        with Counter() as counter:
            started = time.perf_counter()
            result = run_module_inprocess(dict(base_args, targets=desired(10)))
            noop_s = time.perf_counter() - started
        weights_are(10)
        checks.check("no-op: not changed", not result["changed"], "changed=%s" % result["changed"])
        checks.check("no-op: at most %d HTTP requests" % NOOP_MAX_REQUESTS, counter.requests <= NOOP_MAX_REQUESTS,
                     "%d requests (%s)" % (counter.requests, ", ".join(counter.methods)))
        checks.check("no-op: no write", counter.writes == 0, "%d writes" % counter.writes)
        checks.check("no-op: api_calls agree with the transport", len(result["api_calls"]) == counter.requests,
                     "%d api_calls" % len(result["api_calls"]))
        figures.append(("no-op run of the module (in-process)", noop_s, counter.requests, counter.writes, ""))

        # 2. module vs floor, alternating
        module_times, floor_times = [], []
        module_counts, floor_counts = set(), set()
        weight = 10
        for _round in range(repeat):
            weight += 1
            with Counter() as counter:
                started = time.perf_counter()
                result = run_module_inprocess(dict(base_args, targets=desired(weight)))
                module_times.append(time.perf_counter() - started)
            weights_are(weight)
            if result["counts"]["updated"] != count:
                raise RuntimeError("module updated %s targets, not %d" % (result["counts"], count))
            if len(result["api_calls"]) != counter.requests:
                raise RuntimeError("the module's api_calls (%d) disagree with the transport count (%d)"
                                   % (len(result["api_calls"]), counter.requests))
            module_counts.add((counter.requests, counter.writes))
            weight += 1
            with Counter() as counter:
                started = time.perf_counter()
                bare_floor(kong, name, weight, concurrency)
                floor_times.append(time.perf_counter() - started)
            weights_are(weight)
            floor_counts.add((counter.requests, counter.writes))
        module_s, floor_s = statistics.median(module_times), statistics.median(floor_times)
        checks.check("same requests in every module run", len(module_counts) == 1, sorted(module_counts))
        mod_req, mod_wr = max(module_counts)
        floor_req, floor_wr = max(floor_counts)
        figures.append(("module in-process, concurrency %d (median of %d)" % (concurrency, repeat), module_s,
                        mod_req, mod_wr, _runs_text(module_times)))
        figures.append(("floor: bare requests.Session, %d threads (median of %d)" % (concurrency, repeat), floor_s,
                        floor_req, floor_wr, _runs_text(floor_times)))
        checks.check("module <= %.1fx the floor" % MAX_FLOOR_RATIO, module_s <= MAX_FLOOR_RATIO * floor_s,
                     "%.2fx" % (module_s / floor_s))
        checks.check("module makes the floor's requests", (mod_req, mod_wr) == (floor_req, floor_wr),
                     "%d/%d vs %d/%d (requests/writes)" % (mod_req, mod_wr, floor_req, floor_wr))

        # 3. through ansible-playbook
        workdir = tempfile.mkdtemp(prefix="bench-ut-")
        os.makedirs(os.path.join(workdir, "callback_plugins"))
        with open(os.path.join(workdir, "callback_plugins", "bench_api_calls.py"), "w") as handle:
            handle.write(CALLBACK)
        empty_s, _runs, _calls = run_playbook(workdir, "empty", [], {})
        figures.append(("empty playbook (ansible-playbook start-up, for reference)", empty_s, 0, 0, ""))

        weight += 1
        task = {"name": "Set all weights", "mixedrun.kong.kong_upstream_targets": {
            "admin_url": kong.admin_url, "upstream": name, "concurrency": concurrency, "targets": "{{ bench_targets }}"}}
        task_s, runs, calls = run_playbook(workdir, "task", [task], {"bench_targets": desired(weight)})
        weights_are(weight)
        if runs != 1:
            raise RuntimeError("the one-task playbook ran the module %d times" % runs)
        figures.append(("module as one ansible-playbook task", task_s, len(calls), _writes(calls), ""))

        weight += 1
        looped = targets if not loop_sample or loop_sample >= count else targets[:loop_sample]
        loop_task = {"name": "One target at a time", "mixedrun.kong.kong_target": {
            "admin_url": kong.admin_url, "upstream": name, "target": "{{ item }}", "weight": weight},
            "loop": "{{ bench_targets }}"}
        print("ansible loop of kong_target over %d targets ..." % len(looped), flush=True)
        loop_s, runs, calls = run_playbook(workdir, "loop", [loop_task], {"bench_targets": looped})
        got = current_weights(kong, name)
        if got.count(weight) != len(looped) or runs != len(looped):
            raise RuntimeError("the loop ran %d times and set weight %d on %d targets, not %d"
                               % (runs, weight, got.count(weight), len(looped)))
        extrapolated = len(looped) != count
        loop_full = loop_s if not extrapolated else empty_s + (loop_s - empty_s) * count / len(looped)
        note = "" if not extrapolated else "EXTRAPOLATED from %d targets in %.1f s" % (len(looped), loop_s)
        figures.append(("ansible loop of kong_target over %d targets" % len(looped), loop_full, len(calls),
                        _writes(calls), note))
        checks.check("loop >= %.0fx the one task (both ansible-playbook)" % MIN_LOOP_RATIO,
                     loop_full >= MIN_LOOP_RATIO * task_s, "%.1fx%s" % (loop_full / task_s, " (extrapolated)"
                                                                        if extrapolated else ""))
    finally:
        requests.delete("%s/upstreams/%s" % (kong.admin_url, name), headers=kong.headers, verify=kong.verify,
                        timeout=60)

    print()
    print("### kong_upstream_targets, %d targets (%s)" % (count, kong.admin_url))
    print()
    print("| run | seconds | HTTP requests | writes | vs floor | notes |")
    print("|---|---:|---:|---:|---:|---|")
    for label, seconds, reqs, writes, note in figures:
        print("| %s | %.2f | %d | %d | %.2fx | %s |" % (label, seconds, reqs, writes, seconds / floor_s, note))
    print()
    print("| target | measured | met |")
    print("|---|---|---|")
    for what, figure, ok in checks.rows:
        print("| %s | %s | %s |" % (what, figure, ok))
    print()
    print("Requests: in-process runs counted at the transport; ansible-playbook runs from the modules' api_calls "
          "(checked equal to the transport count in-process). Module and floor alternate, %d runs each." % repeat)
    if checks.missed:
        print("MISSED: %s" % "; ".join(r[0] for r in checks.missed))
        return 1
    if extrapolated:
        print("NOT A MEASUREMENT: the loop ran over %d of %d targets and was extrapolated (--loop-sample)."
              % (len(looped), count))
        return 2
    print("all targets met")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="module and floor runs each, alternating (>= 3)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--loop-sample", type=int, default=0,
                        help="loop kong_target over only this many targets and extrapolate (0 = all, the default)")
    parser.add_argument("--admin-url", help="use this Kong Admin API instead of starting a simulator")
    args = parser.parse_args(argv)
    if args.repeat < 3:
        parser.error("--repeat must be 3 or more (medians)")
    if args.admin_url:
        return bench(Kong(args.admin_url), args.targets, args.repeat, args.loop_sample, args.concurrency)
    with tempfile.TemporaryDirectory(prefix="bench-ut-kong-") as state_dir:
        cluster = KongCluster(state_dir, nodes=1, host="127.0.0.1")
        cluster.start(detach=True)
        try:
            return bench(Kong(cluster.admin_urls[0]), args.targets, args.repeat, args.loop_sample, args.concurrency)
        finally:
            cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
