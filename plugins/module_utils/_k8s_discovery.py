# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Container node discovery from the Kubernetes API, with the official ``kubernetes`` client.

Two layers:

* ``KubernetesSource``: the I/O. ``build_api_client`` builds an API client in kubernetes.core's order (host and
  api_key alone; else the given kubeconfig/context; else in-cluster, then the default kubeconfig), lists objects
  with server-side label selectors and ``limit``/``continue`` pagination, and turns every failure into one
  ``K8sDiscoveryError`` whose message names the fix. Responses are read as plain JSON (``_preload_content=False``):
  building client model objects for thousands of pods costs seconds.
* ``discover_containers(source, options)``: pure logic over plain API dicts (any object with ``list`` and
  ``get`` works, which is how it is unit-tested), one function per ``address_mode``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import traceback

from ansible_collections.mixedrun.kong.plugins.module_utils._selector import (
    OP_EQUALS,
    Requirement,
    Selector,
    SelectorError,
    normalize_labels,
    parse_selector,
)
from ansible_collections.mixedrun.kong.plugins.module_utils._targets import TargetError, format_target, split_target

K8S_IMPORT_ERROR = None
try:
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException
    HAS_K8S = True
except ImportError:
    HAS_K8S = False
    K8S_IMPORT_ERROR = traceback.format_exc()

    class ApiException(Exception):  # pylint: disable=missing-class-docstring
        status = None

    class ConfigException(Exception):  # pylint: disable=missing-class-docstring
        pass

ADDRESS_MODES = ("endpoints", "pods", "node_port", "service")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
IN_CLUSTER_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
DEFAULT_PAGE_SIZE = 500
_NAMES_PER_SELECTOR = 50
_MAX_LIST_RESTARTS = 2

# plural -> (API prefix, resource, namespaced)
_RESOURCES = {
    "pods": ("/api/v1", "pods", True),
    "services": ("/api/v1", "services", True),
    "endpointslices": ("/apis/discovery.k8s.io/v1", "endpointslices", True),
    "nodes": ("/api/v1", "nodes", False),
}

# The Kubernetes connection options, named and read as kubernetes.core names and reads them.
K8S_AUTH_ENV = {
    "kubeconfig": "K8S_AUTH_KUBECONFIG",
    "context": "K8S_AUTH_CONTEXT",
    "host": "K8S_AUTH_HOST",
    "api_key": "K8S_AUTH_API_KEY",
    "ca_cert": "K8S_AUTH_SSL_CA_CERT",
    "validate_certs": "K8S_AUTH_VERIFY_SSL",
}


class K8sDiscoveryError(Exception):
    """A failure that stops discovery; the message says what to fix and never holds a credential."""

    def __init__(self, message, status=None):
        super(K8sDiscoveryError, self).__init__(message)
        self.status = status


# ---------------------------------------------------------------------------------------------------------
# Connection


def _redact(text, secret):
    if secret and text:
        text = text.replace(secret, "********")
    return text


def _default_kubeconfig():
    """The kubeconfig path(s) used when none is given: ``KUBECONFIG`` (possibly several, joined by ``os.pathsep``)
    or ``~/.kube/config``, read now (the kubernetes library reads KUBECONFIG once, when it is imported)."""
    return os.environ.get("KUBECONFIG") or "~/.kube/config"


def _load_kubeconfig(configuration, kubeconfig, context, secret):
    """Load ``kubeconfig`` (or the default one) with ``context`` into ``configuration``; returns
    ``(namespace, description)``; raises K8sDiscoveryError."""
    if kubeconfig:
        path = os.path.expanduser(kubeconfig)
        if not os.path.exists(path):
            raise K8sDiscoveryError("kubeconfig file %s does not exist: fix the kubeconfig option or K8S_AUTH_KUBECONFIG" % path)
    else:
        path = _default_kubeconfig()
        if not any(os.path.exists(os.path.expanduser(p)) for p in path.split(os.pathsep) if p):
            raise K8sDiscoveryError("no Kubernetes credentials found: not running in a cluster (no in-cluster service account) and no "
                                    "kubeconfig at %s; set kubeconfig (or K8S_AUTH_KUBECONFIG), or host and api_key (K8S_AUTH_HOST, "
                                    "K8S_AUTH_API_KEY)" % path)
    try:
        k8s_config.load_kube_config(config_file=path, context=context, client_configuration=configuration, persist_config=False)
        contexts, active = k8s_config.list_kube_config_contexts(config_file=path)
    except ConfigException as exc:
        raise K8sDiscoveryError("cannot load the Kubernetes configuration (%s): %s; check kubeconfig/context or K8S_AUTH_KUBECONFIG/"
                                "K8S_AUTH_CONTEXT" % (kubeconfig or "default kubeconfig %s" % path, _redact(str(exc), secret)))
    chosen = active
    if context:
        chosen = next((c for c in contexts if c.get("name") == context), None) or active
    namespace = ((chosen or {}).get("context") or {}).get("namespace") or None
    return namespace, "kubeconfig %s, context %s" % (path, (chosen or {}).get("name"))


