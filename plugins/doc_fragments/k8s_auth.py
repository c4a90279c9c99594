# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    # Kubernetes connection options, named and resolved as kubernetes.core resolves them.
    DOCUMENTATION = r"""
options:
  kubeconfig:
    description:
      - Path to a kubeconfig file.
      - If not set, the E(K8S_AUTH_KUBECONFIG) environment variable is used.
      - Not read when O(host) and O(api_key) are both given (they are then the whole connection, as in kubernetes.core).
      - When neither O(kubeconfig) nor O(context) is given, the in-cluster service account is tried first, then
        the default kubeconfig (E(KUBECONFIG) or C(~/.kube/config)); this is also how O(host) alone is resolved.
    type: path
  context:
    description:
      - The kubeconfig context to use. Its namespace is the module's default namespace (for example for C(kubernetes.namespaces)).
      - If not set, the E(K8S_AUTH_CONTEXT) environment variable is used; else the kubeconfig's current context.
      - With O(context) and no O(kubeconfig), the default kubeconfig is loaded with this context (no in-cluster attempt).
    type: str
  host:
    description:
      - URL of the Kubernetes API server, for example V(https://k8s.example.com:6443). A trailing V(/) is removed.
      - With O(api_key), these two are the whole connection; no kubeconfig is read and the default namespace is
        V(default). Alone, it replaces the server of the configuration loaded as O(kubeconfig) describes (the
        credentials come from there).
      - If not set, the E(K8S_AUTH_HOST) environment variable is used.
    type: str
  api_key:
    description:
      - Bearer token to authenticate with the API server; it replaces the token of a loaded kubeconfig or service account.
      - If not set, the E(K8S_AUTH_API_KEY) environment variable is used.
      - Never shown in output, logs or errors.
    type: str
  ca_cert:
    description:
      - Path to a CA certificate bundle that signs the API server's certificate.
      - If not set, the E(K8S_AUTH_SSL_CA_CERT) environment variable is used.
    type: path
    aliases: [ssl_ca_cert]
  validate_certs:
    description:
      - Whether to verify the API server's TLS certificate. Unset keeps the kubeconfig's choice (verify by default).
      - If not set, the E(K8S_AUTH_VERIFY_SSL) environment variable is used.
    type: bool
    aliases: [verify_ssl]
notes:
  - "The Kubernetes connection follows kubernetes.core: each option, else its E(K8S_AUTH_*) environment variable;
    then O(host) + O(api_key) alone, else the given O(kubeconfig)/O(context), else the in-cluster service account
    and then the default kubeconfig; finally O(host), O(api_key), O(ca_cert) and O(validate_certs) override what
    was loaded."
requirements:
  - kubernetes >= 24.2.0 (Python library, on the host that runs the module; only for Kubernetes discovery)
"""
