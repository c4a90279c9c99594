# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic of a load balancer's server set (no I/O): validate the desired servers, compare them with the
current ones, plan the changes, turn them into HAProxy Runtime API commands, and keep the servers' lines of a
backend in an HAProxy configuration file in step (a marked block, like blockinfile)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

STATES = ("ready", "drain", "maint")
MAX_WEIGHT = 256
_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")
_ADDRESS_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")
SECTION_KEYWORDS = ("global", "defaults", "frontend", "backend", "listen", "peers", "resolvers", "userlist", "program",
                    "http-errors", "ring", "mailers", "cache", "fcgi-app", "crt-store", "traces")
# server keywords the block writes itself (removed from kept options)
_OWN_KEYWORDS = {"weight": 1, "disabled": 0, "enabled": 0}


def normalize_servers(servers, field="servers"):
    """Validate the desired servers; returns a list of dicts with keys name, address, port, weight, state (None
    where not given). Raises ValueError naming the entry and the fix."""
    out, names, endpoints = [], {}, {}
    for index, entry in enumerate(servers or []):
        where = "%s[%d]" % (field, index)
        if not isinstance(entry, dict):
            raise ValueError("%s: must be a dict with name, address, port (got %r)" % (where, entry))
        name = entry.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ValueError("%s.name: %r is not a valid HAProxy server name (letters, digits, '_', '.', ':', '-')" % (where, name))
        where = "%s (%s)" % (where, name)
        if name in names:
            raise ValueError("%s: listed twice (also %s[%d]); list each server once" % (where, field, names[name]))
        names[name] = index
        address = entry.get("address")
        if address is not None and (not isinstance(address, str) or not _ADDRESS_RE.match(address) or "://" in address):
            raise ValueError("%s.address: %r is not an IP address or host name; give the Kong node's proxy address, e.g. 10.0.0.5"
                             % (where, address))
        port = entry.get("port")
        if port is not None:
            try:
                port = int(port)
            except (TypeError, ValueError):
                port = -1
            if not 0 < port < 65536:
                raise ValueError("%s.port: %r is not a port (1-65535); give the Kong proxy listener's port, e.g. 8000" % (where, entry.get("port")))
        if (address is None) != (port is None):
            raise ValueError("%s: give address and port together (or neither, to keep an existing server's)" % where)
        weight = entry.get("weight")
        if weight is not None:
            try:
                weight = int(weight)
            except (TypeError, ValueError):
                weight = -1
            if not 0 <= weight <= MAX_WEIGHT:
                raise ValueError("%s.weight: %r is not an HAProxy weight (0-%d)" % (where, entry.get("weight"), MAX_WEIGHT))
        state = entry.get("state")
        if state is not None and state not in STATES:
            raise ValueError("%s.state: %r is not one of %s" % (where, state, ", ".join(STATES)))
        if address is not None:
            key = "%s:%d" % (address, port)
            if key in endpoints:
                raise ValueError("%s: %s is also %s; each Kong node once" % (where, key, endpoints[key]))
            endpoints[key] = name
        out.append({"name": name, "address": address, "port": port, "weight": weight, "state": state})
    return out


def plan_servers(desired, current, purge=False):
    """Compare the desired servers (normalize_servers) with the current ones (dicts with name, address, port,
    weight, state). Returns {"add": [...], "update": [...], "delete": [...], "unchanged": [...], "errors": [...]}:
    an add is the full server (weight/state defaulted), an update {"name", "changes": {field: (old, new)}}."""
    by_name = dict((s["name"], s) for s in current)
    plan = {"add": [], "update": [], "delete": [], "unchanged": [], "errors": []}
    listed = set()
    for index, want in enumerate(desired):
        listed.add(want["name"])
        have = by_name.get(want["name"])
        if have is None:
            if want["address"] is None:
                plan["errors"].append("servers[%d] (%s): not in the backend yet; give its address and port to add it"
                                      % (index, want["name"]))
                continue
            plan["add"].append({"name": want["name"], "address": want["address"], "port": want["port"],
                                "weight": 1 if want["weight"] is None else want["weight"],
                                "state": want["state"] or "ready"})
            continue
        changes = {}
        if want["address"] is not None and (want["address"] != have["address"] or want["port"] != have["port"]):
            changes["address"] = ("%s:%s" % (have["address"], have["port"]), "%s:%d" % (want["address"], want["port"]))
        if want["weight"] is not None and want["weight"] != have["weight"]:
            changes["weight"] = (have["weight"], want["weight"])
        if want["state"] is not None and want["state"] != have["state"]:
            changes["state"] = (have["state"], want["state"])
        if changes:
            plan["update"].append({"name": want["name"], "changes": changes})
        else:
            plan["unchanged"].append(want["name"])
    if purge:
        plan["delete"] = sorted(name for name in by_name if name not in listed)
    return plan


def plan_changed(plan):
    """True when the plan writes anything."""
    return bool(plan["add"] or plan["update"] or plan["delete"])


def after_servers(current, plan):
    """The server set once the plan is applied (for diff mode and the persisted block), sorted by name."""
    servers = dict((s["name"], dict((k, s.get(k)) for k in ("name", "address", "port", "weight", "state"))) for s in current)
    for name in plan["delete"]:
        servers.pop(name, None)
    for add in plan["add"]:
        servers[add["name"]] = dict(add)
    for update in plan["update"]:
        server = servers[update["name"]]
        for field, (_old, new) in update["changes"].items():
            if field == "address":
                address, port = new.rsplit(":", 1)
                server["address"], server["port"] = address, int(port)
            else:
                server[field] = new
    return [servers[name] for name in sorted(servers)]


