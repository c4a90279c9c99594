#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kong_service
short_description: Manage a Kong service
version_added: 1.0.0
description:
  - Create, update or delete one Kong Gateway service through the Admin API.
  - Only the options you give are compared with what Kong holds; Kong keeps its value for every option you
    leave out. An update sends a C(PATCH) with only the differing fields.
  - To balance a service over the targets of an upstream, set O(host) (or the host of O(url)) to the
    upstream's name.
extends_documentation_fragment:
  - mixedrun.kong.kong
  - mixedrun.kong.kong.ATTRIBUTES
attributes:
  check_mode:
    support: full
    description: Reports what would change and the API calls that would be made; sends no write.
  diff_mode:
    support: full
    description: Returns the service before and after the change.
options:
  name:
    description:
      - Name of the service (letters, digits, C(.), C(-), C(_), C(~)), or the id of an existing service.
    type: str
    required: true
  state:
    description:
      - V(present) creates or updates the service, V(absent) deletes it.
      - Deleting a service that routes still reference fails with Kong's foreign key error; delete the routes first.
    type: str
    choices: [present, absent]
    default: present
  url:
    description:
      - Shorthand for O(protocol), O(host), O(port) and O(path), for example V(http://shop.upstream:80/api).
      - Without a port the protocol's default is used (443 for https, wss and grpcs, 80 otherwise); without a
        path Kong's path is cleared.
      - Mutually exclusive with O(protocol), O(host), O(port) and O(path).
    type: str
  protocol:
    description: Protocol Kong uses to talk to the upstream. Kong's default is V(http).
    type: str
    choices: [http, https, grpc, grpcs, tcp, tls, tls_passthrough, udp, ws, wss]
  host:
    description:
      - Host of the upstream server, or the name of a Kong upstream to balance over its targets.
      - Required by Kong when the service is created (unless O(url) is given).
    type: str
  port:
    description: Upstream server port, 0 to 65535. Kong's default is V(80).
    type: int
  path:
    description: Path prefix used in requests to the upstream server; must start with C(/).
    type: str
  service_retries:
    description:
      - Kong's C(retries) field of the service, the number of retries Kong makes on a failed proxied request,
        0 to 32767. Kong's default is V(5).
      - Named so because O(retries) is the retry count of this module's own Admin API requests.
    type: int
  connect_timeout:
    description: Milliseconds to establish a connection to the upstream. Kong's default is V(60000).
    type: int
  read_timeout:
    description: Milliseconds between two read operations. Kong's default is V(60000).
    type: int
  write_timeout:
    description: Milliseconds between two write operations. Kong's default is V(60000).
    type: int
  enabled:
    description: Whether the service is active. A disabled service's routes answer 404.
    type: bool
  tags:
    description:
      - Tags of the service. Compared without order; V([]) removes all tags.
      - Leave out to keep Kong's tags.
    type: list
    elements: str
notes:
  - Creation uses C(PUT /services/{name}), an upsert that is safe to retry.
seealso:
  - module: mixedrun.kong.kong_route
  - module: mixedrun.kong.kong_upstream
  - name: Kong Admin API, services
    description: Kong's reference of the service entity.
    link: https://docs.konghq.com/gateway/latest/admin-api/#service-object
author:
  - mixedrun.kong maintainers (@mixedrun)
"""

EXAMPLES = r"""
- name: Send shop.example.com's traffic to the targets of the shop.upstream upstream
  mixedrun.kong.kong_service:
    admin_url: http://127.0.0.1:8001
    name: shop
    host: shop.upstream
    port: 80
    protocol: http
    tags: [mixedrun-managed]

- name: The same with the url shorthand, connection options set once for the group
  module_defaults:
    group/mixedrun.kong.kong:
      admin_url: https://kong-admin.example.com:8444
      admin_token: "{{ vault_kong_admin_token }}"
  mixedrun.kong.kong_service:
    name: shop
    url: http://shop.upstream:80/
    read_timeout: 30000

- name: Delete the service
  mixedrun.kong.kong_service:
    admin_url: http://127.0.0.1:8001
    name: shop
    state: absent
"""

RETURN = r"""
service:
  description: The service as Kong holds it after the task (predicted in check mode); null when absent.
  returned: always
  type: dict
  sample:
    id: 9748f662-7711-4a90-8186-dc02f10eb0f5
    name: shop
    protocol: http
    host: shop.upstream
    port: 80
    path: null
    retries: 5
    connect_timeout: 60000
    read_timeout: 60000
    write_timeout: 60000
    enabled: true
    tags: [mixedrun-managed]
    created_at: 1700000000
    updated_at: 1700000000
diff:
  description: The service before and after the task (without timestamps).
  returned: in diff mode
  type: dict
  contains:
    before:
      description: The service before; empty when it did not exist.
      type: dict
      returned: in diff mode
    after:
      description: The service after; empty when deleted.
      type: dict
      returned: in diff mode
api_calls:
  description:
    - The Admin API calls made, in order. In check mode the writes are listed with C(check_mode=true) and not sent.
  returned: always
  type: list
  elements: dict
  sample:
    - {method: GET, path: /services/shop, status: 404}
    - {method: PUT, path: /services/shop, status: 200}
kong_error:
  description:
    - The failed Admin API call as Kong answered it, C(method), C(path), C(status), C(code), C(name), C(message)
      and C(fields). Never holds request headers or credentials.
    - C(status) is null when Kong was not reached (connection refused, timeout, TLS failure).
  returned: when the task failed on an Admin API call
  type: dict
  sample:
    method: GET
    path: /services/shop
    status: 401
    code: null
    name: null
    message: Invalid credentials. Token or User credentials required
    fields: null
status:
  description:
    - The HTTP status of the failed Admin API call (the same as C(status) in RV(kong_error)); null when Kong was not
      reached. Not returned when the task failed before calling Kong (bad input).
  returned: when the task failed on an Admin API call
  type: int
  sample: 401
"""

from ansible_collections.mixedrun.kong.plugins.module_utils._kong_api import KongApiError
from ansible_collections.mixedrun.kong.plugins.module_utils._kong_module import KongModule
from ansible_collections.mixedrun.kong.plugins.module_utils._entities import ensure_service

ARGUMENT_SPEC = dict(
    name=dict(type="str", required=True),
    state=dict(type="str", default="present", choices=["present", "absent"]),
    url=dict(type="str"),
    protocol=dict(type="str", choices=["http", "https", "grpc", "grpcs", "tcp", "tls", "tls_passthrough", "udp", "ws", "wss"]),
    host=dict(type="str"),
    port=dict(type="int"),
    path=dict(type="str"),
    service_retries=dict(type="int"),
    connect_timeout=dict(type="int"),
    read_timeout=dict(type="int"),
    write_timeout=dict(type="int"),
    enabled=dict(type="bool"),
    tags=dict(type="list", elements="str"),
)


def main():
    module = KongModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True,
                        mutually_exclusive=[("url", "protocol"), ("url", "host"), ("url", "port"), ("url", "path")])
    verb = "delete" if module.params["state"] == "absent" else "ensure"
    try:
        result = ensure_service(module.client, module.params)
    except (KongApiError, ValueError) as exc:
        module.fail_json_kong(exc, "Failed to %s service %s" % (verb, module.params["name"]),
                              **getattr(exc, "result", {}))
    module.exit_kong(**result)


if __name__ == "__main__":
    main()
