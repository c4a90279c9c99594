"""playbooks/library/traffic_sample.py against a local HTTP server (no lab needed): only 2xx answers are ok."""

import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "playbooks", "library"))

from traffic_sample import sample  # noqa: E402  pylint: disable=wrong-import-position


class Handler(BaseHTTPRequestHandler):
    """/ok -> 200 from a container, /redirect -> 302 to /ok, /teapot -> 418, /mixed -> 200, 204, 301, 503 in turn."""

    counter = [0]
    lock = threading.Lock()

    def log_message(self, *args):  # quiet
        pass

    def _answer(self, status, kind="container"):
        self.send_response(status)
        self.send_header("X-Node-Kind", kind)
        self.send_header("X-Node-Name", "node-%d" % status)
        if status in (301, 302):
            self.send_header("Location", "/ok")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path == "/ok":
            self._answer(200)
        elif self.path == "/redirect":
            self._answer(302)
        elif self.path == "/teapot":
            self._answer(418)
        else:
            with self.lock:
                index = self.counter[0]
                self.counter[0] += 1
            self._answer([200, 204, 301, 503][index % 4], kind="vm" if index % 2 else "container")


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def test_two_hundreds_are_ok(server):
    result = sample(server + "/ok", count=20, concurrency=4)
    assert (result["sent"], result["ok"], result["failed"]) == (20, 20, 0)
    assert result["by_kind"] == {"container": 20} and result["container_share"] == 100.0
    assert result["by_status"] == {"200": 20}


def test_redirects_are_failures_and_not_followed(server):
    result = sample(server + "/redirect", count=10, concurrency=2)
    assert (result["ok"], result["failed"]) == (0, 10)
    assert result["by_status"] == {"302": 10}          # not followed to /ok
    assert result["container_share"] is None and result["by_kind"] == {}
    assert any("HTTP 302" in e for e in result["errors"])


def test_other_statuses_fail(server):
    result = sample(server + "/teapot", count=5, concurrency=1)
    assert (result["ok"], result["failed"]) == (0, 5)


def test_mixed_answers_count_only_2xx(server):
    Handler.counter[0] = 0
    result = sample(server + "/mixed", count=40, concurrency=1)
    assert result["by_status"] == {"200": 10, "204": 10, "301": 10, "503": 10}
    assert (result["ok"], result["failed"]) == (20, 20)
    # 200 answers come from containers (even index), 204 from VMs: the share is over the ok answers only
    assert result["by_kind"] == {"container": 10, "vm": 10} and result["container_share"] == 50.0
