"""End to end: playbooks/rollout.yml against the lab, with continuous traffic through HAProxy -> Kong.

(a) a healthy migration finishes at 100 % with no failed request;
(b) the container nodes start failing at the third step -> rollback to the starting share, the play fails naming
    the gate, its value and its threshold, and the traffic is back on the VMs;
(c) the controller is killed mid-rollout -> a re-run resumes from the share Kong holds and finishes, nothing
    repeated or lost;
    (under a new owner, once the dead run's lock has expired);
(d) two rollouts of the same service at once -> the second is refused by the lock, naming the owner, and writes
    nothing; an operator's rollback.yml with force takes over a lock whose job is gone (and fails on purpose when the
    AWX workflow's deny path asks it to);
(e) Prometheus returns no data -> the declared policy (fail / pass / inconclusive) is applied;
(f) the controller is killed in the middle of a gradual rollback -> the re-run finishes the rollback (and fails)
    instead of resuming the rollout upward;
(g) real Prometheus data breaches a threshold (containers answer 5xx) -> rollback, the play names the query;
(h) a failure after the last step (the report) fails the play but rolls nothing back; a dead run's tags at 100 %
    are finished (VM removal) and cleared by the re-run, after which a run has nothing to do;
(i) Kong nodes that disagree on the weights stop the start before anything is written;
(j) an approval that is not given stops the rollout at that step (named in the message and the report).

Hold times are 1-2 s. Run:
    PYTHONPATH=.tmp/collections:. .venv/bin/pytest -p tests.lab.pytest_plugin tests/integration/test_rollout_e2e.py
"""

import json
import glob
import http.server
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from tests.lab.lab import wait_scraped

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVICE = "shop"
PLAYBOOK_TIMEOUT = 240          # generous: the build box is shared and loaded; a hung run still ends


# -- helpers ----------------------------------------------------------------------------------------------------

def admin(lab):
    return lab["admin_url"]


def domain(lab):
    return [s for s in lab["services"] if s["name"] == SERVICE][0]["domain"]


def members(lab, kind=None):
    return [n for n in lab["nodes"] if n.get("service", SERVICE) == SERVICE and (kind is None or n["kind"] == kind)]


def bind(lab):
    """Upstream with tagged VM (weight 100) and container (weight 0) targets, service and route; no lock or state."""
    base = admin(lab)

    def call(method, path, body=None):
        resp = requests.request(method, base + path, json=body, timeout=10)
        assert resp.status_code < 400, "%s %s -> %s %s" % (method, path, resp.status_code, resp.text)
        return resp.json() if resp.content else None

    call("PUT", "/upstreams/" + SERVICE, {"tags": ["mixedrun-managed", "mixedrun-service:" + SERVICE]})
    set_rollout_state(lab)                  # no lock and no origin/rollback state (the lock and state consumers)
    have = {t["target"] for t in call("GET", "/upstreams/%s/targets" % SERVICE)["data"]}
    for node in members(lab):
        target = "%s:%d" % (node["address"], node["port"])
        body = {"weight": 100 if node["kind"] == "vm" else 0,
                "tags": ["mixedrun-managed", "mixedrun-kind:" + node["kind"], "mixedrun-service:" + SERVICE]}
        if target in have:
            call("PATCH", "/upstreams/%s/targets/%s" % (SERVICE, target), body)
        else:
            call("POST", "/upstreams/%s/targets" % SERVICE, dict(body, target=target))
    call("PUT", "/services/" + SERVICE, {"host": SERVICE, "port": 80, "protocol": "http"})
    call("PUT", "/routes/" + SERVICE, {"hosts": [domain(lab)], "service": {"name": SERVICE}})
    deadline = time.time() + 60
    while True:
        try:
            if requests.get(lab["lb_url"] + "/", headers={"Host": domain(lab)}, timeout=3).status_code == 200:
                return
        except requests.RequestException:
            pass
        assert time.time() < deadline, "the lab does not route %s" % domain(lab)
        time.sleep(0.2)


