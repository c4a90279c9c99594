# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fake HAProxy Runtime API (unix or TCP socket, one command per connection) over an in-memory backend, with
HAProxy 2.6's answers, for the unit tests of the HAProxy client and modules."""

from __future__ import annotations

import os
import socketserver
import threading

STATE_HEADER = ("# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
                "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state "
                "srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port "
                "srv_check_addr srv_agent_addr srv_agent_port")
STAT_HEADER = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,status,weight,check_status,"


class FakeHAProxy:
    """backends: {name: {server: {"addr", "port", "weight", "admin" (bits), "scur"}}}."""

    def __init__(self, backends=None):
        self.backends = backends if backends is not None else {"kong_proxy": {}}
        self.received = []
        self.lock = threading.Lock()
        self.server = None

    def handle(self, line):  # pylint: disable=too-many-return-statements,too-many-branches
        words = line.split()
        with self.lock:
            self.received.append(line)
            if line == "show info":
                return "Name: HAProxy\nVersion: 2.6.12-1+deb12u4\nPid: 42\n"
            if line == "show backend":
                return "# name\n" + "".join("%s\n" % b for b in self.backends)
            if words[:3] == ["show", "servers", "state"]:
                backend = self.backends.get(words[3])
                if backend is None:
                    return "Can't find backend.\n"
                rows = ["1", STATE_HEADER]
                for i, (name, s) in enumerate(sorted(backend.items()), 1):
                    rows.append("3 %s %d %s %s 2 %d %d %d 5 6 3 4 6 0 0 0 - %d - 0 0 - - 0"
                                % (words[3], i, name, s["addr"], s["admin"], s["weight"], s["weight"], s["port"]))
                return "\n".join(rows) + "\n\n"
            if words[:2] == ["show", "stat"]:
                backend = self.backends.get(words[2], {})
                rows = [STAT_HEADER]
                for name, s in sorted(backend.items()):
                    status = "MAINT" if s["admin"] & 0x01 else "DRAIN" if s["admin"] & 0x08 else s.get("status", "UP")
                    rows.append("%s,%s,0,0,%d,0,,%d,%s,%d,L4OK," % (words[2], name, s.get("scur", 0), 10, status, s["weight"]))
                return "\n".join(rows) + "\n"
            if words[:2] == ["add", "server"]:
                be, _sep, name = words[2].partition("/")
                if be not in self.backends:
                    return "No such backend.\n"
                if name in self.backends[be]:
                    return "Already exists a server with the same name in backend.\n"
                addr, port = words[3].rsplit(":", 1)
                weight = int(words[words.index("weight") + 1]) if "weight" in words else 1
                self.backends[be][name] = {"addr": addr, "port": int(port), "weight": weight, "admin": 0x01, "scur": 0}
                return "New server registered.\n\n"
            if words[:2] == ["del", "server"]:
                be, _sep, name = words[2].partition("/")
                server = self.backends.get(be, {}).get(name)
                if server is None:
                    return "No such server.\n"
                if not server["admin"] & 0x01:
                    return "Only servers in maintenance mode can be deleted.\n"
                del self.backends[be][name]
                return "Server deleted.\n"
            if words[:2] in (["set", "server"], ["enable", "health"]):
                be, _sep, name = words[2].partition("/")
                server = self.backends.get(be, {}).get(name)
                if server is None:
                    return "No such server.\n\n"
                if words[0] == "enable":
                    return "\n"
                if words[3] == "weight":
                    server["weight"] = int(words[4])
                elif words[3] == "state":
                    server["admin"] = {"ready": 0, "drain": 0x08, "maint": 0x01}[words[4]]
                    if words[4] != "ready":
                        server["scur"] = 0
                elif words[3] == "addr":
                    old = (server["addr"], server["port"])
                    server["addr"], server["port"] = words[4], int(words[6])
                    return "IP changed from '%s' to '%s', port changed from '%d' to '%s' by 'stats socket command'\n\n" % (old[0], words[4], old[1], words[6])
                return "\n"
            return "Unknown command. Please enter one of the following commands only :\n"

    def _handler(self):
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                line = self.rfile.readline().decode().strip()
                self.wfile.write(fake.handle(line).encode())
        return Handler

    def start_unix(self, path):
        self.server = socketserver.ThreadingUnixStreamServer(path, self._handler())
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return path

    def start_tcp(self):
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return "ipv4@127.0.0.1:%d" % self.server.server_address[1]

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            path = self.server.server_address
            if isinstance(path, str) and os.path.exists(path):
                os.unlink(path)
