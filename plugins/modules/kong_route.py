#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kong_route
short_description: Manage a Kong route
version_added: 1.0.0
description:
  - Create, update or delete one Kong Gateway route through the Admin API.
  - Only the options you give are compared with what Kong holds; lists compare without order. An update sends
    a C(PATCH) with only the differing fields.
  - Mapping a domain to a service is a route with O(hosts=[domain]) on that service.
extends_documentation_fragment:
  - mixedrun.kong.kong
  - mixedrun.kong.kong.ATTRIBUTES
attributes:
  check_mode:
    support: full
    description: Reports what would change and the API calls that would be made; sends no write.
  diff_mode:
    support: full
    description: Returns the route before and after the change.
options:
  name:
    description: Name of the route (letters, digits, C(.), C(-), C(_), C(~)), or the id of an existing route.
    type: str
    required: true
  state:
    description: V(present) creates or updates the route, V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  service:
    description:
      - Name or id of the service the route sends traffic to. The task fails, changing nothing, when the
        service does not exist.
      - Compared by id, so giving the name or the id of the same service is no change.
    type: str
  protocols:
    description: Protocols the route accepts. Kong's default is V([http, https]).
    type: list
    elements: str
  methods:
    description: HTTP methods that match the route, for example V([GET, POST]).
    type: list
    elements: str
  hosts:
    description: Domain names that match the route (the C(Host) header), for example V([shop.example.com]).
    type: list
    elements: str
  paths:
    description: Path prefixes that match the route; each starts with C(/) (or C(~/) for a regular expression).
    type: list
    elements: str
  headers:
    description: Headers that match the route, a mapping of header name to a list of values.
    type: dict
  snis:
    description: SNIs that match the route (TLS).
    type: list
    elements: str
  strip_path:
    description: Strip the matched path prefix from the upstream request. Kong's default is V(true).
    type: bool
  preserve_host:
    description: Send the client's C(Host) header upstream. Kong's default is V(false).
    type: bool
  regex_priority:
    description: Priority of the route's regex paths. Kong's default is V(0).
    type: int
  https_redirect_status_code:
    description: Status code Kong answers a plain-HTTP request with when the route only accepts HTTPS.
    type: int
    choices: [426, 301, 302, 307, 308]
  tags:
    description: Tags of the route. Compared without order; V([]) removes all tags; leave out to keep Kong's.
    type: list
    elements: str
notes:
  - Creation uses C(PUT /routes/{name}), an upsert that is safe to retry.
seealso:
  - module: mixedrun.kong.kong_service
  - name: Kong Admin API, routes
    description: Kong's reference of the route entity.
    link: https://docs.konghq.com/gateway/latest/admin-api/#route-object
author:
  - mixedrun.kong maintainers (@mixedrun)
"""

EXAMPLES = r"""
- name: Route shop.example.com to the shop service
  mixedrun.kong.kong_route:
    admin_url: http://127.0.0.1:8001
    name: shop
    service: shop
    hosts: [shop.example.com]
    paths: [/]
    strip_path: false
    preserve_host: true
    tags: [mixedrun-managed]

- name: Delete the route
  mixedrun.kong.kong_route:
    admin_url: http://127.0.0.1:8001
    name: shop
    state: absent
"""

RETURN = r"""
route:
  description: The route as Kong holds it after the task (predicted in check mode); null when absent.
  returned: always
  type: dict
  sample:
    id: 4fa7d7bb-0bb9-4a7c-9d57-4a6e4e8e1f22
    name: shop
    protocols: [http, https]
    hosts: [shop.example.com]
    paths: [/]
    methods: null
    strip_path: false
    preserve_host: true
    regex_priority: 0
    https_redirect_status_code: 426
    service: {id: 9748f662-7711-4a90-8186-dc02f10eb0f5}
    tags: [mixedrun-managed]
diff:
  description: The route before and after the task (without timestamps).
  returned: in diff mode
  type: dict
  contains:
    before:
      description: The route before; empty when it did not exist.
      type: dict
      returned: in diff mode
    after:
      description: The route after; empty when deleted.
      type: dict
      returned: in diff mode
api_calls:
  description:
    - The Admin API calls made, in order. In check mode the writes are listed with C(check_mode=true) and not sent.
  returned: always
  type: list
  elements: dict
  sample:
    - {method: GET, path: /services/shop, status: 200}
    - {method: GET, path: /routes/shop, status: 404}
    - {method: PUT, path: /routes/shop, status: 200}
kong_error:
  description:
    - The failed Admin API call as Kong answered it, C(method), C(path), C(status), C(code), C(name), C(message)
      and C(fields). Never holds request headers or credentials.
    - C(status) is null when Kong was not reached (connection refused, timeout, TLS failure).
  returned: when the task failed on an Admin API call
  type: dict
  sample:
    method: PUT
    path: /routes/shop
    status: 400
    code: 2
    name: schema violation
    message: "schema violation (must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https')"
    fields: {"@entity": ["must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'"]}
status:
  description:
    - The HTTP status of the failed Admin API call (the same as C(status) in RV(kong_error)); null when Kong was not
      reached. Not returned when the task failed before calling Kong (bad input).
  returned: when the task failed on an Admin API call
  type: int
  sample: 400
"""

from ansible_collections.mixedrun.kong.plugins.module_utils._kong_api import KongApiError
from ansible_collections.mixedrun.kong.plugins.module_utils._kong_module import KongModule
from ansible_collections.mixedrun.kong.plugins.module_utils._entities import ensure_route

ARGUMENT_SPEC = dict(
    name=dict(type="str", required=True),
    state=dict(type="str", default="present", choices=["present", "absent"]),
    service=dict(type="str"),
    protocols=dict(type="list", elements="str"),
    methods=dict(type="list", elements="str"),
    hosts=dict(type="list", elements="str"),
    paths=dict(type="list", elements="str"),
    headers=dict(type="dict"),
    snis=dict(type="list", elements="str"),
    strip_path=dict(type="bool"),
    preserve_host=dict(type="bool"),
    regex_priority=dict(type="int"),
    https_redirect_status_code=dict(type="int", choices=[426, 301, 302, 307, 308]),
    tags=dict(type="list", elements="str"),
)


def main():
    module = KongModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    verb = "delete" if module.params["state"] == "absent" else "ensure"
    try:
        result = ensure_route(module.client, module.params)
    except (KongApiError, ValueError) as exc:
        module.fail_json_kong(exc, "Failed to %s route %s" % (verb, module.params["name"]),
                              **getattr(exc, "result", {}))
    module.exit_kong(**result)


if __name__ == "__main__":
    main()