def weights(lab, url=None):
    data = requests.get((url or admin(lab)) + "/upstreams/%s/targets" % SERVICE, timeout=10).json()["data"]
    out = {"vm": 0, "container": 0}
    for item in data:
        kind = "container" if "mixedrun-kind:container" in (item.get("tags") or []) else "vm"
        out[kind] += item["weight"]
    return out


def share(lab):
    w = weights(lab)
    total = w["vm"] + w["container"]
    return 100.0 * w["container"] / total if total else 0.0


def upstream_tags(lab):
    return requests.get(admin(lab) + "/upstreams/" + SERVICE, timeout=10).json().get("tags") or []


def upstream_id(lab):
    return requests.get(admin(lab) + "/upstreams/" + SERVICE, timeout=10).json()["id"]


def _consumer_tags(lab, name):
    resp = requests.get(admin(lab) + "/consumers/%s.%s" % (name, upstream_id(lab)), timeout=10)
    return (resp.json().get("tags") or []) if resp.status_code == 200 else []


def state_tags(lab):
    """The rollout's lock, origin and rollback tags: on the lock and state consumers (and legacy ones left on the
    upstream, which there should never be after a run)."""
    tags = _consumer_tags(lab, "mixedrun-lock") + _consumer_tags(lab, "mixedrun-rollout") + upstream_tags(lab)
    return [t for t in tags if t.startswith(("mixedrun-lock:", "mixedrun-rollout-origin:", "mixedrun-rollout-rollback:"))]


def rollout_tags(lab):
    """The lock and origin tags."""
    return [t for t in state_tags(lab) if t.startswith(("mixedrun-lock:", "mixedrun-rollout-origin:"))]


def lock_owners(lab):
    return [t.split(":")[1] for t in state_tags(lab) if t.startswith("mixedrun-lock:")]


def set_tags(lab, tags):
    resp = requests.patch(admin(lab) + "/upstreams/" + SERVICE, json={"tags": tags}, timeout=10)
    assert resp.status_code == 200, resp.text


def set_rollout_state(lab, lock=None, origin=None):
    """Replace the lock and state consumers: ``lock`` = (owner, expiry epoch), ``origin`` = share."""
    uid = upstream_id(lab)
    for name in ("mixedrun-lock", "mixedrun-rollout"):
        requests.delete(admin(lab) + "/consumers/%s.%s" % (name, uid), timeout=10)
    if lock:
        body = {"username": "mixedrun-lock." + uid, "custom_id": "e2e-%s" % time.time(),
                "tags": ["mixedrun-lock", "mixedrun-upstream:" + uid, "mixedrun-lock:%s:%d" % lock]}
        resp = requests.post(admin(lab) + "/consumers", json=body, timeout=10)
        assert resp.status_code == 201, resp.text
    if origin is not None:
        resp = requests.put(admin(lab) + "/consumers/mixedrun-rollout." + uid, timeout=10,
                            json={"tags": ["mixedrun-rollout", "mixedrun-upstream:" + uid, "mixedrun-rollout-origin:%s" % origin]})
        assert resp.status_code == 200, resp.text


def fault_all_containers(lab, **faults):
    for node in members(lab, "container"):
        resp = requests.post("%s/nodes/%s" % (lab["control_url"], node["name"]), json=faults, timeout=10)
        assert resp.status_code == 200, resp.text


def reset_faults(lab):
    requests.post(lab["control_url"] + "/reset", timeout=10).raise_for_status()


