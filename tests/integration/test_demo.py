"""The README's first command, end to end: ``ansible-playbook playbooks/demo.yml`` as ``make demo`` runs it.

The demo starts its own lab (in a temporary state dir here, so a developer's lab and the integration lab are left
alone), binds shop.lab.test, runs a gated rollout 10 -> 50 -> 100 % while measuring the traffic through
HAProxy -> Kong, rolls back, shows a failing rollout being stopped by its gates, and stops the lab. This test reads
the demo's own summary table and checks it against the plan, and that nothing of the lab is left running.
Run: PYTHONPATH=. .venv/bin/pytest tests/integration/test_demo.py
"""

import json
import os
import re
import subprocess
import sys

from tests.lab.config import realkong_kit

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOLERANCE = 10.0  # points; the demo samples only 200 requests per step
ROW = re.compile(r"^\s*(?P<phase>before|step \d+ of \d+|after rollback)\s+(?P<planned>[\d.]+) %\s+(?P<observed>[\d.]+) %"
                 r"\s+\S+\s+(?P<ok>\d+)/(?P<sent>\d+)\s*$")


def _env(state_dir):
    env = dict(os.environ)
    for name in ("MIXEDRUN_LAB_JSON", "KONG_ADMIN_URL", "K8S_AUTH_KUBECONFIG"):
        env.pop(name, None)  # the demo must find everything from the lab it starts itself
    env["MIXEDRUN_LAB_DIR"] = state_dir
    env["ANSIBLE_CONFIG"] = os.path.join(REPO, "ansible.cfg")
    env["ANSIBLE_NOCOLOR"] = "1"
    return env


def _lab_status(state_dir):
    proc = subprocess.run([sys.executable, "-m", "tests.lab", "status"], cwd=REPO, env=_env(state_dir),
                          capture_output=True, text=True, timeout=60, check=False)
    return json.loads(proc.stdout) if proc.stdout.strip() else {"state": "unknown", "stderr": proc.stderr}


def test_demo_moves_traffic_and_stops_its_lab(tmp_path):
    state_dir = str(tmp_path / "lab")
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), os.path.join(REPO, "playbooks", "demo.yml"),
           "-e", json.dumps({"demo_report_dir": str(tmp_path / "reports")})]
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=_env(state_dir), capture_output=True, text=True, timeout=600, check=False)
    finally:
        status = _lab_status(state_dir)
        if status.get("state") != "down":
            subprocess.run([sys.executable, "-m", "tests.lab", "down"], cwd=REPO, env=_env(state_dir), capture_output=True,
                           timeout=120, check=False)
    assert proc.returncode == 0, "demo failed:\n%s\n%s" % (proc.stdout[-5000:], proc.stderr[-2000:])
    # the demo says which Kong it ran on: real Kong wherever the kit is present
    engine = "Lab up on real Kong 3.9.3 (traditional mode)" if realkong_kit() else "Lab up on the Kong simulator (no real Kong kit here"
    assert engine in " ".join(proc.stdout.split()), proc.stdout[:3000]
    rows = {}
    for line in proc.stdout.splitlines():
        match = ROW.match(line.replace("\\n", ""))
        if match:
            rows[match.group("phase")] = match.groupdict()
    assert set(rows) >= {"before", "step 1 of 3", "step 2 of 3", "step 3 of 3", "after rollback"}, proc.stdout[-4000:]
    for phase, planned in (("before", 0), ("step 1 of 3", 10), ("step 2 of 3", 50), ("step 3 of 3", 100), ("after rollback", 0)):
        row = rows[phase]
        assert float(row["planned"]) == planned, row
        assert abs(float(row["observed"]) - planned) <= TOLERANCE, row
        assert int(row["ok"]) == int(row["sent"]) > 0, "every request of the sample answered 2xx: %s" % row
    assert "Failing rollout:" in proc.stdout and "Rolled back" in proc.stdout
    assert re.search(r"gate '[^']+' \(\w+\) failed: measured", proc.stdout), "the failing rollout names its gate"
    reports = [name for name in os.listdir(str(tmp_path / "reports")) if name.endswith(".json")]
    assert len(reports) >= 2, reports
    assert status.get("state") == "down", "the demo stopped the lab it started: %s" % status
