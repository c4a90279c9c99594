"""Per-node load balancing and target health, modelled on Kong's balancer and lua-resty-healthcheck.

* Weighted round-robin: smooth (interleaved) WRR over the available addresses; weight 0 gets nothing.
* Health: one state per (upstream, target, ip, port) on this node. Successes and failures are counted as
  lua-resty-healthcheck does (a success resets the failure counters and vice versa; a threshold of 0 never
  trips); manual ``PUT .../healthy|unhealthy`` sets the state directly.
* ``/health`` rules: HEALTHCHECKS_OFF when checks are off or the weight is 0, DNS_ERROR when the name did
  not resolve, otherwise HEALTHY while at least one address is healthy.
"""

import socket

from .schema import healthchecks_on

HEALTHY = "HEALTHY"
UNHEALTHY = "UNHEALTHY"
HEALTHCHECKS_OFF = "HEALTHCHECKS_OFF"
DNS_ERROR = "DNS_ERROR"


class AddressHealth:
    """Health state and counters of one address of one target on this node."""

    __slots__ = ("healthy", "successes", "http_failures", "tcp_failures", "timeouts", "last_check")

    def __init__(self):
        self.healthy = True
        self.successes = 0
        self.http_failures = 0
        self.tcp_failures = 0
        self.timeouts = 0
        self.last_check = 0.0

    def reset(self):
        self.successes = self.http_failures = self.tcp_failures = self.timeouts = 0

    def set(self, healthy):
        changed = self.healthy != healthy
        self.healthy = healthy
        self.reset()
        return changed

    def success(self, threshold):
        """Count a success; returns True when the address turned healthy."""
        self.http_failures = self.tcp_failures = self.timeouts = 0
        if self.healthy:
            return False
        self.successes += 1
        if threshold and self.successes >= threshold:
            return self.set(True)
        return False

    def failure(self, kind, threshold):
        """Count a failure of ``kind`` (http_failures, tcp_failures, timeouts); True when it turned unhealthy."""
        self.successes = 0
        if not self.healthy:
            return False
        value = getattr(self, kind) + 1
        setattr(self, kind, value)
        if threshold and value >= threshold:
            return self.set(False)
        return False


class Address:
    """One resolved address of a target (what the balancer hands out)."""

    __slots__ = ("ip", "port", "weight", "target", "health", "current")

    def __init__(self, ip, port, weight, target, health):
        self.ip = ip
        self.port = port
        self.weight = weight
        self.target = target
        self.health = health
        self.current = 0

    @property
    def hostport(self):
        return "[%s]:%d" % (self.ip, self.port) if ":" in self.ip else "%s:%d" % (self.ip, self.port)

    @property
    def available(self):
        return self.weight > 0 and self.health.healthy


class Target:
    """A target entity on this node: its host, port, weight and resolved addresses."""

    def __init__(self, entity, host, port, dns, addresses):
        self.entity = entity
        self.host = host
        self.port = port
        self.dns = dns
        self.addresses = addresses

    @property
    def weight(self):
        return self.entity["weight"]


def split_hostport(target):
    """``host:port`` / ``[v6]:port`` -> (host, port)."""
    if target.startswith("["):
        host, _unused, port = target[1:].partition("]:")
        return host, int(port)
    host, _unused, port = target.rpartition(":")
    return host, int(port)


def ip_kind(host):
    try:
        socket.inet_pton(socket.AF_INET, host)
        return "A"
    except OSError:
        pass
    try:
        socket.inet_pton(socket.AF_INET6, host)
        return "AAAA"
    except OSError:
        return None


class Balancer:
    """The balancer of one upstream on one node."""

    def __init__(self, upstream, targets):
        self.upstream = upstream
        self.targets = targets
        self.addresses = [a for t in targets for a in t.addresses]
        self.target_by_name = {t.entity["target"]: t for t in targets}
        checks = upstream.get("healthchecks") or {}
        self.active = checks.get("active") or {}
        self.passive = checks.get("passive") or {}
        self.threshold = checks.get("threshold") or 0
        self.checks_on = healthchecks_on(upstream)
        self.seen_at = 0.0          # when this node first saw the upstream (node.balancer_for)

    # -- picking -------------------------------------------------------------------------------------------

    def weights(self):
        total = sum(a.weight for a in self.addresses)
        available = sum(a.weight for a in self.addresses if a.available)
        return total, available

    def balancer_healthy(self):
        total, available = self.weights()
        if total == 0:
            return False
        return available * 100.0 / total >= self.threshold and available > 0

    def pick(self, avoid=()):
        """Smooth weighted round-robin over available addresses; ``avoid`` is skipped while others exist."""
        peers = [a for a in self.addresses if a.available]
        if not peers:
            return None
        if self.threshold:
            total, available = self.weights()
            if available * 100.0 / total < self.threshold:
                return None
        if avoid:
            others = [a for a in peers if a not in avoid]
            if others:
                peers = others
        best = None
        total = 0
        for peer in peers:
            peer.current += peer.weight
            total += peer.weight
            if best is None or peer.current > best.current:
                best = peer
        best.current -= total
        return best

    # -- passive health --------------------------------------------------------------------------------------

    def report_status(self, address, status):
        healthy = self.passive.get("healthy") or {}
        unhealthy = self.passive.get("unhealthy") or {}
        if status in (unhealthy.get("http_statuses") or ()):
            return address.health.failure("http_failures", unhealthy.get("http_failures"))
        if status in (healthy.get("http_statuses") or ()):
            return address.health.success(healthy.get("successes"))
        return False

    def report_failure(self, address, kind, active=False):
        unhealthy = (self.active if active else self.passive).get("unhealthy") or {}
        return address.health.failure(kind, unhealthy.get(kind))

    # -- /health ---------------------------------------------------------------------------------------------

    def target_health(self, target):
        data = {"host": target.host, "port": target.port, "dns": target.dns, "nodeWeight": target.weight,
                "addresses": []}
        available = 0
        for addr in target.addresses:
            if self.checks_on and target.weight > 0:
                health = HEALTHY if addr.health.healthy else UNHEALTHY
            else:
                health = HEALTHCHECKS_OFF
            if addr.available:
                available += addr.weight
            data["addresses"].append({"ip": addr.ip, "port": addr.port, "weight": addr.weight, "health": health})
        total = sum(a.weight for a in target.addresses)
        data["weight"] = {"total": total, "available": available, "unavailable": total - available}
        if not target.addresses:
            state = DNS_ERROR
        elif not self.checks_on or target.weight == 0:
            state = HEALTHCHECKS_OFF
        elif any(a.health.healthy for a in target.addresses):
            state = HEALTHY
        else:
            state = UNHEALTHY
        return state, data

    def balancer_health(self):
        total, available = self.weights()
        healthy = self.balancer_healthy()
        return {
            "id": self.upstream["id"],
            "health": (HEALTHY if healthy else UNHEALTHY) if self.checks_on else HEALTHCHECKS_OFF,
            "balancer_health": HEALTHY if healthy else UNHEALTHY,
            "details": {"healthy": healthy, "weight": {"total": total, "available": available, "unavailable": total - available},
                        "hosts": [self._host_details(t) for t in self.targets]},
        }

    def _host_details(self, target):
        _state, data = self.target_health(target)
        addresses = [{"ip": a.ip, "port": a.port, "weight": a.weight, "healthy": a.health.healthy} for a in target.addresses]
        return {"host": data["host"], "port": data["port"], "dns": data["dns"], "nodeWeight": data["nodeWeight"],
                "weight": data["weight"], "addresses": addresses}