def base_vars(lab, report_dir, **extra):
    variables = {
        "rollout_upstream": SERVICE,
        "rollout_admin_url": admin(lab),
        "rollout_admin_urls": lab.get("admin_urls") or [admin(lab)],
        "rollout_balancer_urls": lab.get("kong_balancer_urls") or [],
        "rollout_steps": [1, 25, 50],
        "rollout_hold": 1,
        "rollout_gate_interval": 0.5,
        "rollout_probe_path": "/healthz",
        "rollout_traffic_url": lab["lb_url"],
        "rollout_traffic_host": domain(lab),
        "rollout_traffic_requests": 20,
        "rollout_traffic_min_success_ratio": 0.99,
        "rollout_report_dir": report_dir,
        "rollout_lock_owner": "e2e-main",
        "rollout_lock_settle": 0.2,
    }
    variables.update(extra)
    return variables


def command(name, variables):
    return [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
            os.path.join(REPO, "playbooks", name), "-e", json.dumps(variables)]


def env():
    out = dict(os.environ)
    out["ANSIBLE_CONFIG"] = os.path.join(REPO, "ansible.cfg")
    out["ANSIBLE_NOCOLOR"] = "1"
    out.pop("KONG_ADMIN_URL", None)
    return out


def run_playbook(name, variables, timeout=PLAYBOOK_TIMEOUT):
    proc = subprocess.run(command(name, variables), cwd=REPO, env=env(), capture_output=True, text=True,
                          timeout=timeout, check=False, stdin=subprocess.DEVNULL)
    # Ansible's YAML output wraps long messages: compare on single-spaced text.
    return proc.returncode, " ".join((proc.stdout + proc.stderr).split())


def start_playbook(name, variables):
    return subprocess.Popen(command(name, variables), cwd=REPO, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, stdin=subprocess.DEVNULL)


def steps_of(report, kind="step"):
    return [s for s in report["steps"] if s["kind"] == kind]


def reports(report_dir):
    out = []
    for path in sorted(glob.glob(os.path.join(report_dir, "rollout-*.json")), key=os.path.getmtime):
        with open(path) as handle:
            out.append(json.load(handle))
    return out


class Traffic:
    """Continuous requests through HAProxy -> Kong (bounded in time); records every answer's node kind."""

    def __init__(self, lab, workers=2, max_seconds=3 * PLAYBOOK_TIMEOUT):
        self.url = lab["lb_url"] + "/"
        self.host = domain(lab)
        self.stop = threading.Event()
        self.deadline = time.time() + max_seconds
        self.lock = threading.Lock()
        self.results = []                     # (time, status or error, node kind)
        self.threads = [threading.Thread(target=self.run, daemon=True) for _worker in range(workers)]

    def run(self):
        session = requests.Session()
        while not self.stop.is_set() and time.time() < self.deadline:
            try:
                resp = session.get(self.url, headers={"Host": self.host}, timeout=5)
                item = (time.time(), resp.status_code, resp.headers.get("X-Node-Kind"))
            except requests.RequestException as exc:
                item = (time.time(), type(exc).__name__, None)
            with self.lock:
                self.results.append(item)
            time.sleep(0.01)

    def failures(self, since=0.0):
        return [r for r in self.results if r[0] >= since and r[1] != 200]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(10)


class LoopbackServer:
    """An HTTP server on a free loopback port, serving ``handler`` in a thread while used as a context manager."""

    def __init__(self, handler, path=""):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = "http://127.0.0.1:%d%s" % (self.server.server_address[1], path)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class Webhooks(LoopbackServer):
    """A webhook receiver on loopback; runs ``on_event(body)`` for each call."""

    def __init__(self, on_event=None):
        self.events = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                receiver.events.append(body)
                if on_event:
                    on_event(body)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_args):
                pass

        super().__init__(Handler, "/hook")


@pytest.fixture
def fresh(lab, tmp_path):
    """A bound service at 0 %, no lock, no faults; a report directory."""
    reset_faults(lab)
    bind(lab)
    set_tags(lab, ["mixedrun-managed", "mixedrun-service:" + SERVICE])
    set_rollout_state(lab)
    yield str(tmp_path / "reports")
    reset_faults(lab)


# -- the scenarios ----------------------------------------------------------------------------------------------

