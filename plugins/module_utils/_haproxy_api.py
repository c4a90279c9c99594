# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one HAProxy Runtime API client of the collection (private): a unix or TCP admin socket, one command per
connection (HAProxy's non-interactive mode), typed errors, and a record of the commands sent (or, in check mode,
that would be sent). Parsers of ``show servers state`` and ``show stat`` live here too; they are pure."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import socket
import time

RUNTIME_API_EXAMPLE = "/run/haproxy/admin.sock or ipv4@127.0.0.1:9999"
# srv_admin_state bits (HAProxy include/haproxy/server-t.h)
ADMIN_MAINT = 0x01 | 0x02 | 0x04 | 0x20 | 0x40     # forced, inherited, config, resolution, hostname maintenance
ADMIN_DRAIN = 0x08 | 0x10                          # forced / inherited drain
OP_STATES = {0: "stopped", 1: "starting", 2: "running", 3: "stopping"}
# answers of a command that did what it was asked (everything else an action command prints is an error)
_OK_ANSWERS = ("New server registered.", "Server deleted.", "IP changed from", "no need to change the addr",
               "port changed from", "no need to change the port", "Health check")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")


class HAProxyApiError(Exception):
    """A Runtime API command failed: ``command`` (what was sent), ``message`` (HAProxy's answer or the socket
    error) and ``hint`` (the fix, when known)."""

    def __init__(self, command, message, hint=None, unreachable=False):
        super(HAProxyApiError, self).__init__(message)
        self.command = command
        self.message = message
        self.hint = hint
        self.unreachable = unreachable

    def __str__(self):
        text = "%s: %s" % (self.command, self.message) if self.command else self.message
        return text + ("; %s" % self.hint if self.hint else "")


def parse_runtime_api(value, field="runtime_api"):
    """``value`` -> (family, address): ``("unix", path)`` or ``("tcp", (host, port))``. Accepts a socket path,
    ``unix@/path``, ``ipv4@host:port``, ``ipv6@[addr]:port`` and ``host:port``. Raises ValueError naming the field."""
    text = (value or "").strip()
    if not text:
        raise ValueError("%s: required: the HAProxy Runtime API (a `stats socket ... level admin`), e.g. %s" % (field, RUNTIME_API_EXAMPLE))
    if text.startswith("unix@"):
        return "unix", text[5:]
    if text.startswith("/") or text.startswith("."):
        return "unix", text
    rest = text
    for prefix in ("ipv4@", "ipv6@", "tcp@", "tcp4@", "tcp6@"):
        if rest.startswith(prefix):
            rest = rest[len(prefix):]
            break
    match = re.match(r"^\[([0-9A-Fa-f:.]+)\]:(\d+)$", rest) or re.match(r"^([^:\[\]]+):(\d+)$", rest)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise ValueError("%s: %r is neither a unix socket path nor host:port; use e.g. %s" % (field, value, RUNTIME_API_EXAMPLE))
    return "tcp", (match.group(1), int(match.group(2)))


def check_name(value, field):
    """HAProxy proxy and server names: letters, digits, ``_ . : -``."""
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValueError("%s: %r is not a valid HAProxy name (letters, digits, '_', '.', ':', '-')" % (field, value))
    return value


