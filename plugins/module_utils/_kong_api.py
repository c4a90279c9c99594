# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's one Kong Admin API client (private to the collection).

A ``requests.Session`` with connection reuse, workspace and RBAC support, TLS options, pagination that
follows ``next``, retries decided by status AND method with jittered backoff, check-mode aware writes and
a record of every call made. It raises ``KongApiError`` and never exits the module itself.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import random
import re
import threading
import time

try:
    from urllib.parse import quote, unquote, urlsplit, urlunsplit, parse_qsl, urlencode
except ImportError:  # pragma: no cover - Python 2 is not supported by the collection
    from urllib import quote, unquote, urlencode  # type: ignore
    from urlparse import urlsplit, urlunsplit, parse_qsl  # type: ignore

try:
    import requests
    from requests.adapters import HTTPAdapter
    HAS_REQUESTS = True
    REQUESTS_IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - reported by KongModule
    requests = None
    HTTPAdapter = object
    HAS_REQUESTS = False
    REQUESTS_IMPORT_ERROR = _exc


PAGE_SIZE = 1000
# Connections kept per host; map_concurrent raises it to its concurrency so no request waits for a connection.
MIN_POOL_SIZE = 16
# Retried for every method: the request never reached Kong or Kong/its proxy said "try again".
ALWAYS_RETRYABLE = frozenset([502, 503])
# Retried only where repeating the request cannot create a second entity.
IDEMPOTENT_RETRYABLE = frozenset([500, 504])
IDEMPOTENT_METHODS = frozenset(["GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"])

STATUS_HINTS = {
    401: "Kong refused the request without valid credentials: set admin_token (or KONG_ADMIN_TOKEN), and "
         "admin_token_header if your Kong uses another rbac_auth_header",
    403: "the admin token is valid but has no permission for this: grant its RBAC role access to this "
         "entity and workspace, or use another token",
    405: "Kong refused this method; DB-less and hybrid data-plane nodes refuse every write: point admin_url "
         "at a node with a database (the control plane)",
}


def _conflict_hint(fields):
    """What a 409 means for these modules and the way out."""
    if isinstance(fields, dict) and fields:
        held = ", ".join("%s=%s" % (k, json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v)
                         for k, v in sorted(fields.items()))
        what = "Kong already holds an entity with the same unique key (%s)" % held
    else:
        what = "Kong already holds an entity with the same unique key"
    return (what + ": most likely another run or another tool created it at the same time as this task; "
            "re-run the task: it reads the entity again and updates it in place (or change the conflicting "
            "field if another entity owns it)")


class KongApiError(Exception):
    """One failed Admin API call, with Kong's own error fields. Never carries request headers."""

    def __init__(self, method, path, status=None, message=None, code=None, name=None, fields=None, body=None,
                 hint=None):
        self.method = method
        self.path = path
        self.status = status
        self.code = code
        self.name = name
        self.message = message or ""
        self.fields = fields
        self.body = body
        self._hint = hint
        super(KongApiError, self).__init__(self.describe())

    @property
    def hint(self):
        if self._hint:
            return self._hint
        if self.status == 409:
            return _conflict_hint(self.fields)
        return STATUS_HINTS.get(self.status)

    def with_hint(self, hint):
        """The same error with another explanation of what to do (for callers that know the context)."""
        return KongApiError(self.method, self.path, self.status, message=self.message, code=self.code,
                            name=self.name, fields=self.fields, body=self.body, hint=hint)

    def describe(self):
        where = "%s %s" % (self.method, self.path)
        if self.status is None:
            text = "%s: %s" % (where, self.message)
        else:
            text = "%s -> HTTP %s" % (where, self.status)
            if self.name or self.code is not None:
                text += " (%s%s)" % (self.name or "", "" if self.code is None else ", code %s" % self.code)
            if self.message:
                text += ": %s" % self.message
        if self.fields:
            text += "; fields: %s" % json.dumps(self.fields, sort_keys=True)
        if self.hint:
            text += "; %s" % self.hint
        return text

    def as_dict(self):
        return {
            "method": self.method, "path": self.path, "status": self.status, "code": self.code,
            "name": self.name, "message": self.message, "fields": self.fields,
        }