def test_a_healthy_migration_finishes_at_100_without_a_failed_request(lab, fresh):
    with Traffic(lab) as traffic:
        rc, out = run_playbook("rollout.yml", base_vars(lab, fresh))
        time.sleep(0.5)
    assert rc == 0, out[-5000:]
    assert weights(lab)["vm"] == 0 and weights(lab)["container"] > 0
    for url in lab.get("admin_urls") or []:
        assert weights(lab, url)["vm"] == 0, "Kong node %s does not show the final weights" % url
    assert len(traffic.results) > 100 and traffic.failures() == [], traffic.failures()[:10]
    assert {r[2] for r in traffic.results[-20:]} == {"container"}
    assert "Step 2 of 4" in out and "Rollout of shop (upstream shop): finished" in out
    report = reports(fresh)[-1]
    assert report["run"]["outcome"] == "finished"
    assert [s["planned_share"] for s in steps_of(report)] == [1, 25, 50, 100]
    preflight = steps_of(report, "preflight")
    assert len(preflight) == 1 and preflight[0]["decision"] == "pass"
    assert [g["name"] for g in preflight[0]["gate"]["gates"]] == ["probes"]
    assert preflight[0]["gate"]["gates"][0]["detail"] == "%d nodes answered" % len(members(lab, "container"))
    for step in steps_of(report):
        assert abs(step["achieved_share"] - step["planned_share"]) <= 0.05
        assert step["gate"]["decision"] == "pass" and step["gate"]["evaluations"]
        assert all("value" in g and "threshold" in g for g in step["gate"]["gates"])
    assert os.path.exists(report_path(fresh, ".html"))
    assert rollout_tags(lab) == []


def report_path(report_dir, ext):
    return sorted(glob.glob(os.path.join(report_dir, "rollout-*" + ext)), key=os.path.getmtime)[-1]


def test_b_failing_containers_at_the_third_step_roll_back_and_fail_the_play(lab, fresh):
    def on_event(body):
        if body.get("event") == "before_step" and body.get("step") == 3:
            fault_all_containers(lab, error_rate=1.0)

    with Webhooks(on_event) as hooks, Traffic(lab) as traffic:
        # the second on-rollback hook fails (nothing listens there): reported on its own, the rollback stands
        variables = base_vars(lab, fresh, rollout_steps=[1, 10, 25, 50], rollout_max_consecutive_failures=2,
                              rollout_hooks_before_step=[{"url": hooks.url}],
                              rollout_hooks_on_rollback=[{"url": hooks.url}, {"url": "http://127.0.0.1:9/down", "timeout": 2}])
        rc, out = run_playbook("rollout.yml", variables)
        ended = time.time()
        time.sleep(1.0)
    assert rc != 0, out[-4000:]
    assert "Rollout of shop FAILED" in out and "at step 3 of 5 (25" in out
    assert "gate 'traffic' (traffic) failed: measured" in out and "threshold >= 0.99" in out
    assert "Rolled back (immediate) to 0.0%" in out and "THE ROLLBACK FAILED" not in out
    assert "Separately, an on-rollback hook failed (it does not change the outcome above)" in out
    assert weights(lab)["container"] == 0 and share(lab) == 0.0
    after = [r for r in traffic.results if r[0] > ended]
    assert after and all(r[1] == 200 and r[2] == "vm" for r in after), after[:10]
    expected_events = [("before_step", 1), ("before_step", 2), ("before_step", 3), ("rollback", None)]
    assert [(e["event"], e["step"]) for e in hooks.events] == expected_events
    report = reports(fresh)[-1]
    assert report["run"]["outcome"] == "rolled_back" and report["run"]["final_share"] == 0
    assert report["run"]["hook_error"] and report["run"]["rollback_error"] is None
    failed = [s for s in report["steps"] if s.get("decision") == "rollback" and s["kind"] == "step"][0]
    assert failed["planned_share"] == 25 and failed["gate"]["failing_gate"]["name"] == "traffic"
    assert failed["gate"]["failing_gate"]["value"] < 0.99
    assert report["steps"][-1]["kind"] == "rollback"
    assert lock_owners(lab) == []


