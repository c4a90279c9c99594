#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: node_discovery
short_description: Find a service's VM and container nodes by labels, in the inventory and in Kubernetes
version_added: 1.0.0
description:
  - Returns the nodes that back a service as Kong targets, from two places with one label selector grammar.
  - B(VM nodes) come from the inventory the play runs with. Hosts are chosen by a label selector over a dict of
    labels in a host variable (O(vm.labels_var), default C(mixed_labels)), by group membership (O(vm.groups)) and
    by a host pattern (O(vm.hosts_pattern)); all given criteria must hold. Variables are read as C(hostvars) gives
    them, templated, so labels may come from C(group_vars), from Jinja, or from an inventory plugin's C(compose)
    (for example cloud tags, see the examples). This part runs on the controller, in the action plugin; the
    task needs no C(hostvars) from you.
  - B(Container nodes) come from the Kubernetes API with the official C(kubernetes) client, with server-side
    label selectors and C(limit)/C(continue) pagination. O(kubernetes.address_mode) chooses the kind of node
    (an EndpointSlice endpoint of a Service, the default; a pod; a node's NodePort; or the Service's own address).
    This part runs as a module on the task's host (usually C(localhost)).
  - Each node's C(target) is C(host:port) exactly as Kong stores it (IPv4 without leading zeros, IPv6 expanded
    in brackets), ready to compare with the targets of an upstream.
  - Read-only; it never changes anything, so check mode runs it fully.