def redact_url(url):
    """Drop any user:password@ part of a URL before it is shown."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc="***@" + host)
    return urlunsplit(parts)


def url_password(value):
    """The password of a ``scheme://user:password@host`` URL (as written), or None."""
    if not isinstance(value, str) or "@" not in value or "://" not in value:
        return None
    try:
        return urlsplit(value.strip()).password or None
    except ValueError:
        return None


def url_secrets(value):
    """What a URL carries in its user part (``scheme://user:password@host``, or ``scheme://token@host``), to keep
    out of every output: the whole user part, and the password as written and unquoted. Empty for anything else."""
    if not isinstance(value, str) or "@" not in value or "://" not in value:
        return set()
    try:
        netloc = urlsplit(value.strip()).netloc
    except ValueError:
        return set()
    found = set()
    userinfo = netloc.rsplit("@", 1)[0] if "@" in netloc else ""
    if userinfo:
        found.add(userinfo)
    password = url_password(value)
    if password:
        found.update((password, unquote(password)))
    return found


def _shown_url(value):
    """``value`` for a message: without any user:password@ part, even when it does not parse as a URL."""
    try:
        return redact_url(value)
    except ValueError:
        return re.sub(r"//[^/@]*@", "//***@", value)


def check_http_url(value, field, example="https://host:port"):
    """Return ``value`` (stripped) when it is an http(s) URL with a host, else raise ValueError that names ``field``,
    shows the value (credentials masked) and says how to write it. Pure; used for every URL option before any request."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError("%s is empty: set it to an http(s) URL, e.g. %s" % (field, example))
    if not isinstance(value, str):
        raise ValueError("%s must be an http(s) URL such as %s, got %r" % (field, example, value))
    text = value.strip()
    shown = _shown_url(text)
    if "://" not in text:
        raise ValueError("%s %r is not an http(s) URL, it has no scheme: write it with one, e.g. http://%s or https://%s"
                         % (field, shown, shown.lstrip("/"), shown.lstrip("/")))
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise ValueError("%s %r is not a valid URL (%s): write it as %s" % (field, shown, exc, example))
    try:
        parts.port  # pylint: disable=pointless-statement
    except ValueError:
        raise ValueError("%s %r has an invalid port (ports go from 1 to 65535): write it as %s" % (field, shown, example))
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("%s %r is not an http(s) URL (scheme %r): write it as %s" % (field, shown, parts.scheme, example))
    if not parts.hostname or re.search(r"\s", parts.netloc):
        raise ValueError("%s %r is not an http(s) URL, it has no valid host: write it as %s" % (field, shown, example))
    return text


def validate_admin_url(url, field="admin_url"):
    """Return the admin URL without a trailing slash, or raise ValueError that says how to write it."""
    if not url or not isinstance(url, str) or not url.strip():
        raise ValueError("%s is required: set %s (or the KONG_ADMIN_URL environment variable, or module_defaults for "
                         "group/mixedrun.kong.kong), e.g. https://kong-admin.example.com:8444" % (field, field))
    text = check_http_url(url, field, "http://host:8001 or https://host:8444")
    parts = urlsplit(text)
    if parts.query or parts.fragment:
        raise ValueError("%s must not carry a query or fragment; got %r" % (field, redact_url(text)))
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def quote_segment(value):
    """Escape one path segment (a name, an id or ``host:port``; ``[`` ``]`` ``:`` stay readable)."""
    return quote(str(value), safe=":[]@")


def _backoff_delays(retries, base=0.3, cap=5.0):
    """Full-jitter exponential backoff delays for ``retries`` retries."""
    for attempt in range(retries):
        yield random.uniform(0, min(cap, base * (2 ** attempt)))


# What a TLS alert says when the server refused (or wanted) our client certificate.
CLIENT_CERT_REFUSED = ("certificate required", "unknown ca", "bad certificate", "certificate unknown",
                       "handshake failure")
# nginx's 400 pages for client-certificate trouble (ssl_verify_client on).
NGINX_CLIENT_CERT_PAGES = ("No required SSL certificate was sent", "The SSL certificate error")


class KongClient:
    """A Kong Admin API session. Thread-safe for concurrent requests; the connection pool holds
    ``max(16, pool_size)`` connections per host and grows to the concurrency of ``map_concurrent``."""

    def __init__(self, admin_url, admin_token=None, admin_token_header="Kong-Admin-Token", workspace=None,
                 headers=None, validate_certs=True, ca_path=None, client_cert=None, client_key=None,
                 timeout=10, retries=3, check_mode=False, pool_size=16, backoff_base=0.3):
        if not HAS_REQUESTS:
            raise RuntimeError("the Python library 'requests' is required on the host that runs this task: "
                               "pip install requests")
        self.base_url = validate_admin_url(admin_url)
        self.workspace = workspace or None
        self.timeout = float(timeout)
        self.retries = int(retries)
        if self.retries < 0:
            raise ValueError("retries must be 0 or more, got %d" % self.retries)
        if self.timeout <= 0:
            raise ValueError("timeout must be more than 0 seconds, got %s" % timeout)
        self.check_mode = bool(check_mode)
        self.backoff_base = backoff_base
        self.calls = []
        self._node_info = None
        self._lock = threading.Lock()
        self.session = requests.Session()
        self.pool_size = 0
        self._size_pool(max(int(pool_size), MIN_POOL_SIZE))
        self.session.headers.update({"Accept": "application/json", "User-Agent": "mixedrun.kong"})
        if headers:
            self.session.headers.update(dict((str(k), str(v)) for k, v in headers.items()))
        if admin_token:
            self.session.headers[admin_token_header or "Kong-Admin-Token"] = admin_token
        # verify/cert go with every request, not on the Session: requests lets REQUESTS_CA_BUNDLE and
        # CURL_CA_BUNDLE replace Session.verify (psf/requests#3829), which would ignore ca_path, or turn
        # verification back on under validate_certs=false. Without ca_path those variables still apply.
        self.verify = ca_path if ca_path else bool(validate_certs)
        self.cert = None
        if client_cert:
            self.cert = (client_cert, client_key) if client_key else client_cert
        elif client_key:
            raise ValueError("client_key is set without client_cert: give both, or client_cert alone when it "
                             "holds the key too")

    def _size_pool(self, size):
        """Mount an adapter that keeps ``size`` connections per host (one per request in flight)."""
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=size, max_retries=0)
        old = self.session.adapters.get("https://")
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        if old is not None:
            old.close()
        self.pool_size = size

    CONNECTION_OPTIONS = ("admin_url", "admin_token", "admin_token_header", "workspace", "headers",
                          "validate_certs", "ca_path", "client_cert", "client_key", "timeout", "retries")

    @classmethod
    def from_params(cls, params, check_mode=False, **kwargs):
        options = dict((k, params.get(k)) for k in cls.CONNECTION_OPTIONS if params.get(k) is not None)
        options.update(kwargs)
        return cls(check_mode=check_mode, **options)

    # -- URL building -----------------------------------------------------------------------------------
    def _prefix(self):
        return "/" + quote_segment(self.workspace) if self.workspace else ""

    def url_for(self, path):
        if not path.startswith("/"):
            path = "/" + path
        return self.base_url + self._prefix() + path

    @staticmethod
    def quote(value):
        return quote_segment(value)

    def _record(self, method, path, status, check_mode=False):
        entry = {"method": method, "path": path, "status": status}
        if check_mode:
            entry["check_mode"] = True
        with self._lock:
            self.calls.append(entry)

    # -- the request loop ---------------------------------------------------------------------------------
    def request(self, method, path, body=None, params=None, url=None):
        """Send one request with retries; return the decoded JSON body (or None for 204/empty).

        404 raises KongApiError like any other error status; ``get``/``delete`` map it."""
        method = method.upper()
        target_url = url or self.url_for(path)
        delays = _backoff_delays(self.retries, self.backoff_base)
        data = None
        headers = {}
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        while True:
            try:
                response = self.session.request(method, target_url, data=data, params=params, headers=headers,
                                                timeout=self.timeout, verify=self.verify, cert=self.cert)
            except requests.exceptions.RequestException as exc:
                retry = self._retry_after_exception(method, exc)
                delay = next(delays, None) if retry else None
                if delay is None:
                    self._record(method, path, None)
                    raise KongApiError(method, path, None, message=self._connection_message(exc))
                time.sleep(delay)
                continue
            status = response.status_code
            if status >= 400 and self._retry_status(method, status):
                delay = next(delays, None)
                if delay is not None:
                    time.sleep(delay)
                    continue
            self._record(method, path, status)
            if status >= 400:
                raise self._error(method, path, response)
            if status == 204 or not response.content:
                return None
            try:
                return response.json()
            except ValueError:
                raise KongApiError(method, path, status, message="the answer is not JSON (is admin_url the Kong "
                                   "Admin API and not the proxy?): %r" % response.text[:200])

    @staticmethod
    def _retry_status(method, status):
        if status in ALWAYS_RETRYABLE:
            return True
        return status in IDEMPOTENT_RETRYABLE and method in IDEMPOTENT_METHODS

    @staticmethod
    def _retry_after_exception(method, exc):
        # A refused or timed-out connect never reached Kong: safe for every method. Anything after the
        # request was sent (read timeout, dropped connection) may have been applied: only idempotent methods.
        if isinstance(exc, (requests.exceptions.ConnectTimeout, requests.exceptions.SSLError)):
            return not isinstance(exc, requests.exceptions.SSLError)
        if isinstance(exc, requests.exceptions.ConnectionError):
            text = str(exc)
            if "NewConnectionError" in text or "Connection refused" in text or "Failed to resolve" in text:
                return True
            return method in IDEMPOTENT_METHODS
        if isinstance(exc, requests.exceptions.Timeout):
            return method in IDEMPOTENT_METHODS
        return False

    def _connection_message(self, exc):
        where = redact_url(self.base_url)
        if isinstance(exc, requests.exceptions.SSLError):
            text = str(exc).lower()
            if any(mark in text for mark in CLIENT_CERT_REFUSED):
                return ("the Kong Admin API at %s (or a proxy before it) refused the TLS client certificate: set "
                        "client_cert (and client_key) to a certificate it trusts%s"
                        % (where, "" if self.cert else "; none was given"))
            if "certificate verify failed" in text or "self signed" in text or "self-signed" in text:
                return ("TLS verification of the Kong Admin API's certificate failed at %s: give ca_path (the CA "
                        "bundle that signed it), or validate_certs=false for a lab only" % where)
            return ("TLS handshake with the Kong Admin API at %s failed (%s): check that admin_url speaks https on "
                    "that port, and ca_path / client_cert" % (where, type(exc).__name__))
        if isinstance(exc, requests.exceptions.Timeout):
            return ("the Kong Admin API at %s did not answer within %ss (after %d retries): check admin_url, "
                    "or raise timeout" % (where, self.timeout, self.retries))
        if isinstance(exc, requests.exceptions.ConnectionError):
            return ("cannot reach the Kong Admin API at %s (after %d retries): check admin_url (or "
                    "KONG_ADMIN_URL) and that Kong's admin_listen is reachable from this host" % (where, self.retries))
        return "request to the Kong Admin API at %s failed: %s" % (where, type(exc).__name__)

    @staticmethod
    def _error(method, path, response):
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            fields = payload.get("fields")
            message = payload.get("message")
            if message is None and fields is None:
                # Older Kong answers {"field": "error"} without a wrapper.
                fields = payload
            return KongApiError(method, path, response.status_code, message=message, code=payload.get("code"),
                                name=payload.get("name"), fields=fields, body=payload)
        text = response.text or ""
        marks = [mark for mark in NGINX_CLIENT_CERT_PAGES if mark in text]
        if response.status_code == 400 and marks:
            # nginx (Kong's admin_listen with ssl_verify_client, or a proxy before it) answers a missing or bad
            # client certificate with an HTML 400 page, not with a TLS alert.
            return KongApiError(method, path, 400, message="%s: the Kong Admin API (or a proxy before it) requires a "
                                "TLS client certificate it trusts; set client_cert (and client_key)" % marks[0])
        return KongApiError(method, path, response.status_code, message=text[:200])

    # -- verbs --------------------------------------------------------------------------------------------
    def get(self, path, params=None):
        """GET one object; None when Kong answers 404."""
        try:
            return self.request("GET", path, params=params)
        except KongApiError as exc:
            if exc.status == 404:
                return None
            raise

    def pages(self, path, params=None):
        """Yield every page (the whole JSON answer) of a collection, following ``next`` with ``size=1000``."""
        query = dict(params or {})
        query.setdefault("size", PAGE_SIZE)
        page = self.request("GET", path, params=query) or {}
        yield page
        while page.get("next"):
            page = self.request("GET", path, url=self._next_url(page["next"], query)) or {}
            yield page

    def list(self, path, params=None):
        """GET every item of a collection (all pages)."""
        items = []
        for page in self.pages(path, params):
            items.extend(page.get("data") or [])
        return items

    def _next_url(self, next_path, query):
        parts = urlsplit(next_path)
        path = parts.path
        prefix = self._prefix()
        if prefix and not path.startswith(prefix + "/"):
            path = prefix + path
        args = dict(parse_qsl(parts.query))
        args.setdefault("size", str(query.get("size", PAGE_SIZE)))
        return self.base_url + path + "?" + urlencode(args)

    def post(self, path, body):
        return self.request("POST", path, body=body)

    def patch(self, path, body):
        return self.request("PATCH", path, body=body)

    def put(self, path, body=None):
        return self.request("PUT", path, body=body)

    def delete(self, path):
        """DELETE; True when something was deleted, False when Kong said 404 (already absent)."""
        try:
            self.request("DELETE", path)
        except KongApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def write(self, method, path, body=None):
        """A change. In check mode it is recorded and not sent (returns None)."""
        if self.check_mode:
            self._record(method.upper(), path, None, check_mode=True)
            return None
        if method.upper() == "DELETE":
            self.delete(path)
            return None
        return self.request(method, path, body=body)

    def map_concurrent(self, func, items, concurrency=8):
        """Run ``func(item)`` for every item with at most ``concurrency`` in flight.

        Returns ``[(item, result, error)]`` in input order; every item is attempted even when some fail,
        so the caller can report exactly what was applied."""
        items = list(items)
        if not items:
            return []
        if concurrency <= 1 or len(items) == 1:
            out = []
            for item in items:
                try:
                    out.append((item, func(item), None))
                except KongApiError as exc:
                    out.append((item, None, exc))
            return out
        from concurrent.futures import ThreadPoolExecutor

        workers = min(concurrency, len(items))
        if workers > self.pool_size:
            self._size_pool(max(workers, MIN_POOL_SIZE))

        def run(item):
            try:
                return (item, func(item), None)
            except KongApiError as exc:
                return (item, None, exc)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(run, items))

    def node_info(self):
        """``GET /`` of the node (version, node_id, role); not workspace-prefixed. Read once per client: a module
        run asks several times (role checks, node ids) and the answer does not change within it."""
        if self._node_info is None:
            self._node_info = self.request("GET", "/", url=self.base_url + "/") or {}
        return self._node_info

    def close(self):
        self.session.close()
