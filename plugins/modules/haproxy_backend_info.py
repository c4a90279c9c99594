#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: haproxy_backend_info
short_description: Read the servers of HAProxy backends, their state, health and sessions
version_added: 1.1.0
description:
  - Reads one backend (or every backend) of HAProxy through its Runtime API (C(show servers state) and
    C(show stat)); per server its address, port, weight, administrative state (C(ready), C(drain), C(maint)),
    the health check's view (C(UP), C(DOWN), ...), and its current and total sessions.
  - Never changes anything.
extends_documentation_fragment:
  - mixedrun.kong.haproxy
  - mixedrun.kong.haproxy.ATTRIBUTES
attributes:
  check_mode:
    support: full
    description: Reads as usual.
  diff_mode:
    support: none
    description: Changes nothing, so there is no diff.
options:
  backend:
    description: Backend to read; every backend when not given. The task fails, naming the existing ones, when it does not exist.
    type: str
seealso:
  - module: mixedrun.kong.haproxy_backend_servers
author:
  - mixedrun.kong maintainers (@mixedrun)
"""

EXAMPLES = r"""
- name: Read the Kong pool of the front load balancer
  mixedrun.kong.haproxy_backend_info:
    runtime_api: /run/haproxy/admin.sock
    backend: kong_proxy
  register: lb

- name: Every Kong node is up in the load balancer
  ansible.builtin.assert:
    that: lb.servers | rejectattr('status', 'match', 'UP') | list | length == 0
"""

RETURN = r"""
servers:
  description: The servers of O(backend) (empty when O(backend) is not given), sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name: {description: Server name., type: str, returned: always}
    id: {description: HAProxy's server id., type: int, returned: always}
    address: {description: Address., type: str, returned: always}
    port: {description: Port., type: int, returned: always}
    weight: {description: Configured (user) weight., type: int, returned: always}
    effective_weight: {description: Weight in use (0 while drained or down)., type: int, returned: always}
    state: {description: "Administrative state: C(ready), C(drain) or C(maint).", type: str, returned: always}
    admin_state: {description: HAProxy's administrative state bits., type: int, returned: always}
    operational_state: {description: "C(stopped), C(starting), C(running) or C(stopping).", type: str, returned: always}
    status: {description: "As the stats page shows it: C(UP), C(DOWN), C(MAINT), C(DRAIN), C(no check), C(UP 1/2) ...", type: str, returned: always}
    check_status: {description: "The last health check's result, e.g. C(L4OK), C(L4CON); null without checks.", type: str, returned: always}
    current_sessions: {description: Active sessions now., type: int, returned: always}
    total_sessions: {description: Sessions since HAProxy started., type: int, returned: always}
    queued: {description: Requests queued for the server., type: int, returned: always}
  sample: [{"name": "kong-dp-1", "address": "10.0.1.11", "port": 8000, "weight": 1, "state": "ready", "status": "UP"}]
backends:
  description: Per backend read, its servers (as in RV(servers)).
  returned: always
  type: dict
haproxy_version:
  description: HAProxy's version.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule, env_fallback

from ansible_collections.mixedrun.kong.plugins.module_utils._haproxy_api import (
    HAProxyApiError,
    HAProxyClient,
    check_name,
    server_view,
)

ARGUMENT_SPEC = dict(
    runtime_api=dict(type="str", required=True, fallback=(env_fallback, ["HAPROXY_RUNTIME_API"])),
    timeout=dict(type="float", default=5.0),
    backend=dict(type="str"),
)


def read_backends(client, backend=None):
    """{backend: [server_view, ...]}; ValueError when ``backend`` does not exist."""
    names = client.backends()
    if backend is not None:
        check_name(backend, "backend")
        if backend not in names:
            raise ValueError("backend: %r does not exist in HAProxy at %s (its backends: %s)" % (backend, client.runtime_api, ", ".join(names) or "none"))
        names = [backend]
    out = {}
    for name in names:
        stats = client.stats(name)
        out[name] = sorted((server_view(row, stats.get(row["srv_name"])) for row in client.servers_state(name)), key=lambda s: s["name"])
    return out


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        client = HAProxyClient(module.params["runtime_api"], timeout=module.params["timeout"])
        backends = read_backends(client, module.params["backend"])
        version = client.version()
    except (HAProxyApiError, ValueError) as exc:
        module.fail_json(msg="Failed to read HAProxy: %s" % exc)
    module.exit_json(changed=False, backends=backends, servers=backends.get(module.params["backend"], []), haproxy_version=version)


if __name__ == "__main__":
    main()
