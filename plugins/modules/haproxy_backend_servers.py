#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: haproxy_backend_servers
short_description: Manage the Kong proxy nodes of an HAProxy backend (the front load balancer's pool) as a whole
version_added: 1.1.0
description:
  - Reconciles the servers of one HAProxy backend with a list in one task, through HAProxy's Runtime API (the admin
    socket), without a reload; it adds (C(add server)) and deletes (C(del server)) servers, changes their address, port
    and weight, and puts them in state C(ready), C(drain) or C(maint).
  - Only the fields given are compared; a listed server without O(servers[].address) keeps its address (so a task can
    drain or enable one server by name).
  - A server to delete is drained first and deleted once its active sessions reach 0 (at most O(drain_timeout)
    seconds), so the requests it serves finish.
  - Before the first change, every new or changed address is probed (O(kong_check)) so a wrong address never
    takes traffic, and the backend must exist. Bad input fails the task naming the field and the fix, and changes
    nothing.
  - Runtime changes are lost when HAProxy reloads or restarts. With O(config_file) the backend's C(server) lines in
    HAProxy's configuration file are kept in step, in one marked block, so a reload keeps the set (see the notes).
  - Needs HAProxy 2.4 or later (dynamic servers; C(del server) since 2.5 is used for deletion, 2.6 is tested), and a
    backend whose balance algorithm supports dynamic servers (C(roundrobin), C(leastconn), C(first), C(random)).
extends_documentation_fragment:
  - mixedrun.kong.haproxy
  - mixedrun.kong.haproxy.ATTRIBUTES
attributes:
  check_mode:
    support: full
    description: Reports the plan and the Runtime API commands it would send; sends none and writes no file.
  diff_mode:
    support: full
    description: Returns the server lists before and after (and the configuration block when O(config_file) is set).
