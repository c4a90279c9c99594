#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: rollout_gate
short_description: Evaluate a rollout step's health gates over a hold window, with a failure budget
version_added: 1.0.0
description:
  - Holds the current traffic split for O(hold) seconds and evaluates the gates every O(interval) seconds.
    Every gate of one evaluation runs concurrently. With O(hold=0) the gates are evaluated once (for example
    to probe every container node directly before it gets its first traffic; Kong does not health-check
    weight-0 targets).
  - "Gates: O(kong_health): no container target is C(UNHEALTHY) or C(DNS_ERROR) in C(/upstreams/{upstream}/health)
    on every Kong node given (a container target the node does not list fails; one it lists without health, as a
    node without a balancer for the upstream does, is no data under O(no_data), never healthy; C(HEALTHCHECKS_OFF)
    for a container target with weight while the upstream has health checks configured is inconclusive; with health
    checks off the gate passes with a warning that it sees nothing; a node still catching up with the last change is
    read again for O(kong_health.settle) seconds; a hybrid control plane is refused: read the data planes through
    O(kong_health.balancer_urls)); O(probes): a direct HTTP request to every container node (path, expected status,
    timeout); O(prometheus): instant queries compared with thresholds (for example a 5xx ratio or a p99 latency)
    with a declared no-data policy; O(traffic): N requests through the gateway with the domain's Host header and
    a success-ratio threshold."
  - Each evaluation is C(pass), C(fail) or C(inconclusive) (a query without data under the V(inconclusive) policy).
    A failed evaluation holds the weight and counts against the failure budget (O(max_failures) in total,
    O(max_consecutive_failures) in a row). The step passes when the last evaluation at or after the end of the
    window passes. The task fails with C(decision=rollback) when the budget is spent, with
    C(decision=inconclusive) after O(inconclusive_limit) inconclusive evaluations in a row (hold, ask a human),
    and with C(decision=lock_lost) when O(lock) is given and another owner holds the rollout lock (checked before
    the hold and again after a passed one). The message names the gate, its measured value and its threshold.
  - Every gate result is returned with its measured value and threshold, for the rollout report. A result without a
    value (a query without data, a Kong node listing no health) is marked C(no_data) and every gate that measured
    nothing at some evaluation is named in a C(NO DATA) warning, whatever its no_data policy counted it as (a gate
    that passes by O(no_data=pass) measured nothing and guarded nothing).
  - In check mode the gates are evaluated once, without holding, and the lock is not refreshed.
  - The task never reports a change; refreshing the lock's expiry is bookkeeping of the rollout.
author:
  - mixedrun.kong maintainers (@mixedrun)
extends_documentation_fragment:
  - mixedrun.kong.kong
  - mixedrun.kong.kong.ATTRIBUTES
  - mixedrun.kong.kic_binding
attributes:
  check_mode:
    description: Evaluates once without holding; writes nothing.
    support: full
  diff_mode:
    description: Nothing to show.
    support: none