options:
  selector:
    description:
      - Label selector for both parts (overridden per part by O(vm.selector) and O(kubernetes.selector)).
      - 'A string in Kubernetes syntax: V(app=shop,tier in (web,api\),!canary,version!=1). Operators:
        C(=), C(==), C(!=), C(in), C(notin), C(key) (the label exists), C(!key) (it does not).'
      - Empty values count as in Kubernetes, V(track=) is an empty C(track) label, V(tier in (web,\)) also accepts an
        empty C(tier) and V(tier in (\)) only an empty one.
      - Or a dict in the Kubernetes C(LabelSelector) form, C(matchLabels) and C(matchExpressions) (operators
        C(In), C(NotIn), C(Exists), C(DoesNotExist)); a plain dict of labels is read as C(matchLabels); a list of
        strings is a list of requirements that must all hold.
      - A malformed selector fails the task with the column, the selector with a caret under the fault, and
        what was expected there.
    type: raw
  kind:
    description:
      - Which nodes to discover.
      - V(auto) runs the parts whose section is given (O(vm), O(kubernetes)); with neither the task fails.
      - V(vm) or V(container) runs one part; V(both) runs both (a missing section means its defaults).
    type: str
    default: auto
    choices: [auto, vm, container, both]
  vm:
    description:
      - VM discovery in the play's inventory. Give it (even V({})) to discover VMs.
      - At least one of O(selector), O(vm.selector), O(vm.groups) or O(vm.hosts_pattern) is required.
      - Hosts whose O(vm.drain_var) is true are left out and reported in RV(drained).
      - C(--limit) does not narrow discovery; the backend set is the whole fleet, whatever hosts the play targets.
    type: dict
    suboptions:
      selector:
        description: Label selector over each host's labels (same grammar as O(selector)); overrides O(selector).
        type: raw
      groups:
        description: Only hosts in one of these inventory groups (a group that is not in the inventory gives a warning).
        type: list
        elements: str
      hosts_pattern:
        description:
          - Only hosts matching this Ansible host pattern, resolved with the play's inventory, for example
            V(shop_web:&eu:!canary) or V(~web-0[1-4]).
        type: str
      labels_var:
        description:
          - Host variable holding the labels dict. Values are compared as strings (C(true) is V(true), C(1) is V(1)).
        type: str
        default: mixed_labels
      drain_var:
        description: Host variable that takes a host out of rotation when true.
        type: str
        default: mixed_drain
      address_var:
        description: Host variable with the address Kong should use; the inventory hostname when unset or empty.
        type: str
        default: ansible_host
      port_var:
        description: Host variable with the port; O(default_port) when unset.
        type: str
        default: mixed_port
  kubernetes:
    description:
      - Container discovery in Kubernetes. Give it (even V({})) to discover containers. The connection options
        are top level (O(kubeconfig), O(context), O(host), O(api_key), ...), as in kubernetes.core.
    type: dict
    suboptions:
      selector:
        description:
          - Label selector sent to the API server (same grammar as O(selector)); overrides O(selector).
          - It selects pods with O(kubernetes.address_mode=pods) and Services with the other modes.
        type: raw
      service:
        description:
          - Names of Services to use instead of selecting them by label. Missing ones are reported in RV(skipped_nodes).
          - With O(kubernetes.address_mode=pods), the pods are those the Services select, and named target ports
            are resolved through each pod's container ports.
        type: list
        elements: str
      namespaces:
        description:
          - Namespaces to look in. Unset means the context's namespace (or V(default)); V([]) means all namespaces.
        type: list
        elements: str
      all_namespaces:
        description: Look in all namespaces (the same as O(kubernetes.namespaces=[])).
        type: bool
        default: false
      address_mode:
        description:
          - V(endpoints) - the ready endpoints of each Service's EndpointSlices (the pods the Service routes to).
            An endpoint listed in several EndpointSlices of one Service (the controller's slice and a mirrored or
            user-made one labelled C(kubernetes.io/service-name)) is one node, as kube-proxy and KIC read it; the copy
            with the best conditions wins (ready, then terminating but serving, then not ready; among equals one
            with a C(targetRef), then the first slice by name), and the node is named after the pod of a copy with a
            C(targetRef). The same address and port from two Services, or from a VM and a pod, is a duplicate
            (O(allow_duplicates)).
          - V(pods) - pod IPs of the selected pods; ready means the pod's C(Ready) condition is true.
          - V(node_port) - each node's address (O(kubernetes.node_address_type)) with the Service's nodePort, for
            a Kong that runs outside the cluster. With C(externalTrafficPolicy=Local), nodes without a ready
            endpoint of the Service are not ready.
          - V(service) - the Service's load-balancer ingress address or its ClusterIP (O(kubernetes.service_address));
            ready when the Service has at least one ready endpoint.
        type: str
        default: endpoints
        choices: [endpoints, pods, node_port, service]
      port:
        description:
          - The port, as a number or a port name.
          - For Service-based modes, a Service port (by C(name) or C(port) number); C(endpoints) then uses the
            matching EndpointSlice port (the resolved target port), C(node_port) its C(nodePort), C(service) its C(port).
            A number that is no Service port is taken as a target port in C(endpoints) mode.
          - For C(pods), a container port number or name.
          - Unset, the only port is used; several ports without this option is reported in RV(skipped_nodes).
        type: raw
      page_size:
        description: Items per list request (C(limit)); pages are followed with C(continue). 1 to 10000.
        type: int
        default: 500
      include_not_ready:
        description:
          - Also return nodes that are not ready (not-ready endpoints, pods or nodes), with RV(nodes[].ready=false).
          - By default only ready, serving, non-terminating endpoints are returned; the others are in RV(skipped_nodes).
        type: bool
        default: false
      include_terminating:
        description:
          - Also return terminating endpoints, pods and nodes that still serve (an EndpointSlice endpoint with
            C(terminating=true) and C(serving=true), a pod being deleted whose C(Ready) condition is still true),
            always with RV(nodes[].ready=false), for example to drain them from Kong gracefully.
          - Terminating ones that no longer serve are listed only with O(kubernetes.include_not_ready) as well.
        type: bool
        default: false
      address_type:
        description:
          - Address family. V(auto) uses the Service's primary family (C(spec.ipFamilies[0])) for EndpointSlices and
            the primary pod IP for pods.
        type: str
        default: auto
        choices: [auto, IPv4, IPv6]
      node_selector:
        description: Label selector for the nodes used by O(kubernetes.address_mode=node_port).
        type: raw
      node_address_type:
        description: Which node address O(kubernetes.address_mode=node_port) uses.
        type: str
        default: InternalIP
        choices: [InternalIP, ExternalIP]
      service_address:
        description:
          - For O(kubernetes.address_mode=service), V(auto) takes the load-balancer ingress address when there is
            one, else the ClusterIP; V(cluster_ip) and V(load_balancer) force one.
        type: str
        default: auto
        choices: [auto, cluster_ip, load_balancer]
      request_timeout:
        description:
          - Seconds to wait for each API request (connecting and reading). A request that times out or cannot connect
            is not repeated, so an unreachable API server fails the task after about this long.
        type: float
        default: 30.0
  default_port:
    description:
      - Port for VM hosts without O(vm.port_var), and for pods that declare no single container port. 1 to 65535.
    type: int
  allow_empty:
    description:
      - Succeed when no node is found. By default an empty result fails, with the drained and skipped counts.
    type: bool
    default: false
  allow_duplicates:
    description:
      - The same target found twice (two hosts with one address and port, a VM and a pod, or one pod behind two
        selected Services) is always reported in RV(duplicates). One endpoint in several EndpointSlices of one
        Service is not a duplicate (see O(kubernetes.address_mode)). By default it fails the task, because Kong has one
        target per C(host:port).
      - When true, the first node of each target is kept (VMs before containers) and the others dropped.
    type: bool
    default: false
extends_documentation_fragment:
  - mixedrun.kong.k8s_auth
attributes:
  check_mode:
    support: full
    description: Read-only; it runs fully in check mode.
  diff_mode:
    support: N/A
    description: Nothing changes, so there is no diff.
  platform:
    support: full
    platforms: posix
    description: VM discovery runs on the controller; Kubernetes discovery on the task's host.
