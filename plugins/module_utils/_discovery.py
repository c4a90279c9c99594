# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Node discovery shared by the node_discovery module and action plugin.

* ``ARGUMENT_SPEC``: the options of ``mixedrun.kong.node_discovery`` (module and action plugin validate
  against the same spec).
* ``plan_parts(params)``: which parts run (``vm``, ``container``) and their parsed selectors.
* ``discover_vms(hosts, get_var, ...)``: VM nodes from inventory hosts. Pure: ``get_var(host, name)`` gives a
  host's (templated) variable or ``MISSING``; the action plugin supplies it from the play's hostvars. Only the
  labels variable is read for every candidate; the others only for selected hosts.
* ``assemble(vm_part, container_part, ...)``: one result with counts, duplicates and the empty-result rule.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.basic import env_fallback
from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.mixedrun.kong.plugins.module_utils._selector import (
    Selector,
    SelectorError,
    normalize_labels,
    parse_selector,
)
from ansible_collections.mixedrun.kong.plugins.module_utils._targets import TargetError, format_target


class _Missing:
    def __repr__(self):
        return "MISSING"

    def __bool__(self):
        return False


MISSING = _Missing()

K8S_AUTH_SPEC = dict(
    kubeconfig=dict(type="path", fallback=(env_fallback, ["K8S_AUTH_KUBECONFIG"])),
    context=dict(type="str", fallback=(env_fallback, ["K8S_AUTH_CONTEXT"])),
    host=dict(type="str", fallback=(env_fallback, ["K8S_AUTH_HOST"])),
    api_key=dict(type="str", no_log=True, fallback=(env_fallback, ["K8S_AUTH_API_KEY"])),
    ca_cert=dict(type="path", aliases=["ssl_ca_cert"], fallback=(env_fallback, ["K8S_AUTH_SSL_CA_CERT"])),
    validate_certs=dict(type="bool", aliases=["verify_ssl"], fallback=(env_fallback, ["K8S_AUTH_VERIFY_SSL"])),
)

VM_SPEC = dict(
    selector=dict(type="raw"),
    groups=dict(type="list", elements="str"),
    hosts_pattern=dict(type="str"),
    labels_var=dict(type="str", default="mixed_labels"),
    drain_var=dict(type="str", default="mixed_drain"),
    address_var=dict(type="str", default="ansible_host"),
    port_var=dict(type="str", default="mixed_port"),
)

KUBERNETES_SPEC = dict(
    selector=dict(type="raw"),
    service=dict(type="list", elements="str"),
    namespaces=dict(type="list", elements="str"),
    all_namespaces=dict(type="bool", default=False),
    address_mode=dict(type="str", default="endpoints", choices=["endpoints", "pods", "node_port", "service"]),
    port=dict(type="raw"),
    page_size=dict(type="int", default=500),
    include_not_ready=dict(type="bool", default=False),
    include_terminating=dict(type="bool", default=False),
    address_type=dict(type="str", default="auto", choices=["auto", "IPv4", "IPv6"]),
    node_selector=dict(type="raw"),
    node_address_type=dict(type="str", default="InternalIP", choices=["InternalIP", "ExternalIP"]),
    service_address=dict(type="str", default="auto", choices=["auto", "cluster_ip", "load_balancer"]),
    request_timeout=dict(type="float", default=30.0),
)

ARGUMENT_SPEC = dict(
    selector=dict(type="raw"),
    kind=dict(type="str", default="auto", choices=["auto", "vm", "container", "both"]),
    vm=dict(type="dict", options=VM_SPEC),
    kubernetes=dict(type="dict", options=KUBERNETES_SPEC),
    default_port=dict(type="int"),
    allow_empty=dict(type="bool", default=False),
    allow_duplicates=dict(type="bool", default=False),
    **K8S_AUTH_SPEC
)


def argument_spec():
    """A fresh copy of the option spec (AnsibleModule mutates nested dicts)."""
    import copy
    return copy.deepcopy(ARGUMENT_SPEC)


class DiscoveryError(Exception):
    """Discovery ran but its result is not acceptable (empty, duplicates); ``result`` holds what was found."""

    def __init__(self, message, result=None):
        super(DiscoveryError, self).__init__(message)
        self.result = result or {}