options:
  upstream:
    description: Name or id of the upstream whose container targets are checked.
    type: str
    required: true
  container_tag:
    description: Tag that marks the container targets of the upstream.
    type: str
    default: mixedrun-kind:container
  container_targets:
    description:
      - The container targets (C(host:port)) to check, instead of those carrying O(container_tag).
    type: list
    elements: str
  hold:
    description: Seconds to hold the current split while evaluating. V(0) evaluates once at once.
    type: float
    default: 0
  interval:
    description:
      - Seconds between evaluations inside the hold window (the last one is at the end of the window), and between
        re-evaluations while a failing or inconclusive gate holds the weight (1 s when V(0)).
    type: float
    default: 10
  max_failures:
    description: Roll back when this many evaluations of the run have failed (counting O(failures_before)).
    type: int
    default: 3
  max_consecutive_failures:
    description: Roll back when this many evaluations in a row have failed (counting O(consecutive_before)).
    type: int
    default: 2
  failures_before:
    description: Failed evaluations of earlier steps of this run (the budget spans the whole run).
    type: int
    default: 0
  consecutive_before:
    description: Failed evaluations in a row at the end of the previous step.
    type: int
    default: 0
  inconclusive_limit:
    description: Stop with C(decision=inconclusive) after this many inconclusive evaluations in a row.
    type: int
    default: 3
  no_data:
    description:
      - What a Prometheus query without data (empty result, NaN, Prometheus unreachable) means, unless the query
        sets its own O(prometheus.queries[].no_data).
      - V(fail) counts as a failed check, V(pass) as a passed one, V(inconclusive) holds the weight and pauses.
    type: str
    choices: [fail, pass, inconclusive]
    default: fail
  step_label:
    description: How the step is named in messages, for example V(step 3 of 7 (25%\)).
    type: str
  kong_health:
    description: Kong's own view of the container targets (active/passive health checks).
    type: dict
    default: {}
    suboptions:
      enabled:
        description: Evaluate this gate.
        type: bool
        default: true
      admin_urls:
        description:
          - Admin API URL of every Kong node to ask (health is per node). Defaults to O(admin_url). The connection
            options (token, TLS) apply to each.
          - A hybrid-mode control plane runs no balancer and reports no health (it lists the targets without
            C(health)), so the task refuses it here; give O(kong_health.balancer_urls) instead.
        type: list
        elements: str
      balancer_urls:
        description:
          - Where each Kong proxy node's own balancer, and so its health, can be read (C(/upstreams/{u}/health)),
            in hybrid mode the Status API (C(status_listen)) of every data plane. When set, health is read from
            these instead of O(kong_health.admin_urls); no admin token is sent to them.
        type: list
        elements: str
      settle:
        description:
          - Seconds from the gate's start during which a node still catching up with the last change is read again
            instead of judged (a target without health because the node has no balancer yet, V(DNS_ERROR) while a
            new target resolves, V(HEALTHCHECKS_OFF) with weight while checks are configured and its health checker
            starts). After that they are judged as they are; a target without health is no data (O(no_data)),
            never healthy.
        type: float
        default: 10
      unhealthy_states:
        description: Health states that fail the gate.
        type: list
        elements: str
        default: [UNHEALTHY, DNS_ERROR]
  probes:
    description: Direct HTTP probes of every container node, all at once.
    type: dict
    default: {}
    suboptions:
      enabled:
        description: Evaluate this gate.
        type: bool
        default: false
      targets:
        description:
          - C(host:port) or full URLs to probe; defaults to the container targets of the upstream.
        type: list
        elements: str
      scheme:
        description: Scheme used with C(host:port) targets.
        type: str
        choices: [http, https]
        default: http
      path:
        description: Path requested on each node.
        type: str
        default: /
      expected_status:
        description: Statuses that count as healthy.
        type: list
        elements: int
        default: [200]
      timeout:
        description: Seconds to wait for each node.
        type: float
        default: 2
      host_header:
        description: Host header to send (the domain), when the nodes route by it.
        type: str
      validate_certs:
        description: Verify TLS certificates of C(https) probes.
        type: bool
        default: true
      concurrency:
        description: Probes in flight at once.
        type: int
        default: 32
  prometheus:
    description: Prometheus instant queries with thresholds.
    type: dict
    suboptions:
      url:
        description: Base URL of Prometheus, for example V(http://prometheus:9090).
        type: str
        required: true
      queries:
        description: The queries; each needs at least one of O(prometheus.queries[].min) and O(prometheus.queries[].max).
        type: list
        elements: dict
        required: true
        suboptions:
          name:
            description: Name of the gate in results and messages.
            type: str
            required: true
          query:
            description: PromQL instant query. Every series of the answer must be within the threshold.
            type: str
            required: true
          min:
            description: Lowest acceptable value.
            type: float
          max:
            description: Highest acceptable value.
            type: float
          no_data:
            description: Overrides O(no_data) for this query.
            type: str
            choices: [fail, pass, inconclusive]
      timeout:
        description: Seconds to wait for Prometheus.
        type: float
        default: 5
      headers:
        description: Extra headers (for example an C(Authorization) header); treated as secrets.
        type: dict
      validate_certs:
        description: Verify Prometheus' TLS certificate.
        type: bool
        default: true
      require_series:
        description:
          - Before the first evaluation, check that every metric each query reads has at least one series in
            Prometheus (C(/api/v1/series), the last hour). A query on a metric that does not exist can never see data
            (for example Kong's C(kong_http_requests_total) while the prometheus plugin's C(status_code_metrics) is
            off, the default); the task then fails before anything is held or changed, naming the query, the metric
            and what to switch on. Queries with C(absent()) are not checked.
        type: bool
        default: true
      check_only:
        description:
          - Only run the O(prometheus.require_series) check, evaluate no query (the rollout role's pre-flight check,
            before the containers carry any traffic).
        type: bool
        default: false
  traffic:
    description: Probe traffic through the gateway with the domain's Host header.
    type: dict
    suboptions:
      url:
        description: Base URL of the gateway (Kong's proxy or the load balancer in front of it).
        type: str
        required: true
      host:
        description: Host header (the service's domain).
        type: str
      path:
        description: Path requested.
        type: str
        default: /
      requests:
        description: Number of requests per evaluation.
        type: int
        default: 20
      concurrency:
        description: Requests in flight at once.
        type: int
        default: 5
      timeout:
        description: Seconds to wait for each request.
        type: float
        default: 5
      expected_status:
        description: Statuses that count as success; default any 2xx or 3xx.
        type: list
        elements: int
      min_success_ratio:
        description: Lowest acceptable share of successful requests, from 0 to 1.
        type: float
        default: 0.99
      validate_certs:
        description: Verify the gateway's TLS certificate.
        type: bool
        default: true
  lock:
    description:
      - The rollout lock to verify and refresh before holding (see M(mixedrun.kong.kong_rollout_lock)). When another
        owner holds it, the task fails at once with C(decision=lock_lost) and nothing is evaluated.
      - After a passed hold the lock is verified and refreshed again (O(lock.ttl) from then), so the next weight
        change of the rollout follows a fresh check; a lock lost during the hold fails with C(decision=lock_lost).
      - A refresh is a C(PATCH) of the lock consumer by its id; it never writes the upstream, so it costs the proxy
        path nothing (no balancer rebuild, no health checker restart).
    type: dict
    suboptions:
      owner:
        description: The owner that must hold the lock.
        type: str
        required: true
      ttl:
        description: Seconds the refreshed lock stays valid after the hold window ends.
        type: float
        default: 1800
  share_guard:
    description:
      - With O(binding=kubernetes), the share the step planned. KIC divides each backendRef's weight over the Service's ready
        endpoints, so a pod added or removed during the hold changes the share; at every evaluation a gate named C(share)
        reads the endpoint counts and the live weights and, when KIC's division gives a share more than O(share_guard.max_error)
        points from O(share_guard.share), writes the weights again (reported with C(corrected=true) and a warning). It fails
        when the weights cannot be written (for example another field manager owns them).
    type: dict
    suboptions:
      share:
        description: The planned container share in percent (a number or an exact fraction text such as V(100/7)).
        type: raw
        required: true
      max_error:
        description: Largest allowed drift in percentage points before the weights are written again.
        type: float
        default: 0.05
seealso:
  - module: mixedrun.kong.kong_traffic_split
  - module: mixedrun.kong.kong_rollout_lock
"""

EXAMPLES = r"""
- name: Probe every container node directly before the first step
  mixedrun.kong.rollout_gate:
    upstream: shop
    kong_health:
      enabled: false
    probes:
      enabled: true
      path: /healthz

- name: Hold 25 % for 10 minutes and check every 30 s
  mixedrun.kong.rollout_gate:
    admin_url: http://kong-1:8001
    upstream: shop
    hold: 600
    interval: 30
    max_failures: 3
    max_consecutive_failures: 2
    no_data: inconclusive
    step_label: step 4 of 7 (25%)
    kong_health:
      admin_urls: [http://kong-1:8001, http://kong-2:8001]
    probes:
      enabled: true
      path: /healthz
      timeout: 2
    prometheus:
      url: http://prometheus:9090
      queries:
        - name: 5xx ratio
          query: (sum(rate(kong_http_requests_total{service="shop",code=~"5.."}[1m])) or vector(0)) / sum(rate(kong_http_requests_total{service="shop"}[1m]))
          max: 0.01
        - name: p99 latency ms
          query: histogram_quantile(0.99, sum(rate(kong_request_latency_ms_bucket{service="shop"}[1m])) by (le))
          max: 500
    traffic:
      url: https://gateway.example.com
      host: shop.example.com
      requests: 50
      min_success_ratio: 0.99
    lock:
      owner: awx-job-123@ctl
  register: gate
"""

RETURN = r"""
decision:
  description: V(pass), V(rollback) (failure budget spent), V(inconclusive) (hold and ask) or V(lock_lost).
  returned: always
  type: str
  sample: pass
passed:
  description: Whether the step passed.
  returned: always
  type: bool
gates:
  description:
    - Results of the decisive (last) evaluation, one per gate (per Kong node for C(kong_health), per query for
      C(prometheus)).
  returned: always
  type: list
  elements: dict
  contains:
    gate:
      description: C(kong_health), C(probes), C(prometheus) or C(traffic).
      type: str
    name:
      description: The gate's name (the query name, or the gate and the Kong node).
      type: str
    status:
      description: C(pass), C(fail) or C(inconclusive).
      type: str
    value:
      description: The measured value (null when there was no data).
      type: float
    threshold:
      description: The threshold, in words (for example C(<= 0.01)).
      type: str
    detail:
      description: What was seen (failing nodes, errors).
      type: str
    no_data:
      description:
        - True when the gate measured nothing (no value), whatever status its no_data policy gave it. Reports and
          summaries show such a result as C(NO DATA), never as a pass.
      type: bool
  sample: [{"gate": "traffic", "name": "traffic", "status": "pass", "value": 1.0, "threshold": ">= 0.99",
            "detail": "20/20 requests succeeded", "no_data": false}]
no_data:
  description:
    - Every gate that measured nothing at one evaluation or more, by name, with C(evaluations) (of that gate),
      C(no_data) (how many of them saw no data) and C(statuses) (what the no_data policy counted them as). Empty
      when every gate measured a value at every evaluation. Each entry also comes as a C(NO DATA) warning.
  returned: always
  type: dict
  sample: {"pods 5xx ratio": {"evaluations": 2, "no_data": 2, "statuses": ["pass"]}}
failing_gate:
  description: The first failing (or inconclusive) gate of the decisive evaluation; null when the step passed.
  returned: always
  type: dict
evaluations:
  description: Every evaluation, in order, with C(at) (seconds into the hold), C(status), C(in_window) and C(gates).
  returned: always
  type: list
  elements: dict
budget:
  description: The failure budget after this step (C(failures), C(consecutive), and the limits); pass
    C(failures) and C(consecutive) to the next step as O(failures_before) and O(consecutive_before).
  returned: always
  type: dict
  sample: {"failures": 1, "consecutive": 0, "max_failures": 3, "max_consecutive_failures": 2}
held:
  description: Seconds the weight was held while evaluating.
  returned: always
  type: float
container_targets:
  description: The container targets that were checked.
  returned: always
  type: list
  elements: str
started_at:
  description: When the task started, seconds since the epoch (evaluation C(at) offsets count from the hold's start).
  returned: always
  type: float
finished_at:
  description: When the task ended, seconds since the epoch.
  returned: always
  type: float
lock:
  description: The lock after the refresh, when O(lock) was given.
  returned: when O(lock) is given
  type: dict
api_calls:
  description: The Admin API calls made (all Kong nodes).
  returned: always
  type: list
  elements: dict
"""

import time
from concurrent.futures import ThreadPoolExecutor

try:
    import requests
except ImportError:  # pragma: no cover - KongModule reports the missing library
    requests = None

from ansible_collections.mixedrun.kong.plugins.module_utils._kong_api import (
    KongApiError,
    KongClient,
    check_http_url,
    redact_url,
    validate_admin_url,
)
from ansible_collections.mixedrun.kong.plugins.module_utils._kong_module import KongModule
from ansible_collections.mixedrun.kong.plugins.module_utils._rollout import (
    DECISION_LOCK_LOST,
    DECISION_PASS,
    STATUS_FAIL,
    STATUS_INCONCLUSIVE,
    STATUS_PASS,
    FailureBudget,
    RolloutError,
    LockLost,
    combine,
    describe_threshold,
    gate_summary,
    healthchecks_configured,
    health_settling,
    judge_target_health,
    judge_values,
    prometheus_values,
    run_hold_window,
    validate_no_data,
)
from ansible_collections.mixedrun.kong.plugins.module_utils._rollout_lock import LockFailure, renew_lock
from ansible_collections.mixedrun.kong.plugins.module_utils._k8s_binding import K8sBindingError
from ansible_collections.mixedrun.kong.plugins.module_utils._kic_split import (
    KUBERNETES_OPTIONS,
    KicSplitError,
    binding_target,
    connect,
    guard_share,
    read_binding,
)
from ansible_collections.mixedrun.kong.plugins.module_utils._balancer import health_from_balancer
from ansible_collections.mixedrun.kong.plugins.module_utils._prometheus import metric_names, missing_metric_hint
from ansible_collections.mixedrun.kong.plugins.module_utils._entities import node_role
from ansible_collections.mixedrun.kong.plugins.module_utils._targets import TargetError, target_key

GATE_KONG_HEALTH = "kong_health"
SETTLE_POLL = 0.25          # seconds between reads of a node still catching up (kong_health.settle)
DBLESS_LIST_CAP = 100       # Kong 3.9.3 DB-less nodes list at most this many targets of an upstream in /health
GATE_PROBES = "probes"
GATE_PROMETHEUS = "prometheus"
GATE_TRAFFIC = "traffic"
GATE_SHARE = "share"


class GateSetupError(Exception):
    """The gates cannot be evaluated as configured (nothing was held)."""


def _result(gate, name, status, value, threshold, detail=None):
    out = {"gate": gate, "name": name, "status": status, "value": value, "threshold": threshold}
    if detail:
        out["detail"] = detail
    return out


def _http_error_text(exc, timeout):
    if isinstance(exc, requests.exceptions.Timeout):
        return "no answer within %ss" % timeout
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS error"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "connection failed"
    return type(exc).__name__


class GateRunner:
    """Evaluates the configured gates; one instance per task."""

    def __init__(self, params, client, clients=None, session=None):
        self.params = params
        self.client = client
        self.clients = clients or {}
        self.session = session or requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=8, pool_maxsize=64, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.container_targets = []
        self.no_data = validate_no_data(params.get("no_data") or "fail")
        self.healthchecks_on = None
        self.warnings = []
        self.started = time.time()
        self.k8s = None             # binding kubernetes: (K8sApi, ApiClient)

    # -- setup ------------------------------------------------------------------------------------------
    def check_inputs(self):
        """Every check that needs no request, before the first one (and before the lock is touched)."""
        params = self.params
        for field in ("admin_urls", "balancer_urls"):
            for index, url in enumerate((params.get("kong_health") or {}).get(field) or []):
                try:
                    validate_admin_url(url, "kong_health.%s[%d]" % (field, index))
                except ValueError as exc:
                    raise GateSetupError(str(exc))
        if (params.get("kong_health") or {}).get("settle", 0) < 0:
            raise GateSetupError("kong_health.settle must be 0 seconds or more, got %s" % params["kong_health"]["settle"])
        for field, example in (("prometheus", "http://prometheus.example.com:9090"),
                               ("traffic", "https://gateway.example.com")):
            if params.get(field):
                try:
                    check_http_url(params[field].get("url"), "%s.url" % field, example)
                except ValueError as exc:
                    raise GateSetupError("%s; nothing was probed or changed" % exc)
        prom = params.get("prometheus")
        if prom:
            for pos, query in enumerate(prom["queries"], 1):
                if query.get("min") is None and query.get("max") is None:
                    raise GateSetupError("prometheus.queries[%d] (%s) needs a threshold: set min, max or both"
                                         % (pos, query.get("name")))
                if query.get("min") is not None and query.get("max") is not None and query["min"] > query["max"]:
                    raise GateSetupError("prometheus.queries[%d] (%s): min %s is above max %s"
                                         % (pos, query.get("name"), query["min"], query["max"]))
        traffic = params.get("traffic")
        if traffic:
            if not 0 <= traffic["min_success_ratio"] <= 1:
                raise GateSetupError("traffic.min_success_ratio must be between 0 and 1 (a ratio, not percent), got %s"
                                     % traffic["min_success_ratio"])
            if traffic["requests"] < 1 or traffic["requests"] > 10000:
                raise GateSetupError("traffic.requests must be between 1 and 10000, got %d" % traffic["requests"])
            if traffic["concurrency"] < 1:
                raise GateSetupError("traffic.concurrency must be at least 1, got %d" % traffic["concurrency"])
        probes = params.get("probes")
        if probes and probes["enabled"] and probes["concurrency"] < 1:
            raise GateSetupError("probes.concurrency must be at least 1, got %d" % probes["concurrency"])
        if params.get("container_targets"):
            try:
                self.container_targets = sorted(set(target_key(t) for t in params["container_targets"]))
            except TargetError as exc:
                raise GateSetupError("container_targets: %s" % exc)
        if params.get("binding") == "kubernetes":
            if (params.get("kong_health") or {}).get("enabled"):
                raise GateSetupError("kong_health is not available with binding: kubernetes: the Kong Ingress Controller's targets carry no "
                                     "kind tags and have active health checks only through a KongUpstreamPolicy, so the gate would measure "
                                     "nothing; disable it (kong_health.enabled: false, the rollout role's rollout_kong_health: false) and gate "
                                     "on probes, prometheus or traffic")
            try:
                binding_target(params, params["upstream"])
            except KicSplitError as exc:
                raise GateSetupError(str(exc))
        elif params.get("share_guard"):
            raise GateSetupError("share_guard is only used with binding: kubernetes (in the Admin API binding the weights do not depend on "
                                 "the endpoint counts): leave it out")
        if not self.checks():
            raise GateSetupError("no gate is enabled: enable kong_health, probes, prometheus or traffic")

    def setup(self):
        params = self.params
        upstream = params["upstream"]
        self.check_inputs()
        if params.get("binding") == "kubernetes":
            try:
                self.k8s = connect(params)
                if not params.get("container_targets") and self._needs_targets():
                    self.container_targets = self._binding_container_targets()
            except (KicSplitError, K8sBindingError) as exc:
                raise GateSetupError(str(exc))
        elif not params.get("container_targets") and self._needs_targets():
            items = self.client.list("/upstreams/%s/targets" % self.client.quote(upstream))
            tag = params["container_tag"]
            self.container_targets = sorted(set(target_key(t["target"]) for t in items if tag in (t.get("tags") or [])))
            if not self.container_targets:
                raise GateSetupError("upstream '%s' has no target tagged '%s': bind the container nodes first (the "
                                     "mixed_service role), or list them in container_targets" % (upstream, tag))
        if (params.get("kong_health") or {}).get("enabled"):
            entity = self.client.get("/upstreams/%s" % self.client.quote(upstream))
            if entity is None:
                raise GateSetupError("upstream '%s' not found: bind the service first (the mixed_service role)" % upstream)
            self.healthchecks_on = healthchecks_configured(entity)
            self._refuse_control_planes()
        prom = params.get("prometheus")
        if prom and prom.get("require_series", True):
            self._require_series(prom)

    def _require_series(self, prom):
        """Every metric a query reads must have a series in Prometheus, or the gate could never see data."""
        start = time.time() - 3600
        checked = {}
        for pos, query in enumerate(prom["queries"], 1):
            if "absent(" in query["query"] or "absent_over_time(" in query["query"]:
                continue
            for metric in metric_names(query["query"]):
                if metric not in checked:
                    checked[metric] = self._series_count(prom, metric, start)
                if checked[metric] == 0:
                    hint = missing_metric_hint(metric) or "check the exporter that should provide it and Prometheus' scrape targets"
                    raise GateSetupError("prometheus.queries[%d] (%s) reads %s, which has no series in Prometheus at %s: this gate "
                                         "could never see data (%s). Nothing was held or changed; fix the exporter, or change or "
                                         "drop the query (require_series: false skips this check)"
                                         % (pos, query["name"], metric, redact_url(prom["url"]), hint))

    def _series_count(self, prom, metric, start):
        """How many series ``metric`` has; None when Prometheus cannot say (then the check is not decisive)."""
        try:
            response = self.session.get(prom["url"].rstrip("/") + "/api/v1/series", params={"match[]": metric, "start": "%.0f" % start},
                                        headers=prom.get("headers") or {}, timeout=prom["timeout"], verify=prom["validate_certs"])
            if response.status_code != 200:
                return None
            return len(response.json().get("data") or [])
        except (requests.exceptions.RequestException, ValueError, AttributeError):
            return None

    def _health_sources(self):
        """[(url or None for admin_url, read without the admin credentials: a Status API)] the Kong health gate reads."""
        health = self.params.get("kong_health") or {}
        if health.get("balancer_urls"):
            # a balancer URL that is one of the Admin APIs (a traditional node) keeps the admin credentials
            admins = set(u.rstrip("/") for u in [self.params.get("admin_url") or ""] + list(health.get("admin_urls") or []))
            return [(url, url.rstrip("/") not in admins) for url in health["balancer_urls"]]
        return [(url, False) for url in health.get("admin_urls") or [None]]

    def _refuse_control_planes(self):
        """A hybrid control plane given as a health source would answer every evaluation with no health at all."""
        for url, is_balancer in self._health_sources():
            if is_balancer:
                continue
            client, where = self._kong_client(url)
            try:
                role = node_role(client)
            except KongApiError:
                continue
            if role == "control_plane":
                raise GateSetupError("kong_health reads %s, a hybrid-mode control plane: it runs no balancer and lists the "
                                     "targets without health, so the gate would measure nothing. Give kong_health.balancer_urls "
                                     "(the rollout role's rollout_balancer_urls): the Status API (status_listen) of every data "
                                     "plane" % where)

    def _binding_container_targets(self):
        """binding kubernetes: the containers' ready endpoints as KIC counts them, read now (pods come and go)."""
        namespace, name, route_name = binding_target(self.params, self.params["upstream"])
        targets = read_binding(self.k8s[0], namespace, name, route_name)["container"]["targets"]
        if not targets:
            raise KicSplitError("the containers' Service of %s/%s has no ready endpoint: nothing to probe" % (namespace, route_name))
        return sorted(targets)

    def share_guard(self):
        """binding kubernetes: the share KIC's division gives now, re-applied when it drifted beyond max_error."""
        guard = self.params["share_guard"]
        threshold = "%s %% within %s points" % (guard["share"], guard["max_error"])
        try:
            out = guard_share(self.k8s[0], self.params, guard["share"], guard["max_error"], check_mode=self.params.get("_check_mode", False))
        except (KicSplitError, K8sBindingError) as exc:
            return _result(GATE_SHARE, "share", STATUS_FAIL, None, threshold, "cannot keep the share: %s" % exc)
        detail = "%d VM and %d container endpoint(s), backendRef weights %s/%s" % (
            out["vm_endpoints"], out["container_endpoints"], out["backend_weights"]["vm"], out["backend_weights"]["container"])
        if out["corrected"]:
            detail = "drifted to %s %% (endpoints changed), weights written again: %s" % (out["previous_share"], detail)
            self.warnings.append("share drifted to %s %% at %s (ready endpoints changed); the weights were written again"
                                 % (out["previous_share"], self.params.get("step_label") or "the current step"))
        result = _result(GATE_SHARE, "share", STATUS_PASS, out["share"], threshold, detail)
        result["corrected"] = out["corrected"]
        return result

    def _needs_targets(self):
        probes = self.params.get("probes") or {}
        health = self.params.get("kong_health") or {}
        return bool(health.get("enabled") or (probes.get("enabled") and not probes.get("targets")))

    def checks(self):
        """The list of zero-argument callables of one evaluation, each returning a list of results."""
        out = []
        params = self.params
        health = params.get("kong_health") or {}
        if params.get("binding") == "kubernetes" and params.get("share_guard"):
            out.append(lambda: [self.share_guard()])
        if health.get("enabled"):
            for url, is_balancer in self._health_sources():
                out.append(lambda url=url, is_balancer=is_balancer: [self.kong_health(url, is_balancer)])
        probes = params.get("probes") or {}
        if probes.get("enabled"):
            out.append(lambda: [self.probe_nodes()])
        prom = params.get("prometheus")
        if prom and not prom.get("check_only"):
            for query in prom["queries"]:
                out.append(lambda query=query: [self.prometheus_query(query)])
        if params.get("traffic"):
            out.append(lambda: [self.traffic()])
        return out

    # -- one evaluation ------------------------------------------------------------------------------------
    def evaluate(self):
        checks = self.checks()
        results = []
        with ThreadPoolExecutor(max_workers=len(checks)) as pool:
            for part in pool.map(lambda fn: fn(), checks):
                results.extend(part)
        for result in results:
            # a gate that measured nothing says so, whatever its no_data policy made of it
            result["no_data"] = result.get("value") is None
        return {"status": combine(r["status"] for r in results), "gates": results}

    # -- the gates ------------------------------------------------------------------------------------------
    def _kong_client(self, url, is_balancer=False):
        if url is None:
            return self.client, redact_url(self.client.base_url)
        if url not in self.clients:
            extra = {"admin_token": None, "workspace": None} if is_balancer else {}
            self.clients[url] = KongClient.from_params(self.params, admin_url=url, **extra)
        return self.clients[url], redact_url(url)

    def _read_health(self, client):
        entries = []
        for item in client.list("/upstreams/%s/health" % client.quote(self.params["upstream"])):
            try:
                entries.append((target_key(item.get("target")), item.get("health"), item.get("weight")))
            except TargetError:
                continue
        listed = set(key for key, _health, _weight in entries)
        if len(listed) >= DBLESS_LIST_CAP and set(self.container_targets) - listed:
            # a DB-less node (a data plane) lists at most 100 targets: the rest from its balancer's details
            for key, (health, weight) in health_from_balancer(client, self.params["upstream"]).items():
                if key not in listed:
                    entries.append((key, health, weight))
        return entries

    def kong_health(self, url, is_balancer=False):
        states = [s.upper() for s in (self.params["kong_health"].get("unhealthy_states") or [])]
        threshold = "0 container targets %s" % "/".join(states)
        try:
            client, where = self._kong_client(url, is_balancer)
        except ValueError as exc:
            return _result(GATE_KONG_HEALTH, "kong_health", STATUS_FAIL, None, threshold, "bad admin URL: %s" % exc)
        name = "kong_health@%s" % where
        settle_until = self.started + (self.params["kong_health"].get("settle") or 0)
        while True:
            try:
                entries = self._read_health(client)
            except KongApiError as exc:
                return _result(GATE_KONG_HEALTH, name, STATUS_FAIL, None, threshold, "cannot read health: %s" % exc.describe())
            # the settle rule: a node still catching up with the step's change is read again, not judged
            if not health_settling(entries, self.container_targets, bool(self.healthchecks_on)) or time.time() >= settle_until:
                break
            time.sleep(SETTLE_POLL)
        status, value, detail, warning = judge_target_health(entries, self.container_targets, states,
                                                             bool(self.healthchecks_on), no_data=self.no_data)
        if warning:
            self.warnings.append("upstream '%s': %s" % (self.params["upstream"], warning))
        return _result(GATE_KONG_HEALTH, name, status, value, threshold, detail)

    def _probe_one(self, target):
        probes = self.params["probes"]
        if "://" in target:
            url = target
        else:
            url = "%s://%s%s" % (probes["scheme"], target, probes["path"] if probes["path"].startswith("/") else "/" + probes["path"])
        headers = {"Host": probes["host_header"]} if probes.get("host_header") else {}
        try:
            response = self.session.get(url, headers=headers, timeout=probes["timeout"], allow_redirects=False,
                                        verify=probes["validate_certs"])
        except requests.exceptions.RequestException as exc:
            return target, _http_error_text(exc, probes["timeout"])
        if response.status_code not in probes["expected_status"]:
            return target, "HTTP %d" % response.status_code
        return target, None

    def probe_nodes(self):
        probes = self.params["probes"]
        targets = probes.get("targets") or self.container_targets
        if self.k8s is not None and not probes.get("targets") and not self.params.get("container_targets"):
            try:
                targets = self.container_targets = self._binding_container_targets()
            except (KicSplitError, K8sBindingError) as exc:
                return _result(GATE_PROBES, "probes", STATUS_FAIL, None, "container endpoints readable", str(exc))
        threshold = "0 nodes failing (HTTP %s on %s within %ss)" % (
            "/".join(str(s) for s in probes["expected_status"]), probes["path"], probes["timeout"])
        workers = max(1, min(probes["concurrency"], len(targets)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            outcomes = list(pool.map(self._probe_one, targets))
        bad = ["%s: %s" % (t, err) for t, err in outcomes if err]
        if bad:
            detail = "%d of %d failing: %s" % (len(bad), len(targets), "; ".join(bad[:10]))
            if len(bad) > 10:
                detail += "; and %d more" % (len(bad) - 10)
        else:
            detail = "%d nodes answered" % len(targets)
        return _result(GATE_PROBES, "probes", STATUS_FAIL if bad else STATUS_PASS, float(len(bad)), threshold, detail)

    def prometheus_query(self, query):
        prom = self.params["prometheus"]
        policy = query.get("no_data") or self.no_data
        threshold = describe_threshold(query.get("min"), query.get("max"))
        name = query["name"]
        url = prom["url"].rstrip("/") + "/api/v1/query"
        try:
            response = self.session.get(url, params={"query": query["query"]}, headers=prom.get("headers") or {},
                                        timeout=prom["timeout"], verify=prom["validate_certs"])
        except requests.exceptions.RequestException as exc:
            status = judge_values([], no_data=policy)[0]
            return _result(GATE_PROMETHEUS, name, status, None, threshold, "no data (Prometheus at %s: %s), no_data policy %s"
                           % (redact_url(prom["url"]), _http_error_text(exc, prom["timeout"]), policy))
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code == 400 or (response.status_code == 422):
            error = (body or {}).get("error") if isinstance(body, dict) else response.text[:200]
            return _result(GATE_PROMETHEUS, name, STATUS_FAIL, None, threshold, "Prometheus rejected the query: %s" % error)
        if response.status_code >= 300 or body is None:
            status = judge_values([], no_data=policy)[0]
            return _result(GATE_PROMETHEUS, name, status, None, threshold, "no data (Prometheus answered HTTP %d), no_data policy %s"
                           % (response.status_code, policy))
        try:
            values = prometheus_values(body)
        except RolloutError as exc:
            status = judge_values([], no_data=policy)[0]
            return _result(GATE_PROMETHEUS, name, status, None, threshold, "no data (%s), no_data policy %s" % (exc, policy))
        status, measured = judge_values(values, query.get("min"), query.get("max"), policy)
        if measured is None:
            detail = "no data (empty result or NaN), no_data policy %s" % policy
        else:
            detail = "%d series" % len(values)
        return _result(GATE_PROMETHEUS, name, status, measured, threshold, detail)

    def _traffic_one(self, _index):
        traffic = self.params["traffic"]
        url = traffic["url"].rstrip("/") + (traffic["path"] if traffic["path"].startswith("/") else "/" + traffic["path"])
        headers = {"Host": traffic["host"]} if traffic.get("host") else {}
        started = time.time()
        try:
            response = self.session.get(url, headers=headers, timeout=traffic["timeout"], allow_redirects=False,
                                        verify=traffic["validate_certs"])
        except requests.exceptions.RequestException as exc:
            return False, _http_error_text(exc, traffic["timeout"]), time.time() - started
        expected = traffic.get("expected_status")
        ok = response.status_code in expected if expected else 200 <= response.status_code < 400
        return ok, "HTTP %d" % response.status_code, time.time() - started

    def traffic(self):
        traffic = self.params["traffic"]
        count = traffic["requests"]
        with ThreadPoolExecutor(max_workers=max(1, min(traffic["concurrency"], count))) as pool:
            outcomes = list(pool.map(self._traffic_one, range(count)))
        good = sum(1 for outcome in outcomes if outcome[0])
        ratio = round(good / float(count), 6)
        failures = {}
        for ok, what, _elapsed in outcomes:
            if not ok:
                failures[what] = failures.get(what, 0) + 1
        slowest = max(outcome[2] for outcome in outcomes)
        detail = "%d/%d requests succeeded, slowest %.0f ms" % (good, count, slowest * 1000)
        if failures:
            detail += "; failures: %s" % ", ".join("%s x%d" % (k, v) for k, v in sorted(failures.items()))
        status = STATUS_PASS if ratio >= traffic["min_success_ratio"] else STATUS_FAIL
        return _result(GATE_TRAFFIC, "traffic", status, ratio, ">= %s" % traffic["min_success_ratio"], detail)

    def close(self):
        if self.k8s is not None:
            self.k8s[1].close()

    def all_calls(self):
        calls = list(self.client.calls)
        if self.k8s is not None:
            calls.extend({"method": c.split(" ", 1)[0], "path": c.split(" ", 1)[1], "node": "kubernetes"} for c in self.k8s[0].calls)
        for url, client in sorted(self.clients.items()):
            calls.extend(dict(call, node=redact_url(url)) for call in client.calls)
        return calls

    # -- the lock -----------------------------------------------------------------------------------------
    def refresh_lock(self, hold, now=None):
        """Verify the lock is ours and extend it past the hold window; return (ok, lock, message).

        The lock is its own Kong consumer (see _rollout_lock): the renewal is a PATCH of that consumer by id, so it
        never writes the upstream (no balancer rebuild) and never overwrites a lock taken over in the meantime."""
        lock = self.params["lock"]
        clock = (lambda: now) if now is not None else None
        try:
            if self.k8s is not None:
                # pylint: disable-next=import-outside-toplevel
                from ansible_collections.mixedrun.kong.plugins.module_utils._k8s_rollout_lock import renew_k8s_lock
                namespace, name, _route = binding_target(self.params, self.params["upstream"])
                info = renew_k8s_lock(self.k8s[0], namespace, name, lock["owner"], lock["ttl"] + hold, clock=clock)
            else:
                info = renew_lock(self.client, self.params["upstream"], lock["owner"], lock["ttl"] + hold, clock=clock)
        except LockLost as exc:
            return False, exc.lock, str(exc)
        except LockFailure as exc:
            return False, None, str(exc)
        return True, info, None


def _failing(evaluation):
    for status in (STATUS_FAIL, STATUS_INCONCLUSIVE):
        for gate in evaluation.get("gates") or []:
            if gate["status"] == status:
                return gate
    return None


def _message(decision, label, failing, budget, evaluation, params):
    where = label or "the current step"
    if decision == "rollback":
        text = "Rollout gate failed at %s: %s; failure budget spent: %s" % (where, gate_summary(failing), budget.reason())
    else:
        text = ("Rollout gate inconclusive at %s: %s; %d evaluations in a row had no conclusive result "
                "(inconclusive_limit %d): holding the current weights, a human must decide (re-run to continue, or "
                "playbooks/rollback.yml)" % (where, gate_summary(failing), params["inconclusive_limit"], params["inconclusive_limit"]))
    others = [g for g in evaluation.get("gates") or [] if g["status"] != STATUS_PASS and g is not failing]
    if others:
        text += "; also: " + "; ".join(gate_summary(g) for g in others)
    blind = [g for g in evaluation.get("gates") or [] if g["status"] == STATUS_PASS and g.get("no_data")]
    if blind:
        text += "; NO DATA (measured nothing, counted as pass by the no_data policy): " + ", ".join(
            "gate '%s'" % g.get("name") for g in blind)
    return text


def run_gate(module_params, client, check_mode=False, clock=None, sleep=None, session=None):
    """Everything but the module plumbing; returns ``(ok, result, message)``."""
    clock = clock or time.time
    sleep = sleep or time.sleep
    params = dict(module_params)
    for field in ("hold", "interval"):
        if params[field] < 0:
            raise GateSetupError("%s must be 0 or more seconds, got %s" % (field, params[field]))
    budget = FailureBudget(params["max_failures"], params["max_consecutive_failures"],
                           params["failures_before"], params["consecutive_before"])
    hold = 0.0 if check_mode else params["hold"]
    params["_check_mode"] = check_mode
    runner = GateRunner(params, client, session=session)
    result = {"container_targets": [], "started_at": round(clock(), 3)}
    try:
        runner.setup()
        result["container_targets"] = runner.container_targets
        return _run(runner, params, budget, hold, check_mode, clock, sleep, result)
    finally:
        runner.close()
        result["api_calls"] = runner.all_calls()
        result["finished_at"] = round(clock(), 3)
        result["no_data"] = no_data_counts(result.get("evaluations") or [])
        warnings = sorted(set(runner.warnings)) + no_data_warnings(result["no_data"], params)
        if warnings:
            result["warnings"] = warnings


def no_data_counts(evaluations):
    """``{gate name: {"evaluations": n, "no_data": k, "statuses": [...]}}`` for every gate that measured nothing
    (no value) at one evaluation or more."""
    seen = {}
    for evaluation in evaluations:
        for gate in evaluation.get("gates") or []:
            entry = seen.setdefault(gate.get("name"), {"evaluations": 0, "no_data": 0, "statuses": []})
            entry["evaluations"] += 1
            if gate.get("no_data", gate.get("value") is None):
                entry["no_data"] += 1
                if gate.get("status") not in entry["statuses"]:
                    entry["statuses"].append(gate.get("status"))
    return dict((name, entry) for name, entry in seen.items() if entry["no_data"])


def no_data_warnings(counts, params):
    """One loud line per gate that measured nothing: a gate without data guards nothing, even when it 'passes'."""
    where = params.get("step_label") or "the current step"
    out = []
    for name, entry in sorted(counts.items(), key=lambda kv: str(kv[0])):
        counted = "/".join(entry["statuses"])
        out.append("NO DATA: gate '%s' measured nothing at %d of %d evaluations of %s (counted as %s by its no_data "
                   "policy): it guarded nothing there" % (name, entry["no_data"], entry["evaluations"], where, counted))
    return out


def _run(runner, params, budget, hold, check_mode, clock, sleep, result):
    if params.get("lock"):
        if check_mode:
            result["lock"] = None
        else:
            ok, lock, message = runner.refresh_lock(hold)
            result["lock"] = lock
            if not ok:
                result.update(decision=DECISION_LOCK_LOST, passed=False, gates=[], failing_gate=None, evaluations=[],
                              budget=budget.as_dict(), held=0.0)
                return False, result, message
    if check_mode:
        evaluation = runner.evaluate()
        evaluation["at"] = 0.0
        evaluation["in_window"] = True
        window = {"decision": DECISION_PASS if evaluation["status"] == STATUS_PASS else
                  ("rollback" if evaluation["status"] == STATUS_FAIL else "inconclusive"),
                  "evaluations": [evaluation], "budget": budget.as_dict(), "held": 0.0}
    else:
        window = run_hold_window(runner.evaluate, hold, params["interval"], budget, params["inconclusive_limit"],
                                 clock=clock, sleep=sleep)
    last = window["evaluations"][-1]
    failing = None if window["decision"] == DECISION_PASS else _failing(last)
    result.update(decision=window["decision"], passed=window["decision"] == DECISION_PASS, gates=last["gates"],
                  failing_gate=failing, evaluations=window["evaluations"], budget=window["budget"], held=window["held"])
    if window["decision"] == DECISION_PASS and params.get("lock") and not check_mode:
        ok, lock, message = runner.refresh_lock(0)
        result["lock"] = lock
        if not ok:
            result.update(decision=DECISION_LOCK_LOST, passed=False)
            return False, result, "after the hold at %s: %s" % (params.get("step_label") or "the current step", message)
    if window["decision"] == DECISION_PASS:
        return True, result, None
    return False, result, _message(window["decision"], params.get("step_label"), failing or {}, budget, last, params)


def main():
    module = KongModule(
        argument_spec=dict(
            upstream=dict(type="str", required=True),
            container_tag=dict(type="str", default="mixedrun-kind:container"),
            container_targets=dict(type="list", elements="str"),
            hold=dict(type="float", default=0.0),
            interval=dict(type="float", default=10.0),
            max_failures=dict(type="int", default=3),
            max_consecutive_failures=dict(type="int", default=2),
            failures_before=dict(type="int", default=0),
            consecutive_before=dict(type="int", default=0),
            inconclusive_limit=dict(type="int", default=3),
            no_data=dict(type="str", default="fail", choices=["fail", "pass", "inconclusive"]),
            step_label=dict(type="str"),
            kong_health=dict(type="dict", default={}, options=dict(
                enabled=dict(type="bool", default=True),
                admin_urls=dict(type="list", elements="str"),
                balancer_urls=dict(type="list", elements="str"),
                settle=dict(type="float", default=10.0),
                unhealthy_states=dict(type="list", elements="str", default=["UNHEALTHY", "DNS_ERROR"]),
            )),
            probes=dict(type="dict", default={}, options=dict(
                enabled=dict(type="bool", default=False),
                targets=dict(type="list", elements="str"),
                scheme=dict(type="str", default="http", choices=["http", "https"]),
                path=dict(type="str", default="/"),
                expected_status=dict(type="list", elements="int", default=[200]),
                timeout=dict(type="float", default=2.0),
                host_header=dict(type="str"),
                validate_certs=dict(type="bool", default=True),
                concurrency=dict(type="int", default=32),
            )),
            prometheus=dict(type="dict", options=dict(
                url=dict(type="str", required=True),
                queries=dict(type="list", elements="dict", required=True, options=dict(
                    name=dict(type="str", required=True),
                    query=dict(type="str", required=True),
                    min=dict(type="float"),
                    max=dict(type="float"),
                    no_data=dict(type="str", choices=["fail", "pass", "inconclusive"]),
                )),
                timeout=dict(type="float", default=5.0),
                headers=dict(type="dict", no_log=True),
                validate_certs=dict(type="bool", default=True),
                require_series=dict(type="bool", default=True),
                check_only=dict(type="bool", default=False),
            )),
            traffic=dict(type="dict", options=dict(
                url=dict(type="str", required=True),
                host=dict(type="str"),
                path=dict(type="str", default="/"),
                requests=dict(type="int", default=20),
                concurrency=dict(type="int", default=5),
                timeout=dict(type="float", default=5.0),
                expected_status=dict(type="list", elements="int"),
                min_success_ratio=dict(type="float", default=0.99),
                validate_certs=dict(type="bool", default=True),
            )),
            lock=dict(type="dict", options=dict(
                owner=dict(type="str", required=True),
                ttl=dict(type="float", default=1800.0),
            )),
            share_guard=dict(type="dict", options=dict(
                share=dict(type="raw", required=True),
                max_error=dict(type="float", default=0.05),
            )),
            binding=dict(type="str", default="admin_api", choices=["admin_api", "kubernetes"]),
            kubernetes=dict(type="dict", options=KUBERNETES_OPTIONS),
        ),
        supports_check_mode=True,
    )
    try:
        ok, result, message = run_gate(module.params, module.client, check_mode=module.check_mode)
    except (GateSetupError, RolloutError) as exc:
        module.fail_json(msg="Cannot evaluate the rollout gates: %s" % exc, decision="error", passed=False,
                         api_calls=module.api_calls)
    except KongApiError as exc:
        module.fail_json_kong(exc, "Failed to evaluate the rollout gates of upstream %s" % module.params["upstream"],
                              decision="error", passed=False)
    result["changed"] = False
    if not ok:
        module.fail_json(msg=message, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