notes:
  - Nodes are listed VMs first (inventory order), then containers (by namespace and name).
  - Kubernetes list calls are paginated; a continue token that expires (410) restarts the list, at most twice.
  - VM discovery templates only the variables it needs, per host; 10,000 hosts take about a second.
seealso:
  - name: Kubernetes label selectors
    description: The selector syntax and semantics.
    link: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors
  - name: EndpointSlices
    description: Endpoint conditions ready, serving and terminating.
    link: https://kubernetes.io/docs/concepts/services-networking/endpoint-slices/
  - name: Ansible patterns
    description: The syntax of O(vm.hosts_pattern).
    link: https://docs.ansible.com/ansible/latest/inventory_guide/intro_patterns.html
  - module: kubernetes.core.k8s_info
    description: General Kubernetes object queries.
author:
  - mixedrun.kong maintainers (@mixedrun)
"""

EXAMPLES = r"""
- name: Shop nodes on VMs (labels in the inventory) and in Kubernetes (endpoints of the shop Service)
  mixedrun.kong.node_discovery:
    selector: app=shop,tier in (web,api),!canary
    vm:
      groups: [shop]
    kubernetes:
      namespaces: [shop]
      service: [shop]
      port: http
    kubeconfig: ~/.kube/config
  register: shop_nodes

- name: Show the targets
  ansible.builtin.debug:
    msg: "{{ shop_nodes.nodes | map(attribute='target') | list }}"

- name: VMs only, by host pattern, labels from group_vars, port 8080 when a host sets none
  mixedrun.kong.node_discovery:
    vm:
      hosts_pattern: "shop_web:&eu:!maintenance"
      selector:
        matchLabels:
          app: shop
        matchExpressions:
          - key: version
            operator: NotIn
            values: ["1.0"]
    default_port: 8080
  register: vms

# Cloud inventories: an inventory plugin's compose turns the instance tags into labels.
# aws_ec2.yml:
#   plugin: amazon.aws.aws_ec2
#   regions: [eu-west-1]
#   filters:
#     tag:app: shop
#   hostnames: [private-ip-address]
#   compose:
#     ansible_host: private_ip_address
#     mixed_labels: tags
#     mixed_port: tags['mixedrun/port'] | default(8080) | int
#     mixed_drain: tags['mixedrun/drain'] | default('false') | bool
- name: EC2 instances tagged app=shop, tier=web
  mixedrun.kong.node_discovery:
    vm:
      selector: app=shop,tier=web
  register: ec2_nodes

- name: Pods across all namespaces, including not-ready ones (reported with ready=false)
  mixedrun.kong.node_discovery:
    kubernetes:
      all_namespaces: true
      address_mode: pods
      selector:
        app: shop
      port: 8080
      include_not_ready: true
      page_size: 200
    context: prod-eu
  register: pods

- name: Kong outside the cluster reaches the Service through each node's NodePort
  mixedrun.kong.node_discovery:
    kubernetes:
      namespaces: [shop]
      service: [shop]
      address_mode: node_port
      node_selector: node-role.kubernetes.io/worker
  environment:
    K8S_AUTH_KUBECONFIG: /etc/kong/kubeconfig
  register: node_ports

- name: An empty result is fine here (first run, nothing deployed yet)
  mixedrun.kong.node_discovery:
    kubernetes:
      namespaces: [shop]
      selector: app=shop
    allow_empty: true
"""

RETURN = r"""
nodes:
  description: The nodes found, VMs first (inventory order), then containers (sorted by name).
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description:
        - Inventory hostname for a VM; C(namespace/pod) for C(endpoints) and C(pods); C(namespace/service@node) for
          C(node_port); C(namespace/service) for C(service).
      type: str
      sample: shop/shop-7c9f8-x2x1
    kind:
      description: C(vm) or C(container).
      type: str
      sample: container
    address:
      description:
        - The address (host variable, endpoint, pod IP, node address or Service address) in the form Kong stores
          (IPv4 without leading zeros, IPv6 fully expanded, without brackets).
      type: str
      sample: 10.42.0.17
    port:
      description: The port.
      type: int
      sample: 8080
    target:
      description: C(host:port) exactly as Kong stores the target (IPv6 expanded in brackets).
      type: str
      sample: 10.42.0.17:8080
    labels:
      description: The host's labels (VM), the pod's labels (C(pods)) or the Service's labels (other modes), as strings.
      type: dict
      sample: {"app": "shop", "tier": "web"}
    ready:
      description: Whether the node is ready (VMs always are; drained VMs are not listed).
      type: bool
      sample: true
    source:
      description:
        - Where the node came from, C(inventory) or C(k8s:<namespace>/endpointslice/<name>), C(k8s:<namespace>/pod/<name>),
          C(k8s:node/<name>), C(k8s:<namespace>/service/<name>).
      type: str
      sample: k8s:shop/endpointslice/shop-abcde
