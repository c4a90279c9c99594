"""Run the conformance suite against a fresh cluster of one engine and print a one-line summary.

    python -m tests.conformance.run --engine real|simulator --mode traditional|hybrid|dbless --nodes N

The cluster is started in a temporary state directory, described in a JSON document (``KONG_CONFORMANCE_JSON``),
the suite runs under pytest, and the cluster is stopped whatever happens. The last line printed is
``conformance <engine>/<mode>: N passed, M failed, K skipped``; the exit status is pytest's (0 when nothing failed).

The real engine is the realkong kit (``kong-cluster.sh``): its directory comes from ``--kit``, else
``MIXEDRUN_REALKONG_KIT``, else ``<repository>/../shared/realkong``.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SUITE = os.path.join(REPO, "tests", "conformance")


def default_kit():
    """The realkong kit directory (it may not exist)."""
    return os.environ.get("MIXEDRUN_REALKONG_KIT") or os.path.normpath(os.path.join(REPO, "..", "shared", "realkong"))


class RealCluster:
    """A realkong kit cluster in its own REALKONG_STATE."""

    def __init__(self, kit, state_dir, mode, nodes):
        self.script = os.path.join(kit, "kong-cluster.sh")
        self.env = dict(os.environ, REALKONG_STATE=state_dir)
        self.mode = mode
        self.nodes = nodes

    def start(self):
        """``kong-cluster.sh up``; returns its JSON document."""
        proc = subprocess.run([self.script, "up", "--mode", self.mode, "--nodes", str(self.nodes)], env=self.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False, text=True)
        if proc.returncode != 0:
            raise RuntimeError("kong-cluster.sh up failed (%d): %s" % (proc.returncode, proc.stderr[-2000:]))
        doc = json.loads(proc.stdout)
        doc["engine"] = "real"
        return doc

    def stop(self):
        """``kong-cluster.sh down`` (same state directory)."""
        subprocess.run([self.script, "down"], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


class SimulatorCluster:
    """A KongCluster of the lab's simulator."""

    def __init__(self, state_dir, mode, nodes, db_update_frequency):
        if mode == "hybrid":
            raise ValueError("the simulator has no hybrid mode")
        # imported here so that `--engine real` needs nothing of the lab
        from tests.lab.kong_sim.launcher import KongCluster  # pylint: disable=import-outside-toplevel
        self.cluster = KongCluster(state_dir, nodes=nodes, dbless=mode == "dbless", db_update_frequency=db_update_frequency,
                                   prometheus_metrics=None)

    def start(self):
        """Start the nodes; returns the kong-cluster.sh-shaped document."""
        from .adapter import cluster_document  # pylint: disable=import-outside-toplevel
        self.cluster.start(detach=True)
        return cluster_document(self.cluster)

    def stop(self):
        """Stop the nodes."""
        self.cluster.stop()


def counts(junit_path):
    """(passed, failed, skipped) from pytest's JUnit XML report (errors count as failed)."""
    try:
        root = ET.parse(junit_path).getroot()
    except (OSError, ET.ParseError):
        return 0, 0, 0
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    tests = failed = skipped = 0
    for suite in suites:
        tests += int(suite.get("tests", 0))
        failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0))
    return tests - failed - skipped, failed, skipped


def parse_args(argv=None):
    """Command line."""
    parser = argparse.ArgumentParser(prog="python -m tests.conformance.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=["real", "simulator"], required=True)
    parser.add_argument("--mode", choices=["traditional", "hybrid", "dbless"], default="traditional")
    parser.add_argument("--nodes", type=int, default=2, help="nodes (hybrid: data planes besides the control plane)")
    parser.add_argument("--kit", default=None, help="realkong kit directory (default: MIXEDRUN_REALKONG_KIT or ../shared/realkong)")
    parser.add_argument("--db-update-frequency", type=float, default=5.0, help="simulator only: seconds between a node's polls")
    parser.add_argument("--keep", action="store_true", help="keep the temporary state directory (logs, cluster.json)")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    return parser.parse_args(argv)


def main(argv=None):  # pylint: disable=too-many-locals
    """Start, test, stop; print the summary line; return pytest's exit status (or 2 when the cluster did not start)."""
    args = parse_args(argv)
    label = "conformance %s/%s" % (args.engine, args.mode)
    if args.engine == "simulator" and args.mode == "hybrid":
        print("%s: not run: the simulator has no hybrid mode" % label)
        return 0
    state = tempfile.mkdtemp(prefix="kong-conformance-")
    if args.engine == "real":
        kit = args.kit or default_kit()
        if not os.path.isfile(os.path.join(kit, "kong-cluster.sh")):
            print("%s: not run: no realkong kit at %s" % (label, kit))
            return 2
        cluster = RealCluster(kit, state, args.mode, args.nodes)
    else:
        cluster = SimulatorCluster(state, args.mode, args.nodes, args.db_update_frequency)
    status = 2
    try:
        try:
            doc = cluster.start()
        except Exception as exc:  # pylint: disable=broad-exception-caught  # reported on the summary line
            print("%s: cluster did not start: %s" % (label, exc))
            return 2
        doc_path = os.path.join(state, "conformance.json")
        with open(doc_path, "w", encoding="utf-8") as handle:
            json.dump(doc, handle, indent=2)
        junit = os.path.join(state, "junit.xml")
        env = dict(os.environ, KONG_CONFORMANCE_JSON=doc_path)
        env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        cmd = [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", "--junitxml", junit, SUITE] + args.pytest_args
        status = subprocess.run(cmd, cwd=REPO, env=env, check=False).returncode
        passed, failed, skipped = counts(junit)
        print("%s: %d passed, %d failed, %d skipped" % (label, passed, failed, skipped))
        return status
    finally:
        cluster.stop()
        if args.keep:
            print("state kept in %s" % state)
        else:
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
