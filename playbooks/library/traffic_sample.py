# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: traffic_sample
short_description: Send a bounded burst of HTTP requests and count which kind of node answered
description:
  - Sends O(count) GET requests to O(url) with the C(Host) header O(host), O(concurrency) at a time, and counts
    the answers by the value of the response header O(kind_header) (the lab's nodes answer with C(X-Node-Kind)
    set to V(vm) or V(container)).
  - Bounded in count and in time (O(max_seconds)); it never retries. Used by the demo and the lab playbooks to
    show the share of traffic the containers actually receive.
  - Read-only for the service (GET requests), so it also runs in check mode.
options:
  url:
    description: URL to send the requests to (the load balancer or Kong's proxy).
    type: str
    required: true
  host:
    description: C(Host) header (the service's domain).
    type: str
  path:
    description: Path appended to O(url).
    type: str
    default: /
  count:
    description: Number of requests (1 to 100000).
    type: int
    default: 400
  concurrency:
    description: Requests in flight at once (1 to 64).
    type: int
    default: 8
  timeout:
    description: Seconds per request.
    type: float
    default: 5
  max_seconds:
    description: Stop sending after this many seconds (the result says how many were sent).
    type: float
    default: 60
  kind_header:
    description: Response header naming the kind of node that answered.
    type: str
    default: X-Node-Kind
author:
  - mixedrun.kong maintainers (@mixedrun)
"""

RETURN = r"""
sent:
  description: Requests sent.
  type: int
  returned: always
ok:
  description: Requests answered with a 2xx status.
  type: int
  returned: always
failed:
  description:
    - Requests that were not answered with a 2xx status - connection errors, timeouts and every other status,
      3xx included (redirects are not followed, so a redirect counts as a failure, never as a node's answer).
  type: int
  returned: always
by_status:
  description: Answers per HTTP status code (as text); requests without an answer are not counted here.
  type: dict
  returned: always
by_kind:
  description: Successful answers per value of O(kind_header) (C(none) when the header was missing).
  type: dict
  returned: always
by_node:
  description: Successful answers per C(X-Node-Name).
  type: dict
  returned: always
container_share:
  description: Percentage of the successful answers that came from containers; null when none succeeded.
  type: float
  returned: always
errors:
  description: Up to 10 distinct error descriptions.
  type: list
  returned: always
elapsed:
  description: Seconds spent.
  type: float
  returned: always
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    import requests
    HAS_REQUESTS = True
except ImportError:  # pragma: no cover
    HAS_REQUESTS = False


def sample(url, host=None, count=400, concurrency=8, timeout=5.0, max_seconds=60.0, kind_header="X-Node-Kind"):
    """Send the requests; return the counts (also used directly by tests and benchmarks)."""
    local = threading.local()
    headers = {"Host": host} if host else {}
    deadline = time.time() + max_seconds
    lock = threading.Lock()
    result = {"sent": 0, "ok": 0, "failed": 0, "by_kind": {}, "by_node": {}, "by_status": {}, "errors": []}

    def one(_index):
        if time.time() >= deadline:
            return
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        error = kind = node = status = None
        try:
            resp = session.get(url, headers=headers, timeout=timeout, allow_redirects=False)
            status = str(resp.status_code)
            if not 200 <= resp.status_code < 300:
                error = "HTTP %d from %s" % (resp.status_code, resp.headers.get("X-Node-Name") or resp.headers.get("Server") or "?")
            kind = resp.headers.get(kind_header) or "none"
            node = resp.headers.get("X-Node-Name") or "none"
            resp.close()
        except requests.exceptions.RequestException as exc:
            error = "%s: %s" % (type(exc).__name__, str(exc)[:160])
        with lock:
            result["sent"] += 1
            if status is not None:
                result["by_status"][status] = result["by_status"].get(status, 0) + 1
            if error:
                result["failed"] += 1
                if error not in result["errors"] and len(result["errors"]) < 10:
                    result["errors"].append(error)
            else:
                result["ok"] += 1
                result["by_kind"][kind] = result["by_kind"].get(kind, 0) + 1
                result["by_node"][node] = result["by_node"].get(node, 0) + 1

    started = time.time()
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, count))) as pool:
        list(pool.map(one, range(count)))
    result["elapsed"] = round(time.time() - started, 3)
    ok = result["ok"]
    result["container_share"] = round(100.0 * result["by_kind"].get("container", 0) / ok, 2) if ok else None
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="str", required=True),
            host=dict(type="str"),
            path=dict(type="str", default="/"),
            count=dict(type="int", default=400),
            concurrency=dict(type="int", default=8),
            timeout=dict(type="float", default=5.0),
            max_seconds=dict(type="float", default=60.0),
            kind_header=dict(type="str", default="X-Node-Kind"),
        ),
        supports_check_mode=True,
    )
    if not HAS_REQUESTS:
        module.fail_json(msg=missing_required_lib("requests"))
    p = module.params
    if not 1 <= p["count"] <= 100000:
        module.fail_json(msg="count must be between 1 and 100000, got %d" % p["count"])
    if not 1 <= p["concurrency"] <= 64:
        module.fail_json(msg="concurrency must be between 1 and 64, got %d" % p["concurrency"])
    if p["max_seconds"] <= 0 or p["timeout"] <= 0:
        module.fail_json(msg="timeout and max_seconds must be more than 0")
    if not p["path"].startswith("/"):
        module.fail_json(msg="path must start with '/', got %r" % p["path"])
    url = p["url"].rstrip("/") + p["path"]
    result = sample(url, p["host"], p["count"], p["concurrency"], p["timeout"], p["max_seconds"], p["kind_header"])
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
