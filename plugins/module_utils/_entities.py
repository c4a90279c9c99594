# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ensure_* logic of the Kong entity modules (services, routes, upstreams, targets).

Every function follows the same contract: validate all input first (``ValueError`` naming the field and the
fix, before any request), GET the current state, compare only the fields the user gave, write only what
differs through ``client.write`` (which records and sends nothing in check mode), and return
``{"changed", <entity>, "diff": {"before", "after"}}``. Kong errors surface as ``KongApiError``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import time

try:
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover
    from urlparse import urlsplit  # type: ignore

from ansible_collections.mixedrun.kong.plugins.module_utils._kong_api import KongApiError, KongClient, redact_url, validate_admin_url
from ansible_collections.mixedrun.kong.plugins.module_utils._compare import (
    KONG_NULL,
    diff_entity,
    merge_healthchecks,
    predict_after,
    strip_volatile,
    to_body,
    unknown_keys,
    HEALTHCHECKS_DEFAULTS,
    healthchecks_enabled,
)
from ansible_collections.mixedrun.kong.plugins.module_utils._targets import (
    TargetError,
    plan_target_set,
    split_target,
    target_key,
    validate_weight,
)

SINGULAR = {"services": "service", "routes": "route", "upstreams": "upstream", "targets": "target"}
# Kong's ``name`` typedef: letters, digits and . - _ ~
_NAME_RE = re.compile(r"^[0-9A-Za-z.\-_~]+$")
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
SERVICE_PROTOCOLS = ("http", "https", "grpc", "grpcs", "tcp", "tls", "tls_passthrough", "udp", "ws", "wss")
DEFAULT_PORTS = {"http": 80, "ws": 80, "grpc": 80, "https": 443, "wss": 443, "grpcs": 443}


class KongBatchError(KongApiError):
    """Some writes of a batch failed; ``result`` holds what was applied and what failed."""

    def __init__(self, failures, total, result):
        self.failures = failures
        self.result = result
        self.total = total
        first = failures[0]["error"] if failures else None
        super(KongBatchError, self).__init__(
            first.method if first else "BATCH", first.path if first else "", first.status if first else None,
            message=first.message if first else "", code=first.code if first else None,
            name=first.name if first else None, fields=first.fields if first else None)

    def describe(self):
        if not getattr(self, "failures", None):
            return "batch failed"
        shown = "; ".join("%s %s: %s" % (f["action"], f["target"], f["error"].describe()) for f in self.failures[:5])
        more = "" if len(self.failures) <= 5 else "; and %d more" % (len(self.failures) - 5)
        return ("%d of %d writes failed (the others were applied; see applied and failures): %s%s"
                % (len(self.failures), self.total, shown, more))


# -- input validation (pure) ---------------------------------------------------------------------------------

def validate_entity_name(value, field="name"):
    """Kong's ``name`` rule (letters, digits, ``. - _ ~``)."""
    if not isinstance(value, str) or not value:
        raise ValueError("%s is required and must be a non-empty string" % field)
    if not _NAME_RE.match(value):
        raise ValueError("%s %r is not a valid Kong name: use only letters, digits, '.', '-', '_' and '~'"
                         % (field, value))
    return value


