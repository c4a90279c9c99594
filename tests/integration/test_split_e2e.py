"""End to end: continuous traffic through HAProxy -> Kong while the split moves 0 -> 10 -> 50 -> 100.

Binds the lab's shop service with the mixed_service role (playbooks/bind.yml), then, while background
workers keep sending requests, sets each share with playbooks/split.yml and measures 1000 requests:
the observed container share must be within 5 points of the plan, and no request may fail at any time,
including while the weights change. Run: PYTHONPATH=. .venv/bin/pytest -p tests.lab.pytest_plugin tests/integration/test_split_e2e.py
"""

import json
import os
import subprocess
import sys
import threading
import time

import requests

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "playbooks", "library"))

from traffic_sample import sample  # noqa: E402  pylint: disable=wrong-import-position

SHARES = [0, 10, 50, 100]
SAMPLE = 1000
TOLERANCE = 5.0


def playbook(lab, name, *extra):
    env = dict(os.environ)
    env["MIXEDRUN_LAB_JSON"] = os.path.join(lab["state_dir"], "lab.json")
    env["ANSIBLE_CONFIG"] = os.path.join(REPO, "ansible.cfg")
    env.pop("KONG_ADMIN_URL", None)
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", os.path.join(REPO, "inventories", "lab"),
           os.path.join(REPO, "playbooks", name)] + list(extra)
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, "%s failed:\n%s\n%s" % (name, proc.stdout[-4000:], proc.stderr[-2000:])
    return proc.stdout


class Background:
    """Requests sent continuously (bounded in time) by a few threads; every failure is recorded."""

    def __init__(self, url, host, workers=3, max_seconds=90):
        self.url, self.host = url, host
        self.stop = threading.Event()
        self.deadline = time.time() + max_seconds
        self.sent = 0
        self.failures = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _unused in range(workers)]

    def run(self):
        session = requests.Session()
        while not self.stop.is_set() and time.time() < self.deadline:
            try:
                resp = session.get(self.url, headers={"Host": self.host}, timeout=5, allow_redirects=False)
                error = None if 200 <= resp.status_code < 300 else "HTTP %d" % resp.status_code
            except requests.exceptions.RequestException as exc:
                error = type(exc).__name__
            with self.lock:
                self.sent += 1
                if error:
                    self.failures.append(error)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(10)


def test_split_under_continuous_traffic(lab):
    service = [s for s in lab["services"] if s["name"] == "shop"][0]
    started = time.time()
    playbook(lab, "bind.yml", "-e", "service=shop")
    playbook(lab, "split.yml", "-e", "service=shop", "-e", "share=0")
    observed = {}
    with Background(lab["lb_url"], service["domain"]) as background:
        for share in SHARES:
            out = playbook(lab, "split.yml", "-e", "service=shop", "-e", "share=%s" % share)
            assert "-> %s" % float(share) in out
            result = sample(lab["lb_url"], service["domain"], count=SAMPLE, concurrency=8, max_seconds=30)
            assert result["sent"] == SAMPLE, result
            assert result["failed"] == 0, result["errors"]
            observed[share] = result["container_share"]
            assert abs(result["container_share"] - share) <= TOLERANCE, (share, result["by_kind"])
            if share in (0, 100):
                # exact shares are exact: not one request to the other kind
                assert result["container_share"] == share, result["by_kind"]
    assert background.sent > 0
    assert not background.failures, "%d of %d background requests failed while the split changed: %s" % (
        len(background.failures), background.sent, sorted(set(background.failures)))
    # put the lab back at 0 % for whoever runs next on it
    playbook(lab, "split.yml", "-e", "service=shop", "-e", "share=0")
    elapsed = time.time() - started
    print(json.dumps({"observed": observed, "background_requests": background.sent, "seconds": round(elapsed, 1)}))
    assert elapsed < 90
