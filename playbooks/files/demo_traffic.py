# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Steady background traffic for the demo: GET requests through the load balancer at a fixed rate.

    python demo_traffic.py start --url http://lb:port --host shop.lab.test --rate 25 --state FILE [--max-seconds 900]
    python demo_traffic.py stop --state FILE

``start`` starts a detached process (its own session) that sends ``--rate`` requests a second, one at a time on a
keep-alive connection, until ``stop`` (SIGTERM) or ``--max-seconds`` (it never outlives a demo that died without
stopping it), and prints one JSON line: its pid and the state file. The state file (rewritten atomically every
second and at the end) holds the counts: requests sent, answers by HTTP status and by the answering node's kind
(the ``X-Node-Kind`` header of the lab's nodes), connection errors. ``stop`` ends the process (checking first that
the pid is still this script, so a recycled pid is never signalled), waits for its last write and prints the state
as one JSON line; without a running process it prints what the state file holds (``running: false``). Standard
library only.
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import signal
import sys
import time

try:
    import http.client as http_client
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover - Python 2 is not supported by the demo
    http_client = None
    urlsplit = None

SCRIPT_MARK = "demo_traffic.py"


def _write_state(path, state):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(state, handle, sort_keys=True)
    os.rename(tmp, path)


def _read_state(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (IOError, OSError, ValueError):
        return None


def _is_ours(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return SCRIPT_MARK.encode() in handle.read()
    except (IOError, OSError):
        return False


class Sender:
    """One keep-alive connection; reconnects after an error."""

    def __init__(self, url, host, path, timeout):
        parts = urlsplit(url)
        self.scheme, self.netloc = parts.scheme, parts.netloc
        self.path = (parts.path.rstrip("/") + path) or "/"
        self.headers = {"Host": host} if host else {}
        self.timeout = timeout
        self.conn = None

    def send(self):
        """(status or None, kind header or None, error text or None)."""
        try:
            if self.conn is None:
                cls = http_client.HTTPSConnection if self.scheme == "https" else http_client.HTTPConnection
                self.conn = cls(self.netloc, timeout=self.timeout)
            self.conn.request("GET", self.path, headers=self.headers)
            response = self.conn.getresponse()
            response.read()
            if response.getheader("Connection", "").lower() == "close":
                self.close()
            return response.status, response.getheader("X-Node-Kind"), None
        except (OSError, http_client.HTTPException) as exc:
            self.close()
            return None, None, type(exc).__name__

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
            self.conn = None


def run(args):
    """The traffic loop (in the detached process)."""
    stopping = {"now": False}

    def on_signal(_signum, _frame):
        stopping["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sender = Sender(args.url, args.host, args.path, args.timeout)
    started = time.time()
    state = {"pid": os.getpid(), "running": True, "url": args.url, "host": args.host, "rate": args.rate,
             "started_at": round(started, 3), "sent": 0, "by_status": {}, "by_kind": {}, "errors": {}}
    _write_state(args.state, state)
    period = 1.0 / args.rate
    next_due = started
    last_write = started
    while not stopping["now"] and time.time() - started < args.max_seconds:
        now = time.time()
        if next_due > now:
            time.sleep(min(next_due - now, 0.2))
            continue
        # never more than a second's worth of requests late: a slow answer lowers the rate, it does not cause a burst
        next_due = max(next_due + period, now - 1.0)
        status, kind, error = sender.send()
        state["sent"] += 1
        if error:
            state["errors"][error] = state["errors"].get(error, 0) + 1
        else:
            state["by_status"][str(status)] = state["by_status"].get(str(status), 0) + 1
            if kind:
                state["by_kind"][kind] = state["by_kind"].get(kind, 0) + 1
        if time.time() - last_write >= 1.0:
            state["seconds"] = round(time.time() - started, 3)
            _write_state(args.state, state)
            last_write = time.time()
    sender.close()
    state["seconds"] = round(time.time() - started, 3)
    state["running"] = False
    state["stopped_by"] = "signal" if stopping["now"] else "max-seconds"
    _write_state(args.state, state)


def start(args):
    if args.rate <= 0 or args.rate > 1000:
        sys.exit("--rate must be between 0 and 1000 requests a second, got %s" % args.rate)
    old = _read_state(args.state)
    if old and old.get("running") and _is_ours(int(old.get("pid") or 0)):
        sys.exit("background traffic already runs (pid %s, state %s): stop it first" % (old["pid"], args.state))
    if os.path.exists(args.state):
        os.remove(args.state)
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)  # pylint: disable=protected-access
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        try:
            run(args)
        finally:
            os._exit(0)  # pylint: disable=protected-access
    os.waitpid(pid, 0)
    deadline = time.time() + 10
    while time.time() < deadline:
        state = _read_state(args.state)
        if state and state.get("pid"):
            print(json.dumps({"pid": state["pid"], "state": args.state, "rate": args.rate, "url": args.url, "host": args.host}))
            return
        time.sleep(0.05)
    sys.exit("the background traffic process did not start within 10 s (no state in %s)" % args.state)


def stop(args):
    state = _read_state(args.state)
    if not state:
        print(json.dumps({"running": False, "sent": 0, "state": args.state, "note": "no background traffic was started"}))
        return
    pid = int(state.get("pid") or 0)
    if state.get("running") and pid and _is_ours(pid):
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
        deadline = time.time() + 10
        while time.time() < deadline and _is_ours(pid):
            time.sleep(0.05)
        if _is_ours(pid):
            os.kill(pid, signal.SIGKILL)
        state = _read_state(args.state) or state
    state["running"] = False
    seconds = float(state.get("seconds") or 0)
    state["achieved_rate"] = round(state.get("sent", 0) / seconds, 1) if seconds > 0 else 0.0
    print(json.dumps(state, sort_keys=True))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    p_start = sub.add_parser("start")
    p_start.add_argument("--url", required=True)
    p_start.add_argument("--host")
    p_start.add_argument("--path", default="/")
    p_start.add_argument("--rate", type=float, default=25.0)
    p_start.add_argument("--timeout", type=float, default=2.0)
    p_start.add_argument("--max-seconds", type=float, default=900.0)
    p_start.add_argument("--state", required=True)
    p_stop = sub.add_parser("stop")
    p_stop.add_argument("--state", required=True)
    args = parser.parse_args(argv)
    if args.command == "start":
        start(args)
    elif args.command == "stop":
        stop(args)
    else:
        parser.error("start or stop")


if __name__ == "__main__":
    main()