options:
  backend:
    description: Name of the HAProxy backend (or C(listen) section) whose servers are managed.
    type: str
    required: true
  servers:
    description: The servers the backend should have. Each server may be listed once.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: "Server name (letters, digits, C(_), C(.), C(:), C(-)), unique in the backend, e.g. the Kong node's inventory name."
        type: str
        required: true
      address:
        description:
          - IP address (or host name HAProxy can resolve) of the Kong node's proxy listener. Required to add a server;
            without it an existing server keeps its address.
        type: str
      port:
        description: Port of the Kong proxy listener (Kong's C(proxy_listen), 8000 by default). Given with O(servers[].address).
        type: int
      weight:
        description: HAProxy weight, 0 to 256. New servers get 1 when it is not given; existing ones keep theirs.
        type: int
      state:
        description:
          - C(ready) takes traffic, C(drain) takes no new connections (but finishes the open ones and keeps its health
            checks), C(maint) takes nothing (HAProxy's maintenance mode). New servers are C(ready) when not given.
        type: str
        choices: [ready, drain, maint]
  purge:
    description: Delete the backend's servers that are not listed in O(servers).
    type: bool
    default: false
  server_options:
    description:
      - HAProxy server keywords for servers this task adds, e.g. V(check inter 1s fall 2 rise 1) (health checks are
        enabled with them). Also written in the configuration file for those servers.
    type: str
    default: ''
  drain_timeout:
    description:
      - Seconds to wait for a server's active sessions to reach 0 before it is deleted, and with O(wait_drained) for
        the servers set to C(drain). The task fails when they do not, naming the server and its sessions.
    type: float
    default: 60
  wait_drained:
    description: Wait until every server in state C(drain) has no active session (at most O(drain_timeout)).
    type: bool
    default: false
  wait_up:
    description:
      - Seconds to wait until every server in state C(ready) that has health checks is seen C(UP) by HAProxy; 0 does not
        wait. The task fails, naming the servers still down, when the time runs out.
    type: float
    default: 0
  kong_check:
    description:
      - Before any change, probe every server to add or move with C(GET /) on its address (a Host no route matches)
        and refuse it unless the answer comes from Kong (a C(Server) or C(Via) header naming Kong, or Kong's
        C(no Route matched) answer). Turn it off for a backend of something else.
    type: bool
    default: true
  config_file:
    description:
      - HAProxy configuration file holding the backend. After the changes the backend's C(server) lines are written
        there as one marked block (C(# BEGIN mixedrun.kong servers <backend>) ... C(# END ...)) with the server set
        as HAProxy now has it, so a reload or restart keeps it. Other lines are kept; servers keep their other options.
      - The file must be on the host the task runs on (delegate to the load balancer).
    type: path
  validate:
    description:
      - Command that validates the new configuration before it replaces O(config_file); C(%s) is the path of a temporary
        copy, e.g. V(haproxy -c -q -f %s). The file is left as it was when the command fails.
    type: str
notes:
  - "Persisting: HAProxy forgets runtime changes when it reloads. Either set O(config_file) (this module writes the
    backend's server lines, reload-safe), or use a C(server-template) in the configuration and only change addresses
    and states at run time (this module's updates work on template servers; do not use O(purge) and O(config_file) then)."
  - A drained server is written C(disabled) in the configuration file (HAProxy has no drain keyword); after a reload it
    takes no traffic until a task enables it again.
  - HAProxy adds a dynamic server in maintenance; this module enables it (and its health checks) in the same task.
seealso:
  - module: mixedrun.kong.haproxy_backend_info
  - module: mixedrun.kong.kong_upstream_targets
  - name: HAProxy Runtime API
    description: add server, del server, set server, show servers state.
    link: https://docs.haproxy.org/2.6/management.html#9.3
author:
  - mixedrun.kong maintainers (@mixedrun)
"""

EXAMPLES = r"""
- name: Bind the Kong data planes into the front load balancer, reload-safe
  mixedrun.kong.haproxy_backend_servers:
    runtime_api: /run/haproxy/admin.sock
    backend: kong_proxy
    servers:
      - {name: kong-dp-1, address: 10.0.1.11, port: 8000}
      - {name: kong-dp-2, address: 10.0.1.12, port: 8000}
    purge: true
    server_options: check inter 2s fall 2 rise 2
    wait_up: 30
    config_file: /etc/haproxy/haproxy.cfg
    validate: haproxy -c -q -f %s
  delegate_to: lb-1.example.com

- name: Drain one Kong node before its maintenance
  mixedrun.kong.haproxy_backend_servers:
    runtime_api: ipv4@127.0.0.1:9999
    backend: kong_proxy
    servers:
      - {name: kong-dp-1, state: drain}
    wait_drained: true
    drain_timeout: 120
"""

RETURN = r"""
servers:
  description: The backend's servers after the task (in check mode, as they would be), sorted by name.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "kong-dp-1", "address": "10.0.1.11", "port": 8000, "weight": 1, "state": "ready", "status": "UP"}]
added:
  description: Names of the servers added.
  returned: always
  type: list
  elements: str
updated:
  description: Per server changed, the fields that changed as C([old, new]).
  returned: always
  type: dict
  sample: {"kong-dp-1": {"state": ["ready", "drain"]}}
deleted:
  description: Names of the servers deleted.
  returned: always
  type: list
  elements: str
commands:
  description: The Runtime API commands sent (in check mode, that would be sent), in order.
  returned: always
  type: list
  elements: dict
  sample: [{"command": "set server kong_proxy/kong-dp-1 state drain"}]
config_changed:
  description: Whether O(config_file) was (or in check mode would be) rewritten.
  returned: always
  type: bool
drained_seconds:
  description: Per server waited for, the seconds until its active sessions reached 0.
  returned: always
  type: dict
haproxy_version:
  description: HAProxy's version as C(show info) reports it.
  returned: always
  type: str
  sample: 2.6.12-1+deb12u4
diff:
  description: The server lists before and after (diff mode).
  returned: when diff mode is on
  type: dict
"""

import os
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule, env_fallback
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.mixedrun.kong.plugins.module_utils._haproxy_api import (
    HAProxyApiError,
    HAProxyClient,
    check_name,
    server_view,
)
from ansible_collections.mixedrun.kong.plugins.module_utils._lb_servers import (
    add_commands,
    after_servers,
    config_block,
    normalize_servers,
    persist_servers,
    plan_changed,
    plan_servers,
    update_commands,
)
from ansible_collections.mixedrun.kong.plugins.module_utils._kong_probe import probe_kong

ARGUMENT_SPEC = dict(
    runtime_api=dict(type="str", required=True, fallback=(env_fallback, ["HAPROXY_RUNTIME_API"])),
    timeout=dict(type="float", default=5.0),
    backend=dict(type="str", required=True),
    servers=dict(type="list", elements="dict", default=[], options=dict(
        name=dict(type="str", required=True),
        address=dict(type="str"),
        port=dict(type="int"),
        weight=dict(type="int"),
        state=dict(type="str", choices=["ready", "drain", "maint"]),
    )),
    purge=dict(type="bool", default=False),
    server_options=dict(type="str", default=""),
    drain_timeout=dict(type="float", default=60),
    wait_drained=dict(type="bool", default=False),
    wait_up=dict(type="float", default=0),
    kong_check=dict(type="bool", default=True),
    config_file=dict(type="path"),
    validate=dict(type="str"),
)

_KEYS = ("name", "address", "port", "weight", "state")


class ServersError(Exception):
    """A failure with what was done so far (``result``)."""

    def __init__(self, message, result=None):
        super(ServersError, self).__init__(message)
        self.result = result or {}


def read_servers(client, backend):
    """The backend's servers as server_view dicts, sorted by name."""
    stats = client.stats(backend)
    return sorted((server_view(row, stats.get(row["srv_name"])) for row in client.servers_state(backend)), key=lambda s: s["name"])


def _sessions(client, backend, names):
    current = dict((s["name"], s) for s in read_servers(client, backend))
    return dict((name, current[name]["current_sessions"] + current[name]["queued"]) for name in names if name in current)


def wait_drained(client, backend, names, timeout):
    """Wait until the servers have no active or queued session; returns {name: seconds}. Raises ServersError."""
    started = time.monotonic()
    waited, pending = {}, set(names)
    while pending:
        sessions = _sessions(client, backend, pending)
        for name in list(pending):
            if sessions.get(name, 0) == 0:
                waited[name] = round(time.monotonic() - started, 2)
                pending.discard(name)
        if not pending:
            break
        if time.monotonic() - started >= timeout:
            raise ServersError("server(s) %s still have active sessions after drain_timeout (%s s): %s; raise drain_timeout "
                               "or look at the clients holding them" % (", ".join(sorted(pending)), timeout,
                                                                        ", ".join("%s=%s" % kv for kv in sorted(sessions.items()))))
        time.sleep(0.2)
    return waited


def wait_up(client, backend, names, timeout):
    """Wait until HAProxy's checks see the servers UP (servers without checks count as up)."""
    deadline = time.monotonic() + timeout
    while True:
        current = dict((s["name"], s) for s in read_servers(client, backend))
        down = sorted(n for n in names if n in current and not (current[n]["status"] or "").startswith(("UP", "no check")))
        if not down:
            return
        if time.monotonic() >= deadline:
            raise ServersError("server(s) %s not UP after wait_up (%s s): %s; check the Kong node answers on its proxy port"
                               % (", ".join(down), timeout, ", ".join("%s %s %s" % (n, current[n]["status"], current[n]["check_status"] or "")
                                                                      for n in down)))
        time.sleep(0.2)


def delete_server(client, backend, name, drain_timeout, waited):
    """Drain, wait for 0 sessions, maintenance, then ``del server`` (repeated while HAProxy still holds connections)."""
    ident = "%s/%s" % (backend, name)
    client.action("set server %s state drain" % ident)
    if not client.check_mode:
        waited.update(wait_drained(client, backend, [name], drain_timeout))
    client.action("set server %s state maint" % ident)
    if client.check_mode:
        client.action("del server %s" % ident)
        return
    deadline = time.monotonic() + max(drain_timeout, 5)
    while True:
        try:
            client.action("del server %s" % ident)
            return
        except HAProxyApiError as exc:
            # "Server still has connections attached to it, cannot remove it." (idle keep-alive connections)
            if "connection" not in exc.message.lower() or time.monotonic() >= deadline:
                raise
            client.commands.pop()
            time.sleep(0.3)


def write_config(module, path, text, validate):
    """Atomically replace ``path`` with ``text`` (after ``validate`` passes on a temporary copy)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".mixedrun-haproxy-", suffix=".cfg", dir=directory)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        if os.path.exists(path):
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        if validate:
            if "%s" not in validate:
                raise ServersError("validate: %r has no %%s (the place of the file to check), e.g. haproxy -c -q -f %%s" % validate)
            rc, out, err = module.run_command(validate % tmp)
            if rc != 0:
                raise ServersError("validate: %r rejected the new %s (exit %d): %s; the file was left as it was"
                                   % (validate, path, rc, (err or out).strip()[-800:]))
        os.rename(tmp, path)
        tmp = None
    finally:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)


def ensure_backend_servers(module, client, params):
    """Validate, read, plan, probe, apply, persist; returns the module result."""
    backend = check_name(params["backend"], "backend")
    desired = normalize_servers(params["servers"])
    backends = client.backends()
    if backend not in backends:
        raise ServersError("backend: %r does not exist in HAProxy at %s (its backends: %s); set backend to the one in front of "
                           "Kong; nothing was changed" % (backend, params["runtime_api"], ", ".join(backends) or "none"))
    result = {"changed": False, "added": [], "updated": {}, "deleted": [], "commands": client.commands,
              "config_changed": False, "drained_seconds": {}, "haproxy_version": client.version()}
    current = read_servers(client, backend)
    plan = plan_servers(desired, current, params["purge"])
    if plan["errors"]:
        raise ServersError("; ".join(plan["errors"]) + "; nothing was changed")
    probes = [dict(s) for s in plan["add"]]
    for update in plan["update"]:
        if "address" in update["changes"]:
            address, port = update["changes"]["address"][1].rsplit(":", 1)
            probes.append({"name": update["name"], "address": address, "port": int(port)})
    if params["kong_check"]:
        bad = []
        for server in probes:
            problem = probe_kong(server["address"], server["port"], timeout=params["timeout"])
            if problem:
                index = [d["name"] for d in desired].index(server["name"])
                bad.append("servers[%d] (%s) %s:%d: %s" % (index, server["name"], server["address"], server["port"], problem))
        if bad:
            raise ServersError("not a Kong proxy: %s. Set servers[].address/port to a Kong node's proxy listener (Kong's proxy_listen), "
                               "or kong_check: false for a backend of something else; nothing was changed" % "; ".join(bad))
    after = after_servers(current, plan)
    config_text = new_config = None
    if params["config_file"]:
        try:
            with open(params["config_file"]) as fh:
                config_text = fh.read()
            new_config = persist_servers(config_text, backend, after, params["server_options"])
        except (IOError, OSError) as exc:
            raise ServersError("config_file: cannot read %s (%s); give HAProxy's configuration file on this host; nothing was changed"
                               % (params["config_file"], to_native(exc)))
        except ValueError as exc:
            raise ServersError("config_file: %s (%s); nothing was changed" % (exc, params["config_file"]))
    result["added"] = [s["name"] for s in plan["add"]]
    result["updated"] = dict((u["name"], dict((k, list(v)) for k, v in u["changes"].items())) for u in plan["update"])
    result["deleted"] = list(plan["delete"])
    result["config_changed"] = new_config is not None and new_config != config_text
    result["changed"] = plan_changed(plan) or result["config_changed"]
    try:
        # new servers first, then changes, and only once the new ones take traffic the deletions: the pool never empties
        for server in plan["add"]:
            for cmd in add_commands(backend, server, params["server_options"]):
                client.action(cmd)
        for update in plan["update"]:
            for cmd in update_commands(backend, update):
                client.action(cmd)
        if plan["delete"] and not client.check_mode:
            fresh = [s["name"] for s in plan["add"] if s["state"] == "ready"]
            if fresh:
                wait_up(client, backend, fresh, max(params["wait_up"], 30))
        for name in plan["delete"]:
            delete_server(client, backend, name, params["drain_timeout"], result["drained_seconds"])
        if not client.check_mode:
            draining = [s["name"] for s in after if s["state"] == "drain"]
            if params["wait_drained"] and draining:
                result["drained_seconds"].update(wait_drained(client, backend, draining, params["drain_timeout"]))
            ready = [s["name"] for s in after if s["state"] == "ready"]
            if params["wait_up"] and ready:
                wait_up(client, backend, ready, params["wait_up"])
    except HAProxyApiError as exc:
        raise ServersError("Failed to reconcile the servers of backend %s: %s%s" % (
            backend, exc, "" if client.commands[:-1] else "; nothing was changed"), result)
    except ServersError as exc:
        exc.result = result
        raise
    if result["config_changed"] and not client.check_mode:
        # the block mirrors what HAProxy holds now
        final = [dict((k, s[k]) for k in _KEYS) for s in read_servers(client, backend)]
        new_config = persist_servers(config_text, backend, final, params["server_options"])
        result["config_changed"] = new_config != config_text
        if result["config_changed"]:
            write_config(module, params["config_file"], new_config, params["validate"])
    if client.check_mode:
        result["servers"] = after
    else:
        result["servers"] = read_servers(client, backend) if result["changed"] else current
    if module._diff:
        result["diff"] = {"before": {"servers": [dict((k, s[k]) for k in _KEYS) for s in current]},
                          "after": {"servers": [dict((k, s[k]) for k in _KEYS) for s in after]}}
        if result["config_changed"]:
            result["diff"]["before"]["config_block"] = config_block(config_text, backend)
            result["diff"]["after"]["config_block"] = config_block(new_config, backend)
    return result


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        client = HAProxyClient(module.params["runtime_api"], timeout=module.params["timeout"], check_mode=module.check_mode)
        result = ensure_backend_servers(module, client, module.params)
    except HAProxyApiError as exc:
        module.fail_json(msg="Failed to read backend %s: %s; nothing was changed" % (module.params["backend"], exc), commands=[])
    except ServersError as exc:
        module.fail_json(msg=str(exc), **exc.result)
    except ValueError as exc:
        module.fail_json(msg="%s; nothing was changed" % exc, commands=[])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
