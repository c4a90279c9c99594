"""Bad input and -e strings, end to end: playbooks/rollout.yml and playbooks/rollback.yml against the lab.

(a) every number and boolean given as an ``-e name=value`` string (what -e and AWX surveys produce) runs a rollout;
(b) a rollout_traffic_url without a scheme fails in the preflight, naming the variable and the value: no lock is
    taken and no weight changes (before, the first step moved real traffic and the gate rolled back);
(c) rollback.yml with a rollout_rollback_to outside 0..100 (or not a number) fails before it takes the lock;
(d) an empty rollout_upstream is refused by both playbooks before any request.

Run (a lab of its own on free ports, or the one of MIXEDRUN_LAB_JSON):
    PYTHONPATH=.tmp/collections:. .venv/bin/pytest -p tests.lab.pytest_plugin tests/integration/test_bad_input.py
"""

import subprocess

import pytest

from tests.integration.test_rollout_e2e import (
    PLAYBOOK_TIMEOUT,
    REPO,
    SERVICE,
    admin,
    base_vars,
    bind,
    command,
    env,
    reports,
    rollout_tags,
    share,
    upstream_tags,
    weights,
)


def run_strings(name, variables, pairs):
    """ansible-playbook with ``variables`` as JSON plus ``pairs`` as ``-e name=value`` strings (as a user types them)."""
    cmd = command(name, variables)
    for key, value in pairs:
        cmd += ["-e", "%s=%s" % (key, value)]
    proc = subprocess.run(cmd, cwd=REPO, env=env(), capture_output=True, text=True, timeout=PLAYBOOK_TIMEOUT,
                          check=False, stdin=subprocess.DEVNULL)
    return proc.returncode, " ".join((proc.stdout + proc.stderr).split())


def run_playbook_json(lab, tmp_path, name, **extra):
    return run_strings(name, base_vars(lab, str(tmp_path), **extra), [])


def snapshot(lab):
    """What a run that must change nothing may not change: the weights and every tag of the upstream."""
    return {"weights": weights(lab), "tags": sorted(upstream_tags(lab))}


@pytest.fixture
def bound(lab):
    """The service bound, VMs at weight 100, containers at 0, and no lock, origin or rollback tag (bind's PUT)."""
    bind(lab)
    assert rollout_tags(lab) == []
    return lab


def test_rollout_takes_every_number_and_boolean_as_an_e_string(bound, tmp_path):
    lab = bound
    variables = base_vars(lab, str(tmp_path))
    # the -e strings below replace these (the steps as an AWX survey's text answer gives a list: "[5,25]")
    for key in ("rollout_hold", "rollout_gate_interval", "rollout_traffic_requests", "rollout_traffic_min_success_ratio",
                "rollout_lock_settle", "rollout_upstream", "rollout_admin_url", "rollout_admin_urls", "rollout_balancer_urls",
                "rollout_steps"):
        variables.pop(key, None)
    pairs = [
        ("rollout_steps", "[5,25]"),
        ("rollout_upstream", SERVICE), ("rollout_admin_url", admin(lab)),
        ("rollout_admin_urls", ",".join(lab.get("admin_urls") or [admin(lab)])),
        ("rollout_balancer_urls", ",".join(lab.get("kong_balancer_urls") or [])),
        ("rollout_hold", "1"), ("rollout_gate_interval", "1"), ("rollout_target_share", "25"),
        ("rollout_max_failures", "3"), ("rollout_max_consecutive_failures", "2"), ("rollout_inconclusive_limit", "3"),
        ("rollout_max_error", "0.05"), ("rollout_resume_tolerance", "0.5"), ("rollout_probe_timeout", "2"),
        ("rollout_traffic_requests", "10"), ("rollout_traffic_concurrency", "2"), ("rollout_traffic_timeout", "5"),
        ("rollout_traffic_min_success_ratio", "0.9"), ("rollout_lock_ttl", "900"), ("rollout_lock_settle", "0.2"),
        ("rollout_lock_recheck_after", "5"), ("rollout_rollback_step_hold", "1"), ("rollout_vm_drain", "0"),
        ("rollout_kong_health", "yes"), ("rollout_probe", "true"), ("rollout_validate_certs", "true"),
        ("rollout_lock_force", "no"), ("rollout_remove_vms", "false"), ("rollout_report", "true"),
        ("rollout_report_chart", "false"), ("rollout_hooks_no_log", "yes"),
    ]
    rc, out = run_strings("rollout.yml", variables, pairs)
    assert rc == 0, out[-3000:]
    assert "not supported between instances" not in out
    assert abs(share(lab) - 25.0) < 0.1, share(lab)
    assert rollout_tags(lab) == [], "the lock was released"
    assert reports(str(tmp_path)) and reports(str(tmp_path))[-1]["run"]["outcome"] == "finished"


@pytest.mark.parametrize("url", ["gateway.example.com", "kong-proxy:8000"])
def test_traffic_url_without_scheme_fails_before_the_lock_and_the_first_step(bound, tmp_path, url):
    lab = bound
    before = snapshot(lab)
    rc, out = run_playbook_json(lab, tmp_path, "rollout.yml", rollout_traffic_url=url)
    assert rc != 0
    assert "rollout_traffic_url '%s' is not an http(s) URL" % url in out, out[-2000:]
    assert "http://%s" % url in out and "Nothing was changed" in out
    assert "Traceback" not in out
    assert snapshot(lab) == before, "no lock taken, no weight changed"
    assert "Take the rollout lock" not in out


@pytest.mark.parametrize("value, words", [
    ("150", ["rollout_rollback_to '150' is not a container share", "0 to 100", "no lock was taken"]),
    ("-5", ["rollout_rollback_to '-5' is not a container share"]),
    ("abc", ["rollout_rollback_to", "float"]),
])
def test_rollback_with_invalid_rollback_to_takes_no_lock(bound, tmp_path, value, words):
    lab = bound
    before = snapshot(lab)
    rc, out = run_strings("rollback.yml", base_vars(lab, str(tmp_path)), [("rollout_rollback_to", value)])
    assert rc != 0
    for word in words:
        assert word in out, (word, out[-2000:])
    assert "Traceback" not in out
    assert snapshot(lab) == before, "no lock taken, no weight changed"


@pytest.mark.parametrize("playbook", ["rollout.yml", "rollback.yml"])
def test_empty_upstream_is_refused_before_any_request(bound, tmp_path, playbook):
    lab = bound
    before = snapshot(lab)
    variables = base_vars(lab, str(tmp_path))
    variables.pop("rollout_upstream")
    rc, out = run_strings(playbook, variables, [("rollout_upstream", "")])
    assert rc != 0
    assert "rollout_upstream '' is empty" in out or "rollout_upstream" in out, out[-2000:]
    assert "Traceback" not in out
    assert snapshot(lab) == before