def test_c_killed_controller_resumes_from_the_share_kong_holds(lab, fresh):
    schedule = [5, 20, 40, 60, 80]
    variables = base_vars(lab, fresh, rollout_steps=schedule, rollout_hold=2, rollout_gate_interval=1)
    with Traffic(lab) as traffic:
        proc = start_playbook("rollout.yml", variables)
        deadline = time.time() + 180
        while share(lab) < 19.9 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
        time.sleep(0.7)               # mid-hold of step 2 or a little later
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()
        killed_at = share(lab)
        assert 19.9 <= killed_at < 99.9, killed_at
        tags = state_tags(lab)
        locks = [t for t in tags if t.startswith("mixedrun-lock:e2e-main:")]
        assert len(locks) == 1 and "mixedrun-rollout-origin:0" in tags
        assert not [t for t in upstream_tags(lab) if t.startswith("mixedrun-") and t not in ("mixedrun-managed", "mixedrun-service:" + SERVICE)]
        # While the dead run's lock is live, another owner is refused ...
        rc, out = run_playbook("rollout.yml", dict(variables, rollout_lock_owner="e2e-second"))
        assert rc != 0 and "locked by 'e2e-main'" in out and share(lab) == killed_at
        # ... once it has expired (backdated here instead of waiting rollout_lock_ttl), a new owner takes it over
        # and resumes from the share Kong holds, rolling back (if it must) to the first run's origin.
        set_rollout_state(lab, lock=("e2e-main", time.time() - 5), origin=0)
        rc, out = run_playbook("rollout.yml", dict(variables, rollout_lock_owner="e2e-second"))
        time.sleep(0.3)
    assert rc == 0, out[-5000:]
    assert "Resuming the rollout of shop at" in out and "(origin 0.0%), lock held by e2e-second" in out
    report = reports(fresh)[-1]
    assert report["run"]["resumed"] is True and report["run"]["origin_share"] == 0
    assert report["run"]["owner"] == "e2e-second"
    planned = [s["planned_share"] for s in steps_of(report)]
    expected = [s for s in schedule + [100] if s > killed_at + 0.5]
    assert planned == expected, (killed_at, planned)
    # the resume check ran every gate at the share Kong held
    resume = steps_of(report, "preflight")[0]["gate"]["gates"]
    assert {g["gate"] for g in resume} == {"kong_health", "probes", "traffic"}
    assert share(lab) == 100.0 and rollout_tags(lab) == []
    assert traffic.failures() == [], traffic.failures()[:10]