def build_api_client(auth):
    """An ``ApiClient`` from the connection options (``kubeconfig``, ``context``, ``host``, ``api_key``,
    ``ca_cert``, ``validate_certs``), already merged with the ``K8S_AUTH_*`` environment by the caller.

    The order is kubernetes.core's (``module_utils/k8s/client.py``):

    1. ``host`` and ``api_key`` both given: they are the whole connection; no kubeconfig is read (not even a
       given one) and the namespace default is ``default``;
    2. else ``kubeconfig`` or ``context`` given: that kubeconfig (or the default one with that context);
    3. else the in-cluster service account, and when not in a cluster the default kubeconfig (``KUBECONFIG`` or
       ``~/.kube/config``). ``host`` alone is no connection of its own: it takes this path too.

    Then the given ``host`` (without a trailing ``/``), ``api_key``, ``ca_cert`` and ``validate_certs`` override
    what was loaded. Requests are never repeated by the HTTP layer (``retries = 0``): an unreachable API server
    fails after one request timeout, not after four.

    Returns ``(api_client, default_namespace, description)``; raises K8sDiscoveryError.
    """
    if not HAS_K8S:
        raise K8sDiscoveryError("the 'kubernetes' Python library is required for Kubernetes discovery: install it with "
                                "'pip install kubernetes' in the Python that runs the module")
    configuration = k8s_client.Configuration()
    kubeconfig, context, api_key = auth.get("kubeconfig"), auth.get("context"), auth.get("api_key")
    host = (auth.get("host") or "").rstrip("/") or None
    namespace, described = None, None
    if host and api_key:
        described = "host %s" % host
    elif kubeconfig or context:
        namespace, described = _load_kubeconfig(configuration, kubeconfig, context, api_key)
    else:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
            described = "in-cluster service account"
            if os.path.exists(IN_CLUSTER_NAMESPACE_FILE):
                with open(IN_CLUSTER_NAMESPACE_FILE) as handle:
                    namespace = handle.read().strip() or None
        except ConfigException:
            namespace, described = _load_kubeconfig(configuration, None, None, api_key)
    if host:
        if not api_key and configuration.host != host:
            described += ", host %s" % host      # the loaded configuration's server, replaced
        configuration.host = host
    if api_key:
        configuration.api_key = {"authorization": "Bearer " + api_key}
        configuration.api_key_prefix = {}
        # the in-cluster and exec-plugin loaders install a hook that puts their own token back before each request
        configuration.refresh_api_key_hook = None
    if auth.get("ca_cert"):
        configuration.ssl_ca_cert = auth["ca_cert"]
    if auth.get("validate_certs") is not None:
        configuration.verify_ssl = bool(auth["validate_certs"])
    # Before ApiClient(): its REST client builds the connection pool, with these retries, when it is created.
    configuration.retries = 0
    return k8s_client.ApiClient(configuration), namespace or "default", described


