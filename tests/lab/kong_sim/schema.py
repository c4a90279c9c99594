"""Entity schemas of Kong 3.9 (the fields the project uses), validation with Kong's messages, and coercion of
form-urlencoded / multipart bodies to the schema's types."""

import copy
import ipaddress
import re
from urllib.parse import urlsplit

DEFAULT_TARGET_PORT = 8000

_NAME_RE = re.compile(r"^[0-9A-Za-z\-._]+$")
_IPV4_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)\.(\d+):?(\d*)$")
_TAG_RE = re.compile(r"^[ !-+\-.0-~\x80-\U0010ffff]+$")
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_ROUTE_NAME_RE = re.compile(r"^[\w.\-~]+$")
_METHOD_RE = re.compile(r"^[A-Z]+$")

HTTP_2XX_3XX = [200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 306, 307, 308]


def is_uuid(value):
    return isinstance(value, str) and bool(_UUID_RE.match(value))


# ---------------------------------------------------------------------------------------------------------------
# host names and addresses (kong/tools/ip.lua: hostname_type, normalize_ip, format_host)


def hostname_type(value):
    if value.count(":") > 1:
        return "ipv6"
    if re.match(r"^[\d.]+$", value.replace(":", "")):
        return "ipv4"
    return "name"


def normalize_ip(value):
    """Return ``{"type", "host", "port"}`` or None when ``value`` is not a valid host[:port]."""
    kind = hostname_type(value)
    if kind == "ipv4":
        match = _IPV4_RE.match(value)
        if not match:
            return None
        octets = [int(x) for x in match.group(1, 2, 3, 4)]
        if any(o > 255 for o in octets):
            return None
        port = int(match.group(5)) if match.group(5) else None
        if port is not None and port > 65535:
            return None
        return {"type": "ipv4", "host": "%d.%d.%d.%d" % tuple(octets), "port": port}
    if kind == "ipv6":
        port = None
        if value.startswith("["):
            match = re.match(r"^\[([^\]]+)\](?::(\d+))?$", value)
            if not match:
                return None
            address = match.group(1)
            if match.group(2):
                port = int(match.group(2))
                if port > 65535:
                    return None
        else:
            address = value
        try:
            parsed = ipaddress.IPv6Address(address)
        except ValueError:
            return None
        return {"type": "ipv6", "host": parsed.exploded, "port": port}
    name, port = value, None
    match = re.search(r":(\d+)$", value)
    if match:
        name = value[:match.start()]
        port = int(match.group(1))
        if port > 65535:
            return None
    if not name or not _NAME_RE.match(name):
        return None
    segments = name.split(".")
    for index, segment in enumerate(segments):
        if segment.endswith("-") or (segment == "" and index != len(segments) - 1):
            return None
    return {"type": "name", "host": name, "port": port}


def format_host(parsed, default_port=None):
    host = "[%s]" % parsed["host"] if parsed["type"] == "ipv6" else parsed["host"]
    port = parsed["port"] if parsed["port"] is not None else default_port
    return host if port is None else "%s:%d" % (host, port)


# ---------------------------------------------------------------------------------------------------------------
# custom validators (return an error message or None)


def _valid_tag(tag):
    if not _TAG_RE.match(tag) or "," in tag or "/" in tag:
        return "invalid tag '%s': expected printable ascii (except `,` and `/`) or valid utf-8 sequences" % tag
    return None


def _upstream_name(name):
    parsed = normalize_ip(name)
    if not parsed:
        return "Invalid name; must be a valid hostname"
    if parsed["type"] != "name":
        return "Invalid name ('%s'); no ip addresses allowed" % name
    if parsed["port"] is not None:
        return "Invalid name ('%s'); no port allowed" % name
    return None


def _target(value):
    if not normalize_ip(value):
        return "Invalid target; not a valid hostname or ip address"
    return None


def _host(value):
    parsed = normalize_ip(value)
    if not parsed:
        return "invalid hostname: %s" % value
    if parsed["port"] is not None:
        return "must not have a port"
    return None


def _host_with_wildcard(value):
    original = value
    if value.count("*") > 1:
        return "invalid wildcard: must have at most one wildcard"
    if "*" in value:
        if not (value.startswith("*.") or re.search(r"\.\*(:\d+)?$", value)):
            return "invalid wildcard: must be placed at leftmost or rightmost label"
        value = value.replace("*", "wildcard")
    if not normalize_ip(value):
        return "invalid hostname: %s" % original
    return None


def _route_path(value):
    if not (value.startswith("/") or value.startswith("~/")):
        return "should start with: / (fixed path) or ~/ (regex path)"
    if value.startswith("~/"):
        try:
            re.compile(value[1:])
        except re.error:
            return "invalid regex: '%s'" % value[1:]
    return None


