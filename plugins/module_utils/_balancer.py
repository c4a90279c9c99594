# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What each Kong node's balancer routes with, as opposed to what the database holds.

Kong 3.9 facts this follows (verified on real Kong 3.9.3 clusters, see docs/architecture.md):

* Every traditional node's Admin API reads the shared database, so ``/upstreams/{u}/targets`` shows a write on every
  node at once, while each node's balancer follows on its own: after the node's next cluster-event poll
  (``db_update_frequency``, 5 s by default) and an asynchronous rebuild.
* ``/upstreams/{u}/health`` lists the database's targets and adds, from *this node's* balancer, ``health`` and
  ``data`` (``data.nodeWeight``: the weight the balancer uses; ``data.addresses``: one entry per resolved address).
  A target the balancer does not hold yet (or every target, while the node has no balancer for the upstream, and
  always on a hybrid control plane, which runs none) comes without ``health`` and ``data``.
* Data planes have no Admin API; their Status API (``status_listen``) serves the same read-only
  ``/upstreams/{u}/health`` from their own balancer.

Pure helpers plus one polling loop; the clients are ``KongClient`` objects pointed at an Admin API or a Status API.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.mixedrun.kong.plugins.module_utils._kong_api import KongApiError
from ansible_collections.mixedrun.kong.plugins.module_utils._targets import target_key

POLL_INTERVAL = 0.25
# A data plane the control plane saw within this many seconds counts as connected (Kong pings every 30 s).
DATA_PLANE_FRESH = 90


class BalancerError(Exception):
    """A node's balancer cannot be read or does not follow in time; ``result`` holds what is known."""

    def __init__(self, message, result=None):
        super(BalancerError, self).__init__(message)
        self.result = result or {}


def read_balancer(client, upstream):
    """(node_id, {target: {"weight": balancer weight, "addresses": n, "healthy": [bool per address]}}) from one
    node's balancer as a whole (``/upstreams/{upstream}/health?balancer_health=1``: ``details.hosts``, every target the
    balancer holds, weight-0 ones included). A target the balancer does not hold is absent; so is every target while
    the node has no balancer for the upstream (Kong answers without ``data`` then).

    The per-target listing (``/upstreams/{u}/health``) is not used for this: on a DB-less node (a data plane's Status
    API) Kong 3.9.3 lists at most 100 targets of an upstream, with no next page, while its balancer holds them all."""
    answer = client.request("GET", "/upstreams/%s/health" % client.quote(upstream), params={"balancer_health": 1}) or {}
    view = {}
    for host in ((answer.get("data") or {}).get("details") or {}).get("hosts") or []:
        try:
            key = target_key("%s:%s" % (host["host"], host["port"]))
        except (KeyError, ValueError):
            continue
        addresses = host.get("addresses") or []
        view[key] = {"weight": host.get("nodeWeight"), "addresses": len(addresses),
                     "healthy": [bool(a.get("healthy")) for a in addresses]}
    return answer.get("node_id"), view


def health_from_balancer(client, upstream):
    """{target: (health, balancer weight)} from the balancer's details: HEALTHCHECKS_OFF for every target when the
    upstream is not health-checked, else HEALTHY / UNHEALTHY from its addresses. For the targets a DB-less node's
    per-target listing leaves out (it lists at most 100)."""
    answer = client.request("GET", "/upstreams/%s/health" % client.quote(upstream), params={"balancer_health": 1}) or {}
    data = answer.get("data") or {}
    out = {}
    for host in (data.get("details") or {}).get("hosts") or []:
        try:
            key = target_key("%s:%s" % (host["host"], host["port"]))
        except (KeyError, ValueError):
            continue
        if data.get("health") == "HEALTHCHECKS_OFF" or not host.get("nodeWeight"):
            health = "HEALTHCHECKS_OFF"
        else:
            health = "HEALTHY" if all(a.get("healthy") for a in host.get("addresses") or []) else "UNHEALTHY"
        out[key] = (health, host.get("nodeWeight"))
    return out


