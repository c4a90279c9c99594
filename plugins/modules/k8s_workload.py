#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: k8s_workload
short_description: Apply, scale and wait for the Deployment behind a mixed service's containers
version_added: 1.0.0
description:
  - Manages the container side of a mixed service in one namespace, in three steps.
  - 1. Server-side applies (field manager C(mixedrun.kong)) the Deployment, Service and HorizontalPodAutoscaler
    objects given in O(manifests), each only when a field it writes differs from the live object.
  - 2. With O(replicas), makes the Deployment run that many pods. When a HorizontalPodAutoscaler targets the
    Deployment, its C(spec.minReplicas) is raised to O(replicas) (never lowered unless O(lower_hpa_min)), the task
    fails before writing anything when its C(spec.maxReplicas) is below O(replicas), and the Deployment's scale is
    set to the larger of its current replicas and O(replicas) (an HPA acts only at its next sync, and not at all
    without a metrics server). Without an HPA the scale is set to O(replicas), up or down. The scale is written
    through the C(scale) subresource.
  - 3. With O(wait), waits until the rollout is complete (the new generation observed, every replica updated, ready
    and available, no old pod left) and, with O(service), until that Service's EndpointSlices list a ready endpoint
    for as many of the Deployment's pods as it has replicas. On timeout, or when the rollout exceeds its progress
    deadline, the task fails with the reason, the Deployment's conditions and counts, and for each pod not ready its
    conditions and container states (for example C(ImagePullBackOff), C(CrashLoopBackOff), a failing readiness probe),
    and what to do.
