"""The front load balancer (issue 15): HAProxy's Kong pool through the Runtime API, the kong_gateway role and the
rolling maintenance playbook, on the lab (real HAProxy, real Kong where the kit is).

Under steady traffic for each domain through HAProxy: bind all but one Kong proxy node, then all of them (2 then 3 on
a 3-node lab), remove one, and restart every Kong node in turn with playbooks/kong_maintenance.yml: 0 failed requests.
A reload of HAProxy keeps the bound set (the module keeps haproxy.cfg in step). Bad input (unknown backend, an
address that is not a Kong proxy, a socket that does not answer) fails with a message naming the field and changes
nothing.
Run: PYTHONPATH=. .venv/bin/pytest -p tests.lab.pytest_plugin tests/integration/test_front_lb.py
"""

import json
import os
import re
import subprocess
import sys
import threading
import time

import pytest
import requests
import yaml

from tests.lab import haproxy as lab_haproxy
from tests.lab.pytest_plugin import needs_realkong

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOMAINS = ("front-a.lab.test", "front-b.lab.test")
PYTHON = sys.executable


def kong_nodes(lab):
    """The proxying Kong nodes (hybrid: the data planes)."""
    return [n for n in lab["kong_nodes"] if n.get("proxy_url")]


def lb_servers(lab):
    """{name: (port, state, status)} of the lab's backend, read through the lab's own socket helper."""
    text = lab_haproxy.runtime_command(lab["lb_runtime_api"], "show servers state %s" % lab["lb_backend"])
    out = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) > 18 and words[0].isdigit():
            admin = int(words[6])
            out[words[3]] = (int(words[18]), "maint" if admin & 0x67 else "drain" if admin & 0x18 else "ready")
    return out


class Traffic:
    """Steady requests for each domain through HAProxy (two keep-alive clients per domain); a failure is an error, a
    status other than 200, or an answer Kong did not proxy (no X-Kong-Upstream-Latency)."""

    def __init__(self, url, domains, pause=0.05):
        self.url, self.domains, self.pause = url, domains, pause
        self.ok = 0
        self.failures = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(d,), daemon=True) for d in domains for _copy in range(2)]

    def _run(self, domain):
        session = requests.Session()
        while not self._stop.is_set():
            try:
                resp = session.get(self.url + "/", headers={"Host": domain}, timeout=10)
                good = resp.status_code == 200 and "x-kong-upstream-latency" in resp.headers
                problem = None if good else "%s HTTP %s %s" % (domain, resp.status_code, resp.text[:120])
            except requests.RequestException as exc:
                problem = "%s %s" % (domain, exc)
            with self._lock:
                if problem:
                    self.failures.append((round(time.time(), 2), problem))
                else:
                    self.ok += 1
            time.sleep(self.pause)

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(15)


@pytest.fixture(scope="module")
def front(lab, tmp_path_factory):
    """Two domains routed by Kong (services straight to a VM and a container node), an inventory of the Kong
    proxy nodes and the load balancer; the services are removed at the end, every Kong node left bound."""
    nodes = kong_nodes(lab)
    if len(nodes) < 2:
        pytest.skip("the front load balancer tests need at least 2 Kong proxy nodes (lab kong.nodes)")
    admin = lab["admin_url"]
    fleet = [n for n in lab["nodes"] if n["service"] == "shop"]
    backends = [fleet[0], fleet[-1]]
    for domain, node in zip(DOMAINS, backends):
        name = domain.split(".", maxsplit=1)[0]
        resp = requests.put("%s/services/%s" % (admin, name), json={"url": node["url"], "tags": ["mixedrun-front-lb-test"]}, timeout=10)
        assert resp.status_code in (200, 201), resp.text
        resp = requests.put("%s/routes/%s" % (admin, name), json={"hosts": [domain], "service": {"name": name}}, timeout=10)
        assert resp.status_code in (200, 201), resp.text
    tmp = tmp_path_factory.mktemp("front-lb")
    local = {"ansible_connection": "local", "ansible_python_interpreter": PYTHON}
    hosts = {}
    for node in nodes:
        port = int(node["proxy_url"].rsplit(":", 1)[1])
        hosts[node["name"]] = dict(local, kong_proxy_address="127.0.0.1", kong_proxy_port=port, kong_status_url=node.get("status_url") or "",
                                   kong_node_id=node.get("node_id") or "")
    names = [n["name"] for n in nodes]
    hybrid = lab.get("kong_mode") == "hybrid"
    inventory = {"all": {
        "hosts": {"localhost": dict(local)},
        "children": {
            "kong_data_planes": {"hosts": hosts},
            "kong_but_last": {"hosts": dict((n, {}) for n in names[:-1])},
            "kong_but_first": {"hosts": dict((n, {}) for n in names[1:])},
        },
        "vars": {
            "kong_gateway_haproxy": {"runtime_api": lab["lb_runtime_api"], "backend": lab["lb_backend"], "config_file": lab["lb_config"],
                                     "validate": "haproxy -c -q -f %s", "server_options": lab_haproxy.SERVER_OPTIONS},
            "kong_gateway_lb_url": lab["lb_url"],
            "kong_gateway_domains": list(DOMAINS),
            "kong_gateway_control_plane_url": lab.get("kong_control_plane_url") or "" if hybrid else "",
            "kong_gateway_drain_timeout": 30,
            "kong_gateway_health_timeout": 90,
        }}}
    inv_path = tmp / "inventory.yml"
    inv_path.write_text(yaml.safe_dump(inventory))
    hook = tmp / "restart-kong.yml"
    hook.write_text(yaml.safe_dump([{
        "name": "Restart this Kong node (the lab's control: kong quit, kong start)",
        "ansible.builtin.command": "%s -m tests.lab kong-restart {{ inventory_hostname }}" % PYTHON,
        "args": {"chdir": REPO}, "environment": {"MIXEDRUN_LAB_DIR": lab["state_dir"]},
        "delegate_to": "localhost", "changed_when": True, "register": "restart_result"}]))
    wait_routed(lab, nodes)
    yield {"inventory": str(inv_path), "hook": str(hook), "names": names, "tmp": tmp}
    for domain in DOMAINS:
        name = domain.split(".", maxsplit=1)[0]
        requests.delete("%s/routes/%s" % (admin, name), timeout=10)
        requests.delete("%s/services/%s" % (admin, name), timeout=10)


