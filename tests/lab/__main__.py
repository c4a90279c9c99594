"""python -m tests.lab up|down|status (see tests/lab/README.md)."""

import argparse
import json
import sys

from tests.lab.config import LabConfigError, default_state_dir
from tests.lab.lab import Lab, LabError, serve


def main(argv=None):
    """Command line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m tests.lab", description="The mixedrun.kong lab: Kong simulator, node fleet, "
                                     "Kubernetes API stand-in, HAProxy and Prometheus on loopback addresses.")
    parser.add_argument("--state-dir", default=None, help="state directory (default: $MIXEDRUN_LAB_DIR or <repo>/.lab)")
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start the lab in the background and print its JSON description")
    p_up.add_argument("--config", help="YAML file merged over tests/lab/default.yml")
    p_up.add_argument("--kong-nodes", type=int, help="number of Kong proxy nodes; hybrid: data planes (overrides kong.nodes)")
    p_up.add_argument("--kong-engine", choices=("auto", "real", "simulator"),
                      help="real Kong from the kit (../shared/realkong or $MIXEDRUN_REALKONG_KIT), the simulator, or auto: real where "
                           "the kit is present (overrides kong.engine)")
    p_up.add_argument("--kong-mode", choices=("traditional", "hybrid", "dbless"), help="Kong's deployment mode (overrides kong.mode)")
    p_up.add_argument("--k8s-engine", choices=("auto", "real", "standin"),
                      help="the real Kubernetes control plane from the kit (../shared/realk8s or $MIXEDRUN_REALK8S_KIT) with the lab as "
                           "kubelet, the API stand-in, or auto: real where the kit is present (overrides k8s.engine)")
    p_up.add_argument("--restart", action="store_true", help="stop a running lab first, even when it is healthy")
    sub.add_parser("down", help="stop everything the lab started")
    sub.add_parser("status", help="report each component (JSON); exit 0 up, 1 degraded, 3 down")
    sub.add_parser("lb-reload", help="reload HAProxy (SIGUSR2 to its master: it reads haproxy.cfg again, as a service reload does)")
    p_restart = sub.add_parser("kong-restart", help="restart one real Kong node (kong quit, then kong start; same ports and node id)")
    p_restart.add_argument("node", help="the node's name in lab.json kong_nodes (kong-1, dp-2, ...)")
    p_serve = sub.add_parser("serve", help=argparse.SUPPRESS)
    p_serve.add_argument("--state-dir", dest="serve_state_dir", required=True)
    p_kic = sub.add_parser("kic", help=argparse.SUPPRESS)
    p_kic.add_argument("--state-dir", dest="kic_state_dir", required=True)
    args = parser.parse_args(argv)

    lab = Lab(args.state_dir or default_state_dir())
    try:
        if args.command == "serve":
            serve(args.serve_state_dir)
            return 0
        if args.command == "kic":
            from tests.lab import kic  # pylint: disable=import-outside-toplevel
            return kic.main(args.kic_state_dir)
        if args.command == "up":
            if args.kong_nodes is not None and not 1 <= args.kong_nodes <= 16:
                raise LabConfigError("--kong-nodes: must be between 1 and 16, got %d" % args.kong_nodes)
            with lab.locked():
                info = lab.up(args.config, kong_nodes=args.kong_nodes, restart=args.restart, kong_engine=args.kong_engine,
                              kong_mode=args.kong_mode, k8s_engine=args.k8s_engine)
            if info.get("already_running"):
                print("lab already running in %s; reporting it (use --restart to start it again)" % lab.state_dir, file=sys.stderr)
            nodes = ", ".join("%s %s" % (n["name"], n["role"]) for n in info.get("kong_nodes") or [])
            print("lab up: Kong engine %s (%s mode, %s), Kubernetes %s (%s)"
                  % (info.get("kong_engine"), info.get("kong_mode"), nodes, info.get("k8s_engine"), info.get("k8s_version")), file=sys.stderr)
            print(json.dumps(info, indent=2))
            return 0
        if args.command == "lb-reload":
            from tests.lab import haproxy as lab_haproxy  # pylint: disable=import-outside-toplevel
            try:
                print(json.dumps({"worker_pid": lab_haproxy.reload(lab.state_dir)}))
            except (OSError, RuntimeError, ValueError) as exc:
                raise LabError("lb-reload: %s" % exc) from None
            return 0
        if args.command == "kong-restart":
            from tests.lab.realkong import RealKongError, restart_node  # pylint: disable=import-outside-toplevel
            try:
                print(json.dumps(restart_node(lab.state_dir, args.node)))
            except (OSError, RealKongError) as exc:
                raise LabError("kong-restart: %s" % exc) from None
            return 0
        if args.command == "down":
            with lab.locked():
                report = lab.down()
            print(json.dumps(report, indent=2))
            return 0
        report = lab.status()
        print(json.dumps(report, indent=2))
        return {"up": 0, "degraded": 1}.get(report["state"], 3)
    except (LabError, LabConfigError) as exc:
        print("lab %s failed: %s" % (args.command, exc), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