def test_d_second_rollout_is_refused_by_the_lock(lab, fresh):
    first_vars = base_vars(lab, fresh, rollout_steps=[10, 50], rollout_hold=2, rollout_lock_owner="job-a@ctl")
    first = start_playbook("rollout.yml", first_vars)
    try:
        deadline = time.time() + 120
        while lock_owners(lab) != ["job-a@ctl"]:
            assert time.time() < deadline and first.poll() is None, "the first rollout never took the lock"
            time.sleep(0.1)
        rc, out = run_playbook("rollout.yml", base_vars(lab, fresh, rollout_lock_owner="job-b@ctl"))
        assert rc != 0
        assert "Rollout of shop not started" in out and "locked by 'job-a@ctl'" in out
        # the second play wrote nothing (no task changed anything) and the lock is still the first one's
        assert "changed=0" in out and "failed=1" in out, out[-2000:]
        assert lock_owners(lab) == ["job-a@ctl"]
        output, _errors = first.communicate(timeout=PLAYBOOK_TIMEOUT)
        assert first.returncode == 0, output[-4000:]
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(10)
    assert share(lab) == 100.0
    assert reports(fresh)[-1]["run"]["owner"] == "job-a@ctl"        # the refused run wrote no report

    # an operator's rollback over the lock of a job that is gone: refused without force, done with it; the AWX
    # workflow's deny path (rollout_fail_after_rollback) rolls back and then fails on purpose
    set_rollout_state(lab, lock=("ghost-job@ctl", time.time() + 3600), origin=0)
    rc, out = run_playbook("rollback.yml", base_vars(lab, fresh, rollout_lock_owner="operator"))
    assert rc != 0 and "locked by 'ghost-job@ctl'" in out and share(lab) == 100.0
    rc, out = run_playbook("rollback.yml", base_vars(lab, fresh, rollout_lock_owner="operator", rollout_lock_force=True,
                                                     rollout_fail_after_rollback=True))
    assert rc != 0 and "failing on purpose (rollout_fail_after_rollback=true)" in out, out[-4000:]
    assert share(lab) == 0.0 and rollout_tags(lab) == []
    report = reports(fresh)[-1]
    assert report["run"]["outcome"] == "rolled_back" and report["run"]["owner"] == "operator"
    assert [(s["kind"], s["planned_share"]) for s in report["steps"]] == [("rollback", 0)]


def test_e0_a_query_on_a_metric_that_does_not_exist_stops_before_the_first_step(lab, fresh):
    """Kong's prometheus plugin exports nothing of its request metrics by default: a gate reading a metric that has no
    series can never see data, so the rollout must not start (and must not pass by a no_data policy)."""
    before = share(lab)
    variables = base_vars(lab, fresh, rollout_steps=[50], rollout_no_data="pass", rollout_traffic_url=None,
                          rollout_prometheus_url=lab["prometheus_url"],
                          rollout_prometheus_queries=[{"name": "error ratio", "max": 0.05,
                                                       "query": "sum(rate(mixedrun_e2e_metric_that_does_not_exist[1m]))"}])
    rc, out = run_playbook("rollout.yml", variables)
    text = " ".join(out.split())
    assert rc != 0 and "prometheus.queries[1] (error ratio) reads mixedrun_e2e_metric_that_does_not_exist" in text, out[-4000:]
    assert "could never see data" in text
    assert share(lab) == before and lock_owners(lab) == []


@pytest.mark.parametrize("policy", ["fail", "pass", "inconclusive"])
def test_e_prometheus_without_data_applies_the_declared_policy(lab, fresh, policy):
    variables = base_vars(lab, fresh, rollout_steps=[50], rollout_no_data=policy, rollout_inconclusive_limit=2,
                          rollout_prometheus_require_series=False,
                          rollout_traffic_url=None, rollout_prometheus_url=lab["prometheus_url"],
                          rollout_prometheus_queries=[{"name": "error ratio", "max": 0.05,
                                                       "query": "sum(rate(mixedrun_e2e_metric_that_does_not_exist[1m]))"}])
    rc, out = run_playbook("rollout.yml", variables)
    gate_words = "gate 'error ratio' (prometheus)"
    if policy == "pass":
        assert rc == 0, out[-4000:]
        assert share(lab) == 100.0
        report = reports(fresh)[-1]
        assert report["run"]["outcome"] == "finished"
        for step in steps_of(report):
            gate = [g for g in step["gate"]["gates"] if g["name"] == "error ratio"][0]
            assert gate["status"] == "pass" and gate["value"] is None and "no_data policy pass" in gate["detail"]
        return
    assert rc != 0 and gate_words in out and "measured no data" in out and "threshold <= 0.05" in out
    if policy == "fail":
        assert "Rolled back (immediate) to 0.0%" in out and share(lab) == 0.0
        assert rollout_tags(lab) == []
    else:
        # inconclusive: hold the weight, no rollback, a human decides; a re-run resumes from here
        assert "Rollout gate inconclusive" in out and "Holding at 50.0%" in out
        assert share(lab) == 50.0
        assert state_tags(lab) == ["mixedrun-rollout-origin:0"]
    report = reports(fresh)[-1]
    gate = steps_of(report)[-1]["gate"]
    assert gate["failing_gate"]["value"] is None and "no_data policy %s" % policy in gate["failing_gate"]["detail"]