def plan_parts(params):
    """Decide which parts run; returns ``{"vm": Selector|None, "container": Selector|None}``.

    ``kind: auto`` runs the parts whose section (``vm``, ``kubernetes``) is given. ``vm.selector`` and
    ``kubernetes.selector`` override the shared ``selector``. Raises ValueError / SelectorError naming the
    option to fix."""
    kind = params.get("kind") or "auto"
    vm_opts, k8s_opts = params.get("vm"), params.get("kubernetes")
    if kind == "auto":
        if vm_opts is None and k8s_opts is None:
            raise ValueError("say which nodes to discover: give the vm option (inventory hosts), the kubernetes option "
                             "(containers), or both, or set kind to vm, container or both")
        kind = "both" if (vm_opts is not None and k8s_opts is not None) else ("vm" if vm_opts is not None else "container")
    elif kind == "vm" and k8s_opts is not None:
        raise ValueError("kind is vm but kubernetes options are given: remove them or set kind to both")
    elif kind == "container" and vm_opts is not None:
        raise ValueError("kind is container but vm options are given: remove them or set kind to both")
    shared = parse_selector(params.get("selector"), "selector")
    parts = {"kind": kind, "vm": None, "container": None}
    if kind in ("vm", "both"):
        vm_opts = vm_opts or {}
        selector = shared
        if vm_opts.get("selector") is not None:
            selector = parse_selector(vm_opts.get("selector"), "vm.selector")
        if selector.is_empty() and not vm_opts.get("groups") and not vm_opts.get("hosts_pattern"):
            raise ValueError("VM discovery needs at least one of selector, vm.selector, vm.groups or vm.hosts_pattern "
                             "(all inventory hosts, localhost included, is never a sensible backend set)")
        parts["vm"] = selector
    if kind in ("container", "both"):
        k8s_opts = k8s_opts or {}
        selector = shared
        if k8s_opts.get("selector") is not None:
            selector = parse_selector(k8s_opts.get("selector"), "kubernetes.selector")
        parts["container"] = selector
        if k8s_opts.get("page_size") is not None and not 1 <= int(k8s_opts["page_size"]) <= 10000:
            raise ValueError("kubernetes.page_size must be between 1 and 10000, got %s" % k8s_opts["page_size"])
        if k8s_opts.get("request_timeout") is not None and float(k8s_opts["request_timeout"]) <= 0:
            raise ValueError("kubernetes.request_timeout must be a number of seconds greater than 0, got %s" % k8s_opts["request_timeout"])
    default_port = params.get("default_port")
    if default_port is not None and (isinstance(default_port, bool) or not 1 <= int(default_port) <= 65535):
        raise ValueError("default_port must be a port number between 1 and 65535, got %s" % default_port)
    return parts


def _as_port(value):
    if value is None or value is MISSING or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("a port must be a number, not a boolean")
    port = int(str(value).strip()) if not isinstance(value, int) else int(value)
    if not 1 <= port <= 65535:
        raise ValueError("port %d is outside 1..65535" % port)
    return port


def discover_vms(hosts, get_var, selector, vm_options, default_port=None):
    """VM nodes among ``hosts`` (inventory hostnames, in order).

    ``get_var(host, name)`` returns the host's templated variable or ``MISSING``. Returns ``{"nodes",
    "drained", "skipped"}``: hosts that match but are flagged with the drain variable go to ``drained``; hosts
    that match but have no usable labels, address or port go to ``skipped`` with the reason."""
    labels_var = vm_options.get("labels_var") or "mixed_labels"
    drain_var = vm_options.get("drain_var") or "mixed_drain"
    address_var = vm_options.get("address_var") or "ansible_host"
    port_var = vm_options.get("port_var") or "mixed_port"
    selector = selector or Selector()
    everything = selector.is_empty()
    nodes, drained, skipped = [], [], []
    for host in hosts:
        raw_labels = get_var(host, labels_var)
        try:
            labels = normalize_labels(None if raw_labels is MISSING else raw_labels)
        except TypeError as exc:
            if everything:
                labels = {}
            else:
                skipped.append({"name": host, "kind": "vm", "reason": "%s is not usable: %s" % (labels_var, exc)})
                continue
        if not everything and not selector.matches(labels):
            continue
        drain = get_var(host, drain_var)
        if drain is not MISSING and drain is not None:
            try:
                flagged = boolean(drain, strict=True)
            except TypeError:
                skipped.append({"name": host, "kind": "vm", "reason": "%s must be true or false, got %r" % (drain_var, drain)})
                continue
            if flagged:
                drained.append({"name": host, "kind": "vm", "reason": "%s is true" % drain_var})
                continue
        address = get_var(host, address_var)
        if address is MISSING or address is None or address == "":
            address = host
        try:
            port = _as_port(get_var(host, port_var))
        except (TypeError, ValueError) as exc:
            skipped.append({"name": host, "kind": "vm", "reason": "%s is not a port number: %s" % (port_var, exc)})
            continue
        if port is None:
            port = default_port
        if port is None:
            skipped.append({"name": host, "kind": "vm", "reason": "no port: set %s on the host (or its group) or default_port" % port_var})
            continue
        try:
            target = format_target(str(address).strip(), port)
        except (TargetError, ValueError) as exc:
            skipped.append({"name": host, "kind": "vm", "reason": "address %r is not a valid Kong target: %s" % (address, exc)})
            continue
        # plain str/int values (inventory values are tagged subclasses): Ansible carries thousands of them more cheaply
        address = target[1:target.rindex("]")] if target.startswith("[") else target.rsplit(":", 1)[0]    # as split_target, cheaper
        nodes.append({"name": str(host), "kind": "vm", "address": address, "port": int(port), "target": str(target),
                      "labels": labels, "ready": True, "source": "inventory"})
    return {"nodes": nodes, "drained": drained, "skipped": skipped}


