#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kong_route_check
short_description: Check that each domain, requested through a load balancer or a Kong node, is answered by Kong's route
version_added: 1.1.0
description:
  - Requests every domain of O(domains) (as the C(Host) header) at every URL of O(urls), O(requests) times each, and
    checks the answer came from Kong's route for it; Kong proxied it to an upstream (its C(X-Kong-Upstream-Latency)
    header) with a status in O(status_code). An answer from anything else (a load balancer's default backend, a
    server that is not Kong) or Kong's 404 C(no Route matched) fails the task, listing each URL and domain.
  - Plain HTTP or HTTPS; one connection per request (so a load balancer spreads them over its servers).
  - Never changes anything.
attributes:
  check_mode:
    support: full
    description: Requests as usual (reads only).
  diff_mode:
    support: none
    description: Changes nothing.
options:
  urls:
    description: Base URLs to request, e.g. the load balancer's frontend V(http://lb.example.com) and/or Kong nodes' proxy listeners.
    type: list
    elements: str
    required: true
  domains:
    description: The domains (Kong route hosts) to request at each URL.
    type: list
    elements: str
    required: true
  path:
    description: Path requested.
    type: str
    default: /
  requests:
    description: Requests per URL and domain.
    type: int
    default: 1
  status_code:
    description: Statuses that count as the route answering (the upstream's own answer).
    type: list
    elements: int
    default: [200, 201, 202, 204, 301, 302, 304, 401, 403]
  timeout:
    description: Seconds per request.
    type: float
    default: 10
  validate_certs:
    description: Verify HTTPS certificates.
    type: bool
    default: true
seealso:
  - module: mixedrun.kong.haproxy_backend_servers
author:
  - mixedrun.kong maintainers (@mixedrun)
"""

EXAMPLES = r"""
- name: Every domain reaches Kong's route through the front load balancer
  mixedrun.kong.kong_route_check:
    urls: [http://lb.example.com]
    domains: [shop.example.com, blog.example.com]
    requests: 4
"""

RETURN = r"""
results:
  description: One entry per URL and domain.
  returned: always
  type: list
  elements: dict
  sample: [{"url": "http://lb.example.com", "domain": "shop.example.com", "requests": 4, "ok": 4, "statuses": [200], "problems": []}]
failed_checks:
  description: "The checks that failed, as C(<url> <domain>: <what answered>)."
  returned: always
  type: list
  elements: str
"""

import json
import socket
import ssl

try:
    import http.client as http_client
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover
    import httplib as http_client  # pylint: disable=import-error
    from urlparse import urlsplit  # pylint: disable=import-error

from ansible.module_utils.basic import AnsibleModule

ARGUMENT_SPEC = dict(
    urls=dict(type="list", elements="str", required=True),
    domains=dict(type="list", elements="str", required=True),
    path=dict(type="str", default="/"),
    requests=dict(type="int", default=1),
    status_code=dict(type="list", elements="int", default=[200, 201, 202, 204, 301, 302, 304, 401, 403]),
    timeout=dict(type="float", default=10),
    validate_certs=dict(type="bool", default=True),
)


def describe(status, headers, body, allowed):
    """None when Kong's route answered, else what did."""
    routed = "x-kong-upstream-latency" in headers
    if routed and status in allowed:
        return None
    if routed:
        return "HTTP %s from the route's upstream (not in status_code)" % status
    try:
        message = json.loads(body or "{}").get("message")
    except (ValueError, AttributeError):
        message = None
    if message and "no Route matched" in message:
        return "Kong's 404 'no Route matched' (Kong has no route for this host)"
    server = headers.get("server") or headers.get("via") or "unknown"
    return "HTTP %s not proxied by a Kong route (Server: %s)" % (status, server)


def request(url, domain, path, timeout, validate_certs):
    parts = urlsplit(url)
    if parts.scheme == "https":
        context = ssl.create_default_context() if validate_certs else ssl._create_unverified_context()  # pylint: disable=protected-access
        conn = http_client.HTTPSConnection(parts.hostname, parts.port or 443, timeout=timeout, context=context)
    else:
        conn = http_client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        conn.request("GET", (parts.path.rstrip("/") + path) or "/", headers={"Host": domain, "Connection": "close"})
        resp = conn.getresponse()
        body = resp.read(2048).decode("utf-8", "replace")
        return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), body
    finally:
        conn.close()


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    p = module.params
    for index, url in enumerate(p["urls"]):
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            module.fail_json(msg="urls[%d]: %r is not an http(s) URL; give e.g. http://lb.example.com" % (index, url))
    if p["requests"] < 1:
        module.fail_json(msg="requests: must be at least 1, got %d" % p["requests"])
    results, failed = [], []
    for url in p["urls"]:
        for domain in p["domains"]:
            entry = {"url": url, "domain": domain, "requests": p["requests"], "ok": 0, "statuses": [], "problems": []}
            for _attempt in range(p["requests"]):
                try:
                    status, headers, body = request(url, domain, p["path"], p["timeout"], p["validate_certs"])
                    problem = describe(status, headers, body, p["status_code"])
                    entry["statuses"].append(status)
                except (socket.error, socket.timeout, http_client.HTTPException, ssl.SSLError) as exc:
                    problem = "no answer (%s)" % exc
                if problem:
                    if problem not in entry["problems"]:
                        entry["problems"].append(problem)
                else:
                    entry["ok"] += 1
            entry["statuses"] = sorted(set(entry["statuses"]))
            results.append(entry)
            failed.extend("%s %s: %s" % (url, domain, problem) for problem in entry["problems"])
    if failed:
        module.fail_json(msg="not answered by Kong's route: %s. A 404 'no Route matched' means Kong has no route with that host "
                             "(bind the service); an answer without X-Kong-Upstream-Latency came from something else than a Kong route "
                             "(a default backend, a server in the pool that is not Kong)" % "; ".join(failed),
                         results=results, failed_checks=failed)
    module.exit_json(changed=False, results=results, failed_checks=[])


if __name__ == "__main__":
    main()