class KubernetesSource:
    """Reads objects as plain dicts; every error becomes a K8sDiscoveryError naming the fix."""

    def __init__(self, api_client, page_size=DEFAULT_PAGE_SIZE, timeout=30.0, secret=None):
        self.api_client = api_client
        self.page_size = int(page_size)
        self.timeout = timeout
        self.secret = secret
        self.requests = 0
        self.host = getattr(api_client.configuration, "host", "?")

    @staticmethod
    def _describe(plural, namespace, name=None):
        what = plural if name is None else "%s %s" % (plural, name)
        if plural == "nodes":
            return what
        if namespace:
            return "%s in namespace %s" % (what, namespace)
        return "%s (all namespaces)" % what

    def _get(self, plural, namespace=None, name=None, query=None):
        """GET one path of ``plural`` and return the decoded JSON body.

        Plain ApiClient calls with the client's own auth and TLS settings: the typed API classes (CoreV1Api, ...)
        import hundreds of model classes (a second or more per module run) that this never uses."""
        prefix, resource, namespaced = _RESOURCES[plural]
        path, path_params = prefix, {}
        if namespace is not None and namespaced:
            path += "/namespaces/{namespace}"
            path_params["namespace"] = namespace
        path += "/" + resource
        if name is not None:
            path += "/{name}"
            path_params["name"] = name
        describe = self._describe(plural, namespace if namespaced else None, name)
        api = self.api_client
        self.requests += 1
        try:
            if hasattr(api, "param_serialize"):     # kubernetes >= 33 (the pydantic-based client)
                method, url, headers, _body, _post = api.param_serialize("GET", path, path_params=path_params, query_params=query or [],
                                                                         header_params={"Accept": "application/json"},
                                                                         auth_settings=["BearerToken"])
                response = api.call_api(method, url, header_params=headers, _request_timeout=self.timeout)
                response.read()
                if not 200 <= response.status <= 299:
                    raise ApiException.from_response(http_resp=response, body=None, data=None)
                data = response.data
            else:
                response = api.call_api(path, "GET", path_params=path_params, query_params=query or [],
                                        header_params={"Accept": "application/json"}, auth_settings=["BearerToken"],
                                        _preload_content=False, _request_timeout=self.timeout)
                data = (response[0] if isinstance(response, tuple) else response).data
            return json.loads(data)
        except ApiException as exc:
            raise self._api_error(exc, describe)
        except (ValueError, TypeError) as exc:
            raise K8sDiscoveryError("the Kubernetes API at %s answered the %s request with something that is not JSON (%s): "
                                    "is host pointing at the API server?" % (self.host, describe, exc))
        except Exception as exc:  # urllib3 / socket errors: one message that names the fix  # pylint: disable=broad-except
            raise K8sDiscoveryError("cannot reach the Kubernetes API at %s while listing %s: %s; check host/kubeconfig/context, "
                                    "the network and the server" % (self.host, describe, _redact(_short(exc), self.secret)))

    def _api_error(self, exc, describe):
        status = getattr(exc, "status", None)
        message = ""
        try:
            message = json.loads(exc.body or "{}").get("message") or ""
        except (ValueError, AttributeError):
            message = (exc.body or "")[:300] if isinstance(exc.body, str) else ""
        message = _redact(message, self.secret)
        if status == 401:
            text = ("the Kubernetes API at %s rejected the credentials (401 Unauthorized) while listing %s: the token or client "
                    "certificate is missing, wrong or expired; fix api_key (K8S_AUTH_API_KEY) or the kubeconfig user" % (self.host, describe))
        elif status == 403:
            text = ("the Kubernetes API at %s forbids listing %s (403 Forbidden: %s); grant the account 'get' and 'list' on pods, "
                    "services, nodes and endpointslices.discovery.k8s.io (RBAC Role/ClusterRole), or use another context"
                    % (self.host, describe, message or "no reason given"))
        elif status == 404:
            text = ("the Kubernetes API at %s has no %s (404: %s); EndpointSlices need Kubernetes 1.21+ (discovery.k8s.io/v1)"
                    % (self.host, describe, message or "not found"))
        else:
            text = "the Kubernetes API at %s failed listing %s (HTTP %s: %s)" % (self.host, describe, status, message or getattr(exc, "reason", ""))
        return K8sDiscoveryError(text, status=status)

    def list(self, plural, namespace=None, label_selector=None, field_selector=None):
        """All objects of ``plural`` (``namespace`` None = all namespaces), following ``continue`` tokens.

        A 410 (the continue token expired while paging) restarts the list, at most twice."""
        base = []
        if label_selector:
            base.append(("labelSelector", label_selector))
        if field_selector:
            base.append(("fieldSelector", field_selector))
        token = None
        for _attempt in range(_MAX_LIST_RESTARTS + 1):
            items, token = [], None
            try:
                while True:
                    query = base + [("limit", self.page_size)]
                    if token:
                        query.append(("continue", token))
                    body = self._get(plural, namespace, query=query)
                    items.extend(body.get("items") or [])
                    token = (body.get("metadata") or {}).get("continue")
                    if not token:
                        return items
            except K8sDiscoveryError as exc:
                if exc.status != 410 or token is None:
                    raise
        raise K8sDiscoveryError("listing %s kept failing with 410 Gone (the list changed faster than it could be paged); "
                                "raise page_size or retry" % self._describe(plural, namespace), status=410)

    def get(self, plural, namespace, name):
        """One object, or None when it does not exist."""
        try:
            return self._get(plural, namespace, name)
        except K8sDiscoveryError as exc:
            if exc.status == 404:
                return None
            raise