def add_commands(backend, server, server_options=""):
    """Runtime API commands that add a server in its state (HAProxy adds dynamic servers in maintenance)."""
    ident = "%s/%s" % (backend, server["name"])
    options = (" " + server_options.strip()) if server_options and server_options.strip() else ""
    cmds = ["add server %s %s:%d weight %d%s" % (ident, server["address"], server["port"], server["weight"], options)]
    if re.search(r"(^|\s)check(\s|$)", options):
        cmds.append("enable health %s" % ident)
    if server["state"] != "maint":
        cmds.append("set server %s state %s" % (ident, server["state"]))
    return cmds


def update_commands(backend, update):
    """Runtime API commands for one update (address, weight, state; the state last)."""
    ident = "%s/%s" % (backend, update["name"])
    cmds = []
    changes = update["changes"]
    if "address" in changes:
        address, port = changes["address"][1].rsplit(":", 1)
        cmds.append("set server %s addr %s port %s" % (ident, address, port))
    if "weight" in changes:
        cmds.append("set server %s weight %d" % (ident, changes["weight"][1]))
    if "state" in changes:
        cmds.append("set server %s state %s" % (ident, changes["state"][1]))
    return cmds


# -- the configuration file ------------------------------------------------------------------------------------
def markers(backend):
    """The block's first and last line (without indentation)."""
    return ("# BEGIN mixedrun.kong servers %s (managed by mixedrun.kong.haproxy_backend_servers; do not edit)" % backend,
            "# END mixedrun.kong servers %s" % backend)


def _section_bounds(lines, backend):
    """(start, end) line indexes of ``backend <name>`` (or ``listen <name>``): start is the header, end the first line
    after the section. None when absent."""
    start = None
    for index, line in enumerate(lines):
        words = line.split()
        if not words or line[:1].isspace():
            continue
        if start is None:
            if words[0] in ("backend", "listen") and len(words) > 1 and words[1] == backend:
                start = index
        elif words[0] in SECTION_KEYWORDS:
            return start, index
    return (start, len(lines)) if start is not None else None


def _split_server_line(line):
    """``server NAME ADDR OPTIONS...`` -> (name, options without weight/disabled) or None."""
    words = line.split()
    if len(words) < 3 or words[0] != "server":
        return None
    options, skip = [], 0
    for word in words[3:]:
        if skip:
            skip -= 1
            continue
        if word in _OWN_KEYWORDS:
            skip = _OWN_KEYWORDS[word]
            continue
        if word.startswith("#"):
            break
        options.append(word)
    return words[1], " ".join(options)


def render_block(backend, servers, options_by_name, default_options="", indent="    "):
    """The marked block for ``servers`` (after_servers): one ``server`` line each. A drained server is written
    ``disabled`` (HAProxy's configuration has no drain state): after a reload it takes no traffic until it is enabled
    again. Options: the server's own (``options_by_name``), else ``default_options``."""
    begin, end = markers(backend)
    lines = [indent + begin]
    for server in servers:
        options = options_by_name.get(server["name"], default_options or "").strip()
        line = "server %s %s:%d weight %d" % (server["name"], server["address"], server["port"], server["weight"])
        if options:
            line += " " + options
        if server["state"] in ("maint", "drain"):
            line += " disabled"
        if server["state"] == "drain":
            line += "  # drain"
        lines.append(indent + line)
    lines.append(indent + end)
    return lines


def server_options_in_config(text, backend):
    """{server name: options} of the ``server`` lines of a backend in a configuration text (block or not)."""
    lines = text.splitlines()
    bounds = _section_bounds(lines, backend)
    out = {}
    if bounds:
        for line in lines[bounds[0] + 1:bounds[1]]:
            parsed = _split_server_line(line.strip())
            if parsed:
                out[parsed[0]] = parsed[1]
    return out


def persist_servers(text, backend, servers, default_options=""):
    """The configuration text with the backend's ``server`` lines replaced by the marked block for ``servers``.
    Keeps each server's other options; every other line as it was. Raises ValueError when the backend is absent."""
    lines = text.splitlines()
    bounds = _section_bounds(lines, backend)
    if bounds is None:
        raise ValueError("backend %s: no `backend %s` (or `listen %s`) section in the configuration file" % (backend, backend, backend))
    start, end = bounds
    options = server_options_in_config(text, backend)
    begin, finish = markers(backend)
    body = lines[start + 1:end]
    indent = "    "
    for line in body:
        if line.strip() and line[:1].isspace():
            indent = line[:len(line) - len(line.lstrip())]
            break
    kept, insert_at, in_block = [], None, False
    for line in body:
        stripped = line.strip()
        if stripped == begin:
            in_block = True
            insert_at = len(kept)
            continue
        if in_block:
            if stripped == finish:
                in_block = False
            continue
        if _split_server_line(stripped):
            if insert_at is None:
                insert_at = len(kept)
            continue
        kept.append(line)
    if insert_at is None:
        # after the last non-blank line of the section
        insert_at = len(kept)
        while insert_at > 0 and not kept[insert_at - 1].strip():
            insert_at -= 1
    block = render_block(backend, servers, options, default_options, indent)
    new_lines = lines[:start + 1] + kept[:insert_at] + block + kept[insert_at:] + lines[end:]
    return "\n".join(new_lines) + "\n"


def config_block(text, backend):
    """The backend's server lines in a configuration text (the marked block or plain ``server`` lines), as text."""
    lines = text.splitlines()
    bounds = _section_bounds(lines, backend)
    if not bounds:
        return ""
    begin, end = markers(backend)
    return "\n".join(line.strip() for line in lines[bounds[0] + 1:bounds[1]]
                     if _split_server_line(line.strip()) or line.strip() in (begin, end)) + "\n"
