# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    # The binding of a mixed service: Kong's Admin API, or Kubernetes objects read by the Kong Ingress Controller.
    DOCUMENTATION = r"""
options:
  binding:
    description:
      - How the mixed service is bound to Kong.
      - V(admin_api), the service's upstream and targets written through Kong's Admin API.
      - V(kubernetes), Kong is managed by the Kong Ingress Controller (KIC) and its Admin API is read-only; the split is
        the two backendRef weights of the service's Gateway API HTTPRoute (the VM Service C(<name>-vms) and the containers'
        Service, as M(mixedrun.kong.kong_k8s_binding) writes them), written with server-side apply, and the Admin API URLs
        are only read, to verify what each Kong node routes with.
    type: str
    choices: [admin_api, kubernetes]
    default: admin_api
  kubernetes:
    description:
      - Where the service's binding is in Kubernetes and how to reach the API server; used only with O(binding=kubernetes).
    type: dict
    suboptions:
      name:
        description: The mixed service's name (the VM Service is C(<name>-vms)). Default, the O(upstream) option.
        type: str
      namespace:
        description: Namespace of the HTTPRoute and both Services. Required with O(binding=kubernetes).
        type: str
      route_name:
        description: Name of the HTTPRoute. Default, O(kubernetes.name).
        type: str
      force_conflicts:
        description:
          - When another field manager owns the backendRef weights, the task fails naming it; V(true) takes them over.
        type: bool
        default: false
      request_timeout:
        description: Seconds to wait for each Kubernetes API request.
        type: float
        default: 30
      kubeconfig:
        description: Path to a kubeconfig file; else E(K8S_AUTH_KUBECONFIG), the in-cluster account, then the default kubeconfig.
        type: path
      context:
        description: The kubeconfig context; else E(K8S_AUTH_CONTEXT).
        type: str
      host:
        description: URL of the API server; else E(K8S_AUTH_HOST).
        type: str
      api_key:
        description: Bearer token; else E(K8S_AUTH_API_KEY). Never shown in output, logs or errors.
        type: str
      ca_cert:
        description: CA bundle of the API server's certificate; else E(K8S_AUTH_SSL_CA_CERT).
        type: path
        aliases: [ssl_ca_cert]
      validate_certs:
        description: Whether to verify the API server's certificate; else E(K8S_AUTH_VERIFY_SSL).
        type: bool
        aliases: [verify_ssl]
"""
