"""Throughput of the lab's whole chain: HAProxy -> Kong simulator proxy -> 3 VM + 3 container nodes.

    .venv/bin/python -m tests.benchmarks.bench_lab_proxy [--requests 5000] [--concurrency 16] [--tool python|wrk]

Uses the lab in MIXEDRUN_LAB_JSON when set (its Kong gets the `shop` binding; a lab whose Admin API needs an
RBAC token gets KONG_ADMIN_TOKEN in the KONG_ADMIN_TOKEN_HEADER header, default Kong-Admin-Token), otherwise
starts a lab in a temporary state dir and stops it afterwards. The load is bounded: --requests in total (python
tool) or --duration seconds (wrk, which cannot count requests), never more than --max-seconds. Prints one JSON
document: requests, errors (non-200 and transport errors), req/s, latency percentiles, the requests each node
served (from the nodes' own counters, for both tools), nproc.
Exit code 1 when req/s is below --target (default 500), any request failed, `shop` does not have 3 VM + 3
container nodes, or one of them got no traffic; 2 when an RBAC lab is reused without KONG_ADMIN_TOKEN.
"""

import argparse
import asyncio
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import aiohttp
import requests

from tests.lab.lab import bind_minimal, wait_routed
from tests.lab.pytest_plugin import LAB_JSON_ENV, start_lab, stop_lab

SERVED = re.compile(r'^lab_http_requests_total\{code="(\d+)"\} (\d+)$', re.M)


def _served(nodes):
    """{node name: application requests served so far} from each node's own /metrics."""
    out = {}
    for node in nodes:
        text = requests.get(node["url"] + "/metrics", timeout=5).text
        out[node["name"]] = sum(int(count) for _code, count in SERVED.findall(text))
    return out


def _admin_headers(info):
    """Headers for the lab's Kong Admin API: the RBAC token of a reused RBAC lab (lab.json never holds it);
    None when that token is needed and not given."""
    if not info.get("kong_rbac"):
        return {}
    token = os.environ.get("KONG_ADMIN_TOKEN")
    if not token:
        return None
    return {os.environ.get("KONG_ADMIN_TOKEN_HEADER") or "Kong-Admin-Token": token}


async def _python_load(url, host, total, concurrency, max_seconds):
    latencies, per_node, errors = [], collections.Counter(), collections.Counter()
    issued = 0
    deadline = time.monotonic() + max_seconds
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=10)

    async def worker(session):
        nonlocal issued
        while issued < total and time.monotonic() < deadline:
            issued += 1
            started = time.monotonic()
            try:
                async with session.get(url, headers={"Host": host}) as resp:
                    await resp.read()
                    if resp.status == 200:
                        per_node[resp.headers.get("X-Node-Name", "?")] += 1
                    else:
                        errors["HTTP %d" % resp.status] += 1
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                errors[type(exc).__name__] += 1
            latencies.append(time.monotonic() - started)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.monotonic()
        await asyncio.gather(*(worker(session) for _attempt in range(concurrency)))
        elapsed = time.monotonic() - started
    latencies.sort()

    def pct(p):
        return round(latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000, 2) if latencies else None

    return {"tool": "python-aiohttp", "requests": len(latencies), "errors": sum(errors.values()), "error_kinds": dict(errors),
            "seconds": round(elapsed, 3), "req_per_s": round(len(latencies) / elapsed, 1) if elapsed else 0.0,
            "latency_ms": {"p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": pct(1.0)}, "per_node": dict(per_node)}


def _wrk_load(url, host, concurrency, duration):
    wrk = shutil.which("wrk")
    if not wrk:
        raise SystemExit("wrk is not installed: run `sudo tests/lab/install-deps.sh` or use --tool python")
    proc = subprocess.run([wrk, "-t2", "-c%d" % concurrency, "-d%ds" % duration, "--latency", "-H", "Host: %s" % host, url],
                          capture_output=True, text=True, timeout=duration + 30, check=False)
    out = proc.stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(int(x) for x in sock.groups()) if sock else 0)
    lat = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)$", out, re.M))
    return {"tool": "wrk", "requests": total, "errors": errors, "seconds": duration, "req_per_s": rate,
            "latency": {"p%s" % k: v for k, v in lat.items()}}


def main(argv=None):
    """Run the benchmark; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--tool", choices=("python", "wrk"), default="python")
    parser.add_argument("--duration", type=int, default=10, help="seconds of load with --tool wrk")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="hard cap on the load phase (python tool)")
    parser.add_argument("--target", type=float, default=500.0, help="minimum req/s for exit code 0")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 200000 or not 1 <= args.concurrency <= 256 or not 1 <= args.duration <= 120:
        parser.error("--requests 1..200000, --concurrency 1..256, --duration 1..120")

    own_dir = None
    if os.environ.get(LAB_JSON_ENV):
        with open(os.environ[LAB_JSON_ENV], encoding="utf-8") as fh:
            info = json.load(fh)
    else:
        own_dir = tempfile.mkdtemp(prefix="mixedrun-bench-lab-")
        info = start_lab(own_dir)
    try:
        members = [n for n in info["nodes"] if n["service"] == "shop"]
        kinds = collections.Counter(n["kind"] for n in members)
        if kinds["vm"] != 3 or kinds["container"] != 3:
            print("bench_lab_proxy: the `shop` service must have 3 VM + 3 container nodes, this lab has %d + %d"
                  % (kinds["vm"], kinds["container"]), file=sys.stderr)
            return 1
        headers = _admin_headers(info)
        if headers is None:
            print("bench_lab_proxy: the reused lab's Admin API needs an RBAC token: set KONG_ADMIN_TOKEN (and "
                  "KONG_ADMIN_TOKEN_HEADER when it is not Kong-Admin-Token)", file=sys.stderr)
            return 2
        bind_minimal(info, "shop", admin_headers=headers)
        svc = [s for s in info["services"] if s["name"] == "shop"][0]
        url = info["lb_url"] + "/bench"
        wait_routed(info, svc["domain"])
        before = _served(members)
        if args.tool == "wrk":
            result = _wrk_load(url, svc["domain"], args.concurrency, args.duration)
        else:
            result = asyncio.run(_python_load(url, svc["domain"], args.requests, args.concurrency, args.max_seconds))
        after = _served(members)
        served = {name: after[name] - before[name] for name in after}
        idle = sorted(name for name, count in served.items() if count <= 0)
        try:
            nproc_usable = len(os.sched_getaffinity(0))
        except AttributeError:
            nproc_usable = os.cpu_count()
        chain = "haproxy -> kong (%d node(s)) -> %d VM + %d container nodes" % (len(info["proxy_urls"]), kinds["vm"], kinds["container"])
        result.update({"chain": chain,
                       "served_per_node": served, "nodes_without_traffic": idle,
                       "concurrency": args.concurrency, "target_req_per_s": args.target,
                       "nproc": os.cpu_count(), "nproc_usable": nproc_usable,
                       "load_average": [round(x, 2) for x in os.getloadavg()]})
        failed = []
        if result["req_per_s"] < args.target:
            failed.append("%.1f req/s is below the target %.0f" % (result["req_per_s"], args.target))
        if result["errors"]:
            failed.append("%d requests failed" % result["errors"])
        if idle:
            failed.append("no traffic on %s" % ", ".join(idle))
        result["result"] = "FAIL: " + "; ".join(failed) if failed else "ok"
        print(json.dumps(result, indent=2))
        return 1 if failed else 0
    finally:
        if own_dir:
            stop_lab(own_dir)
            shutil.rmtree(own_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
