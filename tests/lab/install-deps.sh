#!/bin/sh
# Install the system packages the lab and the test suite use (Debian/Ubuntu):
#   required: HAProxy (front load balancer), Prometheus (metrics);
#   optional: wrk (load generator for the proxy benchmark), shellcheck (ansible-test's shellcheck sanity test).
#
#   sudo tests/lab/install-deps.sh          install what is missing (runs `apt-get update` once, only if needed)
#   tests/lab/install-deps.sh --check       only report what is missing; exit 1 when a required one is
#
# As root, every missing package is installed. Without root, a missing required package is an error and a
# missing optional one a warning. Nothing else is downloaded: the Python side uses the project's venv.
set -eu

CHECK_ONLY=0
case "${1:-}" in
    --check) CHECK_ONLY=1 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    "") ;;
    *) echo "install-deps.sh: unknown argument '$1' (use --check or nothing)" >&2; exit 2 ;;
esac

have() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]
}

# command:Debian package
missing_required=""
for pair in haproxy:haproxy prometheus:prometheus; do
    have "${pair%%:*}" || missing_required="$missing_required ${pair#*:}"
done
missing_optional=""
for pair in wrk:wrk shellcheck:shellcheck; do
    have "${pair%%:*}" || missing_optional="$missing_optional ${pair#*:}"
done
missing="$missing_required$missing_optional"

if [ -z "$missing" ]; then
    echo "install-deps.sh: haproxy, prometheus, wrk and shellcheck are installed"
    exit 0
fi

if [ "$CHECK_ONLY" -eq 1 ] || [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    if [ -n "$missing_optional" ]; then
        echo "install-deps.sh: optional Debian packages missing:$missing_optional (the proxy benchmark falls back to Python; ansible-test skips shellcheck)" >&2
    fi
    if [ -z "$missing_required" ]; then
        exit 0
    fi
    echo "install-deps.sh: missing Debian packages:$missing_required" >&2
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install-deps.sh: apt-get not found; install them with your system's package manager" >&2
    else
        echo "install-deps.sh: run as root (sudo $0) or install them yourself: sudo apt-get update && sudo apt-get install -y$missing_required" >&2
    fi
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