options:
  namespace:
    description: Namespace of the Deployment and of every object in O(manifests).
    type: str
    required: true
  deployment:
    description: Name of the Deployment.
    type: str
    required: true
  manifests:
    description:
      - Objects to server-side apply first, as dicts (for example loaded with P(ansible.builtin.file#lookup)).
      - Only C(apps/v1) Deployment, C(v1) Service and C(autoscaling/v2) HorizontalPodAutoscaler are accepted; their
        C(metadata.namespace), when given, must be O(namespace).
      - When O(replicas) is given and the Deployment's manifest sets C(spec.replicas), that field is written as step 2
        decides; leave C(spec.replicas) out of the manifest when an HPA scales the Deployment.
      - When an HPA's manifest is given, its C(minReplicas) is written as step 2 decides.
    type: list
    elements: dict
    default: []
  replicas:
    description:
      - The number of pods wanted; see step 2 in the description. Unset, the scale is left as it is.
    type: int
  lower_hpa_min:
    description: Lower the HPA's C(spec.minReplicas) to O(replicas) when it is above.
    type: bool
    default: false
  service:
    description: Name of the Service whose ready endpoints must include the Deployment's pods before the wait ends.
    type: str
  port_name:
    description: Only the endpoints of the O(service)'s port with this name count.
    type: str
  wait:
    description: Wait for the rollout (and the O(service)'s endpoints). Never in check mode.
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait before the task fails with the reason.
    type: float
    default: 300
  force_conflicts:
    description:
      - When another field manager owns fields a manifest writes (for example the image, changed by C(kubectl set image)),
        the API server refuses the apply (409) and the task fails naming that manager. V(true) takes the fields over
        (server-side apply with C(force)).
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
    description: Reads the live objects and reports what would be applied, patched or scaled, without writing or waiting.
  diff_mode:
    support: full
    description: The written fields of each object, the HPA's minimum and the scale, before and after.
  platform:
    support: full
    platforms: posix
    description: Runs on the task's host (usually C(localhost)), which needs the C(kubernetes) Python library.
notes:
  - Reads Deployments, ReplicaSets' pods, Services, EndpointSlices and HorizontalPodAutoscalers of the namespace, and
    writes Deployments (and their C(scale)), Services and HorizontalPodAutoscalers.
  - Secrets are never shown; pod environments are not read into the result.
seealso:
  - module: mixedrun.kong.kong_k8s_binding
  - module: mixedrun.kong.node_discovery
  - name: Deployment rollout status
    description: When a Deployment's rollout is complete.
    link: https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#deployment-status
  - name: HorizontalPodAutoscaler
    description: minReplicas, maxReplicas and the scale subresource.
    link: https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/
author:
  - mixedrun.kong maintainers (@mixedrun)
"""

EXAMPLES = r"""
- name: Apply the shop's Deployment and Service, wait until both pods are endpoints
  mixedrun.kong.k8s_workload:
    namespace: shop
    deployment: shop
    manifests:
      - "{{ lookup('ansible.builtin.file', 'k8s/shop-deployment.yml') | from_yaml }}"
      - "{{ lookup('ansible.builtin.file', 'k8s/shop-service.yml') | from_yaml }}"
    replicas: 2
    service: shop
    port_name: http

- name: Scale out before moving more traffic to the containers (raises the HPA's minimum when there is one)
  mixedrun.kong.k8s_workload:
    namespace: shop
    deployment: shop
    replicas: 6
    service: shop
    wait_timeout: 600
"""

RETURN = r"""
deployment:
  description: The Deployment after the wait (in check mode or with O(wait=false), as read).
  returned: success
  type: dict
  contains:
    name:
      description: Its name.
      type: str
    generation:
      description: metadata.generation.
      type: int
    observed_generation:
      description: status.observedGeneration.
      type: int
    replicas:
      description: spec.replicas.
      type: int
    ready:
      description: status.readyReplicas.
      type: int
    updated:
      description: status.updatedReplicas.
      type: int
    available:
      description: status.availableReplicas.
      type: int
    images:
      description: The images of the pod template's containers.
      type: list
      elements: str
  sample: {"name": "shop", "generation": 3, "observed_generation": 3, "replicas": 3, "ready": 3, "updated": 3, "available": 3,
           "images": ["registry.example.com/shop:2.4.1"]}
hpa:
  description: The HorizontalPodAutoscaler targeting the Deployment, C(null) when there is none.
  returned: success
  type: dict
  sample: {"name": "shop", "min_before": 1, "min_after": 3, "max": 5}
endpoints:
  description: The ready endpoints of the Deployment's pods in O(service) (empty without O(service)).
  returned: success
  type: list
  elements: dict
  sample: [{"pod": "shop-7d9c-abcde", "address": "10.244.1.7", "port": 8080}]
objects:
  description: Each manifest and what was done to it (C(created), C(updated), C(unchanged)).
  returned: success
  type: list
  elements: dict
  sample: [{"kind": "Deployment", "name": "shop", "action": "updated"}, {"kind": "Service", "name": "shop", "action": "unchanged"}]
waited_seconds:
  description: Seconds spent waiting for the rollout.
  returned: success
  type: float
  sample: 12.5
calls:
  description: The write requests sent (in check mode, the ones that would be sent, marked so).
  returned: always
  type: list
  elements: str
  sample: ["PATCH /apis/apps/v1/namespaces/shop/deployments/shop/scale"]
not_ready_pods:
  description: On a failed wait, the pods that were not ready.
  returned: failure
  type: list
  elements: str
conflicting_managers:
  description: On a 409 conflict, the field managers that own the fields.
  returned: failure
  type: list
  elements: str
diff:
  description: The written fields before and after, per object (C(kind/name), C(Deployment/<name>/scale)).
  returned: changed and diff mode
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.mixedrun.kong.plugins.module_utils._discovery import K8S_AUTH_SPEC
from ansible_collections.mixedrun.kong.plugins.module_utils._k8s_binding import K8sBindingError
from ansible_collections.mixedrun.kong.plugins.module_utils._k8s_discovery import (
    HAS_K8S,
    K8S_IMPORT_ERROR,
    K8sDiscoveryError,
    build_api_client,
)
from ansible_collections.mixedrun.kong.plugins.module_utils._k8s_workload import (
    WorkloadApi,
    WorkloadError,
    WorkloadInputError,
    ensure_workload,
    validate,
)


def argument_spec():
    spec = dict(
        namespace=dict(type="str", required=True),
        deployment=dict(type="str", required=True),
        manifests=dict(type="list", elements="dict", default=[]),
        replicas=dict(type="int"),
        lower_hpa_min=dict(type="bool", default=False),
        service=dict(type="str"),
        port_name=dict(type="str"),
        wait=dict(type="bool", default=True),
        wait_timeout=dict(type="float", default=300.0),
        force_conflicts=dict(type="bool", default=False),
        request_timeout=dict(type="float", default=30.0),
    )
    spec.update(dict((k, dict(v)) for k, v in K8S_AUTH_SPEC.items()))
    return spec


def run(params, check_mode):
    """Validate, connect, ensure; returns the result dict; raises WorkloadInputError, WorkloadError, K8sBindingError, K8sDiscoveryError."""
    spec = validate(params)
    auth = dict((k, params.get(k)) for k in ("kubeconfig", "context", "host", "api_key", "ca_cert", "validate_certs"))
    api_client, _namespace, _described = build_api_client(auth)
    try:
        return ensure_workload(WorkloadApi(api_client, timeout=params.get("request_timeout") or 30.0, secret=auth.get("api_key")), spec, check_mode)
    finally:
        api_client.close()


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        validate(module.params)
    except WorkloadInputError as exc:
        module.fail_json(msg=str(exc))
    if not HAS_K8S:
        module.fail_json(msg=missing_required_lib("kubernetes"), exception=K8S_IMPORT_ERROR)
    where = "%s/%s" % (module.params["namespace"], module.params["deployment"])
    try:
        result = run(module.params, module.check_mode)
    except WorkloadInputError as exc:
        module.fail_json(msg=str(exc))
    except WorkloadError as exc:
        module.fail_json(msg=str(exc), **exc.details)
    except (K8sBindingError, K8sDiscoveryError) as exc:
        module.fail_json(msg="Failed to manage Deployment %s: %s" % (where, exc), conflicting_managers=getattr(exc, "managers", []))
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