def _service_path(value):
    if not value.startswith("/"):
        return "should start with: /"
    return None


def _method(value):
    if not _METHOD_RE.match(value):
        return "invalid value: %s" % value
    return None


def _name(value):
    if not _ROUTE_NAME_RE.match(value):
        return "invalid value '%s': it must only contain alphanumeric and '., -, _, ~' characters" % value
    return None


# ---------------------------------------------------------------------------------------------------------------
# schemas


def _int(default=None, between=None, required=False):
    return {"type": "integer", "default": default, "between": between, "required": required}


def _bool(default=None, required=False):
    return {"type": "boolean", "default": default, "required": required}


def _str(default=None, required=False, one_of=None, custom=None, nullable=True):
    return {"type": "string", "default": default, "required": required, "one_of": one_of, "custom": custom, "nullable": nullable}


def _array(elements, default=None, is_set=False, required=False):
    return {"type": "set" if is_set else "array", "elements": elements, "default": default, "required": required}


def _record(fields, required=False, default_record=True):
    return {"type": "record", "fields": fields, "required": required, "default_record": default_record}


TAGS = _array(_str(custom=_valid_tag), is_set=True)
HASH_ON = ["none", "consumer", "ip", "header", "cookie", "path", "query_arg", "uri_capture"]
STATUS = _int(between=(100, 999))
SECONDS = {"type": "number", "default": None, "between": (0, 65535), "required": False}

HEALTHCHECKS = _record([
    ("active", _record([
        ("type", _str("http", required=True, one_of=["tcp", "http", "https", "grpc", "grpcs"])),
        ("timeout", dict(SECONDS, default=1)),
        ("concurrency", _int(10, (1, 2147483648), required=True)),
        ("http_path", _str("/", required=True, custom=_service_path)),
        ("headers", {"type": "map", "default": None, "required": False, "values": "array"}),
        ("https_sni", _str(custom=_host)),
        ("https_verify_certificate", _bool(True, required=True)),
        ("healthy", _record([
            ("interval", dict(SECONDS, default=0)),
            ("http_statuses", _array(STATUS, default=[200, 302])),
            ("successes", _int(0, (0, 255))),
        ])),
        ("unhealthy", _record([
            ("interval", dict(SECONDS, default=0)),
            ("http_statuses", _array(STATUS, default=[429, 404, 500, 501, 502, 503, 504, 505])),
            ("tcp_failures", _int(0, (0, 255))),
            ("timeouts", _int(0, (0, 255))),
            ("http_failures", _int(0, (0, 255))),
        ])),
    ])),
    ("passive", _record([
        ("type", _str("http", required=True, one_of=["tcp", "http", "https", "grpc", "grpcs"])),
        ("healthy", _record([
            ("http_statuses", _array(STATUS, default=list(HTTP_2XX_3XX))),
            ("successes", _int(0, (0, 255))),
        ])),
        ("unhealthy", _record([
            ("http_statuses", _array(STATUS, default=[429, 500, 503])),
            ("tcp_failures", _int(0, (0, 255))),
            ("timeouts", _int(0, (0, 255))),
            ("http_failures", _int(0, (0, 255))),
        ])),
    ])),
    ("threshold", {"type": "number", "default": 0, "between": (0, 100), "required": False}),
])

UPSTREAM = [
    ("name", _str(required=True, custom=_upstream_name)),
    ("algorithm", _str("round-robin", required=True, one_of=["consistent-hashing", "least-connections", "round-robin", "latency"])),
    ("hash_on", _str("none", required=True, one_of=HASH_ON)),
    ("hash_fallback", _str("none", required=True, one_of=HASH_ON)),
    ("hash_on_header", _str()),
    ("hash_fallback_header", _str()),
    ("hash_on_cookie", _str()),
    ("hash_on_cookie_path", _str("/", custom=_service_path)),
    ("hash_on_query_arg", _str()),
    ("hash_fallback_query_arg", _str()),
    ("hash_on_uri_capture", _str()),
    ("hash_fallback_uri_capture", _str()),
    ("slots", _int(10000, (10, 65536), required=True)),
    ("healthchecks", HEALTHCHECKS),
    ("tags", TAGS),
    ("host_header", _str(custom=_host)),
    ("client_certificate", _record([("id", _str(required=True))], default_record=False)),
    ("use_srv_name", _bool(False)),
]

TARGET = [
    ("target", _str(required=True, custom=_target)),
    ("weight", _int(100, (0, 65535), required=True)),
    ("tags", TAGS),
    ("upstream", _record([("id", _str(required=True))], required=True, default_record=False)),
]