def _short(exc):
    text = str(exc)
    reason = getattr(exc, "reason", None)
    if reason is not None and str(reason):
        text = str(reason)
    return text if len(text) < 300 else text[:300] + "..."


# ---------------------------------------------------------------------------------------------------------
# Pure logic over API dicts


def _meta(obj):
    return obj.get("metadata") or {}


def _qualified(obj):
    meta = _meta(obj)
    return "%s/%s" % (meta.get("namespace"), meta.get("name"))


def _port_option(value):
    """None, an int, or a port name."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("port must be a port number or a port name, not a boolean")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    return text


class _Result:
    def __init__(self):
        self.nodes = []
        self.skipped = []

    def skip(self, name, reason):
        self.skipped.append({"name": name, "kind": "container", "reason": reason})

    def add(self, name, address, port, labels, ready, source):
        try:
            target = format_target(address, port)
        except (TargetError, ValueError) as exc:
            self.skip(name, "address %s port %s is not a valid Kong target: %s" % (address, port, exc))
            return
        self.nodes.append({"name": name, "kind": "container", "address": split_target(target)[1], "port": int(port), "target": target,
                           "labels": labels, "ready": bool(ready), "source": source})


def _service_port(service, wanted):
    """The Service's port entry for the ``port`` option: by name, by ``port`` number, or the only one.

    Returns ``(port_entry, None)`` or ``(None, reason)``."""
    ports = (service.get("spec") or {}).get("ports") or []
    if not ports:
        return None, "Service %s has no ports" % _qualified(service)
    if wanted is None:
        if len(ports) == 1:
            return ports[0], None
        return None, ("Service %s has several ports (%s): set port to one of them"
                      % (_qualified(service), ", ".join(str(p.get("name") or p.get("port")) for p in ports)))
    for entry in ports:
        if isinstance(wanted, int) and entry.get("port") == wanted:
            return entry, None
        if not isinstance(wanted, int) and entry.get("name") == wanted:
            return entry, None
    return None, ("Service %s has no port %s (it has %s)"
                  % (_qualified(service), wanted, ", ".join(str(p.get("name") or p.get("port")) for p in ports)))


def _container_port_by_name(pod, name):
    for container in (pod.get("spec") or {}).get("containers") or []:
        for entry in container.get("ports") or []:
            if entry.get("name") == name:
                return entry.get("containerPort")
    return None


def _pod_ready(pod):
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


def _node_ready(node):
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


def _family(address):
    return "IPv6" if ":" in address else "IPv4"


class ContainerDiscovery:
    """Runs one ``address_mode`` over a source with ``list(plural, namespace, label_selector)`` and ``get``."""

    def __init__(self, source, options, default_namespace="default"):
        self.source = source
        self.options = options
        self.mode = options.get("address_mode") or "endpoints"
        if self.mode not in ADDRESS_MODES:
            raise ValueError("address_mode must be one of %s, got %r" % (", ".join(ADDRESS_MODES), self.mode))
        self.selector = options.get("selector_parsed")
        if self.selector is None:
            self.selector = parse_selector(options.get("selector"), "kubernetes.selector")
        self.port = _port_option(options.get("port"))
        self.default_port = options.get("default_port")
        self.include_not_ready = bool(options.get("include_not_ready"))
        self.include_terminating = bool(options.get("include_terminating"))
        self.address_type = options.get("address_type") or "auto"
        services = options.get("service") or []
        if isinstance(services, str):
            services = [services]
        self.service_names = list(services)
        namespaces = options.get("namespaces")
        if options.get("all_namespaces") or (namespaces is not None and len(namespaces) == 0):
            self.namespaces = [None]
        elif namespaces:
            self.namespaces = list(dict.fromkeys(namespaces))
        else:
            self.namespaces = [default_namespace]
        self.result = _Result()

    def run(self):
        getattr(self, "_" + self.mode)()
        self.result.nodes.sort(key=lambda n: (n["name"], n["target"]))
        return {"nodes": self.result.nodes, "skipped": self.result.skipped}

    # -- readiness filter shared by every mode --------------------------------------------------------
    def _keep(self, name, ready, terminating, serving, why_not_ready):
        """Whether a node is listed. Ready ones always; terminating ones that still serve (a draining
        EndpointSlice endpoint, a deleted pod still Ready) with include_terminating; the others (not ready, or
        terminating and no longer serving) with include_not_ready as well."""
        if terminating:
            if not self.include_terminating:
                self.result.skip(name, "terminating (set include_terminating to list it with ready: false)")
                return False
            if not serving and not self.include_not_ready:
                self.result.skip(name, "terminating and no longer serving: %s (set include_not_ready as well to list it)" % why_not_ready)
                return False
            return True
        if not ready and not self.include_not_ready:
            self.result.skip(name, "not ready: %s (set include_not_ready to list it with ready: false)" % why_not_ready)
            return False
        return True

    # -- Services ------------------------------------------------------------------------------------
    def _services(self):
        """The Services the options name or select, in a stable order."""
        found = []
        if self.service_names:
            for namespace in self.namespaces:
                if namespace is None:
                    wanted = set(self.service_names)
                    candidates = [s for s in self.source.list("services", None, self.selector.to_k8s() or None)
                                  if _meta(s).get("name") in wanted]
                    seen = set(_meta(s).get("name") for s in candidates)
                    for name in self.service_names:
                        if name not in seen:
                            self.result.skip(name, "no Service named %s matching the selector in any namespace" % name)
                    found.extend(candidates)
                    continue
                for name in self.service_names:
                    service = self.source.get("services", namespace, name)
                    if service is None:
                        self.result.skip("%s/%s" % (namespace, name), "Service %s/%s not found" % (namespace, name))
                    elif not self.selector.matches(normalize_labels(_meta(service).get("labels"))):
                        self.result.skip("%s/%s" % (namespace, name), "Service %s/%s does not match the selector %s"
                                         % (namespace, name, self.selector.to_k8s()))
                    else:
                        found.append(service)
        else:
            for namespace in self.namespaces:
                found.extend(self.source.list("services", namespace, self.selector.to_k8s() or None))
        found.sort(key=_qualified)
        return found

    def _slices_by_service(self, services):
        """``{(namespace, service): [EndpointSlice, ...]}`` for ``services``, in as few list calls as possible."""
        by_namespace = {}
        for service in services:
            by_namespace.setdefault(_meta(service).get("namespace"), []).append(_meta(service).get("name"))
        if None in self.namespaces:
            by_namespace = {None: sorted(set(n for names in by_namespace.values() for n in names))}
        wanted = set((_meta(s).get("namespace"), _meta(s).get("name")) for s in services)
        result = dict((key, []) for key in wanted)
        for namespace, names in sorted(by_namespace.items(), key=lambda kv: kv[0] or ""):
            names = sorted(set(names))
            for start in range(0, len(names), _NAMES_PER_SELECTOR):
                chunk = names[start:start + _NAMES_PER_SELECTOR]
                selector = Selector([Requirement(SERVICE_NAME_LABEL, "in", chunk)]).to_k8s()
                for endpoint_slice in self.source.list("endpointslices", namespace, selector):
                    meta = _meta(endpoint_slice)
                    key = (meta.get("namespace"), (meta.get("labels") or {}).get(SERVICE_NAME_LABEL))
                    if key in result:
                        result[key].append(endpoint_slice)
        for slices in result.values():
            slices.sort(key=lambda s: _meta(s).get("name") or "")
        return result

    def _family_for(self, service):
        if self.address_type != "auto":
            return self.address_type
        families = (service.get("spec") or {}).get("ipFamilies") or []
        return families[0] if families else None

    # -- address modes ---------------------------------------------------------------------------------
    def _endpoints(self):
        services = self._services()
        slices = self._slices_by_service(services)
        for service in services:
            meta = _meta(service)
            namespace, service_name = meta.get("namespace"), meta.get("name")
            labels = normalize_labels(meta.get("labels"))
            entry, reason = _service_port(service, self.port)
            if entry is None:
                # A number that is no Service port may still be a target port of the slices
                if isinstance(self.port, int):
                    entry = {"name": None, "port": None, "targetPort": self.port}
                else:
                    self.result.skip(_qualified(service), reason)
                    continue
            service_slices = slices.get((namespace, service_name)) or []
            if not service_slices:
                kind = (service.get("spec") or {}).get("type")
                why = "Service %s has no EndpointSlices" % _qualified(service)
                if kind == "ExternalName" or not (service.get("spec") or {}).get("selector"):
                    why += " (an ExternalName Service or one without a selector has no managed endpoints)"
                self.result.skip(_qualified(service), why)
                continue
            family = self._family_for(service)
            candidates = []
            for endpoint_slice in service_slices:
                candidates.extend(self._slice_nodes(endpoint_slice, entry, family))
            self._add_unique(candidates, labels)

    def _add_unique(self, candidates, labels):
        """Add one node per address and port of one Service.

        An endpoint may appear in several EndpointSlices of one Service (the controller's slice and a mirrored or
        user-made one, or two slices while the controller moves endpoints): Kubernetes asks clients to build the
        unique set, as kube-proxy and KIC do. Of the copies of one address:port, the one with the best conditions
        wins (ready, then terminating but serving, then not ready); among equals one that names a pod
        (``targetRef``), then the first slice by name. The node takes its name from a copy with a ``targetRef``
        when the winner has none. A target found in two Services stays a duplicate (``assemble`` reports it).
        """
        groups, order = {}, []
        for cand in candidates:
            try:
                key = format_target(cand["address"], cand["port"])        # one spelling per address (IPv6)
            except (TargetError, ValueError):
                key = (cand["address"], cand["port"])                     # result.add reports it
            if key not in groups:
                groups[key] = []
                order.append(key)
            groups[key].append(cand)
        for key in order:
            group = groups[key]
            best = min(group, key=lambda c: (0 if c["ready"] else 1 if c["terminating"] and c["serving"] else 2, not c["has_ref"]))
            name = best["name"]
            if not best["has_ref"]:
                name = next((c["name"] for c in group if c["has_ref"]), name)
            if not self._keep(name, best["ready"], best["terminating"], best["serving"], best["why"]):
                continue
            self.result.add(name, best["address"], best["port"], labels, best["ready"], best["source"])

    def _slice_port(self, endpoint_slice, entry):
        ports = endpoint_slice.get("ports") or []
        if entry.get("port") is None:          # a bare target port number
            for port in ports:
                if port.get("port") == entry["targetPort"]:
                    return port.get("port")
            return None
        name = entry.get("name") or ""
        for port in ports:
            if (port.get("name") or "") == name:
                return port.get("port")
        return None

    def _slice_nodes(self, endpoint_slice, entry, family):
        """The endpoints of one EndpointSlice as candidates (``_add_unique`` picks one per address and port)."""
        slice_name = "%s/%s" % (_meta(endpoint_slice).get("namespace"), _meta(endpoint_slice).get("name"))
        address_type = endpoint_slice.get("addressType")
        if family and address_type in ("IPv4", "IPv6") and address_type != family:
            return []  # the other family of a dual-stack Service
        port = self._slice_port(endpoint_slice, entry)
        if port is None:
            self.result.skip(slice_name, "EndpointSlice %s has no port %s" % (slice_name, entry.get("name") or entry.get("targetPort") or "(unnamed)"))
            return []
        namespace = _meta(endpoint_slice).get("namespace")
        source = "k8s:%s/endpointslice/%s" % (namespace, _meta(endpoint_slice).get("name"))
        out = []
        for endpoint in endpoint_slice.get("endpoints") or []:
            addresses = endpoint.get("addresses") or []
            ref = endpoint.get("targetRef") or {}
            name = "%s/%s" % (namespace, ref.get("name") or endpoint.get("hostname") or (addresses[0] if addresses else "?"))
            if not addresses:
                self.result.skip(name, "endpoint has no address")
                continue
            conditions = endpoint.get("conditions") or {}
            # Kubernetes: a nil ready means ready, a nil serving defers to ready, a nil terminating means not terminating
            ready = conditions.get("ready") is not False
            serving = ready if conditions.get("serving") is None else conditions.get("serving") is True
            terminating = conditions.get("terminating") is True
            ready = ready and serving and not terminating
            out.append({"name": name, "address": addresses[0], "port": port, "ready": ready, "serving": serving,
                        "terminating": terminating, "has_ref": bool(ref.get("name")), "source": source,
                        "why": "EndpointSlice condition ready=%s serving=%s" % (conditions.get("ready"), conditions.get("serving"))})
        return out

    def _pods(self):
        pod_sets = []
        if self.service_names:
            for service in self._services():
                spec = service.get("spec") or {}
                if not spec.get("selector"):
                    self.result.skip(_qualified(service), "Service %s has no pod selector" % _qualified(service))
                    continue
                entry = None
                if self.port is not None or len(spec.get("ports") or []) == 1:
                    entry, reason = _service_port(service, self.port)
                    if entry is None and not isinstance(self.port, int):
                        self.result.skip(_qualified(service), reason)
                        continue
                selector = Selector([Requirement(k, OP_EQUALS, (str(v),)) for k, v in sorted(spec["selector"].items())]) & self.selector
                pods = self.source.list("pods", _meta(service).get("namespace"), selector.to_k8s())
                pod_sets.append((pods, entry))
        else:
            for namespace in self.namespaces:
                pod_sets.append((self.source.list("pods", namespace, self.selector.to_k8s() or None), None))
        seen = set()
        for pods, entry in pod_sets:
            for pod in pods:
                key = _qualified(pod)
                if key in seen:
                    continue
                seen.add(key)
                self._pod_node(pod, entry)

    def _pod_port(self, pod, entry):
        if entry is not None:
            target = entry.get("targetPort", entry.get("port"))
            if isinstance(target, int):
                return target, None
            found = _container_port_by_name(pod, target)
            if found is None:
                return None, "no container port named %s (the Service's targetPort)" % target
            return found, None
        if isinstance(self.port, int):
            return self.port, None
        if self.port is not None:
            found = _container_port_by_name(pod, self.port)
            return (found, None) if found is not None else (None, "no container port named %s" % self.port)
        declared = [p.get("containerPort") for c in (pod.get("spec") or {}).get("containers") or [] for p in c.get("ports") or []]
        if len(declared) == 1:
            return declared[0], None
        if self.default_port:
            return self.default_port, None
        if declared:
            return None, "the pod declares several ports (%s): set port" % ", ".join(str(p) for p in declared)
        return None, "the pod declares no container port: set port or default_port"

    def _pod_node(self, pod, entry):
        meta = _meta(pod)
        name = _qualified(pod)
        status = pod.get("status") or {}
        phase = status.get("phase")
        if phase in ("Succeeded", "Failed"):
            self.result.skip(name, "pod phase is %s" % phase)
            return
        addresses = [i.get("ip") for i in status.get("podIPs") or [] if i.get("ip")] or ([status["podIP"]] if status.get("podIP") else [])
        if self.address_type in ("IPv4", "IPv6"):
            addresses = [a for a in addresses if _family(a) == self.address_type]
        if not addresses:
            self.result.skip(name, "no %spod IP yet (phase %s)" % ("" if self.address_type == "auto" else self.address_type + " ", phase))
            return
        terminating = meta.get("deletionTimestamp") is not None
        serving = _pod_ready(pod) and phase == "Running"
        ready = serving and not terminating
        if not self._keep(name, ready, terminating, serving, "pod condition Ready is not True (phase %s)" % phase):
            return
        port, reason = self._pod_port(pod, entry)
        if port is None:
            self.result.skip(name, reason)
            return
        try:
            labels = normalize_labels(meta.get("labels"))
        except TypeError:
            labels = {}
        self.result.add(name, addresses[0], port, labels, ready, "k8s:%s/pod/%s" % (meta.get("namespace"), meta.get("name")))

    def _node_port(self):
        services = self._services()
        node_selector = parse_selector(self.options.get("node_selector"), "kubernetes.node_selector")
        nodes = sorted(self.source.list("nodes", None, node_selector.to_k8s() or None), key=lambda n: _meta(n).get("name") or "")
        address_type = self.options.get("node_address_type") or "InternalIP"
        local = [s for s in services if (s.get("spec") or {}).get("externalTrafficPolicy") == "Local"]
        slices = self._slices_by_service(local) if local else {}
        for service in services:
            qualified = _qualified(service)
            entry, reason = _service_port(service, self.port)
            if entry is None:
                self.result.skip(qualified, reason)
                continue
            if not entry.get("nodePort"):
                kind = (service.get("spec") or {}).get("type")
                self.result.skip(qualified, "Service %s (type %s) has no nodePort on port %s: make it a NodePort or LoadBalancer "
                                 "Service, or use address_mode endpoints" % (qualified, kind, entry.get("name") or entry.get("port")))
                continue
            labels = normalize_labels(_meta(service).get("labels"))
            local_nodes = None
            if (service.get("spec") or {}).get("externalTrafficPolicy") == "Local":
                local_nodes = set()
                for endpoint_slice in slices.get((_meta(service).get("namespace"), _meta(service).get("name"))) or []:
                    for endpoint in endpoint_slice.get("endpoints") or []:
                        if (endpoint.get("conditions") or {}).get("ready") is not False and endpoint.get("nodeName"):
                            local_nodes.add(endpoint["nodeName"])
            for node in nodes:
                node_name = _meta(node).get("name")
                name = "%s@%s" % (qualified, node_name)
                address = next((a.get("address") for a in (node.get("status") or {}).get("addresses") or []
                                if a.get("type") == address_type and a.get("address")), None)
                if address is None:
                    self.result.skip(name, "node %s has no %s address" % (node_name, address_type))
                    continue
                ready = _node_ready(node)
                why = "node condition Ready is not True"
                if ready and local_nodes is not None and node_name not in local_nodes:
                    ready = False
                    why = "externalTrafficPolicy is Local and no ready endpoint of %s runs on node %s" % (qualified, node_name)
                terminating = (node.get("metadata") or {}).get("deletionTimestamp") is not None
                if not self._keep(name, ready and not terminating, terminating, ready, why):
                    continue
                self.result.add(name, address, entry["nodePort"], labels, ready and not terminating, "k8s:node/%s" % node_name)

    def _service(self):
        services = self._services()
        slices = self._slices_by_service(services)
        preference = self.options.get("service_address") or "auto"
        for service in services:
            qualified = _qualified(service)
            spec = service.get("spec") or {}
            entry, reason = _service_port(service, self.port)
            if entry is None:
                self.result.skip(qualified, reason)
                continue
            ingress = [i.get("ip") or i.get("hostname") for i in ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []]
            ingress = [i for i in ingress if i]
            cluster_ip = spec.get("clusterIP")
            address = None
            if preference in ("auto", "load_balancer") and ingress:
                address = ingress[0]
            elif preference == "load_balancer":
                self.result.skip(qualified, "Service %s has no load-balancer ingress address yet" % qualified)
                continue
            elif cluster_ip and cluster_ip != "None":
                address = cluster_ip
            else:
                self.result.skip(qualified, "Service %s has no ClusterIP (headless or ExternalName): use address_mode endpoints" % qualified)
                continue
            ready_count = 0
            for endpoint_slice in slices.get((_meta(service).get("namespace"), _meta(service).get("name"))) or []:
                for endpoint in endpoint_slice.get("endpoints") or []:
                    conditions = endpoint.get("conditions") or {}
                    if conditions.get("ready") is not False and conditions.get("terminating") is not True:
                        ready_count += 1
            if not self._keep(qualified, ready_count > 0, False, ready_count > 0, "the Service has no ready endpoint"):
                continue
            labels = normalize_labels(_meta(service).get("labels"))
            self.result.add(qualified, address, entry.get("port"), labels, ready_count > 0,
                            "k8s:%s/service/%s" % (_meta(service).get("namespace"), _meta(service).get("name")))


def discover_containers(source, options, default_namespace="default"):
    """Container nodes for ``options`` (the ``kubernetes`` option dict plus ``default_port``).

    Returns ``{"nodes": [...], "skipped": [...]}``; raises SelectorError / ValueError for bad options and
    K8sDiscoveryError for API failures."""
    return ContainerDiscovery(source, options, default_namespace).run()


__all__ = ["HAS_K8S", "K8S_IMPORT_ERROR", "K8sDiscoveryError", "KubernetesSource", "build_api_client", "discover_containers",
           "ContainerDiscovery", "SelectorError", "ADDRESS_MODES", "K8S_AUTH_ENV"]
