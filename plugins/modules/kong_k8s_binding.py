#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kong_k8s_binding
short_description: Bind a mixed service's VM and container nodes to a KIC-managed Kong with Kubernetes objects
version_added: 1.0.0
description:
  - For one mixed service in a namespace, writes with server-side apply (field manager C(mixedrun.kong)) the objects
    through which the Kong Ingress Controller (KIC 3.x) configures Kong, whose Admin API is read-only under KIC.
  - A selector-less Service C(<name>-vms) with one port, named and numbered as the container Service's port.
  - EndpointSlices for the VM nodes given in O(vm_endpoints), labelled C(kubernetes.io/service-name=<name>-vms) and
    C(endpointslice.kubernetes.io/managed-by=mixedrun.kong); one address type per slice (C(IPv4) or C(IPv6)), at
    most 1000 endpoints per slice, the port named as the Service's port; a drained node's endpoint has
    C(ready=false) (KIC then leaves it out). Slices of C(<name>-vms) that this collection owns and no longer needs
    are deleted; slices it does not own are never touched.
  - A Gateway API C(HTTPRoute) (C(gateway.networking.k8s.io/v1)) with the domains as hostnames, the Kong Gateway
    as parent, and one rule with two weighted backendRefs, the VM Service and the container Service. The two
    weights are chosen so that KIC's translation (a backendRef's weight divided, integer division, over that
    Service's ready endpoints) gives exactly O(vm_target_weight) on every ready VM endpoint and
    O(container_target_weight) on every ready container endpoint.
  - Idempotent. The live objects are read first and only the ones whose written fields differ are applied.
  - The weights depend on the ready endpoint counts; run the module again when they change (a pod added or
    removed changes KIC's division).
options:
  name:
    description:
      - The mixed service's name; the VM Service is C(<name>-vms), the HTTPRoute C(<name>) unless O(route_name).
      - A DNS label of at most 59 characters.
    type: str
    required: true
  namespace:
    description: Namespace of all objects. Default, the kubeconfig context's namespace, else V(default).
    type: str
  route_name:
    description: Name of the HTTPRoute. Default, O(name).
    type: str
  domains:
    description: The service's public host names, the HTTPRoute's C(hostnames) (a leading C(*.) wildcard is allowed).
    type: list
    elements: str
    required: true
  container_service:
    description: Name of the containers' Service (the user's, in O(namespace)); the second backendRef.
    type: str
    required: true
  port_name:
    description:
      - Name of the container Service's port to route to; needed when it has several ports.
      - The VM Service's port and the EndpointSlices' port get this name.
    type: str
  container_port:
    description: Number of the container Service's port to route to (with or instead of O(port_name)).
    type: int
  container_endpoints:
    description:
      - The number of ready container endpoints KIC sees. Default, counted from the container Service's
        EndpointSlices as KIC counts them (ready, port name matching, each address:port once).
    type: int
  vm_endpoints:
    description:
      - The VM nodes, for example RV(mixedrun.kong.node_discovery#module:nodes) of kind C(vm).
      - EndpointSlice addresses must be routable, non-loopback IP addresses (the API server refuses C(127.0.0.0/8),
        C(::1), link-local and unspecified addresses); host names are not accepted.
    type: list
    elements: dict
    default: []
    suboptions:
      target:
        description: C(IP:port), IPv6 in brackets (V(10.0.0.5:8080), V([fd00::5]:8080)).
        type: str
        required: true
      drained:
        description: Drained node; its endpoint is written with C(ready=false), so KIC gives it no target.
        type: bool
        default: false
  vm_target_weight:
    description: The Kong weight each ready VM endpoint must get (0..65535), as the split plans it.
    type: int
    required: true
  container_target_weight:
    description: The Kong weight each ready container endpoint must get (0..65535), as the split plans it.
    type: int
    required: true
  gateway:
    description: The HTTPRoute's parentRef, the Kong Gateway.
    type: dict
    required: true
    suboptions:
      name:
        description: Name of the Gateway.
        type: str
        required: true
      namespace:
        description: Namespace of the Gateway. Default, the HTTPRoute's namespace.
        type: str
      section_name:
        description: A listener of the Gateway.
        type: str
  force_conflicts:
    description:
      - When another field manager owns fields this module writes (for example the backendRef weights, changed by
        C(kubectl apply) or another controller), the API server refuses the apply (409) and the task fails naming
        that manager. V(true) takes the fields over (server-side apply with C(force)).
    type: bool
    default: false
  request_timeout:
    description: Seconds to wait for each API request.
    type: float
    default: 30
extends_documentation_fragment:
  - mixedrun.kong.k8s_auth
attributes:
  action_group:
    description: Use C(group/mixedrun.kong.k8s) in C(module_defaults) to set the Kubernetes connection options once.
    support: full
    membership:
      - mixedrun.kong.k8s
  check_mode:
    support: full
    description: Reads the live objects and reports what would be applied or deleted, without writing.
  diff_mode:
    support: full
    description: The written fields of each object before and after.
  platform:
    support: full
    platforms: posix
    description: Runs on the task's host (usually C(localhost)), which needs the C(kubernetes) Python library.
notes:
  - Needs the Gateway API v1 CRDs (HTTPRoute); without them the task fails before writing anything, naming what to
    install (the Gateway API standard install, or the lab's C(../shared/realk8s/crds)).
  - KIC names the Kong service after the backendRefs including their weights, so each weight change gives the
    Kong service and upstream a new name.
  - "The weight rules are KIC 3.x's: C(internal/dataplane/translator/translate_upstreams.go) (C(getUpstreams),
    C(getEndpoints), C(updateTargetMap)) and C(subtranslator/backendref.go)."
seealso:
  - module: mixedrun.kong.node_discovery
  - module: mixedrun.kong.kong_traffic_split
  - name: Gateway API HTTPRoute
    description: The HTTPRoute API and backendRef weights.
    link: https://gateway-api.sigs.k8s.io/api-types/httproute/
  - name: EndpointSlices
    description: Managed-by label, address types and the 1000-endpoint limit.
    link: https://kubernetes.io/docs/concepts/services-networking/endpoint-slices/
author:
  - mixedrun.kong maintainers (@mixedrun)
"""

EXAMPLES = r"""
- name: Bind shop.example.com to 3 VMs (one drained) and the shop Service's pods, 12.5 % to the pods
  mixedrun.kong.kong_k8s_binding:
    name: shop
    namespace: shop
    domains: [shop.example.com]
    container_service: shop
    port_name: http
    vm_endpoints:
      - target: 10.0.1.11:8080
      - target: 10.0.1.12:8080
      - target: "[fd00::13]:8080"
        drained: true
    vm_target_weight: 4
    container_target_weight: 1
    gateway:
      name: kong
      namespace: kong

- name: Take over the weights from another writer
  mixedrun.kong.kong_k8s_binding:
    name: shop
    namespace: shop
    domains: [shop.example.com]
    container_service: shop
    vm_endpoints:
      - target: 10.0.1.11:8080
    vm_target_weight: 0
    container_target_weight: 1
    gateway:
      name: kong
    force_conflicts: true
"""

RETURN = r"""
objects:
  description: Every object the module manages and what it did to it (C(created), C(updated), C(unchanged), C(deleted)).
  returned: always
  type: list
  elements: dict
  sample: [{"kind": "Service", "name": "shop-vms", "action": "unchanged"}, {"kind": "HTTPRoute", "name": "shop", "action": "updated"}]
calls:
  description: The write requests sent (in check mode, the ones that would be sent, marked so).
  returned: always
  type: list
  elements: str
  sample: ["PATCH /apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/shop"]
weights:
  description: The backendRef weights written and what they come from.
  returned: success
  type: dict
  contains:
    vm_backend:
      description: The VM Service's backendRef weight.
      type: int
    container_backend:
      description: The container Service's backendRef weight.
      type: int
    vm_target:
      description: The per-target weight asked for the VM endpoints.
      type: int
    container_target:
      description: The per-target weight asked for the container endpoints.
      type: int
    vm_ready_endpoints:
      description: Ready VM endpoints (drained ones excluded).
      type: int
    container_ready_endpoints:
      description: Ready container endpoints, as KIC counts them.
      type: int
  sample: {"vm_backend": 12, "container_backend": 2, "vm_target": 4, "container_target": 1, "vm_ready_endpoints": 3, "container_ready_endpoints": 2}
kic_target_weights:
  description: The distinct per-target weights KIC's translation gives each kind with these backendRef weights (the check of the round trip).
  returned: success
  type: dict
  sample: {"vm": [4], "container": [1]}
route:
  description: The HTTPRoute fields the module applies.
  returned: success
  type: dict
slices:
  description: Names of the EndpointSlices the module keeps for the VM endpoints.
  returned: success
  type: list
  elements: str
  sample: ["shop-vms-ipv4-8080-0"]
diff:
  description: The written fields before and after, per object (C(kind/name)); C(null) for an absent object.
  returned: changed
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.mixedrun.kong.plugins.module_utils._discovery import K8S_AUTH_SPEC
from ansible_collections.mixedrun.kong.plugins.module_utils._k8s_binding import (
    BindingInputError,
    K8sApi,
    K8sBindingError,
    ensure_binding,
    validate,
)
from ansible_collections.mixedrun.kong.plugins.module_utils._k8s_discovery import (
    HAS_K8S,
    K8S_IMPORT_ERROR,
    K8sDiscoveryError,
    build_api_client,
)


def argument_spec():
    spec = dict(
        name=dict(type="str", required=True),
        namespace=dict(type="str"),
        route_name=dict(type="str"),
        domains=dict(type="list", elements="str", required=True),
        container_service=dict(type="str", required=True),
        port_name=dict(type="str"),
        container_port=dict(type="int"),
        container_endpoints=dict(type="int"),
        vm_endpoints=dict(type="list", elements="dict", default=[], options=dict(
            target=dict(type="str", required=True),
            drained=dict(type="bool", default=False),
        )),
        vm_target_weight=dict(type="int", required=True),
        container_target_weight=dict(type="int", required=True),
        gateway=dict(type="dict", required=True, options=dict(
            name=dict(type="str", required=True),
            namespace=dict(type="str"),
            section_name=dict(type="str"),
        )),
        force_conflicts=dict(type="bool", default=False),
        request_timeout=dict(type="float", default=30.0),
    )
    spec.update(dict((k, dict(v)) for k, v in K8S_AUTH_SPEC.items()))
    return spec


def run(params, check_mode):
    """Validate, connect, ensure; returns the result dict; raises BindingInputError, K8sBindingError, K8sDiscoveryError."""
    spec = validate(params)
    auth = dict((k, params.get(k)) for k in ("kubeconfig", "context", "host", "api_key", "ca_cert", "validate_certs"))
    api_client, namespace, _described = build_api_client(auth)
    try:
        spec["namespace"] = spec["namespace"] or namespace
        return ensure_binding(K8sApi(api_client, timeout=params.get("request_timeout") or 30.0, secret=auth.get("api_key")), spec, check_mode)
    finally:
        api_client.close()


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        validate(module.params)
    except BindingInputError as exc:
        module.fail_json(msg=str(exc))
    if not HAS_K8S:
        module.fail_json(msg=missing_required_lib("kubernetes"), exception=K8S_IMPORT_ERROR)
    try:
        result = run(module.params, module.check_mode)
    except BindingInputError as exc:
        module.fail_json(msg=str(exc))
    except (K8sBindingError, K8sDiscoveryError) as exc:
        module.fail_json(msg="Failed to bind %s: %s" % (module.params["name"], exc), conflicting_managers=getattr(exc, "managers", []))
    for warning in result.pop("warnings", []):
        module.warn(warning)
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