def wait_routed(lab, nodes, timeout=60):
    """Every Kong proxy routes both domains (Kong nodes rebuild their routers asynchronously)."""
    deadline = time.monotonic() + timeout
    for node in nodes:
        for domain in DOMAINS:
            while True:
                try:
                    if "x-kong-upstream-latency" in requests.get(node["proxy_url"] + "/", headers={"Host": domain}, timeout=5).headers:
                        break
                except requests.RequestException:
                    pass
                assert time.monotonic() < deadline, "%s does not route %s after %s s" % (node["name"], domain, timeout)
                time.sleep(0.3)


def playbook(front, name, *extra, expect_rc=0, timeout=600):
    env = dict(os.environ)
    env.update({"ANSIBLE_CONFIG": os.path.join(REPO, "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"})
    env.pop("ANSIBLE_FORCE_COLOR", None)
    cmd = [os.path.join(os.path.dirname(PYTHON), "ansible-playbook"), "-i", front["inventory"],
           os.path.join(REPO, "playbooks", name)] + list(extra)
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == expect_rc, "%s %s failed (rc %d):\n%s\n%s" % (name, extra, proc.returncode, proc.stdout[-5000:], proc.stderr[-2000:])
    seconds = time.monotonic() - started
    print("  %s %s: %.1f s" % (name, " ".join(extra), seconds), file=sys.stderr)
    return proc.stdout, seconds


def recap_changed(out, host="localhost"):
    match = re.search(r"^%s\s*:\s*ok=\d+\s+changed=(\d+)" % re.escape(host), out, re.M)
    assert match, out[-1500:]
    return int(match.group(1))


def test_bind_grow_shrink_reload_under_traffic(lab, front):
    """All but the last node, then all, then all but the first, under traffic: 0 failed requests; a reload keeps the
    set; a second bind changes nothing."""
    names = front["names"]
    timings = {}
    with Traffic(lab["lb_url"], DOMAINS) as traffic:
        out, timings["bind %d" % (len(names) - 1)] = playbook(front, "kong_gateway.yml", "-e", "kong_gateway_group=kong_but_last")
        assert set(lb_servers(lab)) == set(names[:-1])
        out, timings["bind %d" % len(names)] = playbook(front, "kong_gateway.yml")
        assert set(lb_servers(lab)) == set(names)
        assert all(s[1] == "ready" for s in lb_servers(lab).values())
        out, timings["bind again"] = playbook(front, "kong_gateway.yml")
        assert recap_changed(out) == 0, out[-3000:]
        out, timings["remove %s" % names[0]] = playbook(front, "kong_gateway.yml", "-e", "kong_gateway_group=kong_but_first")
        assert set(lb_servers(lab)) == set(names[1:])
        before = lb_servers(lab)
        lab_haproxy.reload(lab["state_dir"])
        assert lb_servers(lab) == before, "a reload lost the bound set"
        time.sleep(2)       # the new worker's health checks
        out, timings["bind all again"] = playbook(front, "kong_gateway.yml")
        assert set(lb_servers(lab)) == set(names)
        time.sleep(1)
    print("front lb: %d requests, %d failed; %s" % (traffic.ok + len(traffic.failures), len(traffic.failures),
                                                    ", ".join("%s %.1f s" % kv for kv in timings.items())))
    assert traffic.ok > 50
    assert traffic.failures == [], traffic.failures[:10]


@needs_realkong
def test_rolling_restart_under_traffic(lab, front):
    """Every Kong node restarted in turn (drain, kong quit + start, healthy and current, enable): 0 failed requests."""
    if lab.get("kong_engine") != "real":
        pytest.skip("the rolling restart restarts real Kong nodes (kong_engine real)")
    if set(lb_servers(lab)) != set(front["names"]):
        playbook(front, "kong_gateway.yml")          # this test alone: bind every node first
    pids = dict((n["name"], n.get("pid")) for n in kong_nodes(lab))
    with Traffic(lab["lb_url"], DOMAINS) as traffic:
        out, seconds = playbook(front, "kong_maintenance.yml", "-e", "kong_maintenance_hook=%s" % front["hook"], timeout=900)
        time.sleep(1)
    with open(os.path.join(lab["state_dir"], "lab.json"), encoding="utf-8") as fh:
        after = dict((n["name"], n.get("pid")) for n in json.load(fh)["kong_nodes"] if n.get("proxy_url"))
    total = traffic.ok + len(traffic.failures)
    print("rolling restart of %d Kong nodes: %.1f s, %d requests, %d failed" % (len(pids), seconds, total, len(traffic.failures)))
    assert all(after[name] != pid for name, pid in pids.items()), "not every node was restarted: %s -> %s" % (pids, after)
    assert set(lb_servers(lab)) == set(front["names"]) and all(s[1] == "ready" for s in lb_servers(lab).values())
    assert traffic.ok > 50
    assert traffic.failures == [], traffic.failures[:10]


def run_modules(front, tasks):
    """Module tasks on localhost in one play: [(module, args, check_mode)]; returns each registered result."""
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "task %d" % i, "mixedrun.kong.%s" % module: args, "register": "result_%d" % i, "ignore_errors": True, "check_mode": check,
         "diff": True} for i, (module, args, check) in enumerate(tasks)] + [
        {"name": "results", "ansible.builtin.copy": {"content": "{{ [%s] | to_json }}" % ", ".join("result_%d" % i for i in range(len(tasks))),
                                                     "dest": str(front["tmp"] / "results.json")}, "check_mode": False}]}]
    path = front["tmp"] / "play.yml"
    path.write_text(yaml.safe_dump(play))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"))
    proc = subprocess.run([os.path.join(os.path.dirname(PYTHON), "ansible-playbook"), "-i", front["inventory"], str(path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    return json.loads((front["tmp"] / "results.json").read_text())


def test_check_mode_and_bad_input_change_nothing(lab, front):
    before = lb_servers(lab)
    with open(lab["lb_config"], encoding="utf-8") as fh:
        config = fh.read()
    base = {"runtime_api": lab["lb_runtime_api"], "backend": lab["lb_backend"], "config_file": lab["lb_config"]}
    first = front["names"][0]
    vm = [n for n in lab["nodes"] if n["kind"] == "vm"][0]
    cases = [
        (dict(base, backend="no_such_backend"), r"backend: 'no_such_backend' does not exist .*its backends: %s" % lab["lb_backend"]),
        (dict(base, servers=[{"name": "not-kong", "address": vm["address"], "port": vm["port"]}]),
         r"not a Kong proxy: servers\[0\] \(not-kong\) .*Set servers\[\]\.address/port to a Kong node's proxy listener"),
        (dict(base, runtime_api=str(front["tmp"] / "no.sock")), r"Runtime API .*does not answer.*set runtime_api to HAProxy's admin socket"),
        (dict(base, runtime_api="ipv4@127.0.0.1:9"), r"does not answer.*set runtime_api"),
        (dict(base, servers=[{"name": "x", "address": "127.0.0.1", "port": 70000}]), r"servers\[0\] \(x\)\.port: 70000 is not a port"),
        (dict(base, servers=[{"name": "new-one"}]), r"servers\[0\] \(new-one\): not in the backend yet; give its address and port"),
    ]
    results = run_modules(front, [
        # check mode: a drain is reported, not made
        ("haproxy_backend_servers", dict(base, servers=[{"name": first, "state": "drain"}]), True),
        # the TCP Runtime API reads the same
        ("haproxy_backend_info", {"runtime_api": lab["lb_runtime_api_tcp"], "backend": lab["lb_backend"]}, False),
    ] + [("haproxy_backend_servers", args, False) for args, _pattern in cases])
    res = results[0]
    assert res["changed"] and res["updated"] == {first: {"state": ["ready", "drain"]}}, res
    assert res["commands"] == [{"command": "set server %s/%s state drain" % (lab["lb_backend"], first), "check_mode": True}]
    assert sorted(s["name"] for s in results[1]["servers"]) == sorted(before), results[1]
    for (args, pattern), res in zip(cases, results[2:]):
        assert res.get("failed"), (args, res)
        assert re.search(pattern, res["msg"]), (pattern, res["msg"])
        assert "nothing was changed" in res["msg"], res["msg"]
    assert lb_servers(lab) == before
    with open(lab["lb_config"], encoding="utf-8") as fh:
        assert fh.read() == config