def test_f_killed_mid_rollback_the_rerun_finishes_the_rollback(lab, fresh):
    def on_event(body):
        if body.get("event") == "before_step" and body.get("step") == 3:
            fault_all_containers(lab, error_rate=1.0)

    with Webhooks(on_event) as hooks:
        variables = base_vars(lab, fresh, rollout_steps=[10, 40, 70], rollout_max_consecutive_failures=1,
                              rollout_rollback_mode="gradual", rollout_rollback_step_hold=30,
                              rollout_hooks_before_step=[{"url": hooks.url}])
        proc = start_playbook("rollout.yml", variables)
        try:
            deadline = time.time() + 240
            # the rollback has begun (its tag is on the upstream) and made its first step back, 70 % -> 40 %
            while not ("mixedrun-rollout-rollback:0" in state_tags(lab) and abs(share(lab) - 40) < 0.5):
                assert time.time() < deadline and proc.poll() is None, "the rollback never started"
                time.sleep(0.1)
            time.sleep(0.5)                         # in the 30 s pause before the next rollback step
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            proc.stdout.close()
    assert abs(share(lab) - 40) < 0.5
    assert "mixedrun-rollout-rollback:0" in state_tags(lab) and "mixedrun-rollout-origin:0" in state_tags(lab)
    # the containers are healthy again: a re-run must still not resume upward, but finish the rollback
    reset_faults(lab)
    rc, out = run_playbook("rollout.yml", dict(variables, rollout_rollback_step_hold=1))
    assert rc != 0, out[-4000:]
    assert "Rollout of shop FAILED: an earlier run was rolling shop back to 0.0% when it stopped" in out
    assert "Rolled back (gradual) to 0.0%" in out
    assert share(lab) == 0.0 and state_tags(lab) == []
    report = reports(fresh)[-1]
    assert report["run"]["outcome"] == "rolled_back"
    assert [(s["kind"], s["planned_share"]) for s in report["steps"]] == [("rollback", 10), ("rollback", 0)]


def test_g_prometheus_threshold_breach_rolls_back(lab, fresh):
    wait_scraped(lab)
    fault_all_containers(lab, error_rate=0.5)
    ratio = ('sum(rate(lab_http_requests_total{service="%s",kind="container",code=~"5.."}[5s]))'
             ' / sum(rate(lab_http_requests_total{service="%s",kind="container"}[5s]))' % (SERVICE, SERVICE))
    variables = base_vars(lab, fresh, rollout_steps=[25, 50], rollout_hold=4, rollout_gate_interval=1,
                          rollout_traffic_url=None, rollout_no_data="inconclusive", rollout_inconclusive_limit=10,
                          rollout_prometheus_url=lab["prometheus_url"],
                          rollout_prometheus_queries=[{"name": "container 5xx ratio", "query": ratio, "max": 0.1}])
    with Traffic(lab):                        # real requests through HAProxy -> Kong feed the nodes' metrics
        rc, out = run_playbook("rollout.yml", variables)
    assert rc != 0, out[-4000:]
    assert "gate 'container 5xx ratio' (prometheus) failed: measured 0." in out and "threshold <= 0.1" in out
    assert "Rolled back (immediate) to 0.0%" in out and share(lab) == 0.0 and rollout_tags(lab) == []
    report = reports(fresh)[-1]
    failing = [s for s in steps_of(report) if s["decision"] == "rollback"][0]["gate"]["failing_gate"]
    assert failing["name"] == "container 5xx ratio" and 0.25 <= failing["value"] <= 0.75, failing


