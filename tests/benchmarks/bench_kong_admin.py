"""Benchmark: the simulator's Admin API with an upstream of 1000 targets.

Run: ``.venv/bin/python -m tests.benchmarks.bench_kong_admin [--targets 1000] [--admin-url URL]``.
Without ``--admin-url`` a one-node simulator is started in a temporary directory and stopped afterwards.
Creates the targets, lists them with size=1000, then PATCHes every weight one by one over a keep-alive
requests.Session and prints the mean per request for the first and the last 100 patches and the totals.
"""

import argparse
import statistics
import sys
import tempfile
import time
import uuid

import requests

from tests.lab.kong_sim.launcher import KongCluster


def run(admin_url, count):
    session = requests.Session()
    name = "bench-" + uuid.uuid4().hex[:8]
    session.post(admin_url + "/upstreams", json={"name": name}, timeout=10).raise_for_status()
    path = "%s/upstreams/%s/targets" % (admin_url, name)
    targets = ["127.0.%d.%d:8080" % (1 + i // 250, 1 + i % 250) for i in range(count)]

    started = time.perf_counter()
    for target in targets:
        session.post(path, json={"target": target, "weight": 100}, timeout=10).raise_for_status()
    create_s = time.perf_counter() - started

    started = time.perf_counter()
    listed = session.get(path, params={"size": 1000}, timeout=30)
    listed.raise_for_status()
    list_s = time.perf_counter() - started
    assert len(listed.json()["data"]) == min(count, 1000)

    patch_times = []
    started = time.perf_counter()
    for i, target in enumerate(targets):
        t0 = time.perf_counter()
        session.patch("%s/%s" % (path, target), json={"weight": 1 + i % 1000}, timeout=10).raise_for_status()
        patch_times.append(time.perf_counter() - t0)
    patch_s = time.perf_counter() - started
    session.delete("%s/upstreams/%s" % (admin_url, name), timeout=30)

    head, tail = patch_times[:100], patch_times[-100:]
    print("targets:                 %d" % count)
    print("create (POST) total:     %.2f s  (%.2f ms/request)" % (create_s, create_s * 1000 / count))
    print("list size=1000:          %.1f ms" % (list_s * 1000))
    print("patch total:             %.2f s  (%.2f ms/request)" % (patch_s, patch_s * 1000 / count))
    print("patch mean first 100:    %.2f ms" % (statistics.mean(head) * 1000))
    print("patch mean last 100:     %.2f ms" % (statistics.mean(tail) * 1000))
    p99 = sorted(patch_times)[int(len(patch_times) * 0.99) - 1]
    print("patch p50 / p99:         %.2f / %.2f ms" % (statistics.median(patch_times) * 1000, p99 * 1000))
    return statistics.mean(head), statistics.mean(tail)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--admin-url", help="an already running Kong (simulator) Admin API; default: start one")
    args = parser.parse_args(argv)
    if args.admin_url:
        run(args.admin_url.rstrip("/"), args.targets)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-kong-") as state_dir:
        cluster = KongCluster(state_dir, nodes=1)
        cluster.start(detach=False)
        try:
            run(cluster.admin_urls[0], args.targets)
        finally:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
