"""Benchmark: the Admin API serves an upstream of 1000 targets (list, patch) without slowing per request.

    .venv/bin/python -m tests.benchmarks.bench_kong_admin [--small 100] [--large 1000] [--max-ratio 1.5] [--admin-url URL]

Without ``--admin-url`` a one-node simulator is started in a temporary directory and stopped afterwards (with it,
``KONG_ADMIN_TOKEN`` / ``KONG_ADMIN_TOKEN_HEADER`` are sent when set, and ``KONG_CA_PATH`` verifies HTTPS).
Two upstreams are filled, one with ``--small`` and one with ``--large`` targets; then, interleaved so that both
see the same machine load, over one keep-alive session:

* list: ``GET .../targets?size=100`` (the first page, and the last page through ``offset``) on each upstream;
* patch: every target of the large upstream PATCHed once, with one PATCH of the small upstream after every
  tenth, so the small upstream's 100 PATCHes spread over the same time.

Per-request medians are compared: large/small for the list pages and the PATCHes, and the last 100 PATCHes of
the large upstream against its first 100. Exit code 1 when any ratio exceeds ``--max-ratio`` (1.5).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid

import requests

from tests.lab.kong_sim.launcher import KongCluster

PAGE = 100


def _ms(seconds):
    return round(seconds * 1000, 3)


class Admin:
    """A keep-alive session with per-request timing."""

    def __init__(self, base, headers=None, verify=True):
        self.base = base
        self.session = requests.Session()
        self.session.headers.update(headers or {})
        self.verify = verify

    def timed(self, method, path, **kwargs):
        started = time.perf_counter()
        resp = self.session.request(method, self.base + path, timeout=30, verify=self.verify, **kwargs)
        elapsed = time.perf_counter() - started
        if resp.status_code >= 400:
            raise SystemExit("Kong %s %s -> %d %s" % (method, path, resp.status_code, resp.text[:200]))
        return elapsed, (resp.json() if resp.content else None)


def _fill(admin, name, count, octet):
    admin.timed("POST", "/upstreams", json={"name": name})
    targets = ["127.%d.%d.%d:8080" % (octet, 1 + i // 250, 1 + i % 250) for i in range(count)]
    times = [admin.timed("POST", "/upstreams/%s/targets" % name, json={"target": t, "weight": 100})[0] for t in targets]
    return targets, times


def _last_offset(admin, name):
    """The offset of the last page of size PAGE (walking the pages, as a client would)."""
    offset = None
    while True:
        params = {"size": PAGE}
        if offset:
            params["offset"] = offset
        _unused, page = admin.timed("GET", "/upstreams/%s/targets" % name, params=params)
        if not page.get("offset"):
            return offset
        offset = page["offset"]


def run(admin, small, large, repeat, max_ratio):
    """Measure; returns (figures dict, list of failed checks)."""
    tag = uuid.uuid4().hex[:8]
    small_name, large_name = "bench-s-" + tag, "bench-l-" + tag
    small_targets, small_create = _fill(admin, small_name, small, 10)
    large_targets, large_create = _fill(admin, large_name, large, 20)
    try:
        small_last = _last_offset(admin, small_name)
        large_last = _last_offset(admin, large_name)
        lists = {"small_first": [], "large_first": [], "small_last": [], "large_last": []}
        for _round in range(repeat):
            for key, name, offset in (("small_first", small_name, None), ("large_first", large_name, None),
                                      ("small_last", small_name, small_last), ("large_last", large_name, large_last)):
                params = {"size": PAGE}
                if offset:
                    params["offset"] = offset
                elapsed, page = admin.timed("GET", "/upstreams/%s/targets" % name, params=params)
                assert page["data"], "an empty page"
                lists[key].append(elapsed)
        started = time.perf_counter()
        _unused, full = admin.timed("GET", "/upstreams/%s/targets" % large_name, params={"size": 1000})
        full_list = time.perf_counter() - started
        assert len(full["data"]) == min(large, 1000)

        large_patch, small_patch = [], []
        step = max(1, large // small)
        for i, target in enumerate(large_targets):
            large_patch.append(admin.timed("PATCH", "/upstreams/%s/targets/%s" % (large_name, target), json={"weight": 1 + i % 1000})[0])
            if i % step == 0 and i // step < small:
                small_patch.append(admin.timed("PATCH", "/upstreams/%s/targets/%s" % (small_name, small_targets[i // step]),
                                               json={"weight": 1 + i % 1000})[0])
    finally:
        for name in (small_name, large_name):
            admin.session.delete(admin.base + "/upstreams/" + name, timeout=60, verify=admin.verify)

    med = {key: statistics.median(values) for key, values in lists.items()}
    figures = {
        "targets": {"small": small, "large": large},
        "create_ms_per_request": {"small": _ms(statistics.median(small_create)), "large": _ms(statistics.median(large_create))},
        "list_page_size": PAGE,
        "list_ms_median": {k: _ms(v) for k, v in med.items()},
        "list_all_in_one_request_ms": _ms(full_list),
        "patch_ms_median": {"small": _ms(statistics.median(small_patch)), "large": _ms(statistics.median(large_patch)),
                            "large_first_100": _ms(statistics.median(large_patch[:100])),
                            "large_last_100": _ms(statistics.median(large_patch[-100:]))},
        "patch_ms_p99_large": _ms(sorted(large_patch)[int(len(large_patch) * 0.99) - 1]),
    }
    ratios = {
        "list_first_page_large_vs_small": med["large_first"] / med["small_first"],
        "list_last_page_large_vs_small": med["large_last"] / med["small_last"],
        "patch_large_vs_small": statistics.median(large_patch) / statistics.median(small_patch),
        "patch_last_100_vs_first_100": statistics.median(large_patch[-100:]) / statistics.median(large_patch[:100]),
    }
    figures["ratios"] = {k: round(v, 3) for k, v in ratios.items()}
    figures["max_ratio"] = max_ratio
    failed = ["%s = %.2f > %.2f" % (k, v, max_ratio) for k, v in ratios.items() if v > max_ratio]
    return figures, failed


def main(argv=None):
    """Run the benchmark; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--small", type=int, default=100, help="targets of the small upstream (default 100)")
    parser.add_argument("--large", type=int, default=1000, help="targets of the large upstream (default 1000)")
    parser.add_argument("--repeat", type=int, default=40, help="list requests per page and upstream (default 40)")
    parser.add_argument("--max-ratio", type=float, default=1.5, help="largest per-request slow-down accepted (default 1.5)")
    parser.add_argument("--admin-url", help="an already running Kong (simulator) Admin API; default: start one")
    args = parser.parse_args(argv)
    if not PAGE <= args.small < args.large <= 5000 or not 5 <= args.repeat <= 1000 or args.max_ratio <= 1:
        parser.error("needs 100 <= --small < --large <= 5000, 5 <= --repeat <= 1000, --max-ratio > 1")
    if args.admin_url:
        headers = {}
        if os.environ.get("KONG_ADMIN_TOKEN"):
            headers[os.environ.get("KONG_ADMIN_TOKEN_HEADER") or "Kong-Admin-Token"] = os.environ["KONG_ADMIN_TOKEN"]
        figures, failed = run(Admin(args.admin_url.rstrip("/"), headers, os.environ.get("KONG_CA_PATH") or True),
                              args.small, args.large, args.repeat, args.max_ratio)
        figures["kong"] = "given --admin-url"
    else:
        with tempfile.TemporaryDirectory(prefix="bench-kong-") as state_dir:
            cluster = KongCluster(state_dir, nodes=1)
            cluster.start(detach=False)
            try:
                figures, failed = run(Admin(cluster.admin_urls[0]), args.small, args.large, args.repeat, args.max_ratio)
            finally:
                cluster.stop()
        figures["kong"] = "simulator, 1 node"
    figures["nproc"] = os.cpu_count()
    figures["result"] = "FAIL: " + "; ".join(failed) if failed else "ok"
    print(json.dumps(figures, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
