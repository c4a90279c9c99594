"""``python -m tests.lab.kong_sim --state-db PATH --node-name kong-1 --admin-listen H:P --proxy-listen H:P``."""

import argparse
import asyncio
import logging
import os
import sys

from .node import Node, Options


def _listen(value):
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError("expected HOST:PORT with a port from 1 to 65535, got %r" % value)
    if not host.startswith("127."):
        raise argparse.ArgumentTypeError("the lab only listens on loopback addresses (127.0.0.0/8), got %r" % host)
    return host, int(port)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.lab.kong_sim", description=__doc__)
    parser.add_argument("--state-db", required=True, help="shared SQLite database file (created when missing)")
    parser.add_argument("--node-name", required=True, help="node name; its node_id is kept in the database across restarts")
    parser.add_argument("--admin-listen", required=True, type=_listen, help="Admin API listener HOST:PORT")
    parser.add_argument("--proxy-listen", required=True, type=_listen, help="proxy listener HOST:PORT")
    parser.add_argument("--status-listen", type=_listen, help="optional Status API listener (/status, /metrics, no auth)")
    parser.add_argument("--rbac-token", help="require this token on the Admin API (prefer the KONG_SIM_RBAC_TOKEN environment variable)")
    parser.add_argument("--rbac-header", default="Kong-Admin-Token", help="header carrying the RBAC token (Kong's rbac_auth_header)")
    parser.add_argument("--dbless", action="store_true", help="DB-less mode: Admin API writes answer 405 (load config with POST /config)")
    parser.add_argument("--workspace", action="append", default=[], help="workspace to create besides 'default' (repeatable)")
    parser.add_argument("--admin-ssl-cert", help="serve the Admin API over TLS with this certificate (PEM; Kong's admin_ssl_cert)")
    parser.add_argument("--admin-ssl-key", help="the private key of --admin-ssl-cert (PEM; Kong's admin_ssl_cert_key)")
    parser.add_argument("--admin-client-ca", help="require client certificates signed by this CA (PEM) on the Admin API: mutual TLS")
    parser.add_argument("--db-update-frequency", type=float, default=5.0,
                        help="seconds between polls for other nodes' changes (Kong's db_update_frequency, default 5)")
    parser.add_argument("--balancer-build-delay", type=float, default=1.0,
                        help="seconds before a node answers for a new upstream's balancer (Kong: about 1 s)")
    parser.add_argument("--prometheus-metrics", choices=["all", "plugin"], default="plugin",
                        help="all: every prometheus metric on, as if a global plugin enabled them; plugin: as prometheus plugin entities say")
    parser.add_argument("--log-file", help="log file (default: stderr)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    if bool(args.admin_ssl_cert) != bool(args.admin_ssl_key):
        parser.error("--admin-ssl-cert and --admin-ssl-key go together: give both, or neither for a plain HTTP Admin API")
    if args.admin_client_ca and not args.admin_ssl_cert:
        parser.error("--admin-client-ca needs --admin-ssl-cert and --admin-ssl-key (mutual TLS is TLS first)")
    if args.rbac_token is None and os.environ.get("KONG_SIM_RBAC_TOKEN"):
        args.rbac_token = os.environ["KONG_SIM_RBAC_TOKEN"]
    return args


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(filename=args.log_file, level=getattr(logging, args.log_level),
                        format="%(asctime)s " + args.node_name + " %(name)s %(levelname)s %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    options = Options(state_db=args.state_db, node_name=args.node_name, admin_listen=args.admin_listen, proxy_listen=args.proxy_listen,
                      status_listen=args.status_listen, rbac_token=args.rbac_token, rbac_header=args.rbac_header, dbless=args.dbless,
                      workspaces=args.workspace, log_file=args.log_file, admin_ssl_cert=args.admin_ssl_cert,
                      admin_ssl_key=args.admin_ssl_key, admin_client_ca=args.admin_client_ca,
                      db_update_frequency=args.db_update_frequency, balancer_build_delay=args.balancer_build_delay,
                      prometheus_metrics="all" if args.prometheus_metrics == "all" else None)

    async def run():
        node = Node(options)
        await node.run()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