def lagging(view, expected):
    """{target: what the balancer shows} for the targets of ``expected`` ({target: weight}) it does not route with."""
    out = {}
    for key, weight in expected.items():
        seen = (view.get(key) or {}).get("weight")
        if seen != weight:
            out[key] = seen
    return out


def describe_lag(lag, expected, limit=6):
    """'a routes with 10, planned 20; b not in the balancer yet, planned 5; ...'."""
    parts = []
    for key, seen in sorted(lag.items())[:limit]:
        parts.append("%s %s, planned %d" % (key, "not in the balancer yet" if seen is None else "routes with %s" % seen, expected[key]))
    return "; ".join(parts) + ("; ..." if len(lag) > limit else "")


def wait_balancers(nodes, upstream, expected, timeout, started=None, clock=time.monotonic, sleep=time.sleep):
    """Poll every node's balancer until each routes ``upstream`` with ``expected`` ({target: weight}).

    ``nodes``: [(url, client)]. ``started``: the ``clock()`` value the wait is measured from (the end of the writes;
    default now). Returns {url: {"node_id": id, "seconds": seconds from ``started`` until the node followed}}.
    Raises BalancerError naming every node still behind, and what it routes with, after ``timeout`` seconds.
    """
    started = clock() if started is None else started
    deadline = started + timeout
    pending = list(nodes)
    followed = {}
    last_lag = {}
    while True:
        still = []
        for url, client in pending:
            try:
                node_id, view = read_balancer(client, upstream)
            except KongApiError as exc:
                if exc.status == 404:
                    # a data plane that has not received the new upstream yet: behind, not broken
                    node_id, view = None, {}
                    last_lag[url] = lagging(view, expected)
                    still.append((url, client))
                    continue
                raise BalancerError("cannot read the balancer of upstream %s on the Kong node at %s: %s"
                                    % (upstream, url, exc.describe()), {"balancers": followed, "kong_error": exc.as_dict()})
            lag = lagging(view, expected)
            if lag:
                last_lag[url] = lag
                still.append((url, client))
            else:
                followed[url] = {"node_id": node_id, "seconds": round(max(0.0, clock() - started), 2)}
        pending = still
        if not pending:
            return followed
        if clock() >= deadline:
            behind = ["%s (%s)" % (url, describe_lag(last_lag[url], expected)) for url, _client in pending]
            raise BalancerError("%d of %d Kong node(s) still route upstream %s with other weights %.1f s after the change: %s. "
                                "Each node's balancer follows a change at its next cluster-event poll (db_update_frequency, "
                                "5 s by default) or, in hybrid mode, when the data plane receives the new configuration; "
                                "raise verify_timeout if your nodes are slower, or check the lagging node's error.log"
                                % (len(pending), len(nodes), upstream, clock() - started, "; ".join(behind)), {"balancers": followed})
        sleep(POLL_INTERVAL)


def snapshot_balancers(nodes, upstream, expected):
    """One read of every node's balancer (no wait): {url: {"node_id", "follows": bool, "lagging": {target: seen}}}."""
    out = {}
    for url, client in nodes:
        try:
            node_id, view = read_balancer(client, upstream)
        except KongApiError as exc:
            if exc.status == 404:              # the node does not know the upstream yet
                out[url] = {"node_id": None, "follows": not expected, "lagging": lagging({}, expected)}
                continue
            raise BalancerError("cannot read the balancer of upstream %s on the Kong node at %s: %s"
                                % (upstream, url, exc.describe()), {"kong_error": exc.as_dict()})
        lag = lagging(view, expected)
        out[url] = {"node_id": node_id, "follows": not lag, "lagging": lag}
    return out


def connected_data_planes(planes, now):
    """The data planes of ``/clustering/data-planes`` the control plane heard from lately (``last_seen``)."""
    return [p for p in planes if now - (p.get("last_seen") or 0) <= DATA_PLANE_FRESH]
