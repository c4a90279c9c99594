#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kong_upstream
short_description: Manage a Kong upstream (a load-balanced set of targets)
version_added: 1.0.0
description:
  - Create, update or delete one Kong Gateway upstream through the Admin API.
  - Only the options you give are compared with what Kong holds. An update sends a C(PATCH) with only the
    differing fields.
  - The targets of the upstream are managed with M(mixedrun.kong.kong_upstream_targets) (the whole set) or
    M(mixedrun.kong.kong_target) (one target).
extends_documentation_fragment:
  - mixedrun.kong.kong
  - mixedrun.kong.kong.ATTRIBUTES
attributes:
  check_mode:
    support: full
    description: Reports what would change and the API calls that would be made; sends no write.
  diff_mode:
    support: full
    description: Returns the upstream before and after the change.
options:
  name:
    description:
      - Name of the upstream, a hostname without a port (not an IP address), for example V(shop.upstream).
        A service whose C(host) is this name balances over the upstream's targets.
      - The id of an existing upstream is accepted too.
      - Checked before any request is sent.
    type: str
    required: true
  state:
    description:
      - V(present) creates or updates the upstream, V(absent) deletes it.
      - Deleting an upstream deletes its targets too.
    type: str
    choices: [present, absent]
    default: present
  algorithm:
    description: Load-balancing algorithm. Kong's default is V(round-robin).
    type: str
    choices: [round-robin, consistent-hashing, least-connections, latency]
  hash_on:
    description: What to hash on with V(consistent-hashing). Kong's default is V(none).
    type: str
    choices: [none, consumer, ip, header, cookie, path, query_arg, uri_capture]
  hash_fallback:
    description: What to hash on when O(hash_on) gives no value. Kong's default is V(none).
    type: str
    choices: [none, consumer, ip, header, cookie, path, query_arg, uri_capture]
  hash_on_header:
    description: Header name with O(hash_on=header).
    type: str
  hash_fallback_header:
    description: Header name with O(hash_fallback=header).
    type: str
  hash_on_cookie:
    description: Cookie name with O(hash_on=cookie) or O(hash_fallback=cookie).
    type: str
  hash_on_cookie_path:
    description: Path of the cookie Kong sets with cookie hashing. Kong's default is V(/).
    type: str
  hash_on_query_arg:
    description: Query argument with O(hash_on=query_arg).
    type: str
  hash_fallback_query_arg:
    description: Query argument with O(hash_fallback=query_arg).
    type: str
  hash_on_uri_capture:
    description: URI capture group with O(hash_on=uri_capture).
    type: str
  hash_fallback_uri_capture:
    description: URI capture group with O(hash_fallback=uri_capture).
    type: str
  slots:
    description: Number of slots in the balancer ring, 10 to 65536. Kong's default is V(10000).
    type: int
  host_header:
    description: Host header sent to the targets instead of the target's host.
    type: str
  client_certificate:
    description: Id of a Kong certificate used as client certificate towards the targets.
    type: str
  use_srv_name:
    description: Use the name from an SRV record as the C(Host) header. Kong's default is V(false).
    type: bool
  healthchecks:
    description:
      - Kong's C(healthchecks) record, with the keys C(active), C(passive) and C(threshold) as in Kong's upstream object.
      - The whole record is declared here; the parts you leave out take Kong's defaults (health checking off),
        so a partial record is compared with Kong's full answer correctly and a re-run reports no change.
        Sub-options left out are never sent as null; they take Kong's default.
      - Every sub-option is typed, so numbers and booleans given as strings (C(-e), AWX surveys, templated values on
        ansible-core before 2.19) are converted before they are sent; a value that cannot be converted, an unknown key
        or a value outside Kong's range fails the task before any request, naming the sub-option and the value.
      - Health checking is on when any of C(active.healthy.interval), C(active.unhealthy.interval),
        C(passive.unhealthy.tcp_failures), C(timeouts) or C(http_failures) is non-zero.
      - Leave out to keep what Kong has.
    type: dict
    suboptions:
      active:
        description: Active health checks (Kong probes each target). Kong's defaults in brackets.
        type: dict
        suboptions:
          type:
            description: Protocol of the probes [V(http)]. V(tcp) probes do not run for HTTP upstreams (Kong sets
              their intervals to 0).
            type: str
            choices: [tcp, http, https, grpc, grpcs]
          timeout:
            description: Seconds a probe may take, 0 to 65535 [V(1)].
            type: float
          concurrency:
            description: Number of targets probed at once, 1 to 2147483648 [V(10)].
            type: int
          http_path:
            description: Path of the HTTP probes [V(/)].
            type: str
          https_sni:
            description: SNI of HTTPS probes [none, the target's host].
            type: str
          https_verify_certificate:
            description: Verify the target's certificate with HTTPS probes [V(true)].
            type: bool
          headers:
            description: Extra headers of the probes, a header name to a list of values [none].
            type: dict
          healthy:
            description: When a target counts as healthy again.
            type: dict
            suboptions:
              interval:
                description: Seconds between probes of healthy targets, 0 to 65535; V(0) turns them off [V(0)].
                type: float
              http_statuses:
                description: Statuses (100 to 999) that count as a success [V([200, 302])].
                type: list
                elements: int
              successes:
                description: Successes (0 to 255) that mark a target healthy; V(0) turns this off [V(0)].
                type: int
          unhealthy:
            description: When a target counts as unhealthy.
            type: dict
            suboptions:
              interval:
                description: Seconds between probes of unhealthy targets, 0 to 65535; V(0) turns them off [V(0)].
                type: float
              http_statuses:
                description: Statuses (100 to 999) that count as a failure [V([429, 404, 500, 501, 502, 503, 504, 505])].
                type: list
                elements: int
              tcp_failures:
                description: TCP failures (0 to 255) that mark a target unhealthy [V(0)].
                type: int
              timeouts:
                description: Timeouts (0 to 255) that mark a target unhealthy [V(0)].
                type: int
              http_failures:
                description: HTTP failures (0 to 255) that mark a target unhealthy [V(0)].
                type: int
      passive:
        description: Passive health checks (circuit breaker on the proxied traffic). Kong's defaults in brackets.
        type: dict
        suboptions:
          type:
            description: Protocol of the proxied traffic [V(http)].
            type: str
            choices: [tcp, http, https, grpc, grpcs]
          healthy:
            description: When a target counts as healthy again.
            type: dict
            suboptions:
              http_statuses:
                description: Statuses (100 to 999) that count as a success [every 2xx and 3xx status].
                type: list
                elements: int
              successes:
                description: Successes (0 to 255) that mark a target healthy; V(0) turns this off [V(0)].
                type: int
          unhealthy:
            description: When a target counts as unhealthy.
            type: dict
            suboptions:
              http_statuses:
                description: Statuses (100 to 999) that count as a failure [V([429, 500, 503])].
                type: list
                elements: int
              tcp_failures:
                description: TCP failures (0 to 255) that mark a target unhealthy [V(0)].
                type: int
              timeouts:
                description: Timeouts (0 to 255) that mark a target unhealthy [V(0)].
                type: int
              http_failures:
                description: HTTP failures (0 to 255) that mark a target unhealthy [V(0)].
                type: int
      threshold:
        description: Percentage (0 to 100) of healthy target weight below which the whole upstream counts as
          unhealthy [V(0)].
        type: float
  tags:
    description: Tags of the upstream. Compared without order; V([]) removes all tags; leave out to keep Kong's.
    type: list
    elements: str
notes:
  - Creation uses C(PUT /upstreams/{name}), an upsert that is safe to retry.
seealso:
  - module: mixedrun.kong.kong_upstream_targets
  - module: mixedrun.kong.kong_target
  - module: mixedrun.kong.kong_upstream_info
  - module: mixedrun.kong.kong_service
  - name: Kong Admin API, upstreams
    description: Kong's reference of the upstream entity and its health checks.
    link: https://docs.konghq.com/gateway/latest/admin-api/#upstream-object
author:
  - mixedrun.kong maintainers (@mixedrun)
"""

EXAMPLES = r"""
- name: An upstream with passive health checks (circuit breaker)
  mixedrun.kong.kong_upstream:
    admin_url: http://127.0.0.1:8001
    name: shop.upstream
    algorithm: round-robin
    healthchecks:
      passive:
        unhealthy:
          http_failures: 5
          tcp_failures: 2
          timeouts: 3
    tags: [mixedrun-managed, mixedrun-service:shop]

- name: Active health checks every 5 seconds on /healthz
  mixedrun.kong.kong_upstream:
    admin_url: http://127.0.0.1:8001
    name: shop.upstream
    healthchecks:
      active:
        http_path: /healthz
        healthy: {interval: 5, successes: 2}
        unhealthy: {interval: 5, http_failures: 2, tcp_failures: 2, timeouts: 2}

- name: Delete the upstream and its targets
  mixedrun.kong.kong_upstream:
    admin_url: http://127.0.0.1:8001
    name: shop.upstream
    state: absent
"""

RETURN = r"""
upstream:
  description: The upstream as Kong holds it after the task (predicted in check mode); null when absent.
  returned: always
  type: dict
  sample:
    id: 0c2b6b4e-5d5e-4d37-b0a6-0c9f7f4a6a11
    name: shop.upstream
    algorithm: round-robin
    hash_on: none
    hash_fallback: none
    slots: 10000
    healthchecks: {threshold: 0, active: {}, passive: {}}
    tags: [mixedrun-managed]
diff:
  description: The upstream before and after the task (without timestamps).
  returned: in diff mode
  type: dict
  contains:
    before:
      description: The upstream before; empty when it did not exist.
      type: dict
      returned: in diff mode
    after:
      description: The upstream after; empty when deleted.
      type: dict
      returned: in diff mode
api_calls:
  description:
    - The Admin API calls made, in order. In check mode the writes are listed with C(check_mode=true) and not sent.
  returned: always
  type: list
  elements: dict
  sample:
    - {method: GET, path: /upstreams/shop.upstream, status: 200}
    - {method: PATCH, path: /upstreams/0c2b6b4e-5d5e-4d37-b0a6-0c9f7f4a6a11, status: 200}
kong_error:
  description:
    - The failed Admin API call as Kong answered it, C(method), C(path), C(status), C(code), C(name), C(message)
      and C(fields). Never holds request headers or credentials.
    - C(status) is null when Kong was not reached (connection refused, timeout, TLS failure).
  returned: when the task failed on an Admin API call
  type: dict
  sample:
    method: PUT
    path: /upstreams/shop.upstream
    status: 405
    code: 12
    name: operation unsupported
    message: cannot create 'upstreams' entities when not using a database
    fields: null
status:
  description:
    - The HTTP status of the failed Admin API call (the same as C(status) in RV(kong_error)); null when Kong was not
      reached. Not returned when the task failed before calling Kong (bad input).
  returned: when the task failed on an Admin API call
  type: int
  sample: 405
"""

from ansible_collections.mixedrun.kong.plugins.module_utils._kong_api import KongApiError
from ansible_collections.mixedrun.kong.plugins.module_utils._kong_module import KongModule
from ansible_collections.mixedrun.kong.plugins.module_utils._entities import ensure_upstream

CHECK_TYPES = ["tcp", "http", "https", "grpc", "grpcs"]
HASH_CHOICES = ["none", "consumer", "ip", "header", "cookie", "path", "query_arg", "uri_capture"]
ARGUMENT_SPEC = dict(
    name=dict(type="str", required=True),
    state=dict(type="str", default="present", choices=["present", "absent"]),
    algorithm=dict(type="str", choices=["round-robin", "consistent-hashing", "least-connections", "latency"]),
    hash_on=dict(type="str", choices=HASH_CHOICES),
    hash_fallback=dict(type="str", choices=HASH_CHOICES),
    hash_on_header=dict(type="str"),
    hash_fallback_header=dict(type="str"),
    hash_on_cookie=dict(type="str"),
    hash_on_cookie_path=dict(type="str"),
    hash_on_query_arg=dict(type="str"),
    hash_fallback_query_arg=dict(type="str"),
    hash_on_uri_capture=dict(type="str"),
    hash_fallback_uri_capture=dict(type="str"),
    slots=dict(type="int"),
    host_header=dict(type="str"),
    client_certificate=dict(type="str"),
    use_srv_name=dict(type="bool"),
    healthchecks=dict(type="dict", options=dict(
        active=dict(type="dict", options=dict(
            type=dict(type="str", choices=CHECK_TYPES),
            timeout=dict(type="float"),
            concurrency=dict(type="int"),
            http_path=dict(type="str"),
            https_sni=dict(type="str"),
            https_verify_certificate=dict(type="bool"),
            headers=dict(type="dict"),
            healthy=dict(type="dict", options=dict(
                interval=dict(type="float"),
                http_statuses=dict(type="list", elements="int"),
                successes=dict(type="int"),
            )),
            unhealthy=dict(type="dict", options=dict(
                interval=dict(type="float"),
                http_statuses=dict(type="list", elements="int"),
                tcp_failures=dict(type="int"),
                timeouts=dict(type="int"),
                http_failures=dict(type="int"),
            )),
        )),
        passive=dict(type="dict", options=dict(
            type=dict(type="str", choices=CHECK_TYPES),
            healthy=dict(type="dict", options=dict(
                http_statuses=dict(type="list", elements="int"),
                successes=dict(type="int"),
            )),
            unhealthy=dict(type="dict", options=dict(
                http_statuses=dict(type="list", elements="int"),
                tcp_failures=dict(type="int"),
                timeouts=dict(type="int"),
                http_failures=dict(type="int"),
            )),
        )),
        threshold=dict(type="float"),
    )),
    tags=dict(type="list", elements="str"),
)


def main():
    module = KongModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    verb = "delete" if module.params["state"] == "absent" else "ensure"
    try:
        result = ensure_upstream(module.client, module.params)
    except (KongApiError, ValueError) as exc:
        module.fail_json_kong(exc, "Failed to %s upstream %s" % (verb, module.params["name"]),
                              **getattr(exc, "result", {}))
    module.exit_kong(**result)


if __name__ == "__main__":
    main()