class HAProxyClient:
    """One HAProxy Runtime API (admin level).

    ``execute(cmd)`` sends one command on a new connection and returns the answer text; ``action(cmd)`` is the
    check-mode-aware write: it records the command and, unless ``check_mode``, sends it and raises HAProxyApiError
    when HAProxy's answer is not a success. ``commands`` lists what was sent (or would be)."""

    def __init__(self, runtime_api, timeout=5.0, check_mode=False, field="runtime_api"):
        self.runtime_api = runtime_api
        self.family, self.address = parse_runtime_api(runtime_api, field)
        self.field = field
        self.timeout = float(timeout)
        self.check_mode = check_mode
        self.commands = []

    def _connect(self):
        if self.family == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            sock.connect(self.address)
            return sock
        return socket.create_connection(self.address, timeout=self.timeout)

    def execute(self, command):
        """Send one command; the answer as text. Socket errors raise HAProxyApiError(unreachable=True)."""
        try:
            sock = self._connect()
        except (OSError, socket.timeout) as exc:
            raise HAProxyApiError(command, "the Runtime API %s does not answer (%s)" % (self.runtime_api, exc),
                                  hint="set %s to HAProxy's admin socket (`stats socket <path> level admin` in the global "
                                       "section), e.g. %s, and check HAProxy runs" % (self.field, RUNTIME_API_EXAMPLE),
                                  unreachable=True)
        chunks = []
        try:
            sock.sendall(command.encode("utf-8") + b"\n")
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except (OSError, socket.timeout) as exc:
            raise HAProxyApiError(command, "no answer from the Runtime API %s within %s s (%s)" % (self.runtime_api, self.timeout, exc),
                                  hint="check %s is HAProxy's admin socket" % self.field, unreachable=True)
        finally:
            sock.close()
        text = b"".join(chunks).decode("utf-8", "replace")
        if text.startswith("Permission denied") or "Unknown command" in text and command.split()[0] in ("add", "del", "set", "enable", "disable"):
            raise HAProxyApiError(command, text.strip().splitlines()[0] if text.strip() else "permission denied",
                                  hint="the socket needs `level admin` (`stats socket <path> mode 600 level admin`)")
        return text

    def action(self, command):
        """A state-changing command: recorded, sent unless check mode, answer checked."""
        self.commands.append({"command": command, "check_mode": self.check_mode} if self.check_mode else {"command": command})
        if self.check_mode:
            return None
        answer = self.execute(command).strip()
        if answer and not any(answer.startswith(ok) or ok in answer for ok in _OK_ANSWERS):
            raise HAProxyApiError(command, answer.replace("\n", " "))
        return answer

    # -- reads --------------------------------------------------------------------------------------------------
    def version(self):
        """HAProxy's version (``show info``), e.g. ``2.6.12-1+deb12u4``."""
        for line in self.execute("show info").splitlines():
            if line.startswith("Version:"):
                return line.split(":", 1)[1].strip()
        return None

    def backends(self):
        """The backend names (``show backend``)."""
        return [line.strip() for line in self.execute("show backend").splitlines() if line.strip() and not line.startswith("#")]

    def servers_state(self, backend):
        """``show servers state <backend>`` parsed (list of dicts); HAProxyApiError when the backend is unknown."""
        text = self.execute("show servers state %s" % backend)
        if "Can't find backend" in text or "No such backend" in text:
            raise HAProxyApiError("show servers state %s" % backend, "backend %r does not exist" % backend)
        return parse_servers_state(text)

    def stats(self, backend):
        """``show stat <backend> 4 -1`` (servers only) parsed: {server name: row dict}."""
        text = self.execute("show stat %s 4 -1" % backend)
        return dict((row["svname"], row) for row in parse_stat_csv(text) if row.get("pxname") == backend)

    def wait(self, predicate, timeout, interval=0.2):
        """Call ``predicate()`` until it returns a true value or ``timeout`` seconds pass; returns the last value."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value or time.monotonic() >= deadline:
                return value
            time.sleep(interval)


def parse_servers_state(text):
    """Rows of ``show servers state`` (format version 1) as dicts with typed fields."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = None
    rows = []
    for line in lines:
        if line.startswith("#"):
            header = line.lstrip("#").split()
            continue
        if header is None:
            continue            # the format version line
        values = line.split()
        row = dict(zip(header, values))
        if "srv_name" not in row:
            continue
        rows.append(row)
    return rows


def parse_stat_csv(text):
    """``show stat`` CSV -> list of dicts (the header line starts with ``# ``)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("#"):
        return []
    header = lines[0].lstrip("# ").rstrip(",").split(",")
    return [dict(zip(header, line.rstrip(",").split(","))) for line in lines[1:]]


def server_view(state_row, stat_row=None):
    """One server as the modules report it: name, address, port, weight, state (ready/drain/maint), status and
    health (from the checks), sessions."""
    admin = int(state_row.get("srv_admin_state", "0") or 0)
    if admin & ADMIN_MAINT:
        state = "maint"
    elif admin & ADMIN_DRAIN:
        state = "drain"
    else:
        state = "ready"
    stat_row = stat_row or {}

    def _int(value):
        try:
            return int(value)
        except (TypeError, ValueError):
            return None
    return {
        "name": state_row["srv_name"],
        "id": _int(state_row.get("srv_id")),
        "address": state_row.get("srv_addr"),
        "port": _int(state_row.get("srv_port")),
        "weight": _int(state_row.get("srv_uweight")),
        "state": state,
        "admin_state": admin,
        "operational_state": OP_STATES.get(_int(state_row.get("srv_op_state")), state_row.get("srv_op_state")),
        "status": stat_row.get("status"),              # UP, DOWN, MAINT, DRAIN, "no check", UP 1/2 ...
        "check_status": stat_row.get("check_status") or None,
        "current_sessions": _int(stat_row.get("scur")) or 0,
        "total_sessions": _int(stat_row.get("stot")) or 0,
        "queued": _int(stat_row.get("qcur")) or 0,
        "effective_weight": _int(stat_row.get("weight")),
    }
