#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kong_plugin_info
short_description: List Kong plugin instances by name and scope
version_added: 1.0.0
description:
  - Lists the Kong Gateway plugin instances (all pages of C(/plugins)) whose name and scope match, with each
    instance's scope. Read-only.
  - Config fields that the plugin's schema marks as secrets (C(encrypted) or C(referenceable)) are masked; when the
    node has no schema for a plugin, all of that instance's config values are masked.
extends_documentation_fragment:
  - mixedrun.kong.kong
  - mixedrun.kong.kong.ATTRIBUTES
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
options:
  name:
    description: Only instances of this plugin, for example V(prometheus). Leave out for every plugin.
    type: str
  service:
    description: Name or id of a service (see O(scope_mode)).
    type: str
  route:
    description: Name or id of a route (see O(scope_mode)).
    type: str
  consumer:
    description: Username or id of a consumer (see O(scope_mode)).
    type: str
  scope_mode:
    description:
      - V(exact) lists the instances attached to exactly the O(service), O(route) and O(consumer) given (the default
        when one of them is given); V(global) the instances attached to none (global instances); V(any) every
        instance (the default when none is given).
    type: str
    choices: [any, global, exact]
  effective:
    description:
      - Also return RV(effective), the instance of plugin O(name) that Kong runs for a request through O(route) and
        O(service) without an authenticated consumer, the most specific enabled one of route and service, route,
        service, global (Kong's plugins iterator). O(service) and O(route) may name entities that do not exist yet
        (they are listed in RV(not_found)); only the less specific instances count then.
      - Needs O(name); RV(plugins) then lists every instance of that plugin.
    type: bool
    default: false
seealso:
  - module: mixedrun.kong.kong_plugin
author:
  - mixedrun.kong maintainers (@mixedrun)
"""

EXAMPLES = r"""
- name: Is there a global prometheus plugin, and which metric options does it turn on?
  mixedrun.kong.kong_plugin_info:
    admin_url: http://127.0.0.1:8001
    name: prometheus
    scope_mode: global
  register: global_prometheus

- name: Which prometheus instance runs for the requests of the shop route and service (and which metric options it has)?
  mixedrun.kong.kong_plugin_info:
    admin_url: http://127.0.0.1:8001
    name: prometheus
    service: shop
    route: shop
    effective: true
  register: shop_prometheus

- name: The plugins attached to the shop service itself
  mixedrun.kong.kong_plugin_info:
    admin_url: http://127.0.0.1:8001
    service: shop
"""

RETURN = r"""
plugins:
  description: The matching plugin instances (secrets masked), each with its C(scope).
  returned: always
  type: list
  elements: dict
  sample:
    - id: 0b3f8f4c-1cf7-4bd4-a0b8-5c0e6d1ff7d0
      name: prometheus
      service: null
      route: null
      consumer: null
      enabled: true
      config: {status_code_metrics: true, latency_metrics: true, upstream_health_metrics: false}
      scope: global
effective:
  description: With O(effective=true), the instance that runs for the requests (secrets masked), or null when none does.
  returned: when O(effective=true)
  type: dict
not_found:
  description: With O(effective=true), which of V(service) and V(route) do not exist (yet).
  returned: when O(effective=true)
  type: list
  elements: str
api_calls:
  description: The Admin API calls made, in order.
  returned: always
  type: list
  elements: dict
kong_error:
  description: The failed Admin API call as Kong answered it; never credentials.
  returned: when the task failed on an Admin API call
  type: dict
status:
  description: The HTTP status of the failed Admin API call; null when Kong was not reached.
  returned: when the task failed on an Admin API call
  type: int
"""

from ansible_collections.mixedrun.kong.plugins.module_utils._kong_api import KongApiError
from ansible_collections.mixedrun.kong.plugins.module_utils._kong_module import KongModule
from ansible_collections.mixedrun.kong.plugins.module_utils._plugins import plugin_info

ARGUMENT_SPEC = dict(
    name=dict(type="str"),
    service=dict(type="str"),
    route=dict(type="str"),
    consumer=dict(type="str"),
    scope_mode=dict(type="str", choices=["any", "global", "exact"]),
    effective=dict(type="bool", default=False),
)


def main():
    module = KongModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        result = plugin_info(module.client, module.params)
    except (KongApiError, ValueError) as exc:
        module.fail_json_kong(exc, "Failed to list plugins")
    module.exit_kong(**result)


if __name__ == "__main__":
    main()
