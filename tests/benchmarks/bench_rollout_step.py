"""Benchmark: a rollout step's own overhead (everything but the hold time) with 100 VM + 100 container targets.

Creates the upstream ``bench-rollout`` in the lab's Kong with 100 VM and 100 container targets (tagged like the
collection tags them), a service and a route for the domain ``bench-rollout.lab.test``. Every target is a small
loopback listener, so every gate is real: Kong's target health on every Kong node, a direct probe of every container
node (concurrently), a Prometheus query against the lab's Prometheus, and probe traffic (20 requests) through
HAProxy -> Kong with the domain's Host header. Then it runs playbooks/rollout.yml with steps 1 -> 10 -> 50 -> 100 and
hold 0, and reads the per-step timings from the run's JSON report:

* split: from the step's start to the verified weight change (lock re-check + kong_traffic_split on every Kong node);
* gate: one evaluation of all the gates (rollout_gate);
* step: from the start of one step to the start of the next (everything the role does per step: progress
  message, approval and hooks checks, the lock re-check, both modules, the record), minus the hold; for the last
  step, from its start to the start of the finish (the run's ``finish_started_at`` in the report).

The finish (VM targets, lock release, JSON report and chart, summary) runs once per rollout, not per step: it is
printed on its own line, from ``finish_started_at`` to the end of the play, and not held to the step limit.

Fails (exit 1) when a step's overhead reaches 2 s. Run (reuses a running lab, else starts one):

    MIXEDRUN_LAB_JSON=.lab/lab.json .venv/bin/python tests/benchmarks/bench_rollout_step.py
    .venv/bin/python tests/benchmarks/bench_rollout_step.py --kong-nodes 2 [--kong-mode hybrid] [--kong-engine simulator]
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import requests

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

UPSTREAM = "bench-rollout"
DOMAIN = "bench-rollout.lab.test"
LIMIT = 2.0


class FakeNodes:
    """``count`` nodes answering 200 on loopback addresses, so the probes and the gateway's traffic are real requests."""

    def __init__(self, base, count):
        import asyncio  # pylint: disable=import-outside-toplevel
        import random  # pylint: disable=import-outside-toplevel
        import threading  # pylint: disable=import-outside-toplevel
        self.asyncio = asyncio
        self.addresses = ["%s%d" % (base, i + 1) for i in range(count)]
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers = []
        self.handlers = set()
        for _attempt in range(50):
            self.port = random.randint(40000, 49999)
            try:
                self._call(self._start())
                return
            except OSError:
                self._call(self._stop())
        raise RuntimeError("no free port for the benchmark's container nodes")

    def _call(self, coro):
        return self.asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    async def _handle(self, reader, writer):
        self.handlers.add(self.asyncio.current_task())
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n"
                             b"X-Node-Name: bench\r\n\r\nok")
                await writer.drain()
        except (ConnectionError, self.asyncio.IncompleteReadError, self.asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self.handlers.discard(self.asyncio.current_task())

    async def _start(self):
        for address in self.addresses:
            self.servers.append(await self.asyncio.start_server(self._handle, address, self.port))

    async def _stop(self):
        for server in self.servers:
            server.close()
        self.servers = []
        # keep-alive connections (Kong's, the probes') still open: end their handlers while the loop runs
        handlers = list(self.handlers)
        for task in handlers:
            task.cancel()
        await self.asyncio.gather(*handlers, return_exceptions=True)

    def close(self):
        self._call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def setup_upstream(admin, count, vm_port, container_port):
    session = requests.Session()
    for path in ("/routes/", "/services/", "/upstreams/"):
        session.delete(admin + path + UPSTREAM, timeout=30)
    session.put(admin + "/upstreams/" + UPSTREAM, json={"tags": ["mixedrun-managed"]}, timeout=30).raise_for_status()
    for kind, base, weight, port in (("vm", "127.0.150.", 100, vm_port), ("container", "127.0.160.", 0, container_port)):
        for i in range(count):
            body = {"target": "%s%d:%d" % (base, i + 1, port), "weight": weight,
                    "tags": ["mixedrun-managed", "mixedrun-kind:" + kind, "mixedrun-service:" + UPSTREAM]}
            session.post(admin + "/upstreams/%s/targets" % UPSTREAM, json=body, timeout=30).raise_for_status()
    session.put(admin + "/services/" + UPSTREAM, json={"host": UPSTREAM, "port": 80}, timeout=30).raise_for_status()
    session.put(admin + "/routes/" + UPSTREAM, json={"hosts": [DOMAIN], "service": {"name": UPSTREAM}},
                timeout=30).raise_for_status()


def teardown_upstream(admin):
    for path in ("/routes/", "/services/", "/upstreams/"):
        requests.delete(admin + path + UPSTREAM, timeout=30)


def run_rollout(info, report_dir, steps):
    variables = {
        "rollout_upstream": UPSTREAM, "rollout_admin_url": info["admin_url"],
        "rollout_admin_urls": info.get("admin_urls") or [info["admin_url"]],
        "rollout_balancer_urls": info.get("kong_balancer_urls") or [],
        "rollout_steps": steps, "rollout_hold": 0, "rollout_gate_interval": 1,
        "rollout_probe": True, "rollout_kong_health": True, "rollout_report_dir": report_dir,
        "rollout_traffic_url": info["lb_url"], "rollout_traffic_host": DOMAIN, "rollout_traffic_requests": 20,
        "rollout_prometheus_url": info["prometheus_url"],
        "rollout_prometheus_queries": [{
            "name": "5xx per second", "max": 1.0,
            "query": 'sum(rate(kong_http_requests_total{service="%s",code=~"5.."}[30s])) or vector(0)' % UPSTREAM}],
        "rollout_lock_owner": "bench", "rollout_lock_settle": 0,
    }
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"))
    env.pop("KONG_ADMIN_URL", None)
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
           os.path.join(REPO, "playbooks", "rollout.yml"), "-e", json.dumps(variables)]
    started = time.time()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
                          stdin=subprocess.DEVNULL)
    ended = time.time()
    if proc.returncode != 0:
        raise SystemExit("the rollout failed:\n%s\n%s" % (proc.stdout[-4000:], proc.stderr[-2000:]))
    path = sorted(glob.glob(os.path.join(report_dir, "rollout-*.json")), key=os.path.getmtime)[-1]
    with open(path) as handle:
        return json.load(handle), started, ended


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--targets", type=int, default=100, help="VM targets and container targets, each (default 100)")
    parser.add_argument("--kong-nodes", type=int, default=None, help="Kong nodes when a lab is started here")
    parser.add_argument("--kong-mode", choices=("traditional", "hybrid"), default=None, help="when a lab is started here")
    parser.add_argument("--kong-engine", choices=("real", "simulator"), default=None, help="when a lab is started here")
    args = parser.parse_args()
    from tests.lab.lab import wait_routed, wait_scraped  # pylint: disable=import-outside-toplevel
    from tests.lab.pytest_plugin import start_lab, stop_lab  # pylint: disable=import-outside-toplevel
    state_dir = None
    if os.environ.get("MIXEDRUN_LAB_JSON"):
        with open(os.environ["MIXEDRUN_LAB_JSON"]) as handle:
            info = json.load(handle)
    else:
        state_dir = tempfile.mkdtemp(prefix="bench-rollout-lab-")
        info = start_lab(state_dir, kong_nodes=args.kong_nodes, kong_mode=args.kong_mode, kong_engine=args.kong_engine)
    vms = FakeNodes("127.0.150.", args.targets)
    containers = FakeNodes("127.0.160.", args.targets)
    try:
        setup_upstream(info["admin_url"], args.targets, vms.port, containers.port)
        wait_routed(info, DOMAIN)
        wait_scraped(info)
        with tempfile.TemporaryDirectory() as report_dir:
            report, started, ended = run_rollout(info, report_dir, [1, 10, 50])
    finally:
        teardown_upstream(info["admin_url"])
        vms.close()
        containers.close()
        if state_dir:
            stop_lab(state_dir)
            shutil.rmtree(state_dir, ignore_errors=True)
    steps = [s for s in report["steps"] if s["kind"] == "step"]
    gates = sorted(set(g["gate"] for g in steps[0]["gate"]["gates"]))
    print("rollout step overhead: %d VM + %d container targets, %d Kong proxy node(s), hold 0, gates: %s" % (
        args.targets, args.targets, len(info.get("proxy_urls") or [1]), ", ".join(gates)))
    print("%-6s %-9s %8s %8s %8s" % ("step", "share %", "split s", "gate s", "step s"))
    worst = 0.0
    for pos, step in enumerate(steps):
        split = float(step["applied_at"]) - float(step["started_at"])
        gate = float(step["finished_at"]) - float(step["applied_at"])
        if pos + 1 < len(steps):
            # hold is 0: everything between two step starts is the step's own overhead
            total = float(steps[pos + 1]["started_at"]) - float(step["started_at"])
        else:
            # the last step: up to the start of the finish (once per run, printed below)
            total = float(report["run"]["finish_started_at"]) - float(step["started_at"])
        worst = max(worst, total)
        print("%-6s %-9s %8.2f %8.2f %8.2f" % ("%s/%s" % (step["index"], step["total"]), step["achieved_share"], split,
                                               gate, total))
    print("finish, once per run (VM targets, lock release, report, summary; to the play's end): %.2f s"
          % (ended - float(report["run"]["finish_started_at"])))
    print("whole play (lock, plan, pre-flight, %d steps, finish, report): %.1f s; worst step overhead %.2f s (limit %.1f s)"
          % (len(steps), ended - started, worst, LIMIT))
    missing = {"kong_health", "probes", "prometheus", "traffic"} - set(gates)
    if missing:
        print("FAIL: the steps did not evaluate the gates %s" % ", ".join(sorted(missing)))
        return 1
    if worst >= LIMIT:
        print("FAIL: a step's own overhead reached %.1f s" % LIMIT)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
