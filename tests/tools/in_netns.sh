#!/bin/sh
# Run a command in a private network namespace where all of 10.0.0.0/8 is local ("AnyIP" on the loopback device),
# so the lab (network: netns, tests/integration/lab-kic.yml) can bind 10.x addresses and list them in Kubernetes
# EndpointSlices (the API server refuses loopback addresses there) without translating anything.
#
#   tests/tools/in_netns.sh CMD [ARGS...]
#   e.g. tests/tools/in_netns.sh .venv/bin/python -m pytest tests/lab/tests/test_kic.py -q
#
# Inside: `lo` is up, `ip route add local 10.0.0.0/8 dev lo`, MIXEDRUN_NETNS=1 is exported. The namespace has no
# other interface: nothing outside the machine is reachable from it (nor is anything in it reachable from outside).
# As root it uses `unshare -n`; otherwise `unshare -rn` (a user namespace mapping you to root, where the kernel
# allows unprivileged user namespaces). Every process the command starts lives and dies in that namespace.
set -eu

if [ "$#" -eq 0 ]; then
    echo "usage: $0 CMD [ARGS...]  (runs CMD in a new network namespace where 10.0.0.0/8 is local)" >&2
    exit 2
fi
if [ "${MIXEDRUN_NETNS_INNER:-}" = "1" ]; then
    ip link set lo up
    ip route add local 10.0.0.0/8 dev lo
    unset MIXEDRUN_NETNS_INNER
    MIXEDRUN_NETNS=1
    export MIXEDRUN_NETNS
    exec "$@"
fi
for tool in unshare ip; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "$0: '$tool' is missing; install util-linux (unshare) and iproute2 (ip), e.g. apt-get install util-linux iproute2" >&2
        exit 127
    fi
done
if [ "$(id -u)" = "0" ]; then
    flags="-n"
else
    flags="-rn"
fi
MIXEDRUN_NETNS_INNER=1
export MIXEDRUN_NETNS_INNER
if ! unshare $flags true 2>/dev/null; then
    echo "$0: 'unshare $flags' is not allowed here (as non-root it needs unprivileged user namespaces:" \
         "sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces > 0); run as root or enable them" >&2
    exit 1
fi
exec unshare $flags "$0" "$@"