PROTOCOLS = ["grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp", "ws", "wss"]

SERVICE = [
    ("name", _str(custom=_name)),
    ("retries", _int(5, (0, 32767))),
    ("protocol", _str("http", required=True, one_of=PROTOCOLS)),
    ("host", _str(required=True, custom=_host)),
    ("port", _int(80, (0, 65535), required=True)),
    ("path", _str(custom=_service_path)),
    ("connect_timeout", _int(60000, (1, 2147483646))),
    ("write_timeout", _int(60000, (1, 2147483646))),
    ("read_timeout", _int(60000, (1, 2147483646))),
    ("tags", TAGS),
    ("client_certificate", _record([("id", _str(required=True))], default_record=False)),
    ("tls_verify", _bool()),
    ("tls_verify_depth", _int(None, (0, 64))),
    ("ca_certificates", _array(_str())),
    ("enabled", _bool(True, required=True)),
]

ROUTE = [
    ("name", _str(custom=_name)),
    ("protocols", _array(_str(one_of=PROTOCOLS), default=["http", "https"], is_set=True, required=True)),
    ("methods", _array(_str(custom=_method), is_set=True)),
    ("hosts", _array(_str(custom=_host_with_wildcard))),
    ("paths", _array(_str(custom=_route_path))),
    ("headers", {"type": "map", "default": None, "required": False}),
    ("https_redirect_status_code", _int(426, required=True)),
    ("regex_priority", _int(0)),
    ("strip_path", _bool(True, required=True)),
    ("path_handling", _str("v0", one_of=["v0", "v1"])),
    ("preserve_host", _bool(False, required=True)),
    ("request_buffering", _bool(True, required=True)),
    ("response_buffering", _bool(True, required=True)),
    ("snis", _array(_str(), is_set=True)),
    ("sources", _array({"type": "map", "default": None, "required": False}, is_set=True)),
    ("destinations", _array({"type": "map", "default": None, "required": False}, is_set=True)),
    ("tags", TAGS),
    ("service", _record([("id", _str(required=True))], default_record=False)),
]

WORKSPACE = [
    ("name", _str(required=True, custom=_name)),
    ("comment", _str()),
    ("config", {"type": "map", "default": None, "required": False}),
    ("meta", {"type": "map", "default": None, "required": False}),
]

CONSUMER = [
    ("username", _str()),
    ("custom_id", _str()),
    ("tags", TAGS),
]

SCHEMAS = {"upstreams": UPSTREAM, "targets": TARGET, "services": SERVICE, "routes": ROUTE, "workspaces": WORKSPACE, "consumers": CONSUMER}
SINGULAR = {"upstreams": "upstream", "targets": "target", "services": "service", "routes": "route", "workspaces": "workspace",
            "consumers": "consumer"}


# ---------------------------------------------------------------------------------------------------------------
# defaults, merge, validation


def _default_of(spec):
    if spec["type"] == "record":
        if not spec.get("default_record", True):
            return None
        return {name: _default_of(sub) for name, sub in spec["fields"]}
    return copy.deepcopy(spec.get("default"))


def fill_defaults(fields, entity):
    """Add every missing field with its default (records recursively)."""
    out = {}
    for name, spec in fields:
        if name in entity:
            value = entity[name]
            if spec["type"] == "record" and isinstance(value, dict):
                value = fill_defaults(spec["fields"], value) if spec.get("default_record", True) else value
            out[name] = value
        else:
            out[name] = _default_of(spec)
    for name, value in entity.items():
        if name not in out:
            out[name] = value
    return out


def merge(fields, current, patch):
    """PATCH semantics: records are merged field by field, everything else is replaced."""
    out = dict(current)
    specs = dict(fields)
    for name, value in patch.items():
        spec = specs.get(name)
        if spec and spec["type"] == "record" and spec.get("default_record", True) and isinstance(value, dict) \
                and isinstance(current.get(name), dict):
            out[name] = merge(spec["fields"], current[name], value)
        else:
            out[name] = value
    return out


