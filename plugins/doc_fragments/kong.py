# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    # The Kong Admin API connection options, shared by every module of the collection.
    DOCUMENTATION = r"""
options:
  admin_url:
    description:
      - URL of the Kong Admin API, for example V(https://kong-admin.example.com:8444) or V(http://127.0.0.1:8001).
      - A path prefix is kept (for an Admin API behind a reverse proxy under a sub-path).
      - Credentials in the URL (V(https://user:password@kong-admin.example.com:8444)) are sent as HTTP basic
        authentication (for a proxy in front of the Admin API); the password is masked in everything the task
        returns, and URLs the task shows have no C(user:password@) part.
      - If not set, the E(KONG_ADMIN_URL) environment variable is used. The task fails with a clear
        message when neither is set.
      - Set it once for every Kong module with C(module_defaults) and the action group
        C(group/mixedrun.kong.kong).
    type: str
  admin_token:
    description:
      - Kong Enterprise RBAC token, sent in the header named by O(admin_token_header).
      - If not set, the E(KONG_ADMIN_TOKEN) environment variable is used.
      - Never shown in output, diffs or errors.
    type: str
  admin_token_header:
    description:
      - Name of the header that carries O(admin_token) (Kong's C(rbac_auth_header)).
      - If not set, the E(KONG_ADMIN_TOKEN_HEADER) environment variable is used.
    type: str
    default: Kong-Admin-Token
  workspace:
    description:
      - Kong Enterprise workspace; requests go to C(<admin_url>/<workspace>/...).
      - If not set, the E(KONG_WORKSPACE) environment variable is used; without either, Kong's default workspace.
    type: str
  headers:
    description:
      - Extra HTTP headers sent with every request, for example for an authenticating proxy in front of the
        Admin API. Values are treated as secrets and never shown.
    type: dict
  validate_certs:
    description:
      - Verify the Admin API's TLS certificate. Only turn this off in a lab.
      - If not set, the E(KONG_VALIDATE_CERTS) environment variable is used.
    type: bool
    default: true
  ca_path:
    description:
      - CA bundle (PEM) used to verify the Admin API's certificate.
      - If not set, the E(KONG_CA_PATH) environment variable is used.
    type: path
  client_cert:
    description:
      - Client certificate (PEM) for mutual TLS with the Admin API or a proxy in front of it.
      - If not set, the E(KONG_CLIENT_CERT) environment variable is used.
    type: path
  client_key:
    description:
      - Private key (PEM) of O(client_cert), when the certificate file does not hold it.
      - If not set, the E(KONG_CLIENT_KEY) environment variable is used.
    type: path
  timeout:
    description:
      - Seconds to wait for each Admin API answer.
    type: float
    default: 10
  retries:
    description:
      - How many times a failed request is retried, with jittered exponential backoff.
      - Connection failures and HTTP 502/503 are retried for every method; HTTP 500/504 only for
        GET, PUT, PATCH and DELETE, never for POST (a repeated POST could create a second entity).
    type: int
    default: 3
requirements:
  - requests >= 2.28 (on the host that runs the task)
"""

    # Attributes shared by every Kong module.
    ATTRIBUTES = r"""
attributes:
  action_group:
    description: Use C(group/mixedrun.kong.kong) in C(module_defaults) to set the connection options once.
    support: full
    membership:
      - mixedrun.kong.kong
"""
