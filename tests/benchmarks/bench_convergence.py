"""Benchmark: how long a weight change takes to reach every Kong node's balancer, on real Kong (or the simulator).

    .venv/bin/python -m tests.benchmarks.bench_convergence [--engine real|simulator] [--mode traditional|hybrid]
        [--nodes 2] [--changes 10] [--targets 20] [--db-update-frequency SECONDS]

Starts a Kong cluster in a temporary directory (real Kong from the kit, see tests/lab/realkong.py; the simulator with
``--engine simulator``), binds one upstream of ``--targets`` targets (half VMs, half containers), then makes
``--changes`` container-share changes with ``kong_traffic_split`` (in-process), spaced by a random 0-3 s so they
land anywhere in the nodes' polling cycle. For each change ``kong_traffic_split`` returns, per balancer, the seconds
from the end of its writes until that node's balancer (``/upstreams/{u}/health``, ``data.nodeWeight``) routed
with the new weights; the benchmark also checks each node independently right after the task returned.

Prints per node: min / median / p90 / max seconds, and the whole change (slowest node). Exit 1 when a change did
not converge within the module's verify_timeout (it raises) or a node did not show the weights afterwards.
"""

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time

import requests

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, ".tmp", "collections")
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

from ansible_collections.mixedrun.kong.plugins.module_utils._kong_api import KongClient  # noqa: E402
from ansible_collections.mixedrun.kong.plugins.modules import kong_traffic_split as split  # noqa: E402

from tests.lab import config as labconfig  # noqa: E402

UPSTREAM = "bench-convergence"


def start_cluster(args, state_dir):
    """(admin_url, balancer_urls, stop) for the asked engine and mode."""
    if args.engine == "real":
        from tests.lab.realkong import RealKongCluster  # pylint: disable=import-outside-toplevel
        kit = labconfig.realkong_kit()
        if not kit:
            sys.exit("no real Kong kit (../shared/realkong or $%s); use --engine simulator" % labconfig.REALKONG_KIT_ENV)
        cluster = RealKongCluster(state_dir, kit, mode=args.mode, nodes=args.nodes, db_update_frequency=args.db_update_frequency,
                                  prometheus_plugin=False).start()
        balancers = [n["admin_url"] or n["status_url"] for n in cluster.nodes if n.get("proxy_url")]
        return cluster.admin_urls[0], balancers, lambda: RealKongCluster.stop_from_state_dir(state_dir)
    if args.mode != "traditional":
        sys.exit("the simulator has traditional nodes only")
    from tests.lab.kong_sim.launcher import KongCluster  # pylint: disable=import-outside-toplevel
    cluster = KongCluster(state_dir, nodes=args.nodes, db_update_frequency=args.db_update_frequency)
    cluster.start(detach=True)
    return cluster.admin_urls[0], list(cluster.admin_urls), cluster.stop


def bind(admin, targets):
    """The upstream with ``targets`` targets: the first half tagged as VMs (weight 10), the rest containers (0)."""
    session = requests.Session()
    session.put("%s/upstreams/%s" % (admin, UPSTREAM), json={}, timeout=10).raise_for_status()
    for index in range(targets):
        kind = "vm" if index < targets // 2 else "container"
        body = {"target": "127.0.%d.%d:18080" % (70 + index // 250, 1 + index % 250), "weight": 10 if kind == "vm" else 0,
                "tags": ["mixedrun-kind:%s" % kind]}
        session.post("%s/upstreams/%s/targets" % (admin, UPSTREAM), json=body, timeout=10).raise_for_status()


def params(admin, balancers, share):
    return dict(admin_url=admin, upstream=UPSTREAM, container_share=share, vm_targets=None, container_targets=None,
                nodes=None, vm_tag="mixedrun-kind:vm", container_tag="mixedrun-kind:container", other_targets="fail",
                max_error=0.05, verify_admin_urls=[], verify_balancer_urls=balancers, verify_timeout=60.0, concurrency=8,
                approximate=False)


def node_weights(url):
    body = requests.get("%s/upstreams/%s/health" % (url, UPSTREAM), timeout=10).json()
    return dict((item["target"], (item.get("data") or {}).get("nodeWeight")) for item in body["data"])


def summary(values):
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))]
    return "min %.2f  median %.2f  p90 %.2f  max %.2f" % (values[0], statistics.median(values), p90, values[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--engine", choices=("real", "simulator"), default="real")
    parser.add_argument("--mode", choices=("traditional", "hybrid"), default="traditional")
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--targets", type=int, default=20)
    parser.add_argument("--db-update-frequency", type=float, default=None, help="traditional nodes (default: Kong's 5 s)")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    failures = 0
    per_node = {}
    slowest = []
    with tempfile.TemporaryDirectory(prefix="bench-convergence-") as state_dir:
        admin, balancers, stop = start_cluster(args, state_dir)
        try:
            bind(admin, args.targets)
            client = KongClient(admin, retries=0)
            # the first split also waits for every node to build the new upstream's balancer: not counted
            split.ensure_traffic_split(client, params(admin, balancers, 0.5))
            for index in range(args.changes):
                time.sleep(rng.uniform(0, 3))
                share = [10, 50, 1, 25, 100, 0][index % 6]
                result = split.ensure_traffic_split(KongClient(admin, retries=0), params(admin, balancers, share))
                for url, node in result["balancers"].items():
                    per_node.setdefault(url, []).append(node["seconds"])
                slowest.append(result["converged_seconds"])
                expected = result["weights_after"]
                for url in balancers:
                    seen = node_weights(url)
                    if any(seen.get(t) != w for t, w in expected.items()):
                        failures += 1
                        print("node %s does not route with the weights after the task returned" % url, file=sys.stderr)
                print("change %2d to %5.1f %%: writes %3d, converged %.2f s %s" % (
                    index + 1, share, result["writes"], result["converged_seconds"],
                    json.dumps({u: n["seconds"] for u, n in result["balancers"].items()})))
        except split.SplitError as exc:
            print("a change did not converge: %s" % exc, file=sys.stderr)
            failures += 1
        finally:
            stop()
    print("\nKong %s, %s mode, %d proxy node(s), %d targets, %d changes (db_update_frequency %s)"
          % (args.engine, args.mode, len(balancers), args.targets, len(slowest), args.db_update_frequency or "default"))
    for url, values in per_node.items():
        print("  node %s: %s s" % (url, summary(values)))
    if slowest:
        print("  every node (the change converged): %s s" % summary(slowest))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
