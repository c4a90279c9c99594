# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    # The HAProxy Runtime API connection options, shared by the front load balancer modules.
    DOCUMENTATION = r"""
options:
  runtime_api:
    description:
      - HAProxy's Runtime API (its admin socket), as HAProxy writes it in C(stats socket), either a unix socket path
        (V(/run/haproxy/admin.sock), also V(unix@/run/haproxy/admin.sock)) or a TCP address
        (V(ipv4@127.0.0.1:9999), V(127.0.0.1:9999), V(ipv6@[::1]:9999)).
      - The socket needs C(level admin) for changes (C(stats socket /run/haproxy/admin.sock mode 600 level admin)
        in the C(global) section); reads work at C(level operator) too.
      - The task runs where the socket is, so delegate it to the load balancer host (C(delegate_to)).
      - If not set, the E(HAPROXY_RUNTIME_API) environment variable is used.
    type: str
    required: true
  timeout:
    description: Seconds to wait for the socket to connect and answer one command.
    type: float
    default: 5.0
"""

    ATTRIBUTES = r"""
attributes:
  action_group:
    description: Use C(group/mixedrun.kong.haproxy) in C(module_defaults) to set O(runtime_api) once.
    support: full
    membership:
      - mixedrun.kong.haproxy
"""