def _check_value(spec, value):
    """Errors for one non-null value: a string, a dict (record) or a list (array elements)."""
    kind = spec["type"]
    if kind == "string":
        if not isinstance(value, str):
            return "expected a string"
        if value == "":
            return "length must be at least 1"
        if spec.get("one_of") and value not in spec["one_of"]:
            return "expected one of: %s" % ", ".join(spec["one_of"])
        if spec.get("custom"):
            return spec["custom"](value)
        return None
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
            return "expected an integer"
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "expected a number"
    elif kind == "boolean":
        return None if isinstance(value, bool) else "expected a boolean"
    elif kind == "map":
        if not isinstance(value, dict):
            return "expected a map"
        if spec.get("values") == "array" and any(not isinstance(v, list) for v in value.values()):
            return "expected an array"
        return None
    elif kind in ("array", "set"):
        if not isinstance(value, list):
            return "expected a set" if kind == "set" else "expected an array"
        errors = [None] * len(value)
        for i, item in enumerate(value):
            errors[i] = "required field missing" if item is None else _check_value(spec["elements"], item)
        if any(errors):
            while errors and errors[-1] is None:
                errors.pop()
            return errors
        return None
    elif kind == "record":
        if not isinstance(value, dict):
            return "expected a record"
        errors = validate_fields(spec["fields"], value)
        return errors or None
    if spec.get("between") and not spec["between"][0] <= value <= spec["between"][1]:
        return "value should be between %s and %s" % spec["between"]
    return None


def validate_fields(fields, entity, skip=()):
    """Return the nested errors dict for ``entity`` (empty when valid)."""
    errors = {}
    specs = dict(fields)
    for name, value in entity.items():
        if name in skip:
            continue
        if name not in specs:
            errors[name] = "unknown field"
    for name, spec in fields:
        if name in skip:
            continue
        value = entity.get(name)
        if value is None:
            if spec.get("required"):
                errors[name] = "required field missing"
            continue
        err = _check_value(spec, value)
        if err:
            errors[name] = err
    return errors


def normalise_numbers(fields, entity):
    """Integers sent as 5.0 become 5, like Lua numbers that are integral."""
    for name, spec in fields:
        value = entity.get(name)
        if spec["type"] == "integer" and isinstance(value, float) and value.is_integer():
            entity[name] = int(value)
        elif spec["type"] == "record" and isinstance(value, dict):
            normalise_numbers(spec["fields"], value)
        elif spec["type"] in ("array", "set") and isinstance(value, list) and spec["elements"]["type"] == "integer":
            entity[name] = [int(v) if isinstance(v, float) and v.is_integer() else v for v in value]


# ---------------------------------------------------------------------------------------------------------------
# entity specific checks and transformations (return errors dict)


# hash_on value -> what hash_fallback may be (Kong 3.9's upstream entity_checks; the orders are Kong's messages')
_FALLBACK_ONE_OF = {
    "none": ["none"],
    "cookie": ["none"],
    "ip": ["none", "consumer", "header", "cookie", "path", "query_arg", "uri_capture"],
    "consumer": ["none", "ip", "header", "cookie", "path", "query_arg", "uri_capture"],
    "path": ["none", "consumer", "header", "cookie", "query_arg", "ip", "uri_capture"],
}
# hash_on / hash_fallback value -> the field it needs
_HASH_ON_NEEDS = {"header": "hash_on_header", "cookie": "hash_on_cookie", "query_arg": "hash_on_query_arg", "uri_capture": "hash_on_uri_capture"}
_FALLBACK_NEEDS = {"header": "hash_fallback_header", "cookie": "hash_on_cookie", "query_arg": "hash_fallback_query_arg",
                   "uri_capture": "hash_fallback_uri_capture"}
_DISTINCT = (("hash_on_header", "hash_fallback_header"), ("hash_on_query_arg", "hash_fallback_query_arg"),
             ("hash_on_uri_capture", "hash_fallback_uri_capture"))


def upstream_entity_checks(upstream):
    """The upstream schema's cross-field rules (conditional hash_on / hash_fallback, distinct hash keys); errors dict."""
    errors = {}
    hash_on, fallback = upstream.get("hash_on") or "none", upstream.get("hash_fallback") or "none"
    needed = _HASH_ON_NEEDS.get(hash_on)
    allowed = _FALLBACK_ONE_OF.get(hash_on)
    if needed and upstream.get(needed) is None:
        errors[needed] = "required field missing"
        errors["@entity"] = ["failed conditional validation given value of field 'hash_on'"]
    elif allowed is not None and fallback not in allowed:
        errors["hash_fallback"] = "expected one of: %s" % ", ".join(allowed)
        errors["@entity"] = ["failed conditional validation given value of field 'hash_on'"]
    if errors:
        return errors
    needed = _FALLBACK_NEEDS.get(fallback)
    if needed and upstream.get(needed) is None:
        return {needed: "required field missing", "@entity": ["failed conditional validation given value of field 'hash_fallback'"]}
    for first, second in _DISTINCT:
        if upstream.get(first) is not None and upstream.get(first) == upstream.get(second):
            return {"@entity": ["values of these fields must be distinct: '%s', '%s'" % (first, second)]}
    return errors


