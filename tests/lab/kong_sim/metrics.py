"""Kong's Prometheus plugin metrics (``/metrics``) for one node, in the plugin's text format."""

from .balancer import DNS_ERROR, HEALTHCHECKS_OFF, HEALTHY, UNHEALTHY

# kong/plugins/prometheus/exporter.lua DEFAULT_BUCKETS
BUCKETS = (1, 2, 5, 7, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 100, 200, 300, 400, 500, 1000, 2000, 5000, 10000, 30000, 60000)
# nginx-lua-prometheus pads bucket bounds to the widest one ("00001.0" ... "60000.0")
LE = ["%07.1f" % b for b in BUCKETS] + ["+Inf"]
STATES = ((HEALTHCHECKS_OFF, "healthchecks_off"), (HEALTHY, "healthy"), (UNHEALTHY, "unhealthy"), (DNS_ERROR, "dns_error"))


def _esc(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names, values):
    return ",".join('%s="%s"' % (n, _esc(v)) for n, v in zip(names, values))


class Histogram:
    __slots__ = ("counts", "total", "count")

    def __init__(self):
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0
        self.count = 0

    def observe(self, value):
        for i, bound in enumerate(BUCKETS):
            if value <= bound:
                self.counts[i] += 1
                break
        else:
            self.counts[-1] += 1
        self.total += value
        self.count += 1


class Metrics:
    """Counters of one node (a real Kong node also keeps its own)."""

    def __init__(self, options=lambda: {"status_code_metrics", "latency_metrics", "upstream_health_metrics"}):
        # ``options()``: None without a prometheus plugin, else the metric options that are on (Kong: all off by default)
        self.options = options
        self.requests = {}
        self.request_latency = {}
        self.upstream_latency = {}

    def record(self, service, route, code, source, workspace, latency_ms, upstream_ms=None):
        """Count one proxied request (as far as the prometheus plugin's options say)."""
        options = self.options() or ()
        if "status_code_metrics" in options:
            key = (service, route, str(code), source, workspace, "")
            self.requests[key] = self.requests.get(key, 0) + 1
        if (not service and not route) or "latency_metrics" not in options:
            return
        hkey = (service, route, workspace)
        hist = self.request_latency.get(hkey)
        if hist is None:
            hist = self.request_latency[hkey] = Histogram()
        hist.observe(latency_ms)
        if upstream_ms is not None:
            hist = self.upstream_latency.get(hkey)
            if hist is None:
                hist = self.upstream_latency[hkey] = Histogram()
            hist.observe(upstream_ms)

    @staticmethod
    def _histogram(lines, name, help_text, data):
        lines.append("# HELP %s %s" % (name, help_text))
        lines.append("# TYPE %s histogram" % name)
        for key in sorted(data):
            hist = data[key]
            base = _labels(("service", "route", "workspace"), key)
            running = 0
            for le, count in zip(LE, hist.counts):
                running += count
                lines.append('%s_bucket{%s,le="%s"} %d' % (name, base, le, running))
            lines.append("%s_count{%s} %d" % (name, base, hist.count))
            lines.append("%s_sum{%s} %s" % (name, base, _num(hist.total)))

    def render(self, node):
        """The /metrics text: node info always; the rest as the prometheus plugin's options say."""
        lines = ["# HELP kong_datastore_reachable Datastore reachable from Kong, 0 is unreachable",
                 "# TYPE kong_datastore_reachable gauge", "kong_datastore_reachable 1"]
        options = self.options()
        if options is None:
            self._node_info(lines, node)
            return "\n".join(lines) + "\n"
        if "status_code_metrics" in options:
            self._requests(lines)
        if "latency_metrics" in options:
            self._histogram(lines, "kong_request_latency_ms", "Total latency incurred during requests for each service/route in Kong",
                            self.request_latency)
            self._histogram(lines, "kong_upstream_latency_ms", "Latency added by upstream response for each service/route in Kong",
                            self.upstream_latency)
        lines.append("# HELP kong_nginx_metric_errors_total Number of nginx-lua-prometheus errors")
        lines.append("# TYPE kong_nginx_metric_errors_total counter")
        lines.append("kong_nginx_metric_errors_total 0")
        self._node_info(lines, node)
        if "upstream_health_metrics" in options:
            self._target_health(lines, node)
        return "\n".join(lines) + "\n"

    def _requests(self, lines):
        lines.append("# HELP kong_http_requests_total HTTP status codes per consumer/service/route in Kong")
        lines.append("# TYPE kong_http_requests_total counter")
        for key in sorted(self.requests):
            lines.append("kong_http_requests_total{%s} %d" % (
                _labels(("service", "route", "code", "source", "workspace", "consumer"), key), self.requests[key]))

    @staticmethod
    def _node_info(lines, node):
        lines.append("# HELP kong_node_info Kong Node metadata information")
        lines.append("# TYPE kong_node_info gauge")
        lines.append('kong_node_info{node_id="%s",version="3.9.1"} 1' % node.node_id)

    @staticmethod
    def _target_health(lines, node):
        lines.append("# HELP kong_upstream_target_health Health status of targets of upstream. States = healthchecks_off|healthy|unhealthy|dns_error, "
                     "value is 1 when state is populated.")
        lines.append("# TYPE kong_upstream_target_health gauge")
        for balancer in sorted(node.built_balancers(), key=lambda b: b.upstream["name"]):
            for target in sorted(balancer.targets, key=lambda t: t.entity["target"]):
                state, data = balancer.target_health(target)
                addresses = data["addresses"] or [{"ip": "", "port": "", "health": state}]
                for addr in addresses:
                    if addr["ip"] == "":
                        address = ""
                    elif ":" in addr["ip"]:
                        address = "[%s]:%s" % (addr["ip"], addr["port"])
                    else:
                        address = "%s:%s" % (addr["ip"], addr["port"])
                    current = addr["health"] if state != DNS_ERROR else DNS_ERROR
                    for upper, lower in STATES:
                        labels = _labels(("upstream", "target", "address", "state", "subsystem"),
                                         (balancer.upstream["name"], target.entity["target"], address, lower, "http"))
                        lines.append("kong_upstream_target_health{%s} %d" % (labels, 1 if current == upper else 0))


def _num(value):
    return ("%d" % value) if float(value).is_integer() else ("%.3f" % value)