counts:
  description: How many nodes of each kind were found, and how many are ready.
  returned: success
  type: dict
  contains:
    vm:
      description: VM nodes.
      type: int
    container:
      description: Container nodes.
      type: int
    total:
      description: All nodes.
      type: int
    ready:
      description: Ready nodes.
      type: int
  sample: {"vm": 3, "container": 4, "total": 7, "ready": 7}
drained:
  description: Hosts that match but are out of rotation (O(vm.drain_var) true).
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: Inventory hostname.
      type: str
    kind:
      description: C(vm).
      type: str
    reason:
      description: Why it was left out.
      type: str
  sample: [{"name": "vm-3", "kind": "vm", "reason": "mixed_drain is true"}]
duplicates:
  description:
    - Targets found more than once, with every node that had it and the one kept (only kept with O(allow_duplicates)).
  returned: success, and in the failure that duplicates cause
  type: list
  elements: dict
  contains:
    target:
      description: The target.
      type: str
    nodes:
      description: Names of the nodes that had it (one pod behind two Services appears twice).
      type: list
      elements: str
    sources:
      description: The RV(nodes[].source) of each of those nodes, in the same order.
      type: list
      elements: str
    kept:
      description: The node kept in RV(nodes).
      type: str
  sample: [{"target": "127.0.10.1:18080", "nodes": ["vm-1", "vm-1-alias"], "sources": ["inventory", "inventory"], "kept": "vm-1"}]
skipped_nodes:
  description:
    - Nodes that matched but are not usable, with the reason (no address or port, not ready, terminating, ...).
    - Not called C(skipped), which Ansible reserves in task results for a skipped task.
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: Host, endpoint, pod, Service or node name.
      type: str
    kind:
      description: C(vm) or C(container).
      type: str
    reason:
      description: Why it was skipped and, where it helps, what to change.
      type: str
  sample: [{"name": "shop/shop-1", "kind": "container", "reason": "not ready: pod condition Ready is not True (phase Running) ..."}]
timings:
  description: Seconds spent in each part of this task, measured on the controller.
  returned: success
  type: dict
  contains:
    vm:
      description: VM discovery (selection and templating).
      type: float
    container:
      description: Kubernetes discovery, including the module run.
      type: float
    total:
      description: The whole task.
      type: float
  sample: {"vm": 0.41, "container": 0.9, "total": 1.32}
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.mixedrun.kong.plugins.module_utils._discovery import (
    DiscoveryError,
    argument_spec,
    assemble,
    plan_parts,
)
from ansible_collections.mixedrun.kong.plugins.module_utils._k8s_discovery import (
    HAS_K8S,
    K8S_IMPORT_ERROR,
    K8sDiscoveryError,
    KubernetesSource,
    SelectorError,
    build_api_client,
    discover_containers,
)


def run_container_discovery(params):
    """The container part for ``params``; returns ``{"nodes", "skipped"}``; raises K8sDiscoveryError."""
    options = dict(params.get("kubernetes") or {})
    options["default_port"] = params.get("default_port")
    if options.get("selector") is None:
        options["selector"] = params.get("selector")
    auth = dict((k, params.get(k)) for k in ("kubeconfig", "context", "host", "api_key", "ca_cert", "validate_certs"))
    api_client, namespace, _described = build_api_client(auth)
    try:
        source = KubernetesSource(api_client, page_size=options.get("page_size") or 500,
                                  timeout=options.get("request_timeout") or 30.0, secret=auth.get("api_key"))
        return discover_containers(source, options, default_namespace=namespace)
    finally:
        api_client.close()


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        parts = plan_parts(module.params)
    except (SelectorError, ValueError) as exc:
        module.fail_json(msg=str(exc))
    if parts["vm"] is not None:
        module.fail_json(msg="VM discovery reads the play's inventory and runs in the node_discovery action plugin on the controller; "
                             "call the module as a task (mixedrun.kong.node_discovery), not through a raw module runner")
    if not HAS_K8S:
        module.fail_json(msg=missing_required_lib("kubernetes", reason="for Kubernetes discovery"), exception=K8S_IMPORT_ERROR)
    try:
        part = run_container_discovery(module.params)
        result = assemble(None, part, allow_duplicates=module.params["allow_duplicates"], allow_empty=module.params["allow_empty"])
    except (SelectorError, ValueError) as exc:
        module.fail_json(msg=str(exc))
    except K8sDiscoveryError as exc:
        module.fail_json(msg="Kubernetes discovery failed: %s" % exc)
    except DiscoveryError as exc:
        module.fail_json(msg=str(exc), **exc.result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
