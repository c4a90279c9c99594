#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kong_plugin
short_description: Manage a Kong plugin instance (global, or scoped to a service, route or consumer)
version_added: 1.0.0
description:
  - Create, update or delete one Kong Gateway plugin instance through the Admin API. An instance is identified by
    its O(name) and its exact scope, the O(service), O(route) and O(consumer) it is attached to (none of them is a
    global instance); Kong allows one instance per name and scope.
  - Only the O(config) fields you give are compared with what Kong holds; the others keep Kong's value. An update
    sends a C(PATCH) with the whole config (yours merged over Kong's), so nothing you did not give changes.
  - O(config) is typed by the plugin's own schema, read from the node (C(GET /schemas/plugins/{name})). Strings
    such as V("true") or V("5") (what C(-e k=v), AWX surveys and older ansible-core templating give) are converted
    to the field's type, and an unknown field is refused with the list of known ones, before any write.
  - Fields that the schema marks as secrets (C(encrypted) or C(referenceable)) are masked in every result and diff.
  - The rollout's Prometheus gates need the prometheus plugin's metric options (C(status_code_metrics),
    C(latency_metrics), C(upstream_health_metrics)), which Kong leaves off by default; the
    P(mixedrun.kong.mixed_service#role) role turns on the ones its services need with this module.
extends_documentation_fragment:
  - mixedrun.kong.kong
  - mixedrun.kong.kong.ATTRIBUTES
attributes:
  check_mode:
    support: full
    description: Reports what would change and the API calls that would be made; sends no write.
  diff_mode:
    support: full
    description: Returns the plugin instance before and after the change (secrets masked).
options:
  name:
    description: The plugin's name, for example V(prometheus) or V(rate-limiting).
    type: str
    required: true
  state:
    description: V(present) creates or updates the instance, V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  service:
    description: Name or id of the service the instance is attached to. Leave out (with O(route) and O(consumer)) for a global instance.
    type: str
  route:
    description: Name or id of the route the instance is attached to.
    type: str
  consumer:
    description: Username or id of the consumer the instance is attached to.
    type: str
  config:
    description:
      - The plugin's configuration fields to set (only those given are compared). Nested records are compared and
        merged field by field.
      - Typed by the plugin's schema on the node, see the description.
    type: dict
  enabled:
    description: Whether the instance runs.
    type: bool
  protocols:
    description: The protocols the instance runs on (Kong's default depends on the plugin).
    type: list
    elements: str
  instance_name:
    description: Kong's optional unique label of the instance.
    type: str
  tags:
    description: Tags of the instance. Compared without order; V([]) removes all tags. Leave out to keep Kong's tags.
    type: list
    elements: str
notes:
  - Kong reads plugin instances through its cache; on a traditional cluster the other nodes follow a change at their
    next cluster-event poll (C(db_update_frequency)), data planes of a hybrid cluster when the control plane pushes
    the new configuration.
  - A plugin instance scoped to a service replaces a global instance of the same plugin for that service's requests;
    Kong runs the most specific instance only.
seealso:
  - module: mixedrun.kong.kong_plugin_info
  - name: Kong Admin API, plugins
    description: Kong's reference of the plugin entity.
    link: https://docs.konghq.com/gateway/latest/admin-api/#plugin-object
  - name: Kong prometheus plugin
    description: The metric options and what each one exports.
    link: https://docs.konghq.com/hub/kong-inc/prometheus/
author:
  - mixedrun.kong maintainers (@mixedrun)
"""

EXAMPLES = r"""
- name: Status code and latency metrics for the shop service's requests (what the rollout's Prometheus gates query)
  mixedrun.kong.kong_plugin:
    admin_url: http://127.0.0.1:8001
    name: prometheus
    service: shop
    config:
      status_code_metrics: true
      latency_metrics: true
    tags: [mixedrun-managed]

- name: Turn on upstream health metrics on the global prometheus plugin, keeping its other options
  mixedrun.kong.kong_plugin:
    admin_url: http://127.0.0.1:8001
    name: prometheus
    config:
      upstream_health_metrics: true

- name: Remove a route's rate limiting
  mixedrun.kong.kong_plugin:
    admin_url: http://127.0.0.1:8001
    name: rate-limiting
    route: shop
    state: absent
"""

RETURN = r"""
plugin:
  description: The plugin instance as Kong holds it after the task (predicted in check mode, secrets masked); null when absent.
  returned: always
  type: dict
  sample:
    id: 0b3f8f4c-1cf7-4bd4-a0b8-5c0e6d1ff7d0
    name: prometheus
    service: {id: 9748f662-7711-4a90-8186-dc02f10eb0f5}
    route: null
    consumer: null
    enabled: true
    protocols: [grpc, grpcs, http, https]
    config: {status_code_metrics: true, latency_metrics: true, upstream_health_metrics: false, bandwidth_metrics: false,
             per_consumer: false, ai_metrics: false}
    tags: [mixedrun-managed]
scope:
  description: The instance's scope, V(global) or the ids it is attached to (V(service=<id>)).
  returned: always
  type: str
  sample: service=9748f662-7711-4a90-8186-dc02f10eb0f5
diff:
  description: The instance before and after the task (without timestamps, secrets masked).
  returned: in diff mode
  type: dict
api_calls:
  description: The Admin API calls made, in order. In check mode the writes are listed with C(check_mode=true) and not sent.
  returned: always
  type: list
  elements: dict
kong_error:
  description: The failed Admin API call as Kong answered it (C(method), C(path), C(status), C(message), C(fields)); never credentials.
  returned: when the task failed on an Admin API call
  type: dict
status:
  description: The HTTP status of the failed Admin API call; null when Kong was not reached.
  returned: when the task failed on an Admin API call
  type: int
"""

from ansible_collections.mixedrun.kong.plugins.module_utils._kong_api import KongApiError
from ansible_collections.mixedrun.kong.plugins.module_utils._kong_module import KongModule
from ansible_collections.mixedrun.kong.plugins.module_utils._plugins import ensure_plugin

ARGUMENT_SPEC = dict(
    name=dict(type="str", required=True),
    state=dict(type="str", default="present", choices=["present", "absent"]),
    service=dict(type="str"),
    route=dict(type="str"),
    consumer=dict(type="str"),
    config=dict(type="dict"),
    enabled=dict(type="bool"),
    protocols=dict(type="list", elements="str"),
    instance_name=dict(type="str"),
    tags=dict(type="list", elements="str"),
)


def main():
    module = KongModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    verb = "delete" if module.params["state"] == "absent" else "ensure"
    try:
        result = ensure_plugin(module.client, module.params)
    except (KongApiError, ValueError) as exc:
        module.fail_json_kong(exc, "Failed to %s plugin %s" % (verb, module.params["name"]))
    module.exit_kong(**result)


if __name__ == "__main__":
    main()