def test_h_a_failed_finish_rolls_nothing_back_and_a_rerun_finishes(lab, fresh, tmp_path):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("the report cannot be written below a file")
    variables = base_vars(lab, fresh, rollout_steps=[50], rollout_hold=0.5)
    rc, out = run_playbook("rollout.yml", dict(variables, rollout_report_dir=str(blocked / "reports")))
    assert rc != 0
    assert "Rollout of shop reached 100.0% (every step passed its gates), but finishing FAILED" in out
    assert "Nothing was rolled back" in out and "Rolled back" not in out
    assert share(lab) == 100.0 and rollout_tags(lab) == []          # the report failed after the lock release
    # A run of collection 1.x that died at 100 % before finishing left its (expired) lock and origin tags on the
    # upstream. The re-run takes the lock (migrating the legacy tags), finishes (here: removes the VM targets after the
    # drain) and clears the state; one more run has nothing to do.
    set_tags(lab, ["mixedrun-managed", "mixedrun-lock:dead-job:%d" % (time.time() - 5), "mixedrun-rollout-origin:0"])
    rc, out = run_playbook("rollout.yml", dict(variables, rollout_remove_vms=True, rollout_vm_drain=1))
    assert rc == 0, out[-4000:]
    assert "finished what an earlier run left" in out
    assert rollout_tags(lab) == [] and weights(lab)["vm"] == 0
    assert not [t for t in requests.get(admin(lab) + "/upstreams/%s/targets" % SERVICE, timeout=10).json()["data"]
                if "mixedrun-kind:vm" in (t.get("tags") or [])]
    assert reports(fresh)[-1]["run"]["outcome"] == "finished" and len(reports(fresh)) == 1
    rc, out = run_playbook("rollout.yml", variables)
    assert rc == 0 and "nothing to do" in out and "changed=0" in out and len(reports(fresh)) == 1


class SkewedKongNode(LoopbackServer):
    """A second 'Kong node' that answers like the lab's Kong but shows one container target at another weight."""

    def __init__(self, lab):
        upstream_admin = admin(lab)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                resp = requests.get(upstream_admin + self.path, timeout=10)
                body = resp.json()
                if self.path.startswith("/upstreams/%s/targets" % SERVICE):
                    for item in body.get("data") or []:
                        if "mixedrun-kind:container" in (item.get("tags") or []):
                            item["weight"] += 1
                            break
                data = json.dumps(body).encode()
                self.send_response(resp.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args):
                pass

        super().__init__(Handler)


def test_i_kong_nodes_that_disagree_stop_the_start(lab, fresh):
    with SkewedKongNode(lab) as skewed:
        variables = base_vars(lab, fresh, rollout_admin_urls=[admin(lab), skewed.url])
        rc, out = run_playbook("rollout.yml", variables)
    assert rc != 0
    assert "Rollout of shop not started: the Kong nodes" in out and "disagree on the weights of upstream shop" in out
    assert "changed=0" in out and share(lab) == 0.0 and rollout_tags(lab) == [] and reports(fresh) == []


def test_j_an_unanswered_approval_stops_at_that_step_without_rollback(lab, fresh):
    # rollout_approval_mode=pause with no terminal: the prompt gets no 'yes', so the rollout stops before 25 %
    variables = base_vars(lab, fresh, rollout_steps=[10, 25, 50], rollout_approval_steps=[25], rollout_hold=0.5)
    rc, out = run_playbook("rollout.yml", variables)
    assert rc != 0
    assert "Rollout of shop FAILED: step 2 (25.0%) was not approved" in out
    assert "Stopped without rollback: containers keep 10.0%" in out
    assert share(lab) == 10.0 and rollout_tags(lab) == ["mixedrun-rollout-origin:0"]
    report = reports(fresh)[-1]
    assert report["run"]["outcome"] == "frozen"
    stopped = steps_of(report)[-1]
    assert (stopped["index"], stopped["planned_share"], stopped["achieved_share"]) == (2, 25, None)