def _describe_duplicate(entry):
    names = entry["nodes"]
    if len(set(names)) == len(names):
        return "%s from %s" % (entry["target"], ", ".join(names))
    # the same name twice (one pod behind two Services): the sources tell them apart
    return "%s from %s" % (entry["target"], ", ".join("%s (%s)" % pair for pair in zip(names, entry["sources"])))


def assemble(vm_part=None, container_part=None, allow_duplicates=False, allow_empty=False):
    """The module's result from the parts. Raises DiscoveryError (with the result) for duplicates unless
    ``allow_duplicates`` (then the first node of a target is kept, the rest dropped and reported) and for an
    empty result unless ``allow_empty``.

    A part may carry ``duplicates`` found before (the container part the module already reduced to one node
    per target): their dropped nodes count here as well, so a target found twice is reported, and fails or is
    kept once by the same rule, wherever the two nodes came from."""
    found = list((vm_part or {}).get("nodes") or []) + list((container_part or {}).get("nodes") or [])
    drained = list((vm_part or {}).get("drained") or []) + list((container_part or {}).get("drained") or [])
    skipped = list((vm_part or {}).get("skipped") or []) + list((container_part or {}).get("skipped") or [])
    earlier = {}
    for part in (vm_part, container_part):
        for entry in (part or {}).get("duplicates") or []:
            names, sources = list(entry.get("nodes") or []), list(entry.get("sources") or [])
            sources += [None] * (len(names) - len(sources))
            kept = entry.get("kept")
            index = names.index(kept) if kept in names else 0
            # every node of the entry but the one that is still in the part's nodes
            earlier.setdefault(entry["target"], []).extend(pair for i, pair in enumerate(zip(names, sources)) if i != index)
    by_target, order = {}, []
    for node in found:
        if node["target"] not in by_target:
            by_target[node["target"]] = []
            order.append(node["target"])
        by_target[node["target"]].append(node)
    nodes, duplicates = [], []
    for target in order:
        group = by_target[target]
        nodes.append(group[0])
        names = [n["name"] for n in group]
        sources = [n.get("source") for n in group]
        for name, source in earlier.pop(target, []):
            names.append(name)
            sources.append(source)
        if len(names) > 1:
            duplicates.append({"target": target, "nodes": names, "sources": sources, "kept": group[0]["name"]})
    counts = {
        "vm": sum(1 for n in nodes if n["kind"] == "vm"),
        "container": sum(1 for n in nodes if n["kind"] == "container"),
        "total": len(nodes),
        "ready": sum(1 for n in nodes if n["ready"]),
    }
    # "skipped_nodes", not "skipped": Ansible reads a truthy "skipped" in a task result as "the task was skipped"
    result = {"nodes": nodes, "counts": counts, "drained": drained, "duplicates": duplicates, "skipped_nodes": skipped}
    if duplicates and not allow_duplicates:
        detail = "; ".join(_describe_duplicate(d) for d in duplicates[:10])
        raise DiscoveryError("%d target(s) found more than once: %s%s. Two nodes with one address and port would be one Kong target: "
                             "fix the inventory or selectors, or set allow_duplicates to keep the first of each"
                             % (len(duplicates), detail, " ..." if len(duplicates) > 10 else ""), result)
    if not nodes and not allow_empty:
        reasons = {}
        for item in skipped:
            reasons[item["reason"]] = reasons.get(item["reason"], 0) + 1
        detail = ""
        if drained:
            detail += "; %d drained" % len(drained)
        if reasons:
            detail += "; skipped: " + ", ".join("%s (%d)" % (r, c) for r, c in sorted(reasons.items(), key=lambda kv: -kv[1])[:5])
        raise DiscoveryError("no nodes found%s. Check the selectors, groups, namespaces and address_mode, or set allow_empty "
                             "to accept an empty result" % detail, result)
    return result


__all__ = ["ARGUMENT_SPEC", "K8S_AUTH_SPEC", "MISSING", "DiscoveryError", "SelectorError", "argument_spec", "assemble",
           "discover_vms", "plan_parts"]