def validate_upstream_name(value, field="name"):
    """An upstream name is a hostname (what a Service's ``host`` names): no IP address, no port."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("%s %r is empty: set it to the upstream's name (a hostname such as shop.upstream) or its id"
                         % (field, value))
    if _UUID_RE.match(value):
        return value
    try:
        kind, host, port = split_target(value)
    except TargetError:
        raise ValueError("%s %r is not a valid hostname: use letters, digits, '-', '.' and '_', e.g. shop.upstream"
                         % (field, value))
    if kind != "name":
        raise ValueError("%s %r is an IP address; an upstream name must be a hostname (Kong refuses IP "
                         "addresses), e.g. shop.upstream" % (field, value))
    if port is not None:
        raise ValueError("%s %r carries a port; an upstream name is a hostname without a port (the Service "
                         "sets the port), e.g. %s" % (field, value, host))
    return value


# Kong's ranges of the healthchecks numbers (kong/db/schema/entities/upstreams.lua).
HEALTHCHECK_RANGES = {
    "timeout": (0, 65535), "interval": (0, 65535), "concurrency": (1, 2 ** 31), "successes": (0, 255),
    "tcp_failures": (0, 255), "timeouts": (0, 255), "http_failures": (0, 255), "threshold": (0, 100),
}


def check_healthchecks(record, path="healthchecks"):
    """Refuse, naming the sub-option and the value, a healthchecks number outside Kong's range (pure)."""
    for key, value in sorted((record or {}).items()):
        where = "%s.%s" % (path, key)
        if value is None:
            continue
        if isinstance(value, dict) and key != "headers":
            check_healthchecks(value, where)
        elif key in HEALTHCHECK_RANGES:
            low, high = HEALTHCHECK_RANGES[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise ValueError("%s must be a number from %s to %s (Kong's range), got %r" % (where, low, high, value))
        elif key == "http_statuses":
            bad = [code for code in value if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 999]
            if bad:
                raise ValueError("%s must list HTTP statuses from 100 to 999, got %s" % (where, ", ".join(repr(b) for b in bad)))
        elif key == "http_path" and not str(value).startswith("/"):
            raise ValueError("%s must start with '/', got %r" % (where, value))


def whole_numbers(value):
    """A copy with floats that are whole numbers as ints (``5.0`` -> ``5``), as Kong answers them."""
    if isinstance(value, dict):
        return dict((k, whole_numbers(v)) for k, v in value.items())
    if isinstance(value, list):
        return [whole_numbers(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def parse_service_url(url):
    """Kong's ``url`` shorthand: ``protocol://host[:port][/path]`` -> the four fields Kong stores."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("url %r has an invalid port: write it as http://host:port/path" % url)
    if parts.scheme not in SERVICE_PROTOCOLS:
        raise ValueError("url %r must start with one of %s://, e.g. http://shop.upstream:80/"
                         % (url, "://, ".join(SERVICE_PROTOCOLS)))
    if not parts.hostname:
        raise ValueError("url %r has no host: write it as %s://host:port/path" % (url, parts.scheme or "http"))
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError("url %r must not carry credentials, a query or a fragment" % url)
    if port is None:
        port = DEFAULT_PORTS.get(parts.scheme, 80)
    return {
        "protocol": parts.scheme,
        "host": parts.hostname,
        "port": port,
        "path": parts.path if parts.path else KONG_NULL,
    }


def desired_fields(params, fields):
    """The subset of module ``params`` that are entity fields (``None`` = not given)."""
    return dict((f, params.get(f)) for f in fields)


# -- generic services / routes / upstreams -------------------------------------------------------------------

def _entity_path(client, kind, ref):
    return "/%s/%s" % (kind, client.quote(ref))


def ensure_entity(client, kind, name, desired, state="present"):
    """Make the entity ``kind`` (``services``, ``routes``, ``upstreams``) named ``name`` match ``desired``.

    Creates with ``PUT /<kind>/<name>`` (Kong's upsert, safe to retry), updates with ``PATCH /<kind>/<id>``
    of only the differing fields, deletes with ``DELETE /<kind>/<id>``."""
    key = SINGULAR[kind]
    current = client.get(_entity_path(client, kind, name))
    before = strip_volatile(current)
    if state == "absent":
        if current is None:
            return {"changed": False, key: None, "diff": {"before": {}, "after": {}}}
        client.write("DELETE", _entity_path(client, kind, current["id"]))
        return {"changed": True, key: None, "diff": {"before": before, "after": {}}}

    changes = diff_entity(desired, current)
    if current is None:
        body = dict((k, v) for k, v in desired.items() if v is not None and v is not KONG_NULL)
        if not _UUID_RE.match(name):
            body["name"] = name
        written = client.write("PUT", _entity_path(client, kind, name), to_body(body))
        after = written if written is not None else predict_after({"name": name}, body)
    elif changes:
        written = client.write("PATCH", _entity_path(client, kind, current["id"]), to_body(changes))
        after = written if written is not None else predict_after(current, changes)
    else:
        return {"changed": False, key: current, "diff": {"before": before, "after": before}}
    return {"changed": True, key: after, "diff": {"before": before or {}, "after": strip_volatile(after)}}


def resolve_service(client, service):
    """``{"id": ...}`` of the service named (or with id) ``service``; a clear error when it does not exist."""
    found = client.get(_entity_path(client, "services", service))
    if found is None:
        raise ValueError("service %r does not exist in Kong: create it first (mixedrun.kong.kong_service) or fix "
                         "the route's service option" % service)
    return {"id": found["id"]}


SERVICE_FIELDS = ("protocol", "host", "port", "path", "retries", "connect_timeout", "read_timeout",
                  "write_timeout", "enabled", "tags")
ROUTE_FIELDS = ("protocols", "methods", "hosts", "paths", "headers", "snis", "strip_path", "preserve_host",
                "regex_priority", "https_redirect_status_code", "tags")
UPSTREAM_FIELDS = ("algorithm", "hash_on", "hash_fallback", "hash_on_header", "hash_fallback_header",
                   "hash_on_cookie", "hash_on_cookie_path", "hash_on_query_arg", "hash_fallback_query_arg",
                   "hash_on_uri_capture", "hash_fallback_uri_capture", "slots", "host_header",
                   "client_certificate", "use_srv_name", "healthchecks", "tags")


def ensure_service(client, params):
    validate_entity_name(params["name"])
    desired = desired_fields(params, SERVICE_FIELDS)
    # ``retries`` is the client's own option; the service's field comes from ``service_retries``.
    desired["retries"] = params.get("service_retries")
    if params.get("url"):
        clash = [f for f in ("protocol", "host", "port", "path") if params.get(f) is not None]
        if clash:
            raise ValueError("url is a shorthand for protocol, host, port and path: give either url or %s, not both"
                             % ", ".join(clash))
        desired.update(parse_service_url(params["url"]))
    if params["state"] == "present":
        for field in ("port", "retries", "connect_timeout", "read_timeout", "write_timeout"):
            value = desired.get(field)
            low = 1 if field.endswith("timeout") else 0
            high = 32767 if field == "retries" else (65535 if field == "port" else 2147483646)
            if value is not None and not low <= value <= high:
                raise ValueError("%s must be between %d and %d, got %d"
                                 % ("service_retries" if field == "retries" else field, low, high, value))
        if desired.get("path") not in (None, KONG_NULL) and not desired["path"].startswith("/"):
            raise ValueError("path %r must start with '/'" % desired["path"])
    return ensure_entity(client, "services", params["name"], desired, params["state"])


def ensure_route(client, params):
    validate_entity_name(params["name"])
    desired = desired_fields(params, ROUTE_FIELDS)
    for path in params.get("paths") or []:
        if not (path.startswith("/") or path.startswith("~/")):
            raise ValueError("paths entry %r must start with '/' (or '~/' for a regex path)" % path)
    if desired.get("headers") is not None:
        desired["headers"] = dict((str(k), [str(v)] if not isinstance(v, list) else [str(x) for x in v])
                                  for k, v in desired["headers"].items())
    if params["state"] == "present" and params.get("service"):
        desired["service"] = resolve_service(client, params["service"])
    return ensure_entity(client, "routes", params["name"], desired, params["state"])


def ensure_upstream(client, params):
    validate_upstream_name(params["name"])
    desired = desired_fields(params, UPSTREAM_FIELDS)
    slots = desired.get("slots")
    if slots is not None and not 10 <= slots <= 65536:
        raise ValueError("slots must be between 10 and 65536, got %d" % slots)
    if desired.get("healthchecks") is not None:
        typos = unknown_keys(desired["healthchecks"], HEALTHCHECKS_DEFAULTS)
        if typos:
            raise ValueError("unknown healthchecks option(s) %s: see Kong's upstream healthchecks fields"
                             % ", ".join(sorted(typos)))
        check_healthchecks(desired["healthchecks"])
        desired["healthchecks"] = merge_healthchecks(whole_numbers(desired["healthchecks"]))
    if desired.get("client_certificate") is not None:
        desired["client_certificate"] = {"id": desired["client_certificate"]}
    return ensure_entity(client, "upstreams", params["name"], desired, params["state"])


# -- targets ------------------------------------------------------------------------------------------------

def get_upstream(client, upstream):
    """The upstream object, or a clear error naming it when it does not exist."""
    found = client.get(_entity_path(client, "upstreams", upstream))
    if found is None:
        raise ValueError("upstream %r does not exist in Kong: create it first (mixedrun.kong.kong_upstream) or "
                         "fix the upstream option" % upstream)
    return found


def _target_view(item):
    """The stable part of a target for diffs and results."""
    if item is None:
        return {}
    return {"id": item.get("id"), "target": item.get("target"), "weight": item.get("weight"),
            "tags": sorted(item.get("tags") or [])}


HYBRID_HINT = ("the target health endpoints are not available on a hybrid-mode control plane (Kong does not "
               "register them there), and data planes have no Admin API: in hybrid mode a target's health comes from "
               "the data planes' own health checks only; point admin_url at a traditional-mode node to set it by hand")


def _health_of(client, upstream, key):
    """The health this Kong node reports for target ``key`` (None when it does not list it)."""
    try:
        for page in client.pages("/upstreams/%s/health" % client.quote(upstream["id"])):
            for item in page.get("data") or []:
                if target_key(item.get("target", "")) == key:
                    return item.get("health")
    except KongApiError as exc:
        if exc.status is not None and exc.status >= 500:
            raise exc.with_hint("Kong could not report the health of upstream %s; a hybrid-mode control plane runs "
                                "no balancer and has no health to report: point admin_url at a traditional-mode "
                                "node" % upstream.get("name"))
        raise
    return None


def node_role(client):
    """Kong's ``role`` of the node behind the client (traditional, control_plane, data_plane), from ``GET /``;
    None when the node does not say."""
    info = client.node_info() or {}
    return (info.get("configuration") or {}).get("role")


def _check_health_settable(upstream, key, weight):
    """Refuse, before any write, a health that Kong would never report back (so the task would never settle)."""
    name = upstream.get("name") or upstream["id"]
    if not healthchecks_enabled(upstream):
        raise ValueError(
            "upstream %s has no health checks enabled, so Kong runs no health checker for it: it reports its "
            "targets HEALTHCHECKS_OFF and refuses to set a target's health (\"no healthchecker found\"). Enable "
            "health checks on the upstream (mixedrun.kong.kong_upstream healthchecks: active healthy/unhealthy "
            "interval, or passive unhealthy tcp_failures/timeouts/http_failures above 0), or use weight=0 to "
            "take target %s out of the balancer instead" % (name, key))
    if weight == 0:
        raise ValueError(
            "target %s of upstream %s has weight 0: Kong never health-checks a weight-0 target (it stays "
            "HEALTHCHECKS_OFF), so its health cannot be set. Give it a weight above 0, or keep weight 0 (it "
            "already receives no traffic) and use state=present" % (key, name))


def ensure_target(client, params):
    """One target of one upstream: present / absent / healthy / unhealthy."""
    try:
        key = target_key(params["target"])
    except TargetError as exc:
        raise ValueError("target: %s" % exc)
    weight = validate_weight(params["weight"]) if params.get("weight") is not None else None
    tags = params.get("tags")
    state = params["state"]
    set_health = state in ("healthy", "unhealthy")
    upstream = get_upstream(client, params["upstream"])
    base = "/upstreams/%s/targets" % client.quote(upstream["id"])
    current = client.get("%s/%s" % (base, client.quote(key)))
    result = {"changed": False, "upstream": {"id": upstream["id"], "name": upstream.get("name")}}
    before = _target_view(current)
    if state == "absent":
        if current is not None:
            client.write("DELETE", "%s/%s" % (base, client.quote(current["id"])))
            result["changed"] = True
        result.update(target=None, diff={"before": before, "after": {}})
        return result
    health = None
    if set_health:
        # Everything that would make the health call fail or never settle is checked before any write.
        effective = weight if weight is not None else (current or {}).get("weight", 100)
        _check_health_settable(upstream, key, effective)
        if node_role(client) == "control_plane":
            # Kong 3.9: a control plane lists the targets without health and answers 404 to the health calls
            raise ValueError("admin_url is a hybrid-mode control plane, which runs no balancer: " + HYBRID_HINT
                             + "; nothing was changed")
        # Asked even for a new target: it also finds out early when this node cannot report health.
        health = _health_of(client, upstream, key)
        if health == "DNS_ERROR":
            raise ValueError("target %s of upstream %s does not resolve on this Kong node (DNS_ERROR): Kong has no "
                             "address to mark %s; fix the name or its DNS record first"
                             % (key, upstream.get("name"), state))
        result["health_before"] = health if current is not None else None
    desired = {"weight": weight, "tags": tags}
    after = current
    if current is None:
        body = dict((k, v) for k, v in desired.items() if v is not None)
        body["target"] = key
        written = client.write("POST", base, body)
        after = written if written is not None else dict({"weight": 100, "tags": None}, **body)
        result["changed"] = True
    else:
        changes = diff_entity(desired, current)
        if changes:
            written = client.write("PATCH", "%s/%s" % (base, client.quote(current["id"])), changes)
            after = written if written is not None else predict_after(current, changes)
            result["changed"] = True
    result.update(target=after, diff={"before": before, "after": _target_view(after)})
    if set_health and (current is None or health != state.upper()):
        if client.check_mode:
            client.write("PUT", "%s/%s/%s" % (base, client.quote(key), state))
        else:
            result["health_settle_seconds"] = _set_health_settled(client, upstream, key, state, after, result)
        result["changed"] = True
    return result


# How long a health write waits for this node's balancer to follow the change before it (Kong rebuilds an upstream's
# balancer asynchronously after every upstream or target write; another node's change arrives within
# db_update_frequency, 5 s by default) and to keep the health it was given.
HEALTH_SETTLE_TIMEOUT = 20.0
HEALTH_SETTLE_STEP = 0.25


def _balancer_view(client, upstream, key):
    """(health, weight) of target ``key`` in this node's balancer (``/upstreams/{u}/health``). The item's own
    ``weight`` is the database's; the balancer's is ``data.nodeWeight``. Both are None while the node has no balancer
    for the upstream, or its balancer does not hold the target yet (Kong lists it without ``health``/``data`` then)."""
    for page in client.pages("/upstreams/%s/health" % client.quote(upstream["id"])):
        for item in page.get("data") or []:
            if target_key(item.get("target", "")) == key:
                return item.get("health"), (item.get("data") or {}).get("nodeWeight")
    return None, None


def _set_health_settled(client, upstream, key, state, after, result):
    """``PUT .../healthy|unhealthy`` once this node's balancer holds the target with its written weight, then read it
    back until the balancer reports that health; a balancer rebuilt in between (which starts a new health checker
    and forgets the health) or not built yet (400 "has no balancer") is waited for and the call repeated, bounded by
    HEALTH_SETTLE_TIMEOUT. Returns the seconds it took."""
    started = time.monotonic()
    deadline = started + HEALTH_SETTLE_TIMEOUT
    path = "/upstreams/%s/targets/%s/%s" % (client.quote(upstream["id"]), client.quote(key), state)
    want_weight = (after or {}).get("weight")
    seen = None
    while True:
        seen = _balancer_view(client, upstream, key)
        balancer_ready = seen[0] not in (None, "HEALTHCHECKS_OFF") and (want_weight is None or seen[1] == want_weight)
        if seen[0] == state.upper() and balancer_ready:
            return round(time.monotonic() - started, 2)
        if balancer_ready:
            try:
                client.write("PUT", path)
            except KongApiError as exc:
                if not (exc.status == 400 and "no balancer" in exc.message) or time.monotonic() > deadline:
                    raise _health_error(exc, upstream, key, result)
        if time.monotonic() > deadline:
            raise KongApiError("GET", "/upstreams/%s/health" % upstream["id"], message=(
                "target %s of upstream %s: this Kong node's balancer did not settle within %.0f s (it reports "
                               "health %s, weight %s; wanted %s with weight %s): Kong rebuilds an upstream's balancer after "
                               "every write; retry, and check the node's error.log if it persists"
                               % (key, upstream.get("name"), HEALTH_SETTLE_TIMEOUT, seen[0] or "none (no balancer yet)", seen[1],
                                  state.upper(), want_weight)))
        time.sleep(HEALTH_SETTLE_STEP)


def _health_error(exc, upstream, key, result):
    """The failed ``PUT .../healthy|unhealthy`` with what it means here; ``result`` keeps what was written."""
    if exc.status == 404:
        # The upstream and the target were just read (or created): the route itself is missing.
        exc = exc.with_hint(HYBRID_HINT)
    elif exc.status == 400:
        exc = exc.with_hint("Kong refused to set the health of target %s of upstream %s: check that the upstream "
                            "has health checks enabled and the target a weight above 0" % (key, upstream.get("name")))
    exc.result = result
    return exc


def _desired_targets(params):
    """Validate the ``targets`` list of kong_upstream_targets; return normalised desired items."""
    default_weight = params.get("default_weight")
    if default_weight is not None:
        default_weight = validate_weight(default_weight, "default_weight")
    common = list(params.get("tags") or [])
    if params.get("purge_tag") and params["purge_tag"] not in common:
        common.append(params["purge_tag"])
    items = []
    errors = []
    for index, entry in enumerate(params.get("targets") or []):
        where = "targets[%d]" % index
        try:
            key = target_key(entry.get("target"))
        except TargetError as exc:
            errors.append("%s.target: %s" % (where, exc))
            continue
        weight = entry.get("weight")
        try:
            weight = validate_weight(weight, "%s.weight (%s)" % (where, key)) if weight is not None else default_weight
        except ValueError as exc:
            errors.append(str(exc))
            continue
        tags = entry.get("tags")
        if tags is not None or common:
            merged = list(common)
            merged.extend(t for t in (tags or []) if t not in merged)
            tags = sorted(merged)
        items.append({"target": key, "weight": weight, "tags": tags})
    if errors:
        raise ValueError("invalid targets, nothing was changed: %s" % "; ".join(errors))
    return items


def _sorted_views(items):
    return sorted((_target_view(i) for i in items), key=lambda t: t["target"])


def ensure_upstream_targets(client, params):
    """The whole target set of one upstream in one task (bounded parallel writes)."""
    desired = _desired_targets(params)
    concurrency = params.get("concurrency")
    concurrency = 8 if concurrency is None else concurrency
    if concurrency < 1 or concurrency > 64:
        raise ValueError("concurrency must be between 1 and 64, got %d" % concurrency)
    if params.get("purge_tag") and not params.get("purge"):
        raise ValueError("purge_tag only limits purge: set purge=true as well, or drop purge_tag")
    plan = plan_target_set([], desired)  # raises on a target listed twice with different settings
    upstream = get_upstream(client, params["upstream"])
    base = "/upstreams/%s/targets" % client.quote(upstream["id"])
    current = client.list(base + "/all")
    plan = plan_target_set(current, desired, purge=params.get("purge", False), purge_tag=params.get("purge_tag"))

    writes = [("create", item["target"], "POST", base, dict((k, v) for k, v in item.items() if v is not None), None)
              for item in plan["create"]]
    writes += [("update", cur["target"], "PATCH", "%s/%s" % (base, client.quote(cur["id"])), body, cur)
               for cur, body in plan["update"]]
    writes += [("delete", cur["target"], "DELETE", "%s/%s" % (base, client.quote(cur["id"])), None, cur)
               for cur in plan["delete"]]

    def apply(write):
        return client.write(write[2], write[3], write[4])

    outcome = client.map_concurrent(apply, writes, concurrency=concurrency)
    by_key = dict((target_key(t["target"]), t) for t in current)
    counts = {"created": 0, "updated": 0, "deleted": 0, "unchanged": len(plan["unchanged"])}
    applied, failures = [], []
    for write, answer, error in outcome:
        action, key, _method, _path, body, cur = write
        if error is not None:
            failures.append({"action": action, "target": key, "error": error})
            continue
        applied.append({"action": action, "target": key})
        counts[action + "d"] += 1
        if action == "delete":
            by_key.pop(target_key(key), None)
        elif answer is not None:
            by_key[target_key(answer["target"])] = answer
        elif action == "create":
            by_key[key] = dict({"id": None, "weight": 100, "tags": None}, **body)
        else:
            by_key[target_key(key)] = predict_after(cur, body)
    result = {
        "changed": bool(applied),
        "upstream": {"id": upstream["id"], "name": upstream.get("name")},
        "counts": counts,
        "diff": {"before": {"targets": _sorted_views(current)}, "after": {"targets": _sorted_views(by_key.values())}},
    }
    result["before"] = result["diff"]["before"]["targets"]
    result["after"] = result["diff"]["after"]["targets"]
    if failures:
        result["applied"] = applied
        result["failures"] = [{"action": f["action"], "target": f["target"], "error": f["error"].describe(),
                               "status": f["error"].status} for f in failures]
        raise KongBatchError(failures, len(writes), result)
    return result


# -- upstream info ------------------------------------------------------------------------------------------

def _share(part, total):
    return round(100.0 * part / total, 4) if total else 0.0


def traffic_shares(targets, tag_prefix=None):
    """Share of traffic (percent of the total weight) per tag and per ``key:value`` label group. Pure."""
    total = sum(int(t.get("weight") or 0) for t in targets)
    by_tag, by_label = {}, {}
    for item in targets:
        weight = int(item.get("weight") or 0)
        for tag in sorted(set(item.get("tags") or [])):
            if tag_prefix and not tag.startswith(tag_prefix):
                continue
            by_tag[tag] = by_tag.get(tag, 0) + weight
            if ":" in tag:
                label, value = tag.split(":", 1)
                group = by_label.setdefault(label, {})
                group[value] = group.get(value, 0) + weight
    return {
        "total_weight": total,
        "share_by_tag": dict((k, _share(v, total)) for k, v in sorted(by_tag.items())),
        "share_by_label": dict((label, dict((k, _share(v, total)) for k, v in sorted(values.items())))
                               for label, values in sorted(by_label.items())),
    }


def node_health(client, upstream_id, balancer_health=False):
    """Health of every target as this Kong node sees it (``/upstreams/{u}/health``)."""
    path = "/upstreams/%s/health" % client.quote(upstream_id)
    pages = list(client.pages(path))
    node = {"admin_url": redact_url(client.base_url), "node_id": pages[0].get("node_id"), "targets": {}}
    for page in pages:
        for item in page.get("data") or []:
            data = item.get("data") or {}
            node["targets"][target_key(item["target"])] = {
                "health": item.get("health"),
                "addresses": data.get("addresses") or [],
                # the weight this node's balancer routes with; None while it does not hold the target
                "balancer_weight": data.get("nodeWeight"),
            }
    # the balancer's own weights (a DB-less node lists at most 100 targets above, its balancer holds them all)
    answer = client.request("GET", path, params={"balancer_health": 1}) or {}
    data = answer.get("data") or {}
    held = {}
    for host in (data.get("details") or {}).get("hosts") or []:
        try:
            held[target_key("%s:%s" % (host["host"], host["port"]))] = host.get("nodeWeight")
        except (KeyError, ValueError):
            continue
    for key, entry in node["targets"].items():
        entry["balancer_weight"] = held.get(key)
    for key, weight in held.items():
        node["targets"].setdefault(key, {"health": None, "addresses": [], "balancer_weight": weight})
    if balancer_health:
        node["balancer_health"] = data.get("balancer_health")
        node["balancer_details"] = data.get("details")
    return node


def upstream_info(client, params):
    """An upstream with its targets, their per-node health and the traffic share per tag.

    ``params["admin_urls"]`` names more Kong nodes to ask for health (same connection options otherwise);
    ``params["balancer_urls"]``, when given, replaces them as the nodes asked (data planes' Status API: no token).
    Their calls are added to ``client.calls`` with their ``admin_url``. URLs are shown without any
    ``user:password@`` part."""
    for field in ("admin_urls", "balancer_urls"):
        for index, url in enumerate(params.get(field) or []):
            validate_admin_url(url, "%s[%d]" % (field, index))
    extra_clients = []
    for url in params.get("admin_urls") or []:
        extra_clients.append(KongClient.from_params(params, check_mode=client.check_mode, admin_url=url))
    admins = dict((redact_url(c.base_url).rstrip("/"), c) for c in [client] + extra_clients)
    node_clients = [client] + extra_clients
    if params.get("balancer_urls"):
        node_clients = []
        for url in params["balancer_urls"]:
            known = admins.get(redact_url(url).rstrip("/"))
            if known is None:
                known = KongClient.from_params(params, check_mode=client.check_mode, admin_url=url, admin_token=None, workspace=None)
                extra_clients.append(known)
            node_clients.append(known)
    try:
        return _upstream_info(client, params, node_clients)
    finally:
        for other in extra_clients:
            shown = redact_url(other.base_url)
            client.calls.extend(dict(call, admin_url=shown) for call in other.calls)
            other.close()


def _upstream_info(client, params, node_clients):
    upstream = client.get(_entity_path(client, "upstreams", params["upstream"]))
    if upstream is None:
        return {"changed": False, "exists": False, "upstream": None, "targets": [], "nodes": [], "consistent": None,
                "total_weight": 0, "share_by_tag": {}, "share_by_label": {}}
    targets = client.list("/upstreams/%s/targets/all" % client.quote(upstream["id"]))
    nodes = []
    if params.get("health", True):
        for node_client in node_clients:
            nodes.append(node_health(node_client, upstream["id"], params.get("balancer_health", False)))
    stored = dict((target_key(t["target"]), int(t.get("weight") or 0)) for t in targets)
    for node in nodes:
        # does this node's balancer route with the weights the database holds? (it follows a change later)
        lagging = dict((key, (node["targets"].get(key) or {}).get("balancer_weight")) for key, weight in stored.items()
                       if (node["targets"].get(key) or {}).get("balancer_weight") != weight)
        node["follows"] = not lagging
        node["lagging"] = lagging
    shares = traffic_shares(targets, params.get("tag_prefix"))
    total = shares["total_weight"]
    views = []
    for item in sorted(targets, key=lambda t: target_key(t["target"])):
        key = target_key(item["target"])
        view = _target_view(item)
        view.update(created_at=item.get("created_at"), share=_share(int(item.get("weight") or 0), total))
        health_by_node = {}
        for node in nodes:
            entry = node["targets"].get(key)
            health_by_node[node["node_id"] or node["admin_url"]] = entry["health"] if entry else None
        view["health_by_node"] = health_by_node
        states = set(v for v in health_by_node.values() if v)
        view["health"] = states.pop() if len(states) == 1 else ("MIXED" if states else None)
        views.append(view)
    result = {"changed": False, "exists": True, "upstream": upstream, "targets": views, "nodes": nodes,
              "consistent": all(node["follows"] for node in nodes) if nodes else None}
    result.update(shares)
    return result