def _nonempty(value):
    """Kong's ``is_nonempty`` (kong/db/schema/init.lua): not null, not an empty string, list or map."""
    return value is not None and value != "" and value != [] and value != {}


def consumer_entity_checks(consumer, updating=False):
    """The consumer's ``at_least_one_of`` rule (username, custom_id). Kong runs it even when those fields have errors
    (``run_with_invalid_fields``); a PATCH's message starts with ``when updating, ``."""
    if _nonempty(consumer.get("username")) or _nonempty(consumer.get("custom_id")):
        return {}
    message = "at least one of these fields must be non-empty: 'custom_id', 'username'"
    return {"@entity": [("when updating, " if updating else "") + message]}


def dedupe_sets(fields, entity):
    """Kong stores a ``set`` without repeated elements (first occurrence kept): tags ``["a", "a"]`` read ``["a"]``."""
    for name, spec in fields:
        value = entity.get(name)
        if spec["type"] == "set" and isinstance(value, list) and all(isinstance(v, (str, int, float, bool)) for v in value):
            out = []
            for item in value:
                if item not in out:
                    out.append(item)
            entity[name] = out


def route_entity_checks(route):
    errors = {}
    protocols = route.get("protocols") or []
    if any(p in ("http", "https") for p in protocols):
        if not any(route.get(f) for f in ("methods", "hosts", "headers", "paths", "snis")):
            which = "https" if "https" in protocols else "http"
            fields = "'methods', 'hosts', 'headers', 'paths', 'snis'" if which == "https" else "'methods', 'hosts', 'headers', 'paths'"
            errors["@entity"] = ["must set one of %s when 'protocols' is '%s'" % (fields, which)]
    return errors


def service_from_url(body):
    """Expand the ``url`` shorthand into protocol/host/port/path; returns errors dict."""
    url = body.pop("url", None)
    if url is None:
        return {}
    if not isinstance(url, str):
        return {"url": "expected a string"}
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return {"url": "missing host in url"}
    body["protocol"] = parts.scheme
    body["host"] = parts.hostname
    try:
        port = parts.port
    except ValueError:
        return {"url": "invalid port in url"}
    body["port"] = port if port is not None else (443 if parts.scheme in ("https", "grpcs", "wss", "tls") else 80)
    body["path"] = parts.path or None
    return {}


def normalise_target(value):
    parsed = normalize_ip(value)
    return format_host(parsed, DEFAULT_TARGET_PORT)


def healthchecks_on(upstream):
    checks = upstream.get("healthchecks") or {}
    active = checks.get("active") or {}
    passive = checks.get("passive") or {}
    return bool((active.get("healthy") or {}).get("interval") or (active.get("unhealthy") or {}).get("interval")
                or (passive.get("unhealthy") or {}).get("tcp_failures") or (passive.get("unhealthy") or {}).get("timeouts")
                or (passive.get("unhealthy") or {}).get("http_failures"))


# ---------------------------------------------------------------------------------------------------------------
# form bodies: flat string key/values -> typed nested structure


def _coerce_scalar(spec, text):
    kind = spec["type"] if spec else "string"
    if kind in ("integer", "number"):
        try:
            num = float(text)
        except ValueError:
            return text
        return int(num) if num.is_integer() and kind == "integer" else num
    if kind == "boolean":
        if text in ("true", "false"):
            return text == "true"
        return text
    if kind in ("array", "set"):
        if text == "":
            return []
        return [_coerce_scalar(spec["elements"], text)]
    return text


def _spec_at(fields, path):
    specs = dict(fields)
    spec = None
    for part in path:
        spec = specs.get(part) if specs is not None else None
        if spec is None:
            return None
        specs = dict(spec["fields"]) if spec["type"] == "record" else None
    return spec


def form_to_body(fields, pairs):
    """Turn ``[(key, value)]`` (``a.b.c=1``, ``tags[]=x``, ``tags[2]=y``, repeated ``tags=x``) into a typed dict."""
    body = {}
    for raw_key, value in pairs:
        key = re.sub(r"\[\d*\]$", "", raw_key)
        path = key.split(".")
        spec = _spec_at(fields, path)
        node = body
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            last = path[-1]
            is_list = spec is not None and spec["type"] in ("array", "set") or raw_key.endswith("]")
            if is_list:
                elem = spec["elements"] if spec and spec["type"] in ("array", "set") else None
                items = node.setdefault(last, [])
                if isinstance(items, list) and value != "":
                    items.append(_coerce_scalar(elem, value))
            else:
                node[last] = _coerce_scalar(spec, value)
    return body
