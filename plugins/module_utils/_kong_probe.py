# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Is this address:port a Kong proxy listener? One plain ``GET /`` with a Host no route matches."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import socket

try:
    import http.client as http_client
except ImportError:  # pragma: no cover
    import httplib as http_client  # pylint: disable=import-error

PROBE_HOST = "mixedrun-kong-probe.invalid"


def kong_answer(status, headers, body):
    """None when the answer comes from Kong (a Server/Via header naming Kong, or Kong's 'no Route matched'), else
    a description of what answered."""
    server = headers.get("server") or ""
    via = headers.get("via") or ""
    if server.lower().startswith("kong/") or "kong/" in via.lower() or any(k.lower().startswith("x-kong-") for k in headers):
        return None
    try:
        message = json.loads(body or "{}").get("message") or ""
    except (ValueError, AttributeError):
        message = ""
    if "no Route matched" in message:
        return None
    return "it answered HTTP %s without Kong's headers (Server: %s)" % (status, server or "none")


def probe_kong(address, port, timeout=5.0):
    """None when Kong's proxy answers on address:port, else the problem in words."""
    conn = http_client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", "/", headers={"Host": PROBE_HOST, "User-Agent": "mixedrun.kong-probe"})
        resp = conn.getresponse()
        body = resp.read(4096).decode("utf-8", "replace")
        headers = dict((k.lower(), v) for k, v in resp.getheaders())
        return kong_answer(resp.status, headers, body)
    except (socket.error, socket.timeout, http_client.HTTPException) as exc:
        return "nothing answers HTTP there (%s)" % exc
    finally:
        conn.close()
