#!/bin/sh
# Install the lab's system packages (Debian/Ubuntu): HAProxy (front load balancer), Prometheus (metrics) and
# wrk (optional load generator for the benchmark).
#
#   sudo tests/lab/install-deps.sh          install what is missing (runs `apt-get update` once, only if needed)
#   tests/lab/install-deps.sh --check       only report what is missing; exit 1 when something is
#
# Nothing else is downloaded: the lab's Python side uses the project's venv (tests/requirements.txt).
set -eu

CHECK_ONLY=0
case "${1:-}" in
    --check) CHECK_ONLY=1 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    "") ;;
    *) echo "install-deps.sh: unknown argument '$1' (use --check or nothing)" >&2; exit 2 ;;
esac

# command -> Debian package
missing=""
for pair in haproxy:haproxy prometheus:prometheus wrk:wrk; do
    cmd=${pair%%:*}
    pkg=${pair#*:}
    if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ] && [ ! -x "/usr/bin/$cmd" ]; then
        missing="$missing $pkg"
    fi
done

if [ -z "$missing" ]; then
    echo "install-deps.sh: haproxy, prometheus and wrk are installed"
    exit 0
fi

if [ "$CHECK_ONLY" -eq 1 ]; then
    echo "install-deps.sh: missing Debian packages:$missing (install with: sudo apt-get install -y$missing)" >&2
    exit 1
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps.sh: missing Debian packages:$missing" >&2
    echo "install-deps.sh: run as root (sudo $0) or install them yourself: sudo apt-get update && sudo apt-get install -y$missing" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-deps.sh: apt-get not found; install these packages with your system's package manager:$missing" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-deps.sh: installing:$missing"
apt-get update -qq
# --no-install-recommends: no prometheus-node-exporter etc.; the packaged services are not wanted either
# (the lab runs its own instances on loopback ports), see below.
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing

# The Debian packages start system services listening on all interfaces (haproxy: none by default,
# prometheus: :9090). The lab never uses them: stop and disable them when a service manager runs here.
for svc in prometheus haproxy; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
        systemctl stop "$svc" || true
        systemctl disable "$svc" || true
    elif command -v service >/dev/null 2>&1 && service "$svc" status >/dev/null 2>&1; then
        service "$svc" stop || true
    fi
done
echo "install-deps.sh: done"
